"""``LocalEngine``: the Engine protocol on one machine, by talking to each environment's daemon.

The engine itself holds no state: every environment's truth is its state.db, and everything that runs
belongs to its daemon. The engine creates an environment's folder, starts its daemon (detached, in its
own session; a new environment's daemon writes its state.db), and then sends each operation to the
daemon's control API (``control.operations``). Where no daemon needs to run (the status of a stopped
environment, its leftover processes, logs, events), it reads state.db through the read-only
``state.reader``, and never opens it to write. Any operation on an
environment whose daemon is not running (after a reboot, or a crash) starts it again, and the daemon
brings back what should run. Only ``env status`` and ``env delete`` never start one.

Beyond the protocol: :meth:`LocalEngine.pipeline_wait`, :meth:`LocalEngine.ingress_url`,
:meth:`LocalEngine.stats`, :meth:`LocalEngine.metrics`, :meth:`LocalEngine.mesh_config` and
:meth:`LocalEngine.pipeline_start`.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshpipe.engines.base import (
    EngineNotRunning,
    EnvironmentInfo,
    EnvState,
    Event,
    LogLine,
    PipelineInfo,
    Reporter,
    SilentReporter,
    VersionInfo,
)
from meshpipe.engines.local.control import operations as ops
from meshpipe.engines.local.control.httpapi import ControlClient, DaemonUnreachable
from meshpipe.engines.local.control.reads import environment_details
from meshpipe.engines.local.state.daemonfiles import EXIT_ALREADY_RUNNING, acquire_lock, lock_is_held, read_daemon_file
from meshpipe.engines.local.state.folders import ENVS
from meshpipe.engines.local.state.home import EnvPaths, env_paths, meshpipe_home
from meshpipe.engines.local.state.options import LocalOptions, read_options, runtime_text, write_options
from meshpipe.engines.local.tasks import processes as procs
from meshpipe.errors import ConflictError, NotFoundError, OperationError, UserError

if TYPE_CHECKING:
    # Each imported where it is used: a read command loads this module and needs none of them.
    from meshpipe.mesh.graph import Topology
    from meshpipe.mesh.headers import HeaderMatch
    from meshpipe.mesh.routing import GatewayRoute, HeaderRoute, Route, WeightedTarget
    from meshpipe.mesh.stats import ServiceStats
    from meshpipe.pipeline.runs import PipelineRun, StartedRun
    from meshpipe.rollout import Move

DAEMON_START_TIMEOUT = 60.0
DAEMON_STOP_TIMEOUT = 60.0
POLL_SECONDS = 0.05
CREATE_LOCK = "create.lock"  # held by the command creating the environment

# Daemons this process started, so they are reaped (not left as zombies) once they exit.
_spawned: list[Any] = []  # subprocess.Popen, imported when a daemon is started: read commands never do


def _reap() -> None:
    for proc in list(_spawned):
        if proc.poll() is not None:
            _spawned.remove(proc)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


DAEMON_SAYS = "meshpipe daemon: "


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _daemon_reason(path: Path, since: int) -> str | None:
    """A daemon's own one-line reason for ending (what ``daemon.main`` prints), the last one written to its log
    after offset ``since`` (so a reason from an earlier start is never taken for today's)."""
    try:
        with path.open("rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    # A daemon that lost the race for the lock says so too: that is no reason for the one that held it.
    said = [line for line in text.splitlines() if line.startswith(DAEMON_SAYS) and "is already running" not in line]
    return said[-1].removeprefix(DAEMON_SAYS) if said else None


class DaemonNotRunning(EngineNotRunning):
    """The environment's daemon is not running, and this engine was told not to start it."""


class LocalEngine:
    name = "local"

    def __init__(self, reporter: Reporter | None = None, home: Path | None = None,
                 options: LocalOptions | None = None, start_timeout: float = DAEMON_START_TIMEOUT, *,
                 tasks_per_version: int | None = None, health_time_scale: float | None = None,
                 autostart: bool = True) -> None:
        """``options`` (or the shortcuts ``tasks_per_version`` and ``health_time_scale``) apply to
        environments this engine creates; an existing environment keeps the options it was created with.
        ``autostart=False``: an operation that finds no daemon running raises :class:`DaemonNotRunning`
        instead of starting one."""
        self.autostart = autostart
        self.reporter: Reporter = reporter or SilentReporter()
        self.home = Path(home).absolute() if home is not None else meshpipe_home()
        chosen = options or LocalOptions.from_env()
        if tasks_per_version is not None:
            chosen = dataclasses.replace(chosen, tasks_per_version=tasks_per_version)
        if health_time_scale is not None:
            chosen = dataclasses.replace(chosen, health_time_scale=health_time_scale)
        self.options = chosen
        self.start_timeout = start_timeout

    # --- environments and their daemons ------------------------------------------------------------------

    def paths(self, env: str) -> EnvPaths:
        return env_paths(self.home, env)

    def _existing(self, env: str) -> EnvPaths:
        paths = self.paths(env)
        if not paths.exists():
            raise NotFoundError(f"environment {env!r} does not exist in {self.home}",
                                hint=f"create it with: meshpipe env create {env}")
        return paths

    def _running_client(self, paths: EnvPaths) -> ControlClient | None:
        """A client of the environment's daemon when it runs and answers, else None."""
        data = read_daemon_file(paths.daemon_json)
        if data is None or not procs.is_running(int(data["pid"])):
            return None
        client = ControlClient(int(data["control_port"]), str(data["token"]))
        try:
            client.call(ops.STATUS, ops.NOTHING, timeout=5.0)
        except DaemonUnreachable:
            return None
        return client

    def _client(self, env: str) -> ControlClient:
        """A client of the daemon of ``env``, started when it is not running.

        No request is spent on checking first: a call that finds no daemon listening starts one and is
        sent again, so a command is one request when the daemon runs."""
        paths = self._existing(env)
        data = read_daemon_file(paths.daemon_json)
        if data is not None and procs.is_running(int(data["pid"])):
            return ControlClient(int(data["control_port"]), str(data["token"]),
                                 reconnect=lambda: self._bring_up(paths))
        port, token = self._bring_up(paths)
        return ControlClient(port, token, reconnect=lambda: self._bring_up(paths))

    def _call(self, env: str, op: ops.Operation[ops.Req, ops.Res], request: ops.Req) -> ops.Res:
        """One operation on the daemon of ``env`` (started when it is not running)."""
        return self._client(env).call(op, request)

    def _bring_up(self, paths: EnvPaths) -> tuple[int, str]:
        if not self.autostart:
            raise DaemonNotRunning(f"the daemon of environment {paths.name} is not running")
        self.reporter.step(f"starting the daemon of environment {paths.name}")
        client = self._start_daemon(paths)
        self.reporter.done(f"daemon of {paths.name} running")
        return client.port, client.token

    def _start_daemon(self, paths: EnvPaths, create: bool = False) -> ControlClient:
        """Start the daemon of ``paths`` and wait until it answers; ``create``: it records a new environment
        first (its state.db)."""
        import subprocess

        _reap()
        # The owner marker lets a later env delete find this daemon even without its daemon.json.
        env = {**os.environ, procs.OWNER_ENV: str(paths.root)}
        since = _log_size(paths.daemon_log)
        try:
            log = paths.daemon_log.open("ab")
        except OSError as exc:
            # A full disk or a read-only folder: the daemon could not write its state either. What runs
            # (gateway, proxies, apps) needs no daemon and keeps serving with the config it has.
            raise OperationError(f"cannot start the daemon of environment {paths.name}: {paths.root} cannot be "
                                 f"written ({exc.strerror or exc})",
                                 hint="the daemon writes its log, lock and state.db there: make room or make it "
                                      "writable, then run the command again (what runs keeps serving meanwhile; "
                                      f"meshpipe env status {paths.name} reads state.db without the daemon)") from None
        with log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "meshpipe.engines.local.control.daemon", "--env-dir", str(paths.root),
                 *(["--create"] if create else [])],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=paths.root, env=env,
                start_new_session=True, close_fds=True)
        _spawned.append(proc)
        deadline = time.monotonic() + self.start_timeout
        holder_deadline: float | None = None
        while time.monotonic() < deadline:
            code = proc.poll()
            if code == EXIT_ALREADY_RUNNING:
                # Another daemon holds the lock: it is starting, or it is stuck.
                holder_deadline = holder_deadline or time.monotonic() + 15.0
                reason = _daemon_reason(paths.daemon_log, since)
                if reason is not None and not lock_is_held(paths.daemon_lock):
                    # The one that held the lock (the watchdog's) ended too, and said why: no use waiting.
                    raise OperationError(f"the daemon of environment {paths.name} could not start: {reason}",
                                         hint=f"see {paths.daemon_log}")
                if time.monotonic() > holder_deadline:
                    data = read_daemon_file(paths.daemon_json)
                    holder = f" (pid {data['pid']})" if data else ""
                    raise OperationError(f"the daemon of environment {paths.name}{holder} is running but does not "
                                         "answer its control API", hint=f"see {paths.daemon_log}; stop it by pid "
                                         "and run the command again")
            if code is not None and code != EXIT_ALREADY_RUNNING:
                # Ours ended, but another one (the watchdog's, started at the same moment) may be up.
                client = self._running_client(paths)
                if client is not None:
                    return client
                reason = _daemon_reason(paths.daemon_log, since)
                if reason is not None:  # it said why, in one line: that is the message
                    raise OperationError(f"the daemon of environment {paths.name} could not start: {reason}",
                                         hint=f"see {paths.daemon_log}")
                raise OperationError(f"the daemon of environment {paths.name} exited with status {code}:\n"
                                     f"{_log_tail(paths.daemon_log)}", hint=f"see {paths.daemon_log}")
            data = read_daemon_file(paths.daemon_json)
            # Ours, or (when two started at once) the one that won the lock.
            if data is not None and (data["pid"] == proc.pid or code == EXIT_ALREADY_RUNNING):
                client = self._running_client(paths)
                if client is not None:
                    return client
            time.sleep(POLL_SECONDS)
        raise OperationError(f"the daemon of environment {paths.name} did not become ready within "
                             f"{self.start_timeout:g} s:\n{_log_tail(paths.daemon_log)}",
                             hint=f"see {paths.daemon_log}")

    def env_create(self, env: str) -> EnvironmentInfo:
        """Create the environment (or, when it exists, make sure its daemon runs) and return it.

        One command at a time creates a given environment: a second one meanwhile is refused."""
        paths = self.paths(env)
        if not paths.exists() and self.options.runtime == "docker":
            # Before anything is made: an environment that cannot run its tasks is not created.
            from meshpipe.engines.local.tasks.dockerhost import connect

            connect()
        paths.root.mkdir(parents=True, exist_ok=True)
        lock = acquire_lock(paths.root / CREATE_LOCK)
        if lock is None:
            raise ConflictError(f"environment {env} is being created by another command right now",
                                hint=f"wait for it, then see it with: meshpipe env status {env}")
        try:
            if not paths.exists():
                self.reporter.step(f"creating environment {env} in {paths.root}")
                paths.make_dirs()
                write_options(paths.engine_json, self.options)
                # The daemon writes state.db, last: its existence is what makes the environment exist.
                if not self.autostart:
                    raise DaemonNotRunning(f"the daemon of environment {env} is not running")
                self._start_daemon(paths, create=True)
            status = self._call(env, ops.STATUS, ops.NOTHING)
        finally:
            os.close(lock)
        self.reporter.done(f"environment {env} ready: ingress {status['ingress_url']}")
        return self._info(env, paths, status)

    def _info(self, env: str, paths: EnvPaths, status: dict[str, Any]) -> EnvironmentInfo:
        return EnvironmentInfo(env, EnvState.RUNNING, status["ingress_url"],
                               environment_details(str(paths.root), status))

    def env_list(self) -> list[str]:
        """The environments under this engine's home."""
        return environments(self.home)

    def env_status(self, env: str) -> EnvironmentInfo:
        paths = self._existing(env)
        data = read_daemon_file(paths.daemon_json)
        if data is not None and procs.is_running(int(data["pid"])):
            try:
                status = ControlClient(int(data["control_port"]), str(data["token"])).call(
                    ops.STATUS, ops.NOTHING, timeout=5.0)
            except DaemonUnreachable:
                pass  # recorded but not answering: reported as stopped, from state.db
            else:
                return self._info(env, paths, status)
        from meshpipe.engines.local.state.reader import StateReader  # sqlite3: not for a read that asks the daemon

        with StateReader(paths.state_db) as state:
            row = state.environment()
            details = {"home": str(paths.root), "runtime": runtime_text(read_options(paths.engine_json)),
                       "daemon": "not running (any other command starts it again)"}
            for svc in state.services():
                versions = ", ".join(f"{v.version} {v.status}" for v in state.versions(svc.name)) or "no versions"
                details[f"service {svc.name}"] = f"{svc.virtual_service}: {versions}"
            url = f"http://127.0.0.1:{row.gateway_port}" if row and row.gateway_port else None
        return EnvironmentInfo(env, EnvState.STOPPED, url, details)

    def env_delete(self, env: str) -> None:
        paths = self._existing(env)
        self.reporter.step(f"stopping everything in environment {env}")
        self._stop_daemon(paths)
        leftovers = self._leftovers(paths)
        if leftovers:
            stuck = procs.kill_all(leftovers, timeout=5.0)
            if stuck:
                raise OperationError(f"could not stop process(es) {stuck} of environment {env}",
                                     hint="stop them by pid, then run env delete again")
        if read_options(paths.engine_json).runtime == "docker":
            self._remove_containers(env, paths)
        import shutil

        shutil.rmtree(paths.root)
        self.reporter.done(f"environment {env} deleted")

    def build_sample_image(self, service: str, tag: str) -> str:
        """``docker build`` of a bundled sample's image from this machine's files (the docker runtime's demo)."""
        from meshpipe.engines.local.tasks.dockerhost import build_sample_image, connect

        return build_sample_image(connect(), service, tag)

    def _remove_containers(self, env: str, paths: EnvPaths) -> None:
        """Every container and network the environment made (found by label), and nothing else."""
        from meshpipe.engines.local.tasks.dockerhost import connect, remove_environment

        try:
            client = connect(timeout=30)
        except UserError as exc:
            raise OperationError(f"cannot remove the containers of environment {env}: {exc.message}",
                                 hint=exc.hint) from None
        removed = remove_environment(client, str(paths.root.absolute()))
        if removed:
            self.reporter.step(f"removed {len(removed)} container(s) and network(s)")

    def _stop_daemon(self, paths: EnvPaths) -> None:
        data = read_daemon_file(paths.daemon_json)
        if data is None:
            return
        pid = int(data["pid"])
        started = procs.start_time(pid)
        if not procs.is_running(pid, started):
            return
        try:
            ControlClient(int(data["control_port"]), str(data["token"])).call(ops.SHUTDOWN, ops.NOTHING)
        except (DaemonUnreachable, OperationError):
            procs.signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + DAEMON_STOP_TIMEOUT
        while time.monotonic() < deadline and procs.is_running(pid, started):
            _reap()
            time.sleep(POLL_SECONDS)
        if procs.is_running(pid, started):
            procs.kill_all([(pid, started)], timeout=1.0)
        _reap()

    def _leftovers(self, paths: EnvPaths) -> list[tuple[int, str | None]]:
        found: dict[int, str | None] = {}
        if paths.state_db.exists():
            from meshpipe.engines.local.state.reader import StateReader  # sqlite3: not for a read that asks the daemon

            with StateReader(paths.state_db) as state:
                for row in state.processes():
                    found[row.pid] = row.started or None
        for pid in procs.owned_processes(paths.root):
            found.setdefault(pid, procs.start_time(pid))
        return [(pid, started) for pid, started in found.items() if procs.is_running(pid, started)]

    def running_pids(self, env: str) -> list[int]:
        """Every process of the environment that runs now: daemon, gateway, sidecars, apps and their log stampers."""
        paths = self._existing(env)
        pids = {pid for pid, _ in self._leftovers(paths)}
        data = read_daemon_file(paths.daemon_json)
        if data is not None and procs.is_running(int(data["pid"])):
            pids.add(int(data["pid"]))
        return sorted(pids)

    # --- pipelines ---------------------------------------------------------------------------------------

    def pipeline_create(self, env: str, service: str) -> PipelineInfo:
        client = self._client(env)
        self.reporter.step(f"creating config repo, virtual service and router of {service}")
        info = client.call(ops.PIPELINE_CREATE, ops.OfService(service))
        self.reporter.done(f"pipeline of {service} ready: clone {info.clone_url}")
        return info

    def pipeline_delete(self, env: str, service: str, delete_repo: bool = False) -> None:
        """Delete the service's pipeline; its config repo is kept unless ``delete_repo``."""
        self._call(env, ops.PIPELINE_DELETE, ops.DeletePipeline(service, delete_repo))

    def pipeline_delete_with_repo(self, env: str, service: str) -> None:
        self.pipeline_delete(env, service, delete_repo=True)

    def pipeline_runs(self, env: str, service: str) -> list[PipelineRun]:
        return list(self._call(env, ops.PIPELINE_RUNS, ops.OfService(service)))

    def pipeline_logs(self, env: str, service: str, run_id: str | None = None) -> PipelineRun:
        return self._call(env, ops.PIPELINE_RUN, ops.OfRun(service, run_id or ops.LATEST))

    def pipeline_wait(self, env: str, service: str, run_id: str | None = None, timeout: float = 120.0,
                      commit: str | None = None) -> PipelineRun:
        """Wait for a run to finish (by id, by commit, or the latest) and return it, whatever its outcome."""
        from meshpipe.status import RunStatus

        client = self._client(env)
        deadline = time.monotonic() + timeout
        while True:
            if commit is not None:
                matches = [r for r in client.call(ops.PIPELINE_RUNS, ops.OfService(service))
                           if r.commit and r.commit.startswith(commit)]
                if not matches:
                    raise NotFoundError(f"{service} has no pipeline run for commit {commit}")
                run = matches[0]
            else:
                run = client.call(ops.PIPELINE_RUN, ops.OfRun(service, run_id or ops.LATEST))
            if run.status is not RunStatus.IN_PROGRESS:
                return run
            if time.monotonic() >= deadline:
                raise OperationError(f"pipeline run {run.run_id} of {service} still {run.status} after {timeout:g} s",
                                     hint=f"follow it with: meshpipe pipeline logs {service} {run.run_id}")
            time.sleep(0.1)

    def pipeline_start(self, env: str, service: str, commit: str | None = None) -> StartedRun:
        """Start a pipeline run for a commit already in the config repo (as its hook does on a push); without
        ``commit``, for the head of main."""
        ref = "refs/heads/main"
        from meshpipe.naming import check_service_name

        check_service_name(service, "command line", "SERVICE")
        repo = self._existing(env).repo(service)
        if not repo.is_dir():
            # The same answer as every other command about a service without a pipeline.
            raise NotFoundError(f"service {service!r} has no pipeline in this environment",
                                hint=f"create it with: meshpipe pipeline create {service}")
        if commit is None:
            from meshpipe.engines.local.source.gitrepo import resolve_ref

            commit = resolve_ref(repo, ref)
            if commit is None:
                raise NotFoundError(f"the config repo of {service} has no commits on main yet",
                                    hint="push a manifest.yaml to it first")
        return self._call(env, ops.PUSH, ops.Push(service, ref, commit))

    # --- routing -----------------------------------------------------------------------------------------

    def gateway_route_set(self, env: str, route: GatewayRoute) -> GatewayRoute:
        return self._call(env, ops.GATEWAY_ROUTE_SET, ops.SetGatewayRoute(
            route.name, route.prefix, route.service, route.rewrite_prefix))

    def gateway_route_delete(self, env: str, name: str) -> None:
        self._call(env, ops.GATEWAY_ROUTE_DELETE, ops.OfGatewayRoute(name))

    def gateway_routes(self, env: str) -> list[GatewayRoute]:
        return list(self._call(env, ops.GATEWAY_ROUTES, ops.NOTHING))

    def route_set(self, env: str, service: str, targets: tuple[WeightedTarget, ...]) -> Route:
        """Validate, record, push to every proxy; returns once every proxy applies the new route."""
        from meshpipe.mesh.routing import validate_targets

        validate_targets(targets)
        changed = self._call(env, ops.ROUTE_SET, ops.SetRoute(service, targets))
        if changed.push.failed:
            self.reporter.done(f"route set; {len(changed.push.failed)} proxy(ies) did not confirm it yet "
                               "(they get it with the next change)")
        return changed.route

    def route_show(self, env: str, service: str) -> Route | None:
        return self._call(env, ops.ROUTE_SHOW, ops.OfService(service))

    def route_delete(self, env: str, service: str) -> None:
        self._call(env, ops.ROUTE_DELETE, ops.OfService(service))

    def header_route_set(self, env: str, service: str, headers: tuple[HeaderMatch, ...],
                         targets: tuple[WeightedTarget, ...]) -> HeaderRoute:
        """An extra route taking precedence over the weighted one for requests whose headers match."""
        from meshpipe.mesh.routing import validate_targets

        validate_targets(targets)
        return self._call(env, ops.HEADER_ROUTE_SET, ops.SetHeaderRoute(service, headers, targets)).route

    def header_route_delete(self, env: str, service: str, header: str) -> None:
        self._call(env, ops.HEADER_ROUTE_DELETE, ops.OfHeaderRoute(service, header))

    def route_view(self, env: str, service: str) -> tuple[Route | None, list[HeaderRoute]]:
        """The weighted route and the header routes of ``service``, in one request to the daemon."""
        view = self._call(env, ops.ROUTE_VIEW, ops.OfService(service))
        return view.route, list(view.header_routes)

    def header_routes(self, env: str, service: str) -> list[HeaderRoute]:
        return list(self._call(env, ops.HEADER_ROUTES, ops.OfService(service)))

    # --- rollouts (run by the environment's daemon) ------------------------------------------------------

    def rollout_start(self, env: str, service: str, version: str) -> dict[str, Any]:
        return self._call(env, ops.ROLLOUT_START, ops.StartRollout(service, version))

    def rollout_status(self, env: str, service: str) -> dict[str, Any]:
        return self._call(env, ops.ROLLOUT_STATUS, ops.OfService(service))

    def rollout_control(self, env: str, service: str, action: str) -> dict[str, Any]:
        return self._call(env, ops.ROLLOUT_CONTROL, ops.ControlRollout(service, action))

    def rollout_shift(self, env: str, service: str, move: Move, version: str | None = None) -> Route:
        """``rollout promote`` / ``rollout rollback``: without a version, the running rollout is promoted at
        once or aborted; else (or with no rollout running) a plain route change."""
        from meshpipe.rollout import Move, targets_for  # the rollout planner: not loaded by read commands

        client = self._client(env)
        if version is None and self._rollout_running(client, service):
            client.call(ops.ROLLOUT_CONTROL, ops.ControlRollout(service, "promote" if move is Move.PROMOTE else "abort"))
            route = client.call(ops.ROUTE_SHOW, ops.OfService(service))
            assert route is not None
            return route
        return self.route_set(env, service, targets_for(client.call(ops.ROUTE_SHOW, ops.OfService(service)),
                                                        move, version))

    @staticmethod
    def _rollout_running(client: ControlClient, service: str) -> bool:
        from meshpipe.status import RolloutStatus

        try:
            return client.call(ops.ROLLOUT_STATUS, ops.OfService(service))["status"] == RolloutStatus.RUNNING
        except NotFoundError:
            return False

    # --- versions ----------------------------------------------------------------------------------------

    def versions(self, env: str, service: str) -> list[VersionInfo]:
        return list(self._call(env, ops.VERSIONS, ops.OfService(service)))

    def version_scale(self, env: str, service: str, version: str, tasks: int) -> str:
        """Run ``tasks`` tasks of a deployed version (0: scale it down); returns once they are healthy."""
        self.reporter.step(f"scaling {service} {version} to {tasks} task(s)")
        said = self._client(env).call(ops.VERSION_SCALE, ops.ScaleVersion(service, version, tasks),
                                      timeout=self.options.deploy_timeout + 30)
        return str(said["message"])

    def version_delete(self, env: str, service: str, version: str, force: bool = False) -> None:
        if not version:
            raise UserError("a version id is required")
        self.reporter.step(f"deleting stack {env}-{service}-{version}")
        self._call(env, ops.VERSION_DELETE, ops.OfVersion(service, version, force))
        self.reporter.done(f"stack {env}-{service}-{version} deleted")

    # --- local extras ------------------------------------------------------------------------------------

    def ingress_url(self, env: str) -> str:
        url = self.status(env)["ingress_url"]
        if not url:
            raise OperationError(f"environment {env} has no ingress yet")
        return str(url)

    def stats(self, env: str, service: str, window_s: float | None = None) -> ServiceStats:
        """Per-version requests, errors, retries, timeouts and latency of ``service``, from every proxy:
        since each proxy started, or measured over the next ``window_s`` seconds."""
        # The daemon answers once the window is over: the client waits that long on top of its usual bound.
        client = self._client(env)
        return client.call(ops.STATS, ops.StatsOf(service, window_s), timeout=client.timeout + (window_s or 0))

    def topology(self, env: str, sample_seconds: float = 0.0) -> Topology:
        """The environment's mesh for ``meshpipe graph``; with ``sample_seconds``, each version's request
        and 5xx rates over that long."""
        from meshpipe.engines.local.observe.topology import topology_from, traffic

        client = self._client(env)
        status = client.call(ops.STATUS, ops.NOTHING)
        backends = {s: set(calls) for s, calls in client.call(ops.BACKENDS, ops.NOTHING).items()}
        rates = None
        if sample_seconds > 0:
            services = [s["name"] for s in status.get("services", [])]
            before = {s: client.call(ops.STATS, ops.StatsOf(s)) for s in services}
            time.sleep(sample_seconds)
            rates = {s: traffic(before[s], client.call(ops.STATS, ops.StatsOf(s)), sample_seconds)
                     for s in services}
        return topology_from(status, backends, rates)

    def logs(self, env: str, service: str, version: str | None = None, tail: int | None = None) -> list[LogLine]:
        """The service's app and sidecar log lines, interleaved by time (the last ``tail`` when given)."""
        from meshpipe.engines.local.observe.logs import interleave

        return interleave(self._log_files(env, service, version), tail)

    def follow_logs(self, env: str, service: str, version: str | None = None,
                    stop: Callable[[], bool] = lambda: False) -> Iterator[LogLine]:
        """New log lines of the service as they are written, until ``stop()``."""
        from meshpipe.engines.local.observe.logs import follow

        self._log_files(env, service, version)
        return follow(lambda: self._log_files(env, service, version), stop)

    def _log_files(self, env: str, service: str, version: str | None) -> list[tuple[str, Path]]:
        from meshpipe.engines.local.observe.logs import log_files

        paths = self._existing(env)
        from meshpipe.engines.local.state.reader import StateReader  # sqlite3: not for a read that asks the daemon

        with StateReader(paths.state_db) as state:
            state.require_service(service)
            if version is not None and state.version(service, version) is None:
                raise NotFoundError(f"{service} has no version {version} in {env}",
                                    hint=f"list versions with: meshpipe versions {service} --env {env}")
        return log_files(paths, service, version)

    def dashboard_url(self, env: str) -> str:
        """The address of the environment's web dashboard, with its access token (the daemon starts when
        it is not running)."""
        from meshpipe.engines.local.state.daemonfiles import kept_token

        self._client(env)
        paths = self._existing(env)
        data = read_daemon_file(paths.daemon_json) or {}
        port = data.get("dashboard_port")
        if not isinstance(port, int):
            # A daemon an earlier meshpipe started: it has no dashboard until it restarts.
            raise OperationError(f"the daemon of environment {env} (pid {data.get('pid')}) serves no dashboard",
                                 hint="it was started by an earlier meshpipe: stop that pid (kill), then run "
                                      f"meshpipe dashboard --env {env} again; state.db brings everything back")
        return f"http://127.0.0.1:{port}/?token={kept_token(paths.dashboard_token)}"

    def metrics(self, env: str) -> str:
        """The environment's Prometheus page (the daemon's ``GET /metrics``)."""
        return self._call(env, ops.METRICS, ops.NOTHING).decode("utf-8")

    def metrics_target(self, env: str) -> dict[str, Any]:
        """Where Prometheus scrapes this environment: the daemon's address and the file holding the
        scrape token (made on the daemon's first start, kept across restarts)."""
        status = self.status(env)
        paths = self._existing(env)
        return {"environment": env, "target": f"127.0.0.1:{status['daemon']['control_port']}",
                "metrics_path": "/metrics", "credentials_file": str(paths.metrics_token)}

    def mesh_config(self, env: str) -> dict[str, Any] | None:
        """The config document every proxy of the environment runs."""
        return self._call(env, ops.MESH_CONFIG, ops.NOTHING)

    def events(self, env: str, service: str | None = None, limit: int = 100) -> list[Event]:
        """What happened in the environment, oldest first: stacks, routes, task restarts, runs, daemon."""
        from meshpipe.engines.local.state.reader import StateReader  # sqlite3: not for a read that asks the daemon

        with StateReader(self._existing(env).state_db) as state:
            return [Event(e.at, e.kind, e.service, e.version, e.message)
                    for e in state.events(limit=limit, service=service)]

    def status(self, env: str) -> dict[str, Any]:
        """The daemon's full status document (services, versions, tasks with ports, gateway)."""
        return self._call(env, ops.STATUS, ops.NOTHING)


def environments(home: Path | None = None) -> list[str]:
    """Names of the environments in a home folder."""
    root = (home or meshpipe_home()) / ENVS
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "state.db").exists())


__all__ = ["LocalEngine", "LocalOptions", "environments"]
