"""Routes and gateway routes through the App Mesh API, as the original sample's walkthrough sets them by hand.

Routes are not part of any stack on purpose: the pipeline deploys versions, and moving traffic between
them is a separate, deliberate step.
"""

from __future__ import annotations

from typing import Any, Literal

from meshpipe.engines.aws.calls import AwsCalls
from meshpipe.engines.aws.errors import is_not_found
from meshpipe.mesh.routing import GatewayRoute, Route, WeightedTarget, version_of_node
from meshpipe.naming import route_name, virtual_router_name

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

    def put_route(self, mesh: str, route: Route) -> Outcome:
        """Create the route, or replace its spec when it exists."""
        ident = {"meshName": mesh, "virtualRouterName": route.router, "routeName": route.name}
        spec = route.to_appmesh_spec()
        exists = self.calls.call_or_none("appmesh", "describe_route", when=is_not_found, **ident)
        if exists is None:
            self.calls("appmesh", "create_route", spec=spec, **ident)
            return "created"
        self.calls("appmesh", "update_route", spec=spec, **ident)
        return "updated"

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

    # -- gateway routes -------------------------------------------------------------------------------

    def put_gateway_route(self, mesh: str, gateway: str, route: GatewayRoute) -> Outcome:
        ident = {"meshName": mesh, "virtualGatewayName": gateway, "gatewayRouteName": route.name}
        spec = route.to_appmesh_spec()
        exists = self.calls.call_or_none("appmesh", "describe_gateway_route", when=is_not_found, **ident)
        if exists is None:
            self.calls("appmesh", "create_gateway_route", spec=spec, **ident)
            return "created"
        self.calls("appmesh", "update_gateway_route", spec=spec, **ident)
        return "updated"

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
