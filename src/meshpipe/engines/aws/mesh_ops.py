"""What an AWS environment does differently on each mesh flavour: one ops class per flavour implements it.

The engine checks the input, reads the environment's context (whose stack records the flavour) and hands the
operation to that flavour's class, so it never asks which flavour it is on: App Mesh, which AWS has shut
down, lives in :mod:`.app_mesh` alone, and ECS Service Connect in :mod:`.service_connect`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from meshpipe.engines.aws.env_context import EnvContext
from meshpipe.engines.aws.stacks import StackState
from meshpipe.engines.aws.teardown import EnvironmentStacks
from meshpipe.engines.base import VersionInfo
from meshpipe.engines.plan import Plan
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.mesh.routing import GatewayRoute, HeaderRoute, Route
from meshpipe.rollout import Move


class MeshOps(Protocol):
    flavour: ClassVar[MeshFlavour]

    # -- environments -----------------------------------------------------------------------------------

    def created_details(self, ctx: EnvContext) -> dict[str, str]:
        """What ``env create`` reports of the environment beyond what every flavour has."""
        ...

    def status_details(self, ctx: EnvContext, found: EnvironmentStacks) -> dict[str, str]:
        """What ``env status`` reports of the environment beyond what every flavour has."""
        ...

    def plan_env_delete(self, ctx: EnvContext, found: EnvironmentStacks) -> Plan: ...

    # -- pipelines --------------------------------------------------------------------------------------

    def check_pipeline_service(self, service: str) -> None:
        """Refuse a service name this flavour cannot hold, before any stack is deployed."""
        ...

    def kept_pipeline_values(self, existing: StackState | None) -> dict[str, str]:
        """Parameters of an existing pipeline stack that deploying it again keeps."""
        ...

    pipeline_holds: ClassVar[str]  # what the pipeline stack holds beyond the pipeline, as words for its plan

    def plan_pipeline_delete(self, ctx: EnvContext, found: EnvironmentStacks, service: str, stack: StackState,
                             force: bool) -> Plan: ...

    # -- gateway routes ---------------------------------------------------------------------------------

    def gateway_route_set(self, ctx: EnvContext, route: GatewayRoute) -> GatewayRoute: ...
    def gateway_route_delete(self, ctx: EnvContext, name: str) -> None: ...
    def gateway_routes(self, ctx: EnvContext) -> list[GatewayRoute]: ...

    # -- service routes ---------------------------------------------------------------------------------

    def plan_route_set(self, ctx: EnvContext, route: Route) -> Plan: ...
    def route_show(self, ctx: EnvContext, service: str) -> Route | None: ...
    def route_delete(self, ctx: EnvContext, service: str) -> None: ...
    def header_route_set(self, ctx: EnvContext, route: HeaderRoute) -> HeaderRoute: ...
    def header_route_delete(self, ctx: EnvContext, service: str, header: str) -> None: ...
    def header_routes(self, ctx: EnvContext, service: str) -> list[HeaderRoute]: ...

    # -- versions and rollouts --------------------------------------------------------------------------

    def versions(self, ctx: EnvContext, service: str) -> list[VersionInfo]: ...
    def plan_version_delete(self, ctx: EnvContext, service: str, version: str, force: bool) -> Plan: ...
    def rollout_shift(self, ctx: EnvContext, service: str, move: Move, version: str | None) -> Route: ...
    def rollout_status(self, ctx: EnvContext, service: str) -> dict[str, Any]: ...

    # -- observability ----------------------------------------------------------------------------------

    def dashboard_url(self, ctx: EnvContext, region: str) -> str: ...

    def backends(self, ctx: EnvContext, found: EnvironmentStacks, service: str) -> set[str]:
        """The services ``service`` calls, as far as its stacks declare them."""
        ...
