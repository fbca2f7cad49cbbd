"""A service version: a manifest resolved against the platform for one commit.

Every name, port, container, sidecar, discovery entry and backend is decided here, once, so that the
CloudFormation synthesizers and the local engine read the same facts and cannot drift apart.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from meshpipe import naming
from meshpipe.delivery.policy import RolloutSpec, resolve_rollout_spec
from meshpipe.manifest import LoadedManifest, ServiceManifest, check_family, enforce_policy
from meshpipe.naming import COMMIT_RE as COMMIT_RE
from meshpipe.naming import check_commit as check_commit
from meshpipe.naming import check_service_name as check_service_name
from meshpipe.platform import PlatformSettings
from meshpipe.validation.rules import VERSION_LEN as VERSION_LEN


def version_id(commit: str) -> str:
    """The version id of a commit: its first 8 hex characters (as the original sample names its resources)."""
    return commit[:VERSION_LEN].lower()


@dataclass(frozen=True)
class HealthCheck:
    command: tuple[str, ...]  # ECS form: ("CMD-SHELL", "...")
    interval: int
    timeout: int
    retries: int
    start_period: int


@dataclass(frozen=True)
class AppContainerSpec:
    name: str  # "app"
    image: str
    port: int
    health_check_path: str
    command: tuple[str, ...] | None
    environment: tuple[tuple[str, str], ...]
    health_check: HealthCheck
    log_stream_prefix: str
    stop_timeout: int


@dataclass(frozen=True)
class SidecarSpec:
    name: str  # "envoy"
    image: str
    user: str
    health_check: HealthCheck
    log_stream_prefix: str
    stop_timeout: int
    ingress_port: int
    egress_port: int
    admin_port: int
    ignored_uid: int
    egress_ignored_ips: tuple[str, ...]


@dataclass(frozen=True)
class ServiceVersion:
    """Everything about one immutable version of one service in one environment."""

    environment: str
    service: str
    commit: str
    version: str
    namespace: str  # e.g. demo.local
    family: str
    cpu: int
    memory: int
    app: AppContainerSpec
    sidecar: SidecarSpec
    backends: tuple[str, ...]
    platform: PlatformSettings
    # How a new version takes traffic once deployed (the manifest's Rollout over the platform's default);
    # None: it takes none until a route names it.
    rollout: RolloutSpec | None = None

    @property
    def stack_name(self) -> str:
        return f"{self.environment}-{self.service}-{self.version}"

    @property
    def virtual_node_name(self) -> str:
        return naming.virtual_node_name(self.service, self.version)

    @property
    def ecs_service_name(self) -> str:
        """Also the Cloud Map service name."""
        return f"{self.service}-{self.version}"

    @property
    def discovery_name(self) -> str:
        return self.ecs_service_name

    @property
    def dns_name(self) -> str:
        return f"{self.discovery_name}.{self.namespace}"

    @property
    def virtual_service_name(self) -> str:
        return f"{self.service}.{self.namespace}"

    @property
    def virtual_router_name(self) -> str:
        return naming.virtual_router_name(self.service)

    @property
    def route_name(self) -> str:
        return naming.route_name(self.service)


def resolve(loaded: LoadedManifest | ServiceManifest, platform: PlatformSettings, service: str, commit: str) -> ServiceVersion:
    """Decide every detail of the version of ``service`` that ``commit`` deploys. Pure."""
    manifest = loaded.manifest if isinstance(loaded, LoadedManifest) else loaded
    check_service_name(service)
    check_commit(commit)
    # The manifest may have been validated against another (or no) platform: its policy decides here.
    enforce_policy(loaded, platform.policy)
    check_family(loaded, service)
    policy = platform.policy
    ver = version_id(commit)
    base = f"{service}-{ver}"
    hc = policy.health_check
    app = manifest.app_container
    # Quoted for the shell: a query string's `&` must not end the command (a plain path stays unquoted).
    health_url = f"http://localhost:{app.port}{app.health_check_path}"
    app_health = HealthCheck(
        command=("CMD-SHELL", f"curl -f {shlex.quote(health_url)} || exit 1"),
        interval=hc.interval, timeout=hc.timeout, retries=hc.retries, start_period=hc.start_period,
    )
    envoy_health = HealthCheck(
        command=("CMD-SHELL", f"curl -s http://localhost:{policy.envoy_admin_port}/server_info | grep state | grep -q LIVE"),
        interval=hc.interval, timeout=hc.timeout, retries=hc.retries, start_period=hc.start_period,
    )
    return ServiceVersion(
        environment=platform.environment_name,
        service=service,
        commit=commit.lower(),
        version=ver,
        namespace=platform.namespace_name,
        family=manifest.task.family,
        cpu=manifest.task.cpu,
        memory=manifest.task.memory,
        app=AppContainerSpec(
            name="app",
            image=app.image,
            port=app.port,
            health_check_path=app.health_check_path,
            command=tuple(app.command) if app.command is not None else None,
            environment=tuple(sorted(app.environment.items())),
            health_check=app_health,
            log_stream_prefix=f"{policy.app_log_prefix}-{base}",
            stop_timeout=policy.stop_timeout,
        ),
        sidecar=SidecarSpec(
            name="envoy",
            image=platform.envoy_image_uri,
            user=str(policy.envoy_uid),
            health_check=envoy_health,
            log_stream_prefix=f"{policy.envoy_log_prefix}-{base}",
            stop_timeout=policy.stop_timeout,
            ingress_port=policy.proxy_ingress_port,
            egress_port=policy.proxy_egress_port,
            admin_port=policy.envoy_admin_port,
            ignored_uid=policy.envoy_uid,
            egress_ignored_ips=policy.egress_ignored_ips,
        ),
        backends=tuple(manifest.virtual_node.backends),
        platform=platform,
        rollout=resolve_rollout_spec(policy.rollout, manifest.rollout),
    )
