"""What every engine offers: the walkthrough's operations, with typed results; and what only some do.

The CLI talks to engines only through these protocols, so ``--engine local`` and ``--engine aws`` run the
same commands with the same output. :class:`Engine` is what every engine does. The optional capabilities
(waiting for a run, starting one, traffic statistics, events, platform choices for environments and
pipelines, rollouts the platform drives itself, header routes, topology, logs, metrics, a dashboard) are
runtime-checkable protocols an engine has or has not: the CLI asks ``isinstance(engine, Capability)`` and says so when an engine lacks one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from meshpipe.errors import OperationError

if TYPE_CHECKING:
    # Named in signatures only: a read command (cli/fast.py), which loads this module for its data types,
    # does not pay for the mesh graph, the rollout planner and the rest.
    from meshpipe.engines.plan import Plan
    from meshpipe.mesh.flavour import MeshFlavour
    from meshpipe.mesh.graph import Topology
    from meshpipe.mesh.headers import HeaderMatch
    from meshpipe.mesh.routing import GatewayRoute, HeaderRoute, Route, WeightedTarget
    from meshpipe.mesh.stats import ServiceStats
    from meshpipe.pipeline.runs import PipelineRun, StartedRun
    from meshpipe.platform import PlatformPolicy
    from meshpipe.rollout import Move, Rollouts

__all__ = [
    "ConfigurableEnvironments",
    "ConfigurablePipelines",
    "DashboardSource",
    "DeployedTemplates",
    "Engine",
    "EngineNotRunning",
    "EnvCreateOptions",
    "EnvState",
    "EnvironmentInfo",
    "Event",
    "EventSource",
    "HeaderRoutes",
    "LogLine",
    "LogSource",
    "MetricsSource",
    "Move",
    "PipelineCreateOptions",
    "PipelineInfo",
    "PipelineStarter",
    "PipelineWaiter",
    "Planner",
    "Reporter",
    "RolloutRunner",
    "RolloutStatusSource",
    "Rollouts",
    "SilentReporter",
    "StatsSource",
    "TopologySource",
    "VersionInfo",
]


class EngineNotRunning(OperationError):
    """The environment's control plane is not running, and the engine was told not to start it."""


def __getattr__(name: str) -> Any:
    """``Move`` and ``Rollouts``, re-exported from meshpipe.rollout when first asked for."""
    if name in ("Move", "Rollouts"):
        from meshpipe import rollout

        return getattr(rollout, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

class Reporter(Protocol):
    """Where long operations say what they are doing (a Rich progress display in the CLI)."""

    def step(self, message: str) -> None: ...

    def done(self, message: str) -> None: ...


class SilentReporter:
    def step(self, message: str) -> None:
        pass

    def done(self, message: str) -> None:
        pass


class EnvState(StrEnum):
    """An environment's status where no stack status says it (AWS reports its stack's, e.g. CREATE_COMPLETE)."""

    RUNNING = "RUNNING"  # local: the daemon runs
    STOPPED = "STOPPED"  # local: the daemon does not run (any command but env status starts it)
    NOT_FOUND = "NOT_FOUND"


@dataclass(frozen=True)
class EnvironmentInfo:
    name: str
    status: str  # an EnvState, or on AWS the environment stack's status (e.g. CREATE_COMPLETE)
    ingress_url: str | None
    details: dict[str, str] = field(default_factory=dict)

    @property
    def missing(self) -> bool:
        return self.status == EnvState.NOT_FOUND


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
    repo_kept: bool = False  # the config repo (and its history) was kept from a deleted pipeline


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
    scaled_down: bool = False  # deployed, but running no task (left without weight by a rollout)


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


@dataclass(frozen=True)
class Event:
    """Something that happened in an environment: a deploy, a route change, a restart, a pipeline run."""

    at: str
    kind: str
    service: str | None
    version: str | None
    message: str


@dataclass(frozen=True)
class LogLine:
    """One line of a service's logs (``meshpipe logs``)."""

    at: float  # seconds since the epoch (0.0: no time known)
    source: str  # e.g. "hello-web-66f2a19a-1 app", "hello-web-66f2a19a-1 envoy"
    text: str


@dataclass(frozen=True)
class EnvCreateOptions:
    """Platform choices for a new environment (AWS): its mesh flavour, its ingress certificate, its policy."""

    mesh: MeshFlavour | None = None
    certificate_arn: str | None = None
    policy: PlatformPolicy | None = None


@dataclass(frozen=True)
class PipelineCreateOptions:
    """Where a pipeline reads its config from (AWS): a provider's repository through a connection, a branch."""

    source: str | None = None
    connection: str | None = None
    branch: str | None = None


@runtime_checkable
class ConfigurableEnvironments(Protocol):
    """An engine whose environments take platform choices (:class:`EnvCreateOptions`)."""

    def env_create_with(self, env: str, options: EnvCreateOptions) -> EnvironmentInfo: ...


@runtime_checkable
class ConfigurablePipelines(Protocol):
    """An engine whose pipelines can read another repository or branch, and can be deleted with their service
    (its versions and routes) in one go."""

    def pipeline_create_with(self, env: str, service: str, options: PipelineCreateOptions) -> PipelineInfo: ...
    def pipeline_delete_forced(self, env: str, service: str) -> None: ...


@runtime_checkable
class VersionScaler(Protocol):
    """An engine that can set how many tasks a deployed version runs (0: scaled down, kept deployed)."""

    def version_scale(self, env: str, service: str, version: str, tasks: int) -> str: ...


@runtime_checkable
class ConfigRepoOwner(Protocol):
    """An engine that keeps the services' config repos itself: a pipeline delete keeps the repo, unless asked."""

    def pipeline_delete_with_repo(self, env: str, service: str) -> None: ...


@runtime_checkable
class EnvironmentLister(Protocol):
    """An engine that can name its environments."""

    def env_list(self) -> list[str]: ...


@runtime_checkable
class PipelineWaiter(Protocol):
    """An engine that can wait for a pipeline run to finish (by id, by commit, or the latest)."""

    def pipeline_wait(self, env: str, service: str, run_id: str | None = None, timeout: float = 120.0,
                      commit: str | None = None) -> PipelineRun: ...


@runtime_checkable
class PipelineStarter(Protocol):
    """An engine that can start a run for a commit already pushed (default: the branch head)."""

    def pipeline_start(self, env: str, service: str, commit: str | None = None) -> StartedRun: ...


@runtime_checkable
class StatsSource(Protocol):
    """An engine that counts each version's traffic (requests, errors, latency) as the proxies saw it."""

    def stats(self, env: str, service: str, window_s: float | None = None) -> ServiceStats:
        """Since each proxy started, or measured over the next ``window_s`` seconds."""
        ...


@runtime_checkable
class EventSource(Protocol):
    """An engine that keeps what happened in an environment."""

    def events(self, env: str, service: str | None = None, limit: int = 100) -> list[Event]: ...


@runtime_checkable
class Planner(Protocol):
    """An engine that plans its changing operations before it acts (``--dry-run``): each ``plan_*`` makes
    read calls only and returns the ordered steps, which ``meshpipe.engines.plan.execute`` would run."""

    def plan_env_create(self, env: str, mesh: MeshFlavour | None = None, certificate_arn: str | None = None,
                        policy: PlatformPolicy | None = None) -> Plan: ...
    def plan_env_delete(self, env: str) -> Plan: ...
    def plan_pipeline_create(self, env: str, service: str, source: str | None = None, connection: str | None = None,
                             branch: str | None = None) -> Plan: ...
    def plan_pipeline_delete(self, env: str, service: str, force: bool = False) -> Plan: ...
    def plan_route_set(self, env: str, service: str, targets: tuple[WeightedTarget, ...]) -> Plan: ...
    def plan_version_delete(self, env: str, service: str, version: str, force: bool = False) -> Plan: ...


@runtime_checkable
class DeployedTemplates(Protocol):
    """An engine that can read the template a stack was deployed with (``synth --diff STACK``)."""

    def deployed_template(self, stack: str) -> dict[str, Any]: ...


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

    def logs(self, env: str, service: str, version: str | None = None, tail: int | None = None) -> list[LogLine]: ...

    def follow_logs(self, env: str, service: str, version: str | None = None) -> Iterator[LogLine]: ...


@runtime_checkable
class MetricsSource(Protocol):
    """An engine that serves an environment's Prometheus page (``meshpipe metrics``)."""

    def metrics(self, env: str) -> str: ...

    def metrics_target(self, env: str) -> dict[str, Any]: ...


@runtime_checkable
class HeaderRoutes(Protocol):
    """An engine that routes by request header: extra routes of a service, ahead of its weighted one, for the
    requests whose headers match (a preview of a version, e.g. ``x-canary: always``)."""

    def header_route_set(self, env: str, service: str, headers: tuple[HeaderMatch, ...],
                         targets: tuple[WeightedTarget, ...]) -> HeaderRoute: ...
    def header_route_delete(self, env: str, service: str, header: str) -> None: ...
    def header_routes(self, env: str, service: str) -> list[HeaderRoute]: ...


@runtime_checkable
class RolloutStatusSource(Protocol):
    """An engine that can show a service's running (else latest) rollout: its step, weights and verdicts."""

    def rollout_status(self, env: str, service: str) -> dict[str, Any]: ...


@runtime_checkable
class RolloutRunner(RolloutStatusSource, Protocol):
    """An engine whose environment runs rollouts itself (the local engine's daemon): started for a deployed
    version, then paused, resumed, aborted or promoted on request."""

    def rollout_start(self, env: str, service: str, version: str) -> dict[str, Any]: ...
    def rollout_control(self, env: str, service: str, action: str) -> dict[str, Any]: ...
