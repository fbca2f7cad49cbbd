"""Header routes through the App Mesh API: extra routes of a service's virtual router, matched on a request
header (``match.headers``) at priority 0, before the weighted route ``r-<svc>`` (priority 1)."""

from __future__ import annotations

from typing import Any

from meshpipe.engines.aws.calls import AwsCalls
from meshpipe.engines.aws.errors import is_not_found
from meshpipe.mesh.headers import HeaderMatch
from meshpipe.mesh.routing import HeaderRoute, WeightedTarget, version_of_node
from meshpipe.naming import header_route_name, virtual_router_name


def put_header_route(calls: AwsCalls, mesh: str, route: HeaderRoute) -> str:
    """Create the header route, or replace its spec; returns ``created`` or ``updated``."""
    ident = {"meshName": mesh, "virtualRouterName": route.router, "routeName": route.name}
    exists = calls.call_or_none("appmesh", "describe_route", when=is_not_found, **ident)
    calls("appmesh", "update_route" if exists else "create_route", spec=route.to_appmesh_spec(), **ident)
    return "updated" if exists else "created"


def delete_header_route(calls: AwsCalls, mesh: str, service: str, header: str) -> bool:
    gone = calls.call_or_none("appmesh", "delete_route", when=is_not_found, meshName=mesh,
                              virtualRouterName=virtual_router_name(service),
                              routeName=header_route_name(service, header))
    return gone is not None


def header_routes(calls: AwsCalls, mesh: str, service: str) -> list[HeaderRoute]:
    """The service's routes that match on headers, in the order App Mesh tries them."""
    router = virtual_router_name(service)
    prefix = header_route_name(service, "")
    found = []
    for brief in calls.pages("appmesh", "list_routes", "routes", token_key="nextToken", meshName=mesh,
                             virtualRouterName=router):
        name = brief["routeName"]
        if not name.startswith(prefix):
            continue
        described = calls.call_or_none("appmesh", "describe_route", when=is_not_found, meshName=mesh,
                                       virtualRouterName=router, routeName=name)
        route = header_route_from_spec(service, described["route"]["spec"]) if described else None
        if route is not None:
            found.append(route)
    return sorted(found, key=lambda r: (r.priority, r.name))


def header_route_from_spec(service: str, spec: dict[str, Any]) -> HeaderRoute | None:
    http = spec.get("httpRoute") or {}
    match = http.get("match", {})
    headers = []
    for h in match.get("headers", []):
        kinds = [k for k in ("exact", "prefix", "regex") if k in h.get("match", {})]
        if not kinds or h.get("invert"):
            return None  # a match meshpipe does not make (suffix, range, invert): not one of its header routes
        headers.append(HeaderMatch(h["name"], h["match"][kinds[0]], kinds[0]))
    if not headers:
        return None
    targets = tuple(WeightedTarget(v, int(t.get("weight", 0))) for t in http.get("action", {}).get("weightedTargets", [])
                    if (v := version_of_node(service, t.get("virtualNode", ""))) is not None)
    return HeaderRoute(service=service, headers=tuple(headers), targets=targets, priority=int(spec.get("priority", 0)),
                       prefix=match.get("prefix", "/"), method=match.get("method"))
