"""The environment daemon: the local engine's control plane, one process per environment.

    python -m meshpipe.engines.local.control.daemon --env-dir <home>/envs/<env>

It owns everything that runs in the environment: the ingress gateway, every version's tasks (through
the supervisor), their health checks, the registry of healthy endpoints, the mesh config pushed to every
proxy, the pipeline runs (one queue per service, each run in a worker thread), and the control API the
CLI and the config repos' hooks talk to. ``env create`` starts it detached from the CLI; ``env delete``
stops it. state.db is the truth: on start the daemon stops whatever a crashed predecessor left running,
then brings back everything state.db says should run (the gateway on the same port when it is free),
and runs again the pipeline runs that were interrupted.

This module wires the parts together, runs their life cycle and is the process's entry point; the parts
are their own modules: ``supervisor`` (tasks, gateway, health), ``publisher`` (config pushes), ``runs``
(pipeline runs), ``deploy`` (a version's stack), ``restore`` (start-up after a predecessor), ``api`` (what
each control-API call does), ``daemonfiles`` (daemon.json and daemon.lock) and ``dashboard`` (the web
dashboard, on its own 127.0.0.1 port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from meshpipe.delivery.analysis import Counters
from meshpipe.delivery.machine import WebhookResult
from meshpipe.delivery.policy import Webhook
from meshpipe.engines.local.control import operations as ops
from meshpipe.engines.local.control.actions import DaemonActions
from meshpipe.engines.local.control.dashboard_source import DaemonSource
from meshpipe.engines.local.control.httpapi import control_runner, make_control_app
from meshpipe.engines.local.control.publisher import Publisher
from meshpipe.engines.local.dataplane.meshconfig import MeshSnapshot
from meshpipe.engines.local.dataplane.metrics import BUCKET_BOUNDS_MS
from meshpipe.engines.local.delivery.rollouts import RolloutController, counters_from_stats
from meshpipe.engines.local.delivery.runs import RunQueue, catch_up_pushes, rerun_interrupted
from meshpipe.engines.local.delivery.webhooks import call_webhooks
from meshpipe.engines.local.observe.dashboard.server import DashboardServer
from meshpipe.engines.local.source.gitrepo import install_post_receive_hook
from meshpipe.engines.local.source.hook import hook_argv
from meshpipe.engines.local.state.daemonfiles import (
    EXIT_ALREADY_RUNNING,
    acquire_lock,
    kept_token,
    lock_is_held,
    metrics_token,
    read_daemon_file,
    read_lock_holder,
    write_daemon_file,
)
from meshpipe.engines.local.state.home import EnvPaths, env_paths_of_dir
from meshpipe.engines.local.state.options import LocalOptions, read_options
from meshpipe.engines.local.state.store import StateStore
from meshpipe.engines.local.tasks import processes as procs
from meshpipe.engines.local.tasks import spawn
from meshpipe.engines.local.tasks.deploy import Deployer
from meshpipe.engines.local.tasks.health import Probe, check_http, check_sidecar
from meshpipe.engines.local.tasks.restore import (
    check_gateway,
    check_tasks,
    clean_up_leftovers,
    find_adoptable,
    flag_value,
    ingress_port,
    stop_processes,
)
from meshpipe.engines.local.tasks.supervisor import Proc, Supervisor, SupervisorOptions, TaskStatus
from meshpipe.errors import OperationError, UserError

log = logging.getLogger("meshpipe.daemon")

MAINTENANCE_EVERY_SECONDS = 10.0  # how often logs are checked against their bound
SCALE_DOWN_EVERY_SECONDS = 0.5  # how often due scale-downs are looked for (a rolled-back candidate goes "at once")
GATEWAY_LIVE_TIMEOUT = 30.0
WATCHDOG_RESTART_BASE = 1.0


# --- the edges the supervisor is given -------------------------------------------------------------------

class HttpProbes:
    async def app(self, port: int, path: str, timeout: float) -> Probe:
        return await check_http(port, path, timeout)

    async def sidecar(self, admin_port: int, timeout: float) -> Probe:
        return await check_sidecar(admin_port, timeout)


class DaemonListener:
    """The supervisor's view of the daemon: state writes and config pushes."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def proxy_live(self, admin_port: int) -> None:
        await self.daemon.publisher.add_proxy(admin_port)

    async def proxy_gone(self, admin_port: int) -> None:
        self.daemon.publisher.remove_proxy(admin_port)

    async def endpoints_changed(self) -> None:
        if not self.daemon.stopping:
            await self.daemon.publisher.publish("healthy endpoints changed")

    def process_started(self, proc: Proc, role: str, task_id: str | None, argv: Sequence[str]) -> None:
        self.daemon.store.record_process(proc.pid, procs.start_time(proc.pid) or "", role, task_id, list(argv))

    def process_exited(self, pid: int) -> None:
        self.daemon.store.forget_process(pid)

    def task_changed(self, task: TaskStatus) -> None:
        ports = task.ports
        self.daemon.store.update_task(task.task_id, actual=task.actual, restarts=task.restarts,
                                      last_error=task.last_error[:1000],
                                      app_port=ports.app if ports else None,
                                      ingress_port=ports.ingress if ports else None,
                                      egress_port=ports.egress if ports else None,
                                      admin_port=ports.admin if ports else None)

    def gateway_port_changed(self, port: int) -> None:
        self.daemon.store.set_gateway_port(port)
        self.daemon.store.add_event("gateway", f"the ingress moved to port {port}: its previous port stayed taken")


# --- the daemon -------------------------------------------------------------------------------------------

class Daemon(DaemonActions):
    """The daemon's parts, wired together, and its life cycle; it answers the control API (``DaemonActions``)."""

    def __init__(self, paths: EnvPaths, home: Path, options: LocalOptions) -> None:
        self.paths = paths
        self.home = home
        self.options = options
        self.token = secrets.token_urlsafe(32)
        self.store = StateStore(paths.state_db)
        env = self.store.environment()
        if env is None:
            raise OperationError(f"{paths.state_db} holds no environment", hint="create it with meshpipe env create")
        self.env = env
        self.started_at = self.store.now()
        self.stopping = False
        self._stop_requested = asyncio.Event()
        self.publisher = Publisher(self.snapshot, self.store.next_generation)
        self.runtime: Any = None
        if options.runtime == "docker":
            from meshpipe.engines.local.tasks.containers import DockerRuntime
            from meshpipe.engines.local.tasks.dockerhost import connect

            self.runtime = DockerRuntime(connect(), env.name, paths.root, options.pull,
                                         names=lambda: [svc.virtual_service for svc in self.store.services()])
        self.supervisor = Supervisor(
            spawner=spawn.OsSpawner(), probes=HttpProbes(), listener=DaemonListener(self), ports=procs.free_port,
            options=SupervisorOptions(restart_base=options.restart_base, restart_max=options.restart_max,
                                      owner=paths.root, python=sys.executable, access_log=options.access_log),
            event=lambda service, version, message: self.store.add_event("task", message, service, version),
            runtime=self.runtime)
        self.deployer = Deployer(self.store, self.supervisor, paths, home, options, self.publisher.publish)
        self.rollouts = RolloutController(self.store, env.name, self.publisher.publish, self._rollout_counters,
                                          self._call_webhooks, BUCKET_BOUNDS_MS)
        self._webhook_session: Any = None
        self.runs = RunQueue(self.store, env.name, self.deployer, lambda: self.stopping,
                             after_success=self.deployed)
        self.pipelines_lock = asyncio.Lock()
        self.control_port: int | None = None
        self._runner: Any = None
        self._maintenance: asyncio.Task[None] | None = None
        self._scale_downs: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        # The web dashboard: its own 127.0.0.1 listener; it works only while a page is open.
        self.dashboard = DashboardServer(DaemonSource(self), kept_token(paths.dashboard_token), env.name)
        self.publisher.listeners.append(self.dashboard.changed)

    # -- the mesh --

    def snapshot(self, generation: int) -> MeshSnapshot:
        return MeshSnapshot(
            generation=generation, environment=self.env.name, namespace=self.env.namespace,
            services=tuple(s.name for s in self.store.services()), routes=self.store.routes(),
            endpoints=self.supervisor.endpoints(), gateway_routes=tuple(self.store.gateway_routes()),
            listener_ports=self.store.listener_ports(),
            header_routes=self.store.header_routes())

    # -- rollouts: the controller's edges --

    async def _rollout_counters(self, service: str) -> dict[str, dict[str, Counters]]:
        """Every live proxy's counters of ``service``'s versions, by admin port (see delivery.analysis)."""
        session = await self.publisher.session()
        ports = sorted(self.publisher.proxies)

        async def one(port: int) -> dict[str, Any] | None:
            try:
                async with session.get(f"http://127.0.0.1:{port}/stats") as resp:
                    return dict(await resp.json()) if resp.status == 200 else None
            except Exception:
                return None

        answers = await asyncio.gather(*(one(p) for p in ports))
        return {str(port): counters_from_stats(answer, service)
                for port, answer in zip(ports, answers, strict=True) if answer is not None}

    async def _call_webhooks(self, hooks: Sequence[Webhook], payload: dict[str, Any]) -> list[WebhookResult]:
        if not hooks:
            return []
        if self._webhook_session is None:
            import aiohttp

            self._webhook_session = aiohttp.ClientSession()
        return await call_webhooks(self._webhook_session, hooks, payload)

    def _install_hooks(self) -> None:
        for svc in self.store.services():
            repo = Path(svc.repo_path)
            if repo.is_dir():
                install_post_receive_hook(repo, hook_argv(self.paths.root, svc.name, sys.executable))

    async def _push_commit(self, service: str, ref: str, old: str | None, new: str) -> str:
        """A push no hook reported (made while no daemon ran), started as the hook's would be."""
        return (await self.push(ops.Push(service, ref, new, old))).run_id

    # -- life cycle --

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop_requested.set)
        # Before any process is touched: a daemon that cannot record what it does (read-only state.db, full
        # disk) must neither take over, replace nor stop anything (a failed start stops what it took over), so
        # it exits at once, and what runs keeps serving with the config it has. Raised to main, said in one line.
        await asyncio.to_thread(self.store.check_writable)
        try:
            await self.start()
        except Exception:
            log.exception("the daemon could not start")
            await self.stop()
            return 1
        await self._stop_requested.wait()
        await self.stop()
        return 0

    async def start(self) -> None:
        log.info("daemon for environment %s starting (pid %d)", self.env.name, os.getpid())
        # What the previous daemon left running: taken over where possible, the rest stopped (tasks/restore.py).
        plan = await asyncio.to_thread(find_adoptable, self.store, self.paths.root)
        if self.runtime is not None:
            await asyncio.to_thread(self.runtime.prepare)
        gateway_row, plan.gateway = plan.gateway, None
        adopted_gateway, (adopted, failed) = await asyncio.gather(
            check_gateway(gateway_row),
            check_tasks(self.store, self.options, plan.tasks, self.runtime,
                        self.paths.version_logs if self.runtime is not None else None))
        if self.runtime is not None:
            # Containers of tasks not taken over are a predecessor's leftovers.
            keep = frozenset(c.id for tasks in adopted.values() for t in tasks.values() if t.handle is not None
                             for c in (t.handle.extra["pause"], t.handle.extra["app"]))
            await asyncio.to_thread(self.runtime.remove_tasks, keep)
        if gateway_row is not None and adopted_gateway is None:
            failed.append((gateway_row.pid, gateway_row.started or None))
        await asyncio.to_thread(stop_processes, self.store, plan.stale + failed, "left by a previous daemon")
        await self._start_control()
        await self.dashboard.start(port_file=self.paths.dashboard_port)
        # Tasks first: the adopted healthy ones are endpoints before the first config is built.
        restored = self.deployer.restore(adopted)
        orphaned = [p for key, tasks in adopted.items() if key not in restored for t in tasks.values()
                    for p in ((t.sidecar.pid, None), (t.app.pid, None))]
        if orphaned:
            await asyncio.to_thread(stop_processes, self.store, orphaned, "of versions that no longer run")
        listening = flag_value(gateway_row.argv, "--listen-port") if gateway_row is not None else None
        if adopted_gateway is not None and listening is not None:
            port = listening
        else:
            adopted_gateway = None
            port = ingress_port(self.env.gateway_port)
            self.store.set_gateway_port(port)
        gateway = self.supervisor.start_gateway(port, self.paths.gateway_log(), adopted_gateway)
        try:
            await asyncio.wait_for(gateway.live.wait(), GATEWAY_LIVE_TIMEOUT)
        except TimeoutError:
            raise OperationError(f"the ingress gateway did not come up within {GATEWAY_LIVE_TIMEOUT:g} s: "
                                 f"{gateway.last_error}") from None
        taken = sum(len(t) for key, t in adopted.items() if key in restored)
        if restored:
            log.info("running %d version(s): %s; %d task(s) taken over", len(restored),
                     ", ".join(f"{s}-{v}" for s, v in restored), taken)
        # Before any push is looked for: every config repo's hook runs this meshpipe's hook module with this
        # Python, whichever meshpipe (another module path, another venv) made the repo.
        await asyncio.to_thread(self._install_hooks)
        rerun_interrupted(self.store, self.runs)
        await catch_up_pushes(self.store, self._push_commit)
        resumed = await self.rollouts.restore()
        if resumed:
            log.info("resuming the rollout(s) of %s", ", ".join(resumed))
        self._maintenance = asyncio.create_task(self._maintain())
        self._scale_downs = asyncio.create_task(self._scale_down_loop())
        write_daemon_file(self.paths.daemon_json, {
            "pid": os.getpid(), "control_port": self.control_port, "token": self.token,
            "ingress_port": gateway.port, "dashboard_port": self.dashboard.port,
            "started_at": self.started_at})
        kept = (f"; took over the gateway and {taken} task(s) left running" if adopted_gateway is not None
                else f"; took over {taken} task(s) left running" if taken else "")
        self.store.add_event("daemon", f"daemon started (pid {os.getpid()}), ingress on port {gateway.port}{kept}")
        # Only now: the watchdog follows the daemon daemon.json names.
        self._watchdog = asyncio.create_task(self._guard_watchdog())
        log.info("ready: control API on 127.0.0.1:%s, ingress http://127.0.0.1:%d", self.control_port, gateway.port)

    async def _start_control(self) -> None:
        from aiohttp import web

        self._runner = control_runner(make_control_app(self, self.token, metrics_token(self.paths.metrics_token)),
                                      access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.control_port = int(self._runner.addresses[0][1])

    async def _maintain(self) -> None:
        """Keep logs bounded."""
        while not self.stopping:
            await asyncio.sleep(MAINTENANCE_EVERY_SECONDS)
            with contextlib.suppress(OSError):
                for path in [self.paths.daemon_log, *procs.log_files(self.paths.logs)]:
                    procs.rotate_log(path)

    async def _scale_down_loop(self) -> None:
        """Scale to zero the versions a rollout left without weight, when their time comes."""
        while not self.stopping:
            await asyncio.sleep(SCALE_DOWN_EVERY_SECONDS)
            try:
                await self.deployer.scale_down_due(self.rollouts.clock.wall(), self.rollouts.busy_versions())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scaling down versions failed; trying again shortly")

    async def _guard_watchdog(self) -> None:
        """Keep the environment's watchdog running: it brings this daemon back if it dies, and this daemon
        starts a new watchdog when that one dies (either can be killed; the other restores it)."""
        delay = WATCHDOG_RESTART_BASE
        argv = [sys.executable, "-m", "meshpipe.engines.local.control.watchdog", "--env-dir", str(self.paths.root)]
        spawner = spawn.OsSpawner()
        while not self.stopping:
            holder = read_lock_holder(self.paths.watchdog_lock) if lock_is_held(self.paths.watchdog_lock) else None
            watchdog: Proc
            if holder is not None and procs.is_running(holder):
                watchdog = spawn.AdoptedProcess(holder, procs.start_time(holder), [])
            else:
                # The daemon's own environment: a daemon the watchdog starts must see what this one saw.
                env = {**os.environ, procs.OWNER_ENV: str(self.paths.root)}
                watchdog = await spawner.spawn(argv, env, self.paths.daemon_log)
            started = time.monotonic()
            await watchdog.wait()
            if self.stopping:
                return
            delay = WATCHDOG_RESTART_BASE if time.monotonic() - started > 60 else min(60.0, delay * 2)
            self.store.add_event("daemon", f"the watchdog (pid {watchdog.pid}) ended; the daemon starts another")
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("stopping: tasks, gateway, control API")
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.deployer.cancel_waits()
        self.rollouts.stop()
        if self._webhook_session is not None:
            await self._webhook_session.close()
        if self._maintenance is not None:
            self._maintenance.cancel()
        if self._scale_downs is not None:
            self._scale_downs.cancel()
        self.runs.cancel()
        await self.dashboard.stop()
        await self.supervisor.stop_all()
        await asyncio.to_thread(clean_up_leftovers, self.store, self.paths.root)
        await self.publisher.close()
        if self._runner is not None:
            await self._runner.cleanup()
        current = read_daemon_file(self.paths.daemon_json)
        if current is not None and current.get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.paths.daemon_json.unlink()
        self.store.add_event("daemon", f"daemon stopped (pid {os.getpid()})")
        self.store.close()
        log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshpipe-daemon", description="The local engine's environment daemon.")
    parser.add_argument("--env-dir", required=True, type=Path, help="the environment's folder (holds state.db)")
    parser.add_argument("--create", action="store_true",
                        help="a new environment: record it in a new state.db first (env create)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        paths = env_paths_of_dir(args.env_dir)
    except UserError as exc:
        print(f"meshpipe daemon: {exc.message}", file=sys.stderr)
        return 2
    if not paths.state_db.exists() and not args.create:
        print(f"meshpipe daemon: {paths.state_db} does not exist; create the environment first", file=sys.stderr)
        return 2
    lock = acquire_lock(paths.daemon_lock)
    if lock is None:
        running = read_daemon_file(paths.daemon_json)
        print(f"meshpipe daemon: the daemon of {paths.name} is already running"
              + (f" (pid {running['pid']})" if running else ""), file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    if args.create and not paths.state_db.exists():
        # Written last by env create (after the folder and engine.json): its existence is what makes the
        # environment exist.
        try:
            store = StateStore(paths.state_db)
            try:
                store.init_environment(paths.name, f"{paths.name}.local")
            finally:
                store.close()
        except OperationError as exc:
            print(f"meshpipe daemon: {exc.message}", file=sys.stderr)
            os.close(lock)
            return 1
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        loop_factory = asyncio.new_event_loop
    home = paths.root.parent.parent
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            daemon = runner.run(_make_daemon(paths, home))
            return runner.run(daemon.run())
    except OperationError as exc:
        print(f"meshpipe daemon: {exc.message}", file=sys.stderr)
        return 1
    finally:
        os.close(lock)


async def _make_daemon(paths: EnvPaths, home: Path) -> Daemon:
    # Built inside the loop: its asyncio primitives belong to it.
    return Daemon(paths, home, read_options(paths.engine_json))


if __name__ == "__main__":
    sys.exit(main())
