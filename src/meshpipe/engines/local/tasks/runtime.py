"""How a task's app runs: the seam between the supervisor and what runs a task.

The supervisor owns a task's life (sidecar first, then the app; health checks; replace on failure). A
runtime owns what the task is made of:

* :class:`ProcessRuntime` (the default, needs nothing but Python): the app is a local process found
  through the image mappings, the sidecar its HTTP proxy (``HTTP_PROXY``), health checked with an HTTP GET
  from the daemon, reached by others on the sidecar's 127.0.0.1 ingress port;
* ``DockerRuntime`` (``meshpipe.engines.local.tasks.docker``): the app is the manifest's image run as a
  container in the task's own network namespace, as ECS runs an awsvpc task.

Both give the supervisor the same handles: a :class:`~meshpipe.engines.local.tasks.supervisor.Proc` for the
app, a probe result per check, the endpoint other proxies reach the task at.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from meshpipe.engines.local.dataplane.meshconfig import LOOPBACK, Endpoint
from meshpipe.engines.local.tasks.health import Probe

if TYPE_CHECKING:
    from meshpipe.engines.local.tasks.supervisor import Probes, Proc, Spawner, TaskPorts, VersionSpec

PROCESS = "process"
DOCKER = "docker"
RUNTIMES = (PROCESS, DOCKER)


@dataclass(frozen=True)
class ContainerSpec:
    """A version's app container as its task definition has it."""

    environment: str
    image: str
    command: tuple[str, ...] | None
    port: int
    health_command: tuple[str, ...]  # ECS form: ("CMD-SHELL", "curl -f ... || exit 1")
    cpu: int  # CPU units (1024 = one CPU)
    memory: int  # MiB
    ingress_port: int
    egress_port: int
    ignored_uid: int
    egress_ignored_ips: tuple[str, ...]
    names: tuple[str, ...]  # the environment's names that resolve inside the task (its backends)


@dataclass
class TaskHandle:
    """What a runtime keeps for one incarnation of a task (the process runtime keeps nothing)."""

    task_id: str
    ports: TaskPorts
    address: str = LOOPBACK  # where other proxies reach the task
    netns: str | None = None  # the task's network namespace, for its sidecar
    run_as: int | None = None  # the sidecar's user in that namespace
    extra: Any = None


class TaskRuntime(Protocol):
    name: str

    def allocate_ports(self, spec: VersionSpec, free: Callable[[], TaskPorts]) -> TaskPorts: ...

    async def open_task(self, spec: VersionSpec, task_id: str, ports: TaskPorts) -> TaskHandle:
        """Make what the task's containers share (nothing, or its network namespace)."""

    async def start_app(self, handle: TaskHandle, spec: VersionSpec, env: Mapping[str, str], log_path: Path) -> Proc: ...

    async def probe_app(self, handle: TaskHandle, app: Proc, spec: VersionSpec, timeout: float) -> Probe: ...

    async def stop_app(self, handle: TaskHandle, app: Proc, timeout: float) -> None: ...

    async def close_task(self, handle: TaskHandle) -> None: ...

    def endpoint(self, handle: TaskHandle) -> Endpoint: ...

    def app_env(self, spec: VersionSpec, ports: TaskPorts, base: Mapping[str, str]) -> dict[str, str]:
        """The app's environment beyond the task definition's own."""

    def exit_text(self, app: Proc, status: int | None, log_path: Path) -> str:
        """Why the app ended, for people (its last lines quoted)."""


class ProcessRuntime:
    """Tasks as local processes (the default)."""

    name = PROCESS

    def __init__(self, spawner: Spawner, probes: Probes) -> None:
        self.spawner = spawner
        self.probes = probes

    def allocate_ports(self, spec: VersionSpec, free: Callable[[], TaskPorts]) -> TaskPorts:
        return free()

    async def open_task(self, spec: VersionSpec, task_id: str, ports: TaskPorts) -> TaskHandle:
        return TaskHandle(task_id, ports)

    async def start_app(self, handle: TaskHandle, spec: VersionSpec, env: Mapping[str, str], log_path: Path) -> Proc:
        # Stamped: an app's lines carry no time of their own that ``meshpipe logs`` could rely on.
        return await self.spawner.spawn(spec.app_argv, env, log_path,
                                        cwd=Path(spec.app_cwd) if spec.app_cwd else None, stamp=True)

    async def probe_app(self, handle: TaskHandle, app: Proc, spec: VersionSpec, timeout: float) -> Probe:
        return await self.probes.app(handle.ports.app, spec.health_path, timeout)

    async def stop_app(self, handle: TaskHandle, app: Proc, timeout: float) -> None:
        await self.spawner.stop(app, timeout)

    async def close_task(self, handle: TaskHandle) -> None:
        return None

    def endpoint(self, handle: TaskHandle) -> Endpoint:
        return Endpoint(LOOPBACK, handle.ports.ingress)

    def app_env(self, spec: VersionSpec, ports: TaskPorts, base: Mapping[str, str]) -> dict[str, str]:
        proxy = f"http://{LOOPBACK}:{ports.egress}"
        return {"PORT": str(ports.app), "HTTP_PROXY": proxy, "http_proxy": proxy,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def exit_text(self, app: Proc, status: int | None, log_path: Path) -> str:
        from meshpipe.engines.local.tasks.supervisor import exit_text, last_lines

        return exit_text("app", status, log_path.name, last_lines(log_path))


def sidecar_extra_args(handle: TaskHandle) -> Sequence[str]:
    out: list[str] = []
    if handle.netns is not None:
        out += ["--netns", handle.netns]
    if handle.run_as is not None:
        out += ["--run-as", str(handle.run_as)]
    return out
