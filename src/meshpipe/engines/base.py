"""What every engine offers: the walkthrough's operations, with typed results.

The CLI talks to engines only through this protocol, so ``--engine local`` and ``--engine aws`` run the
same commands with the same output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from meshpipe.mesh.routing import GatewayRoute, Route, WeightedTarget
from meshpipe.pipeline.runs import PipelineRun


class Reporter(Protocol):
    """Where long operations say what they are doing (a Rich progress display in the CLI)."""

    def step(self, message: str) -> None: ...

    def done(self, message: str) -> None: ...


class SilentReporter:
    def step(self, message: str) -> None:
        pass

    def done(self, message: str) -> None:
        pass


@dataclass(frozen=True)
class EnvironmentInfo:
    name: str
    status: str  # e.g. CREATE_COMPLETE / RUNNING / NOT_FOUND
    ingress_url: str | None
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineInfo:
    service: str
    environment: str
    clone_url: str
    virtual_service: str
    status: str
    # A repository read through a connection, e.g. github:acme/hello-web-cfg (None: the engine's own repo).
    repository: str | None = None
    branch: str | None = None  # the branch whose pushes start a run, when the engine knows it


@dataclass(frozen=True)
class VersionInfo:
    service: str
    version: str
    commit: str
    stack_name: str
    status: str  # e.g. CREATE_COMPLETE / RUNNING / FAILED
    weight: int
    created_at: str | None = None
    healthy_tasks: int | None = None
    desired_tasks: int | None = None
    reason: str | None = None  # why a version failed (e.g. its health check never passed)


class Engine(Protocol):
    name: str

    def env_create(self, env: str) -> EnvironmentInfo: ...
    def env_delete(self, env: str) -> None: ...
    def env_status(self, env: str) -> EnvironmentInfo: ...

    def pipeline_create(self, env: str, service: str) -> PipelineInfo: ...
    def pipeline_delete(self, env: str, service: str) -> None: ...
    def pipeline_runs(self, env: str, service: str) -> list[PipelineRun]: ...
    def pipeline_logs(self, env: str, service: str, run_id: str | None = None) -> PipelineRun: ...

    def gateway_route_set(self, env: str, route: GatewayRoute) -> GatewayRoute: ...
    def gateway_route_delete(self, env: str, name: str) -> None: ...
    def gateway_routes(self, env: str) -> list[GatewayRoute]: ...

    def route_set(self, env: str, service: str, targets: tuple[WeightedTarget, ...]) -> Route: ...
    def route_show(self, env: str, service: str) -> Route | None: ...
    def route_delete(self, env: str, service: str) -> None: ...

    def versions(self, env: str, service: str) -> list[VersionInfo]: ...
    def version_delete(self, env: str, service: str, version: str, force: bool = False) -> None: ...
