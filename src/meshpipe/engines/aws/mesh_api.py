"""Routes, header routes and gateway routes through the App Mesh API, as the original sample's walkthrough
sets them by hand.

Routes are not part of any stack on purpose: the pipeline deploys versions, and moving traffic between
them is a separate, deliberate step.
"""

from __future__ import annotations

from typing import Any, Literal

from meshpipe.engines.aws.calls import AwsCalls
from meshpipe.engines.aws.errors import is_not_found
from meshpipe.mesh.headers import HeaderMatch
from meshpipe.mesh.routing import GatewayRoute, HeaderRoute, Route, WeightedTarget, version_of_node
from meshpipe.naming import header_route_name, route_name, virtual_router_name

Outcome = Literal["created", "updated"]


class MeshApi:
    def __init__(self, calls: AwsCalls) -> None:
        self.calls = calls

    # -- service routes -------------------------------------------------------------------------------

    def describe_route(self, mesh: str, service: str) -> Route | None:
        found = self.calls.call_or_none("appmesh", "describe_route", when=is_not_found, meshName=mesh,
                                        virtualRouterName=virtual_router_name(service), routeName=route_name(service))
        if found is None:
            return None
        return route_from_spec(service, found["route"]["spec"])

    def _put(self, kind: str, spec: dict[str, Any], **ident: str) -> Outcome:
        """Create the App Mesh ``kind`` (``route``, ``gateway_route``), or replace its spec when it exists."""
        exists = self.calls.call_or_none("appmesh", f"describe_{kind}", when=is_not_found, **ident)
        self.calls("appmesh", f"update_{kind}" if exists is not None else f"create_{kind}", spec=spec, **ident)
        return "updated" if exists is not None else "created"

    def put_route(self, mesh: str, route: Route) -> Outcome:
        """Create the route, or replace its spec when it exists."""
        return self._put("route", route.to_appmesh_spec(), meshName=mesh, virtualRouterName=route.router,
                         routeName=route.name)

    def delete_route(self, mesh: str, service: str) -> bool:
        """Delete the service's route; False when there was none."""
        gone = self.calls.call_or_none("appmesh", "delete_route", when=is_not_found, meshName=mesh,
                                       virtualRouterName=virtual_router_name(service), routeName=route_name(service))
        return gone is not None

    def virtual_routers(self, mesh: str) -> list[str]:
        if not self.mesh_exists(mesh):
            return []
        return [r["virtualRouterName"] for r in self.calls.pages(
            "appmesh", "list_virtual_routers", "virtualRouters", token_key="nextToken", meshName=mesh)]

    def route_names(self, mesh: str, router: str) -> list[str]:
        return [r["routeName"] for r in self.calls.pages(
            "appmesh", "list_routes", "routes", token_key="nextToken", meshName=mesh, virtualRouterName=router)]

    def delete_router_route(self, mesh: str, router: str, route: str) -> None:
        self.calls.call_or_none("appmesh", "delete_route", when=is_not_found, meshName=mesh,
                                virtualRouterName=router, routeName=route)

    def mesh_exists(self, mesh: str) -> bool:
        return self.calls.call_or_none("appmesh", "describe_mesh", when=is_not_found, meshName=mesh) is not None

    # -- header routes: extra routes of a service's virtual router, matched on a request header at priority 0,
    # before the weighted route r-<svc> (priority 1) --------------------------------------------------------

    def put_header_route(self, mesh: str, route: HeaderRoute) -> Outcome:
        """Create the header route, or replace its spec when it exists."""
        return self._put("route", route.to_appmesh_spec(), meshName=mesh, virtualRouterName=route.router,
                         routeName=route.name)

    def delete_header_route(self, mesh: str, service: str, header: str) -> bool:
        gone = self.calls.call_or_none("appmesh", "delete_route", when=is_not_found, meshName=mesh,
                                       virtualRouterName=virtual_router_name(service),
                                       routeName=header_route_name(service, header))
        return gone is not None

    def header_routes(self, mesh: str, service: str) -> list[HeaderRoute]:
        """The service's routes that match on headers, in the order App Mesh tries them."""
        router = virtual_router_name(service)
        prefix = header_route_name(service, "")
        found = []
        for brief in self.calls.pages("appmesh", "list_routes", "routes", token_key="nextToken", meshName=mesh,
                                      virtualRouterName=router):
            name = brief["routeName"]
            if not name.startswith(prefix):
                continue
            described = self.calls.call_or_none("appmesh", "describe_route", when=is_not_found, meshName=mesh,
                                                virtualRouterName=router, routeName=name)
            route = header_route_from_spec(service, described["route"]["spec"]) if described else None
            if route is not None:
                found.append(route)
        return sorted(found, key=lambda r: (r.priority, r.name))

    # -- gateway routes -------------------------------------------------------------------------------

    def put_gateway_route(self, mesh: str, gateway: str, route: GatewayRoute) -> Outcome:
        return self._put("gateway_route", route.to_appmesh_spec(), meshName=mesh, virtualGatewayName=gateway,
                         gatewayRouteName=route.name)

    def gateway_routes(self, mesh: str, gateway: str) -> list[GatewayRoute]:
        routes = []
        for name in self.gateway_route_names(mesh, gateway):
            found = self.calls.call_or_none("appmesh", "describe_gateway_route", when=is_not_found,
                                            meshName=mesh, virtualGatewayName=gateway, gatewayRouteName=name)
            parsed = gateway_route_from_spec(name, found["gatewayRoute"]["spec"]) if found else None
            if parsed is not None:
                routes.append(parsed)
        return sorted(routes, key=lambda r: r.name)

    def gateway_route_names(self, mesh: str, gateway: str) -> list[str]:
        page = self.calls.call_or_none("appmesh", "describe_virtual_gateway", when=is_not_found,
                                       meshName=mesh, virtualGatewayName=gateway)
        if page is None:
            return []
        return [r["gatewayRouteName"] for r in self.calls.pages(
            "appmesh", "list_gateway_routes", "gatewayRoutes", token_key="nextToken", meshName=mesh,
            virtualGatewayName=gateway)]

    def delete_gateway_route(self, mesh: str, gateway: str, name: str) -> bool:
        gone = self.calls.call_or_none("appmesh", "delete_gateway_route", when=is_not_found, meshName=mesh,
                                       virtualGatewayName=gateway, gatewayRouteName=name)
        return gone is not None


def route_from_spec(service: str, spec: dict[str, Any]) -> Route:
    """The :class:`Route` an App Mesh route spec describes.

    Targets that are not versions of the service (virtual nodes named by hand) cannot be represented
    and are left out; ``route set`` replaces them.
    """
    http = spec.get("httpRoute", {})
    targets = []
    for t in http.get("action", {}).get("weightedTargets", []):
        version = version_of_node(service, t.get("virtualNode", ""))
        if version is not None:
            targets.append(WeightedTarget(version, int(t.get("weight", 0))))
    match = http.get("match", {})
    return Route(service=service, targets=tuple(targets), prefix=match.get("prefix", "/"),
                 method=match.get("method"), priority=int(spec.get("priority", 1)))


def gateway_route_from_spec(name: str, spec: dict[str, Any]) -> GatewayRoute | None:
    http = spec.get("httpRoute")
    if not http:
        return None  # gRPC / HTTP2 gateway routes are not managed by meshpipe
    action = http.get("action", {})
    virtual_service = action.get("target", {}).get("virtualService", {}).get("virtualServiceName", "")
    service, _, namespace = virtual_service.partition(".")
    rewrite = action.get("rewrite", {}).get("prefix", {}).get("defaultPrefix", "ENABLED")
    return GatewayRoute(name=name, prefix=http.get("match", {}).get("prefix", "/"), service=service,
                        namespace=namespace, rewrite_prefix=rewrite != "DISABLED")


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
