"""The environment daemon: the local engine's control plane, one process per environment.

    python -m meshpipe.engines.local.daemon --env-dir <home>/envs/<env>

It owns everything that runs in the environment: the ingress gateway, every version's tasks (through
the supervisor), their health checks, the registry of healthy endpoints, the mesh config pushed to every
proxy, the pipeline runs (one queue per service, each run in a worker thread), and the control API the
CLI and the config repos' hooks talk to. ``env create`` starts it detached from the CLI; ``env delete``
stops it. state.db is the truth: on start the daemon stops whatever a crashed predecessor left running,
then brings back everything state.db says should run (the gateway on the same port when it is free),
and runs again the pipeline runs that were interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from meshpipe.engines.local import processes as procs
from meshpipe.engines.local import state as st
from meshpipe.engines.local.control import gateway_route_to_json, make_control_app, route_to_json
from meshpipe.engines.local.daemonfiles import acquire_lock, read_daemon_file, write_daemon_file
from meshpipe.engines.local.deploy import Deployer
from meshpipe.engines.local.health import Probe, check_http, check_sidecar
from meshpipe.engines.local.home import EnvPaths, env_paths_of_dir
from meshpipe.engines.local.meshconfig import MeshSnapshot
from meshpipe.engines.local.options import LocalOptions, read_options
from meshpipe.engines.local.publisher import Publisher
from meshpipe.engines.local.restore import catch_up_pushes, clean_up_leftovers, ingress_port, rerun_interrupted
from meshpipe.engines.local.runs import RunQueue
from meshpipe.engines.local.state import StateStore
from meshpipe.engines.local.supervisor import Proc, Supervisor, SupervisorOptions, TaskStatus
from meshpipe.errors import ConflictError, NotFoundError, OperationError, UserError
from meshpipe.mesh.routing import GatewayRoute, Route, WeightedTarget, make_gateway_route, make_route
from meshpipe.model import COMMIT_RE, check_service_name

log = logging.getLogger("meshpipe.daemon")

EXIT_ALREADY_RUNNING = 3
MAINTENANCE_EVERY_SECONDS = 2.0
GATEWAY_LIVE_TIMEOUT = 30.0


# --- the edges the supervisor is given -------------------------------------------------------------------

class HttpProbes:
    async def app(self, port: int, path: str, timeout: float) -> Probe:
        return await check_http(port, path, timeout)

    async def sidecar(self, admin_port: int, timeout: float) -> Probe:
        return await check_sidecar(admin_port, timeout)


class DaemonHooks:
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

class Daemon:
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
        self.supervisor = Supervisor(
            spawner=procs.OsSpawner(), probes=HttpProbes(), hooks=DaemonHooks(self), ports=procs.free_port,
            options=SupervisorOptions(restart_base=options.restart_base, restart_max=options.restart_max,
                                      owner=paths.root, python=sys.executable),
            event=lambda service, version, message: self.store.add_event("task", message, service, version))
        self.deployer = Deployer(self.store, self.supervisor, paths, home, options, self.publisher.publish)
        self.runs = RunQueue(self.store, env.name, self.deployer, lambda: self.stopping)
        self.pipelines_lock = asyncio.Lock()
        self.control_port: int | None = None
        self._runner: Any = None
        self._maintenance: asyncio.Task[None] | None = None

    # -- the mesh --

    def snapshot(self, generation: int) -> MeshSnapshot:
        return MeshSnapshot(
            generation=generation, environment=self.env.name, namespace=self.env.namespace,
            services=tuple(s.name for s in self.store.services()), routes=self.store.routes(),
            endpoints=self.supervisor.endpoints(), gateway_routes=tuple(self.store.gateway_routes()))

    # -- life cycle --

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop_requested.set)
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
        await asyncio.to_thread(clean_up_leftovers, self.store, self.paths.root)
        await self._start_control()
        port = ingress_port(self.env.gateway_port)
        self.store.set_gateway_port(port)
        gateway = self.supervisor.start_gateway(port, self.paths.gateway_log())
        try:
            await asyncio.wait_for(gateway.live.wait(), GATEWAY_LIVE_TIMEOUT)
        except TimeoutError:
            raise OperationError(f"the ingress gateway did not come up within {GATEWAY_LIVE_TIMEOUT:g} s: "
                                 f"{gateway.last_error}") from None
        restored = self.deployer.restore()
        if restored:
            log.info("restoring %d version(s): %s", len(restored), ", ".join(f"{s}-{v}" for s, v in restored))
        rerun_interrupted(self.store, self.runs)
        await catch_up_pushes(self.store, self.push)
        self._maintenance = asyncio.create_task(self._maintain())
        write_daemon_file(self.paths.daemon_json, {
            "pid": os.getpid(), "control_port": self.control_port, "token": self.token,
            "ingress_port": gateway.port, "started_at": self.started_at})
        self.store.add_event("daemon", f"daemon started (pid {os.getpid()}), ingress on port {gateway.port}")
        log.info("ready: control API on 127.0.0.1:%s, ingress http://127.0.0.1:%d", self.control_port, gateway.port)

    async def _start_control(self) -> None:
        from aiohttp import web

        self._runner = web.AppRunner(make_control_app(self, self.token), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.control_port = int(self._runner.addresses[0][1])

    async def _maintain(self) -> None:
        """Keep logs bounded."""
        while not self.stopping:
            await asyncio.sleep(MAINTENANCE_EVERY_SECONDS)
            with contextlib.suppress(OSError):
                for path in [self.paths.daemon_log, *self.paths.logs.rglob("*.log")]:
                    procs.rotate_log(path)

    async def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("stopping: tasks, gateway, control API")
        self.deployer.cancel_waits()
        if self._maintenance is not None:
            self._maintenance.cancel()
        self.runs.cancel()
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

    # -- control API: environment --

    async def status(self) -> dict[str, Any]:
        gateway = self.supervisor.gateway
        weights_by_service = {s: {t.version: t.weight for t in r.targets} for s, r in self.store.routes().items()}
        services = []
        for svc in self.store.services():
            services.append({
                "name": svc.name, "virtual_service": svc.virtual_service, "router": svc.router,
                "clone_url": Path(svc.repo_path).as_uri(),
                "route": route_to_json(self.store.route(svc.name)),
                "versions": self._versions_json(svc.name, weights_by_service.get(svc.name, {})),
            })
        return {
            "environment": self.env.name, "namespace": self.env.namespace,
            "daemon": {"pid": os.getpid(), "started_at": self.started_at, "control_port": self.control_port},
            "ingress_url": f"http://127.0.0.1:{gateway.port}" if gateway else None,
            "gateway": {"port": gateway.port if gateway else None, "live": bool(gateway and gateway.live.is_set()),
                        "restarts": gateway.restarts if gateway else 0},
            "generation": self.publisher.current["generation"] if self.publisher.current else None,
            "proxies": len(self.publisher.proxies),
            "services": services,
            "gateway_routes": [gateway_route_to_json(g) for g in self.store.gateway_routes()],
            "tasks": [{"task_id": t.task_id, "service": t.service, "version": t.version, "actual": t.actual,
                       "restarts": t.restarts, "last_error": t.last_error,
                       "ingress_port": t.ports.ingress if t.ports else None,
                       "app_port": t.ports.app if t.ports else None}
                      for t in self.supervisor.task_statuses()],
            "runs_in_progress": [r.run_id for r in self.store.runs(status=st.RUN_IN_PROGRESS)],
        }

    async def shutdown(self) -> None:
        # Answer first; the stop runs once the reply is on its way.
        asyncio.get_running_loop().call_soon(self._stop_requested.set)

    async def mesh_config(self) -> dict[str, Any] | None:
        return self.publisher.current

    # -- control API: pipelines --

    async def pipeline_create(self, service: str) -> dict[str, Any]:
        from meshpipe.engines.local.gitrepo import create_bare_repo
        from meshpipe.engines.local.hook import hook_argv

        check_service_name(service, "service")
        async with self.pipelines_lock:
            if self.store.service(service) is not None:
                raise ConflictError(f"a pipeline for {service!r} already exists in {self.env.name}")
            repo = self.paths.repo(service)
            if repo.exists():
                # Only an interrupted create leaves a repo without its service: it was never used.
                shutil.rmtree(repo)
            await asyncio.to_thread(create_bare_repo, repo, hook_argv(self.paths.root, service, sys.executable))
            try:
                row = self.store.add_service(service, f"{service}.{self.env.namespace}", f"vr-{service}", str(repo))
            except BaseException:
                shutil.rmtree(repo, ignore_errors=True)
                raise
        await self.publisher.publish(f"virtual service {row.virtual_service} created")
        return {"service": service, "environment": self.env.name, "clone_url": repo.as_uri(),
                "virtual_service": row.virtual_service, "status": "CREATE_COMPLETE"}

    async def pipeline_delete(self, service: str) -> None:
        async with self.pipelines_lock:
            self.store.require_service(service)
            busy = [r.run_id for r in self.store.runs(service, status=st.RUN_IN_PROGRESS)]
            if busy:
                raise ConflictError(f"pipeline run(s) {', '.join(busy)} of {service} are in progress",
                                    hint="wait for them: meshpipe pipeline wait " + service)
            self.store.delete_service(service)
            self.runs.forget(service)
            shutil.rmtree(self.paths.repo(service), ignore_errors=True)
        await self.publisher.publish(f"virtual service of {service} deleted")

    async def pipeline_runs(self, service: str) -> list[dict[str, Any]]:
        self.store.require_service(service)
        return [_run_json(r) for r in self.store.runs(service)]

    async def pipeline_run(self, service: str, run_id: str | None) -> dict[str, Any]:
        self.store.require_service(service)
        if run_id is None:
            runs = self.store.runs(service)
            if not runs:
                raise NotFoundError(f"{service} has no pipeline runs yet",
                                    hint="push a manifest.yaml to its config repo")
            return _run_json(runs[0])
        run = self.store.run(run_id)
        if run is None or run.service != service:
            raise NotFoundError(f"{service} has no pipeline run {run_id!r}",
                                hint=f"list runs with: meshpipe pipeline runs {service}")
        return _run_json(run)

    async def push(self, service: str, ref: str, old: str | None, new: str) -> str:
        self.store.require_service(service)
        if not COMMIT_RE.match(new) or not new.strip("0"):
            raise UserError(f"{new!r} is not a commit id")
        return self.runs.submit(service, ref, old, new)

    # -- control API: routes --

    async def route_show(self, service: str) -> Route | None:
        self.store.require_service(service)
        return self.store.route(service)

    async def route_set(self, service: str, targets: tuple[WeightedTarget, ...]) -> tuple[Route, dict[str, Any]]:
        route = make_route(service, targets)
        self.store.set_route(route)
        pushed = await self.publisher.publish(f"route {route.name} set")
        return route, pushed

    async def route_delete(self, service: str) -> None:
        self.store.delete_route(service)
        await self.publisher.publish(f"route r-{service} deleted")

    async def gateway_routes(self) -> list[GatewayRoute]:
        return self.store.gateway_routes()

    async def gateway_route_set(self, name: str, prefix: str, service: str, rewrite_prefix: bool) -> GatewayRoute:
        gr = make_gateway_route(name, prefix, service, self.env.namespace, rewrite_prefix)
        self.store.put_gateway_route(gr)
        await self.publisher.publish(f"gateway route {name} set")
        return gr

    async def gateway_route_delete(self, name: str) -> None:
        self.store.delete_gateway_route(name)
        await self.publisher.publish(f"gateway route {name} deleted")

    # -- control API: versions --

    def _versions_json(self, service: str, weights: dict[str, int]) -> list[dict[str, Any]]:
        out = []
        desired_by_version: dict[str, int] = {}
        for task in self.store.tasks(service):
            if task.desired == st.DESIRED_RUNNING:
                desired_by_version[task.version] = desired_by_version.get(task.version, 0) + 1
        for row in self.store.versions(service):
            health = self.supervisor.version_health(service, row.version)
            out.append({"service": service, "version": row.version, "commit": row.commit,
                        "stack_name": row.stack_name, "status": row.status, "reason": row.reason,
                        "weight": weights.get(row.version, 0), "created_at": row.created_at,
                        "healthy_tasks": health.healthy, "desired_tasks": desired_by_version.get(row.version, 0),
                        "virtual_node": f"vn-{service}-{row.version}", "run_id": row.run_id})
        return out

    async def versions(self, service: str) -> list[dict[str, Any]]:
        self.store.require_service(service)
        return self._versions_json(service, self.store.weights(service))

    async def version_delete(self, service: str, version: str, force: bool) -> None:
        self.store.require_service(service)
        await self.deployer.delete(service, version, force)

    # -- control API: stats --

    async def stats(self, service: str) -> dict[str, Any]:
        """Per-version counters for ``service`` summed over every proxy that sent it traffic."""
        self.store.require_service(service)
        session = await self.publisher.session()
        ports = sorted(self.publisher.proxies)

        async def one(port: int) -> dict[str, Any] | None:
            try:
                async with session.get(f"http://127.0.0.1:{port}/stats") as resp:
                    return dict(await resp.json()) if resp.status == 200 else None
            except Exception:
                return None

        answers = await asyncio.gather(*(one(p) for p in ports))
        versions: dict[str, dict[str, Any]] = {}
        for answer in answers:
            upstream = (answer or {}).get("upstreams", {}).get(service, {})
            for version, counters in upstream.items():
                total = versions.setdefault(version, {"requests": 0, "errors": 0, "retries": 0, "timeouts": 0,
                                                      "p50_ms": None, "p99_ms": None})
                for key in ("requests", "errors", "retries", "timeouts"):
                    total[key] += int(counters.get(key) or 0)
                for key in ("p50_ms", "p99_ms"):
                    # Quantiles do not add up across proxies: report the worst one seen.
                    value = counters.get(key)
                    if value is not None and (total[key] is None or value > total[key]):
                        total[key] = value
        return {"service": service, "versions": versions, "proxies": len(ports),
                "answered": sum(1 for a in answers if a is not None)}


def _run_json(run: st.RunRow) -> dict[str, Any]:
    return {"run_id": run.run_id, "service": run.service, "ref": run.ref, "commit": run.commit,
            "status": run.status, "version": run.version, "started_at": run.started_at,
            "finished_at": run.finished_at,
            "stages": [{"name": s.name, "status": s.status, "log": s.log} for s in run.stages]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshpipe-daemon", description="The local engine's environment daemon.")
    parser.add_argument("--env-dir", required=True, type=Path, help="the environment's folder (holds state.db)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        paths = env_paths_of_dir(args.env_dir)
    except UserError as exc:
        print(f"meshpipe daemon: {exc.message}", file=sys.stderr)
        return 2
    if not paths.state_db.exists():
        print(f"meshpipe daemon: {paths.state_db} does not exist; create the environment first", file=sys.stderr)
        return 2
    lock = acquire_lock(paths.daemon_lock)
    if lock is None:
        running = read_daemon_file(paths.daemon_json)
        print(f"meshpipe daemon: the daemon of {paths.name} is already running"
              + (f" (pid {running['pid']})" if running else ""), file=sys.stderr)
        return EXIT_ALREADY_RUNNING
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
