"""Start-up restore: how a daemon picks up where its predecessor stopped (a crash, a kill -9, a reboot).

state.db is the truth, so a starting daemon, in this order (``Daemon.start``):

1. finds what its predecessor left running that it can take over (``find_adoptable``): the gateway, and
   every task of a version that should run whose sidecar and app both still run (pid and start time as
   recorded) and that was healthy; everything else the predecessor left is stopped (``stop_processes``);
2. checks each of them once (``check_gateway``, ``Deployer.restore``): a proxy must answer on its admin
   port as the same process (its pid), live, speaking this meshpipe's admin protocol; an app that fails
   its health check is taken over as unhealthy and replaced if the checks keep failing;
3. runs the tasks of every version that should run: the adopted ones as they are (the healthy ones are
   endpoints before the first config push, so that push changes nothing the proxies serve), new ones for
   the slots left (``Deployer.restore``); the gateway, adopted, or started on the recorded ingress port
   when that port is free (``ingress_port``);
4. runs again, from Source, every pipeline run left ``InProgress`` (``delivery.runs.rerun_interrupted``);
5. starts a run for a repo whose main branch moved while no daemon listened (``delivery.runs.catch_up_pushes``).

So a daemon killed and restarted leaves the data plane alone: the ingress port, every proxy and app keep
serving throughout, and the new daemon pushes them a config with a newer generation and the same content.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshpipe.engines.local.dataplane import ADMIN_PROTOCOL
from meshpipe.engines.local.state.daemonfiles import lock_is_held, read_lock_holder
from meshpipe.engines.local.state.options import LocalOptions
from meshpipe.engines.local.state.store import ProcessRow, StateStore, TaskRow
from meshpipe.engines.local.tasks import processes as procs
from meshpipe.engines.local.tasks import spawn
from meshpipe.engines.local.tasks.deploy import version_spec
from meshpipe.engines.local.tasks.health import check_http, server_info
from meshpipe.engines.local.tasks.runtime import TaskHandle
from meshpipe.engines.local.tasks.supervisor import AdoptedProxy, AdoptedTask, TaskPorts
from meshpipe.status import ProxyState, TaskGoal, TaskState, VersionStatus

log = logging.getLogger("meshpipe.daemon")


@dataclass(frozen=True)
class TaskCandidate:
    """A task whose processes a previous daemon left running, as recorded."""

    task: TaskRow
    ports: TaskPorts
    sidecar: ProcessRow
    app: ProcessRow


@dataclass
class AdoptionPlan:
    gateway: ProcessRow | None = None
    tasks: dict[str, TaskCandidate] = field(default_factory=dict)
    stale: list[tuple[int, str | None]] = field(default_factory=list)

    def pids(self) -> set[int]:
        pids = {c.sidecar.pid for c in self.tasks.values()} | {c.app.pid for c in self.tasks.values()}
        return pids | ({self.gateway.pid} if self.gateway else set())


DAEMON_MODULES = ("meshpipe.engines.local.control.daemon", "meshpipe.engines.local.control.watchdog")


def flag_value(argv: Sequence[str], flag: str) -> int | None:
    """The integer after ``flag`` in a recorded command line (the proxies' ports), or None."""
    for i, word in enumerate(argv[:-1]):
        if word == flag:
            try:
                return int(argv[i + 1])
            except ValueError:
                return None
    return None


def find_adoptable(store: StateStore, owner: Path) -> AdoptionPlan:
    """What a previous daemon left running that this one may take over; the rest is ``stale``.

    A task qualifies when its version should run, its slot is one of the version's, it was last recorded
    HEALTHY with its ports, and exactly one sidecar (listening on those ports) and one app run for it.
    """
    rows = [p for p in store.processes() if procs.is_running(p.pid, p.started or None)]
    plan = AdoptionPlan()
    gateways = sorted((p for p in rows if p.role == "gateway"), key=lambda p: p.pid)
    if len(gateways) == 1 and None not in (flag_value(gateways[0].argv, "--admin-port"),
                                           flag_value(gateways[0].argv, "--listen-port")):
        plan.gateway = gateways[0]
    running_versions = {(v.service, v.version): v for v in store.versions()
                        if v.status in (VersionStatus.CREATE_COMPLETE, VersionStatus.CREATE_IN_PROGRESS)}
    by_task: dict[str, list[ProcessRow]] = {}
    for p in rows:
        if p.task_id is not None:
            by_task.setdefault(p.task_id, []).append(p)
    for task in store.tasks():
        version = running_versions.get((task.service, task.version))
        procs_of_task = by_task.get(task.task_id, [])
        sidecars = [p for p in procs_of_task if p.role == "sidecar"]
        apps = [p for p in procs_of_task if p.role == "app"]
        ports = (task.app_port, task.ingress_port, task.egress_port, task.admin_port)
        if (version is None or task.slot > version.desired_tasks or task.desired != TaskGoal.RUNNING
                or task.actual != TaskState.HEALTHY or None in ports or len(sidecars) != 1 or len(apps) != 1):
            continue
        sidecar = sidecars[0]
        if (flag_value(sidecar.argv, "--admin-port"), flag_value(sidecar.argv, "--ingress-port"),
                flag_value(sidecar.argv, "--app-port")) != (task.admin_port, task.ingress_port, task.app_port):
            continue  # an older incarnation's sidecar: the recorded ports are the newer one's
        plan.tasks[task.task_id] = TaskCandidate(task, TaskPorts(*ports), sidecar, apps[0])  # type: ignore[arg-type]
    keep = plan.pids()
    # The watchdog that started this daemon (it is marked as the environment's too) stays.
    watchdog = read_lock_holder(owner / "watchdog.lock") if lock_is_held(owner / "watchdog.lock") else None
    if watchdog is not None:
        keep.add(watchdog)
    stale = {(p.pid, p.started or None) for p in rows if p.pid not in keep}
    # Daemons (one may be starting and about to find the lock taken) and watchdogs are not ours to stop.
    stale |= {(pid, procs.start_time(pid)) for pid in procs.owned_processes(owner, exclude=keep)
              if not procs.runs_module(pid, DAEMON_MODULES)}
    plan.stale = sorted(stale)
    return plan


async def proxy_matches(admin_port: int, pid: int, mode: str, timeout: float) -> str | None:
    """None when the proxy on ``admin_port`` is process ``pid``, live, in ``mode``, speaking our admin
    protocol; else why it cannot be taken over."""
    info = await server_info(admin_port, timeout)
    if info is None:
        return f"no answer on admin port {admin_port}"
    if info.get("pid") != pid or info.get("mode") != mode:
        return f"admin port {admin_port} is not {mode} pid {pid}"
    if info.get("state") != ProxyState.LIVE:
        return f"{mode} pid {pid} is {info.get('state')}"
    if info.get("protocol", 1) != ADMIN_PROTOCOL:
        return f"{mode} pid {pid} speaks admin protocol {info.get('protocol')}, not {ADMIN_PROTOCOL}"
    return None


async def check_gateway(row: ProcessRow | None, timeout: float = 2.0) -> AdoptedProxy | None:
    """The previous daemon's gateway, when it can be taken over."""
    if row is None:
        return None
    admin = flag_value(row.argv, "--admin-port")
    assert admin is not None
    why = await proxy_matches(admin, row.pid, "gateway", timeout)
    if why is not None:
        log.warning("the gateway left running is replaced: %s", why)
        return None
    return AdoptedProxy(spawn.AdoptedProcess(row.pid, row.started or None, row.argv), admin)


async def check_tasks(store: StateStore, options: LocalOptions, candidates: Mapping[str, TaskCandidate],
                      runtime: Any = None, log_dir: Callable[[str, str], Path] | None = None,
                      ) -> tuple[dict[tuple[str, str], dict[int, AdoptedTask]], list[tuple[int, str | None]]]:
    """Check every candidate task once, all at the same time: the tasks to take over, by version and slot,
    and the processes of the ones that cannot be (to stop).

    The sidecar must be the recorded process, live, speaking our admin protocol; the app is checked as its
    health check says. An app that fails it is taken over as unhealthy: the health checks that follow
    replace it if it keeps failing, as they would have under the previous daemon.
    """
    specs = {(v.service, v.version): version_spec(v.resolved, [], options) for v in store.versions()}

    containers: dict[str, tuple[TaskHandle, Any]] = {}

    async def check(c: TaskCandidate) -> tuple[TaskCandidate, str | None, bool]:
        spec = specs[(c.task.service, c.task.version)]
        if runtime is not None and log_dir is not None:
            # A container task: its containers must still run, with the recorded app; its check runs inside.
            log_path = log_dir(c.task.service, c.task.version) / f"{c.task.task_id}-app.log"
            found = await runtime.call(lambda: runtime.adopt(spec, c.task.task_id, c.ports, c.app.pid, log_path))
            if found is None:
                return c, "its containers are not the ones recorded", False
            handle, app_proc = found
            containers[c.task.task_id] = (handle, app_proc)
            why, probe = await asyncio.gather(
                proxy_matches(c.ports.admin, c.sidecar.pid, "sidecar", spec.health.timeout),
                runtime.probe_app(handle, app_proc, spec, spec.health.timeout))
            return c, why, probe.ok
        why, app = await asyncio.gather(
            proxy_matches(c.ports.admin, c.sidecar.pid, "sidecar", spec.health.timeout),
            check_http(c.ports.app, spec.health_path, spec.health.timeout))
        return c, why, app.ok

    adopted: dict[tuple[str, str], dict[int, AdoptedTask]] = {}
    stale: list[tuple[int, str | None]] = []
    for c, why, healthy in await asyncio.gather(*(check(c) for c in candidates.values())):
        if why is not None:
            log.warning("task %s is replaced: %s", c.task.task_id, why)
            stale += [(c.sidecar.pid, c.sidecar.started or None), (c.app.pid, c.app.started or None)]
            continue
        if not healthy:
            log.warning("task %s fails its health check; taken over as unhealthy", c.task.task_id)
        handle, app_proc = containers.get(c.task.task_id, (None, None))
        adopted.setdefault((c.task.service, c.task.version), {})[c.task.slot] = AdoptedTask(
            ports=c.ports, healthy=healthy, restarts=c.task.restarts,
            sidecar=spawn.AdoptedProcess(c.sidecar.pid, c.sidecar.started or None, c.sidecar.argv),
            app=app_proc or spawn.AdoptedProcess(c.app.pid, c.app.started or None, c.app.argv), handle=handle)
    return adopted, stale


def stop_processes(store: StateStore, processes: Sequence[tuple[int, str | None]], why: str) -> None:
    """Stop processes a previous daemon left (not our children) and forget them."""
    alive = [(pid, started) for pid, started in processes if procs.is_running(pid, started)]
    if alive:
        log.warning("stopping %d process(es) %s: %s", len(alive), why, ", ".join(str(pid) for pid, _ in alive))
        stuck = procs.kill_all(alive, timeout=5.0)
        if stuck:
            log.error("could not stop process(es) %s", stuck)
    for pid, _ in processes:
        store.forget_process(pid)


def clean_up_leftovers(store: StateStore, owner: Path) -> None:
    """A stopping daemon's last sweep, after the supervisor stopped the tasks: every process still recorded
    or marked with the environment (the watchdog too: a daemon stopping on request stops for good)."""
    rows = store.processes()
    tracked = {(p.pid, p.started or None) for p in rows}
    found = {(pid, procs.start_time(pid)) for pid in procs.owned_processes(owner)
             if not procs.runs_module(pid, DAEMON_MODULES[:1])}
    leftovers = sorted(tracked | found, key=lambda p: p[0])
    alive = [(pid, started) for pid, started in leftovers if procs.is_running(pid, started)]
    if alive:
        log.warning("stopping %d process(es) left by a previous daemon: %s", len(alive),
                    ", ".join(str(pid) for pid, _ in alive))
        stuck = procs.kill_all(alive, timeout=5.0)
        if stuck:
            log.error("could not stop leftover process(es) %s", stuck)
    for row in rows:
        store.forget_process(row.pid)


def ingress_port(recorded: int | None) -> int:
    """The recorded ingress port, so the ingress URL survives a restart; a free one when it is taken."""
    port = recorded
    if port is None or not procs.port_is_free(port):
        if port is not None:
            log.warning("ingress port %d is taken; the ingress moves to another port", port)
        port = procs.free_port()
    return port
