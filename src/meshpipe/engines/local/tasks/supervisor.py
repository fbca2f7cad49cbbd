"""The supervisor: keeps every version's tasks, and the environment's gateway, running and checked.

A task is what ECS would run for one replica of a version: the ``envoy`` sidecar and the ``app``. As on
ECS, the app starts only once its sidecar is live (``dependsOn: HEALTHY``), both are health-checked with
the task definition's timings, and when either exits or the app is declared unhealthy the whole task is
replaced (fresh ports), after an exponential backoff, so the version keeps its task count. Only a task
whose app and sidecar are both healthy is an endpoint of its version.

Everything with a side effect comes in from outside (a process spawner, port picker, health probes, a
clock and the daemon's listener), so the rules above are tested with fakes and virtual time, and the daemon
plugs in the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from meshpipe.clock import SYSTEM_CLOCK, Clock
from meshpipe.engines.local.dataplane.meshconfig import Endpoint
from meshpipe.engines.local.state import store as st
from meshpipe.engines.local.tasks import stamp
from meshpipe.engines.local.tasks.health import HealthTimings, Probe
from meshpipe.engines.local.tasks.runtime import (
    ContainerSpec,
    ProcessRuntime,
    TaskHandle,
    TaskRuntime,
    sidecar_extra_args,
)
from meshpipe.errors import MeshpipeError
from meshpipe.status import TaskState

log = logging.getLogger("meshpipe.daemon")

# A task that fails this many times before it was ever healthy fails its version's deployment.
FAILURES_BEFORE_READY_LIMIT = 3


# --- what the supervisor is given --------------------------------------------------------------------

class Proc(Protocol):
    pid: int

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int | None:
        """Returns once the process ended: its exit status, or None when it is not known (adopted)."""


class Spawner(Protocol):
    async def spawn(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path,
                    cwd: Path | None = None, stamp: bool = False) -> Proc:
        """Start ``argv`` with its output appended to ``log_path``; ``stamp``: each line with the time it was
        captured (an app's output, which carries no time of its own that can be relied on)."""

    async def stop(self, proc: Proc, timeout: float) -> int | None: ...


class Probes(Protocol):
    async def app(self, port: int, path: str, timeout: float) -> Probe: ...

    async def sidecar(self, admin_port: int, timeout: float) -> Probe: ...


class Listener(Protocol):
    """What the daemon does when the supervisor's world changes."""

    async def proxy_live(self, admin_port: int) -> None:
        """A proxy answers on its admin port: give it the current config and include it in pushes."""

    async def proxy_gone(self, admin_port: int) -> None: ...

    async def endpoints_changed(self) -> None:
        """The set of healthy endpoints changed: recompute and push the mesh config."""

    def process_started(self, proc: Proc, role: str, task_id: str | None, argv: Sequence[str]) -> None: ...

    def process_exited(self, pid: int) -> None: ...

    def task_changed(self, task: TaskStatus) -> None: ...

    def gateway_port_changed(self, port: int) -> None: ...


@dataclass(frozen=True)
class VersionSpec:
    """What the supervisor needs to run a version's tasks (derived from its resolved ServiceVersion)."""

    service: str
    version: str
    app_argv: tuple[str, ...]
    app_env: tuple[tuple[str, str], ...]
    health_path: str
    health: HealthTimings
    backends: tuple[str, ...]
    stop_timeout: float
    container: ContainerSpec | None = None  # what a container runtime needs (image, limits, health command)
    app_cwd: str | None = None  # the app's working directory (an images.yaml mapping's cwd); None: the daemon's


@dataclass(frozen=True)
class TaskPorts:
    app: int
    ingress: int
    egress: int
    admin: int


@dataclass(frozen=True)
class TaskStatus:
    task_id: str
    service: str
    version: str
    slot: int
    actual: TaskState
    ports: TaskPorts | None
    restarts: int
    last_error: str


@dataclass(frozen=True)
class AdoptedTask:
    """A task a previous daemon started whose processes still run: taken over instead of replaced.

    ``healthy``: its app and sidecar passed their checks when they were adopted, so it is an endpoint from
    the start (the first config this daemon pushes keeps sending it traffic)."""

    ports: TaskPorts
    sidecar: Proc
    app: Proc
    healthy: bool
    restarts: int = 0
    handle: TaskHandle | None = None  # a container task's namespace and address (None: a process task)


@dataclass(frozen=True)
class AdoptedProxy:
    """The gateway a previous daemon started, still running and live: taken over with its port."""

    proc: Proc
    admin_port: int


def exit_text(what: str, status: int | None, log_name: str, last: Sequence[str] = ()) -> str:
    """Why a task or gateway ended, for people: an adopted process's exit status is not known; ``last``,
    the last lines it wrote, quoted so that the reason says what went wrong without opening the log."""
    how = f"exited with status {status}" if status is not None else "exited"
    quoted = f"; its last lines: {' | '.join(last)}" if last else ""
    return f"{what} {how}{quoted} (see {log_name})"


def _unstamped(text: str) -> str:
    captured = stamp.parse(text)
    return captured[2] if captured else text


def last_lines(path: Path, count: int = 3, width: int = 200) -> list[str]:
    """The last ``count`` non-blank lines of a log (each cut to ``width`` characters); none if unreadable."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    # The quote is of what the app said: a stamped line's stamp is left out.
    lines = [line.strip() for line in (_unstamped(text) for text in tail.splitlines()) if line.strip()]
    return [line if len(line) <= width else line[:width - 1] + "…" for line in lines[-count:]]


@dataclass(frozen=True)
class VersionHealth:
    desired: int
    healthy: int
    failure: str | None  # why the version cannot become ready, once that is known


@dataclass
class SupervisorOptions:
    restart_base: float = 0.5  # first restart delay; doubles per consecutive failure
    restart_max: float = 30.0
    stable_after: float = 10.0  # a task healthy this long starts its backoff afresh when it fails
    proxy_start_timeout: float = 15.0
    proxy_probe_every: float = 0.05
    proxy_stop_timeout: float = 10.0
    python: str = sys.executable
    owner: Path = field(default_factory=Path.cwd)
    base_env: Mapping[str, str] | None = None  # default: the daemon's environment
    access_log: bool = False  # proxies write an access log line per request (JSON) to their log


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff: base, 2*base, 4*base ... capped. Pure."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * (2 ** min(failures - 1, 30))))


def proxy_argv(python: str, mode: str, admin_port: int, *, listen_port: int | None = None,
               ingress_port: int | None = None, egress_port: int | None = None, app_port: int | None = None,
               service: str | None = None, version: str | None = None, backends: Sequence[str] = (),
               access_log: bool = False) -> list[str]:
    """The data plane's command line, run by ``python``."""
    from meshpipe.engines.local.dataplane.client import proxy_command

    argv = proxy_command(mode, admin_port=admin_port, listen_port=listen_port, ingress_port=ingress_port,
                         egress_port=egress_port, app_port=app_port, service=service, version=version,
                         allowed_backends=tuple(backends), access_log=access_log)
    return [python, *argv[1:]]


class _Stopping(Exception):
    """The runner was asked to stop while it was starting something."""


# --- one task ----------------------------------------------------------------------------------------

class TaskRunner:
    """Keeps one task slot of a version running until told to stop."""

    def __init__(self, sup: Supervisor, spec: VersionSpec, slot: int, log_dir: Path,
                 adopted: AdoptedTask | None = None) -> None:
        self.sup = sup
        self.spec = spec
        self.slot = slot
        self.task_id = st.task_id_of(spec.service, spec.version, slot)
        self.log_dir = log_dir
        self.actual = TaskState.PENDING
        self.ports: TaskPorts | None = None
        self.endpoint: Endpoint | None = None
        self.restarts = 0
        self.last_error = ""
        self.ever_healthy = False
        self.adopted = adopted
        if adopted is not None:
            self.ports = adopted.ports
            self.restarts = adopted.restarts
            self.actual = TaskState.HEALTHY if adopted.healthy else TaskState.UNHEALTHY
            if adopted.healthy:
                # An endpoint before anything is pushed: the daemon's first config keeps its traffic.
                handle = adopted.handle or TaskHandle(self.task_id, adopted.ports)
                self.endpoint = sup.runtime.endpoint(handle)
                self.ever_healthy = True
        self.failures_before_ready = 0
        self.never_passed: str | None = None  # the health check failed past its start period, never passing
        self.live_admin_port: int | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- control --

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"task {self.task_id}")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def status(self) -> TaskStatus:
        return TaskStatus(self.task_id, self.spec.service, self.spec.version, self.slot, self.actual, self.ports,
                          self.restarts, self.last_error)

    def _set(self, actual: TaskState, error: str | None = None) -> None:
        self.actual = actual
        if error is not None:
            self.last_error = error
        self.sup.listener.task_changed(self.status())

    # -- the loop --

    async def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            healthy_since: list[float] = []
            try:
                if self.adopted is not None:
                    adopted, self.adopted = self.adopted, None
                    reason = await self._adopted_incarnation(adopted, healthy_since)
                else:
                    reason = await self._incarnation(healthy_since)
            except _Stopping:
                break
            except Exception as exc:  # a bug must not end supervision of the task
                log.exception("task %s: unexpected error", self.task_id)
                reason = f"unexpected error: {exc}"
            if self._stop.is_set() or reason is None:
                break
            if not self.ever_healthy:
                self.failures_before_ready += 1
            stable = bool(healthy_since) and self.sup.clock.now() - healthy_since[0] >= self.sup.options.stable_after
            failures = 1 if stable else failures + 1
            self.restarts += 1
            delay = backoff_delay(failures, self.sup.options.restart_base, self.sup.options.restart_max)
            self._set(TaskState.PENDING, reason)
            log.info("task %s stopped (%s); replacing it in %.1f s", self.task_id, reason, delay)
            self.sup.record_event(self.spec, f"task {self.task_id} stopped: {reason}; restart in {delay:.1f} s")
            await self._sleep_unless_stopped(delay)
        self._set(TaskState.STOPPED)

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self.sup.clock.wait(seconds))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()

    async def _adopted_incarnation(self, adopted: AdoptedTask, healthy_since: list[float]) -> str | None:
        """Watch a task a previous daemon started, as if this daemon had started it."""
        sup = self.sup
        handle = adopted.handle or TaskHandle(self.task_id, adopted.ports)
        try:
            await sup.listener.proxy_live(adopted.ports.admin)
            self.live_admin_port = adopted.ports.admin
            if self._stop.is_set():
                return None
            if adopted.healthy:
                healthy_since.append(sup.clock.now())
            # Its start period is long over: from now on every failed check counts.
            started = sup.clock.now() - self.spec.health.start_period
            return await self._watch(adopted.app, adopted.sidecar, handle, healthy_since, started)
        finally:
            await self._teardown(adopted.app, adopted.sidecar, handle)

    async def _incarnation(self, healthy_since: list[float]) -> str | None:
        """Start the sidecar, then the app, and watch them; returns why the task ended (None: stopped)."""
        sup, spec = self.sup, self.spec
        ports = sup.runtime.allocate_ports(spec, sup.allocate_ports)
        self.ports = ports
        self._set(TaskState.STARTING)
        try:
            handle = await sup.runtime.open_task(spec, self.task_id, ports)
        except MeshpipeError as exc:
            return exc.message
        sidecar_cmd = proxy_argv(sup.options.python, "sidecar", ports.admin, ingress_port=ports.ingress,
                                 egress_port=ports.egress, app_port=ports.app, service=spec.service,
                                 version=spec.version, backends=spec.backends, access_log=sup.options.access_log)
        sidecar_cmd += sidecar_extra_args(handle)
        try:
            sidecar = await sup.spawner.spawn(sidecar_cmd, sup.proxy_env(),
                                              self.log_dir / f"{self.task_id}-envoy.log")
        except BaseException:
            await sup.runtime.close_task(handle)
            raise
        sup.listener.process_started(sidecar, "sidecar", self.task_id, sidecar_cmd)
        app: Proc | None = None
        try:
            reason = await sup.wait_proxy_live(sidecar, ports.admin, self._stop)
            if reason is not None:
                return reason
            await sup.listener.proxy_live(ports.admin)
            self.live_admin_port = ports.admin
            if self._stop.is_set():
                return None
            app_env = sup.app_env(spec, ports)
            log_path = self.log_dir / f"{self.task_id}-app.log"
            try:
                app = await sup.runtime.start_app(handle, spec, app_env, log_path)
            except MeshpipeError as exc:
                return exc.message
            sup.listener.process_started(app, "app", self.task_id, spec.app_argv)
            return await self._watch(app, sidecar, handle, healthy_since)
        finally:
            await self._teardown(app, sidecar, handle)

    async def _watch(self, app: Proc, sidecar: Proc, handle: TaskHandle, healthy_since: list[float],
                     started: float | None = None) -> str | None:
        sup, timings = self.sup, self.spec.health
        app_exit = asyncio.ensure_future(app.wait())
        sidecar_exit = asyncio.ensure_future(sidecar.wait())
        stop_wait = asyncio.ensure_future(self._stop.wait())
        started = sup.clock.now() if started is None else started
        failing = 0
        try:
            while True:
                healthy = self.endpoint is not None
                in_start_period = sup.clock.now() - started < timings.start_period
                delay = timings.interval if healthy or not in_start_period else timings.start_interval
                sleeper = asyncio.ensure_future(sup.clock.wait(delay))
                done, _ = await asyncio.wait({app_exit, sidecar_exit, stop_wait, sleeper},
                                             return_when=asyncio.FIRST_COMPLETED)
                sleeper.cancel()
                if stop_wait in done:
                    return None
                if app_exit in done:
                    log_path = self.log_dir / f"{self.task_id}-app.log"
                    return sup.runtime.exit_text(app, app_exit.result(), log_path)
                if sidecar_exit in done:
                    return exit_text("sidecar", sidecar_exit.result(), f"{self.task_id}-envoy.log")
                # One after the other in this task (no task per probe): the sidecar only matters once the app
                # passes, since a failing app is what the check reports.
                app_probe = await sup.runtime.probe_app(handle, app, self.spec, timings.timeout)
                sidecar_probe = (await sup.probes.sidecar(handle.ports.admin, timings.timeout) if app_probe.ok
                                 else app_probe)
                if app_probe.ok and sidecar_probe.ok:
                    failing = 0
                    if not healthy:
                        self.endpoint = sup.runtime.endpoint(handle)
                        self.ever_healthy = True
                        healthy_since.append(sup.clock.now())
                        self._set(TaskState.HEALTHY)
                        await sup.listener.endpoints_changed()
                    continue
                detail = app_probe.detail if not app_probe.ok else sidecar_probe.detail
                # Failures in the start period do not count until the container has once been healthy.
                if healthy or sup.clock.now() - started >= timings.start_period:
                    failing += 1
                    self.last_error = detail
                if failing >= timings.retries:
                    if not self.ever_healthy and self.never_passed is None:
                        self.never_passed = detail
                    self._set(TaskState.UNHEALTHY, detail)
                    return f"health check failed {failing} times in a row: {detail}"
        finally:
            for fut in (app_exit, sidecar_exit, stop_wait):
                fut.cancel()

    async def _teardown(self, app: Proc | None, sidecar: Proc, handle: TaskHandle) -> None:
        """Take the task out of the mesh first, then stop its processes."""
        if self.endpoint is not None:
            self.endpoint = None
            with contextlib.suppress(Exception):
                await self.sup.listener.endpoints_changed()
        if self.live_admin_port is not None:
            port, self.live_admin_port = self.live_admin_port, None
            with contextlib.suppress(Exception):
                await self.sup.listener.proxy_gone(port)

        async def stop(proc: Proc, timeout: float, is_app: bool) -> None:
            try:
                if is_app:
                    await self.sup.runtime.stop_app(handle, proc, timeout)
                else:
                    await self.sup.spawner.stop(proc, timeout)
            finally:
                self.sup.listener.process_exited(proc.pid)

        # The app first: it may still be finishing requests that need its sidecar's egress.
        if app is not None:
            await asyncio.shield(stop(app, self.spec.stop_timeout, True))
        await asyncio.shield(stop(sidecar, self.sup.options.proxy_stop_timeout, False))
        await asyncio.shield(self.sup.runtime.close_task(handle))


# --- the environment's gateway -----------------------------------------------------------------------

class GatewayRunner:
    """Keeps the ingress gateway running on its port (the environment's ingress URL)."""

    # After this many failed starts on the recorded port, another port is taken (and recorded).
    PORT_ATTEMPTS = 3

    def __init__(self, sup: Supervisor, port: int, log_path: Path, adopted: AdoptedProxy | None = None) -> None:
        self.sup = sup
        self.port = port
        self.adopted = adopted
        self.admin_port: int | None = None
        self.log_path = log_path
        self.live = asyncio.Event()
        self.last_error = ""
        self.restarts = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gateway")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        failures = 0
        failed_on_port = 0
        while not self._stop.is_set():
            reason, was_live = await self._incarnation()
            if self._stop.is_set() or reason is None:
                break
            self.last_error = reason
            self.restarts += 1
            failures = 1 if was_live else failures + 1
            failed_on_port = 0 if was_live else failed_on_port + 1
            if failed_on_port >= self.PORT_ATTEMPTS:
                self.port = self.sup.ports()
                failed_on_port = 0
                self.sup.listener.gateway_port_changed(self.port)
            delay = backoff_delay(failures, self.sup.options.restart_base, self.sup.options.restart_max)
            log.warning("gateway stopped (%s); restarting in %.1f s", reason, delay)
            sleeper = asyncio.ensure_future(self.sup.clock.wait(delay))
            stopper = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            sleeper.cancel()
            stopper.cancel()

    async def _incarnation(self) -> tuple[str | None, bool]:
        sup = self.sup
        if self.adopted is not None:
            # A previous daemon's gateway, still live on the ingress port: it goes on serving.
            proc, admin = self.adopted.proc, self.adopted.admin_port
            self.adopted = None
        else:
            admin = sup.ports()
            cmd = proxy_argv(sup.options.python, "gateway", admin, listen_port=self.port,
                             access_log=sup.options.access_log)
            proc = await sup.spawner.spawn(cmd, sup.proxy_env(), self.log_path)
            sup.listener.process_started(proc, "gateway", None, cmd)
            try:
                reason = await sup.wait_proxy_live(proc, admin, self._stop)
            except _Stopping:
                reason = None
            if reason is not None or self._stop.is_set():
                await self._stop_proc(proc)
                return reason, False
        try:
            self.admin_port = admin
            await sup.listener.proxy_live(admin)
            self.live.set()
            exit_wait = asyncio.ensure_future(proc.wait())
            stop_wait = asyncio.ensure_future(self._stop.wait())
            try:
                done, _ = await asyncio.wait({exit_wait, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_wait.cancel()
            if exit_wait in done:
                return exit_text("gateway", exit_wait.result(), self.log_path.name), True
            exit_wait.cancel()
            return None, True
        finally:
            self.live.clear()
            if self.admin_port is not None:
                port, self.admin_port = self.admin_port, None
                with contextlib.suppress(Exception):
                    await sup.listener.proxy_gone(port)
            await self._stop_proc(proc)

    async def _stop_proc(self, proc: Proc) -> None:
        try:
            await asyncio.shield(self.sup.spawner.stop(proc, self.sup.options.proxy_stop_timeout))
        finally:
            self.sup.listener.process_exited(proc.pid)


# --- the supervisor ----------------------------------------------------------------------------------

class Supervisor:
    """All running tasks of an environment, by version, plus its gateway."""

    def __init__(self, *, spawner: Spawner, probes: Probes, listener: Listener, ports: Callable[[], int],
                 clock: Clock | None = None, options: SupervisorOptions | None = None,
                 event: Callable[[str, str, str], None] | None = None, runtime: TaskRuntime | None = None) -> None:
        self.spawner = spawner
        self.probes = probes
        self.runtime: TaskRuntime = runtime or ProcessRuntime(spawner, probes)
        self.listener = listener
        self.ports = ports
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.options = options or SupervisorOptions()
        self._event = event
        self.runners: dict[tuple[str, str], list[TaskRunner]] = {}
        self.gateway: GatewayRunner | None = None

    def record_event(self, spec: VersionSpec, message: str) -> None:
        if self._event is not None:
            self._event(spec.service, spec.version, message)

    # -- environment for processes --

    def proxy_env(self) -> dict[str, str]:
        from meshpipe.engines.local.tasks.processes import child_env

        return child_env(self.options.owner, {"PYTHONUNBUFFERED": "1"}, self.options.base_env)

    def app_env(self, spec: VersionSpec, ports: TaskPorts) -> dict[str, str]:
        from meshpipe.engines.local.tasks.processes import child_env

        extra = dict(spec.app_env)
        # The platform's variables win over the manifest's (which may not set them anyway).
        extra.update(self.runtime.app_env(spec, ports, extra))
        return child_env(self.options.owner, extra, self.options.base_env)

    def allocate_ports(self) -> TaskPorts:
        chosen: list[int] = []
        for _ in range(64):
            port = self.ports()
            if port not in chosen:
                chosen.append(port)
            if len(chosen) == 4:
                break
        if len(chosen) < 4:
            raise RuntimeError("could not find four distinct free ports")
        return TaskPorts(*chosen)

    async def wait_proxy_live(self, proc: Proc, admin_port: int, stop: asyncio.Event) -> str | None:
        """None once the proxy's admin API says LIVE; else why it never did."""
        deadline = self.clock.now() + self.options.proxy_start_timeout
        last = "not answering yet"
        while self.clock.now() < deadline:
            if stop.is_set():
                raise _Stopping()
            if proc.returncode is not None:
                return f"proxy exited with status {proc.returncode} before it was live ({last})"
            probe = await self.probes.sidecar(admin_port, 1.0)
            if probe.ok:
                return None
            last = probe.detail
            await self.clock.wait(self.options.proxy_probe_every)
        return f"proxy not live within {self.options.proxy_start_timeout:g} s ({last})"

    # -- gateway --

    def start_gateway(self, port: int, log_path: Path, adopted: AdoptedProxy | None = None) -> GatewayRunner:
        """Run the gateway on ``port``: the ``adopted`` one (already serving there), or a new one."""
        self.gateway = GatewayRunner(self, port, log_path, adopted)
        self.gateway.start()
        return self.gateway

    # -- versions --

    def start_version(self, spec: VersionSpec, count: int, log_dir: Path,
                      adopted: Mapping[int, AdoptedTask] | None = None) -> None:
        """Run ``count`` tasks of a version (slots 1..count); slots already running are left alone, and a
        slot in ``adopted`` takes over the task a previous daemon left running instead of starting one."""
        runners = self.runners.setdefault((spec.service, spec.version), [])
        running = {r.slot for r in runners}
        for slot in range(1, count + 1):
            if slot not in running:
                runner = TaskRunner(self, spec, slot, log_dir, (adopted or {}).get(slot))
                runners.append(runner)
                runner.start()

    async def scale_version(self, spec: VersionSpec, count: int, log_dir: Path) -> None:
        """Run exactly ``count`` tasks of a version: missing slots started, slots above ``count`` stopped."""
        self.start_version(spec, count, log_dir)
        runners = self.runners.get((spec.service, spec.version), [])
        extra = [r for r in runners if r.slot > count]
        self.runners[(spec.service, spec.version)] = [r for r in runners if r.slot <= count]
        await asyncio.gather(*(r.stop() for r in extra))

    async def stop_version(self, service: str, version: str) -> None:
        runners = self.runners.pop((service, version), [])
        await asyncio.gather(*(r.stop() for r in runners))

    async def stop_all(self) -> None:
        keys = list(self.runners)
        await asyncio.gather(*(self.stop_version(s, v) for s, v in keys))
        if self.gateway is not None:
            await self.gateway.stop()

    def running_versions(self) -> list[tuple[str, str]]:
        return sorted(self.runners)

    def version_health(self, service: str, version: str) -> VersionHealth:
        runners = self.runners.get((service, version), [])
        healthy = sum(1 for r in runners if r.endpoint is not None)
        failure = None
        for r in runners:
            if r.never_passed is not None:
                failure = (f"health check {self.spec_url(r)} never passed on task {r.task_id}: {r.never_passed}")
                break
            if r.failures_before_ready >= FAILURES_BEFORE_READY_LIMIT:
                failure = (f"task {r.task_id} failed {r.failures_before_ready} times before it was healthy: "
                           f"{r.last_error}")
                break
        return VersionHealth(len(runners), healthy, failure)

    @staticmethod
    def spec_url(r: TaskRunner) -> str:
        return f"GET {r.spec.health_path}"

    def endpoints(self) -> dict[str, dict[str, tuple[Endpoint, ...]]]:
        """Healthy endpoints by service and version."""
        out: dict[str, dict[str, tuple[Endpoint, ...]]] = {}
        for (service, version), runners in self.runners.items():
            eps = tuple(r.endpoint for r in runners if r.endpoint is not None)
            if eps:
                out.setdefault(service, {})[version] = eps
        return out

    def task_statuses(self) -> list[TaskStatus]:
        return [r.status() for key in sorted(self.runners) for r in self.runners[key]]
