"""What every engine offers: the walkthrough's operations, with typed results.

The CLI talks to engines only through this protocol, so ``--engine local`` and ``--engine aws`` run the
same commands with the same output.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from meshpipe.mesh.graph import Topology
from meshpipe.mesh.routing import GatewayRoute, Route, WeightedTarget


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
class StageResult:
    name: str  # Source | Build | Deploy
    status: str  # Succeeded | Failed | InProgress | Skipped
    log: str = ""


@dataclass(frozen=True)
class PipelineRun:
    run_id: str
    service: str
    commit: str | None
    status: str  # InProgress | Succeeded | Failed
    started_at: str
    finished_at: str | None
    stages: tuple[StageResult, ...] = ()
    version: str | None = None


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


@runtime_checkable
class TopologySource(Protocol):
    """An engine that can describe an environment's mesh for ``meshpipe graph``; ``sample_seconds`` > 0
    asks for request and error rates measured over that long (an engine that cannot says so)."""

    def topology(self, env: str, sample_seconds: float = 0.0) -> Topology: ...


@runtime_checkable
class DashboardSource(Protocol):
    """An engine with a dashboard of an environment to point people at (``meshpipe dashboard``)."""

    def dashboard_url(self, env: str) -> str: ...


@runtime_checkable
class LogSource(Protocol):
    """An engine that can show a service's app and proxy logs (``meshpipe logs``)."""

    def logs(self, env: str, service: str, version: str | None = None, tail: int | None = None) -> list[Any]: ...

    def follow_logs(self, env: str, service: str, version: str | None = None) -> Iterator[Any]: ...


@runtime_checkable
class MetricsSource(Protocol):
    """An engine that serves an environment's Prometheus page (``meshpipe metrics``)."""

    def metrics(self, env: str) -> str: ...

    def metrics_target(self, env: str) -> dict[str, Any]: ...
