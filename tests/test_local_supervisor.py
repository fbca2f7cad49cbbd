"""The supervisor's rules, with a fake spawner, fake probes and virtual time (no real process or socket)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from meshpipe.engines.local.dataplane.meshconfig import Endpoint
from meshpipe.engines.local.tasks.health import HealthTimings, Probe
from meshpipe.engines.local.tasks.processes import rotate_log
from meshpipe.engines.local.tasks.supervisor import (
    AdoptedProxy,
    AdoptedTask,
    Supervisor,
    SupervisorOptions,
    TaskPorts,
    TaskStatus,
    VersionSpec,
    backoff_delay,
)
from meshpipe.status import TaskState

TIMINGS = HealthTimings(interval=5.0, timeout=2.0, retries=3, start_period=10.0, start_interval=0.5)


class VirtualClock:
    """Time that moves only when the test says so; sleepers wake in order of their deadlines."""

    def __init__(self) -> None:
        self.t = 0.0
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        raise AssertionError("the supervisor never blocks its event loop")

    async def wait(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.t + max(0.0, seconds), next(self._seq), fut))
        await fut

    @staticmethod
    async def settle() -> None:
        for _ in range(30):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        target = self.t + seconds
        await self.settle()
        while self._heap and self._heap[0][0] <= target:
            wake, _, fut = heapq.heappop(self._heap)
            if fut.done():
                continue
            self.t = max(self.t, wake)
            fut.set_result(None)
            await self.settle()
        self.t = target
        await self.settle()

    async def until(self, predicate: Callable[[], bool], limit: float = 120.0, step: float = 0.05) -> float:
        """Advance until ``predicate`` holds; returns the virtual time it took."""
        start = self.t
        while not predicate():
            if self.t - start > limit:
                raise AssertionError(f"condition not reached within {limit} virtual seconds")
            await self.advance(step)
        return self.t - start


class FakeProc:
    def __init__(self, pid: int, argv: Sequence[str], env: Mapping[str, str], log_path: Path, started: float) -> None:
        self.pid = pid
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.started = started
        self.healthy = True
        self.stopped_by_supervisor = False
        self._done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @property
    def role(self) -> str:
        if "--mode" in self.argv:
            return self.argv[self.argv.index("--mode") + 1]
        return "app"

    def arg(self, name: str) -> int:
        return int(self.argv[self.argv.index(name) + 1])

    @property
    def returncode(self) -> int | None:
        return self._done.result() if self._done.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._done)

    def exit(self, code: int) -> None:
        if not self._done.done():
            self._done.set_result(code)


class FakeSpawner:
    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.procs: list[FakeProc] = []
        self._pids = itertools.count(1000)
        self.on_spawn: Callable[[FakeProc], None] = lambda p: None

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path,
                    cwd: Path | None = None, stamp: bool = False) -> FakeProc:
        proc = FakeProc(next(self._pids), argv, env, log_path, self.clock.now())
        self.procs.append(proc)
        self.on_spawn(proc)
        return proc

    async def stop(self, proc: FakeProc, timeout: float) -> int | None:
        proc.stopped_by_supervisor = True
        proc.exit(-15)
        return proc.returncode

    def live(self, role: str) -> list[FakeProc]:
        return [p for p in self.procs if p.role == role and p.returncode is None]

    def of_role(self, role: str) -> list[FakeProc]:
        return [p for p in self.procs if p.role == role]


class FakeProbes:
    def __init__(self, spawner: FakeSpawner) -> None:
        self.spawner = spawner
        self.sidecars_live = True

    async def app(self, port: int, path: str, timeout: float) -> Probe:
        for p in self.spawner.live("app"):
            if p.env.get("PORT") == str(port):
                return Probe(p.healthy, f"GET {path} -> {'200' if p.healthy else '500'}")
        return Probe(False, "connection refused")

    async def sidecar(self, admin_port: int, timeout: float) -> Probe:
        for p in self.spawner.live("sidecar") + self.spawner.live("gateway"):
            if p.arg("--admin-port") == admin_port:
                return Probe(self.sidecars_live, "LIVE" if self.sidecars_live else "not live")
        return Probe(False, "connection refused")


class FakeListener:
    def __init__(self) -> None:
        self.sup: Supervisor | None = None
        self.live_proxies: set[int] = set()
        self.pushes: list[int] = []
        self.endpoint_history: list[dict[str, dict[str, tuple[Endpoint, ...]]]] = []
        self.started: list[tuple[int, str, str | None]] = []
        self.exited: list[int] = []
        self.tasks: dict[str, TaskStatus] = {}
        self.gateway_ports: list[int] = []
        self.app_alive_at_endpoint_change: list[bool] = []

    async def proxy_live(self, admin_port: int) -> None:
        self.live_proxies.add(admin_port)
        self.pushes.append(admin_port)

    async def proxy_gone(self, admin_port: int) -> None:
        self.live_proxies.discard(admin_port)

    async def endpoints_changed(self) -> None:
        assert self.sup is not None
        self.endpoint_history.append(self.sup.endpoints())

    def process_started(self, proc: Any, role: str, task_id: str | None, argv: Sequence[str]) -> None:
        self.started.append((proc.pid, role, task_id))

    def process_exited(self, pid: int) -> None:
        self.exited.append(pid)

    def task_changed(self, task: TaskStatus) -> None:
        self.tasks[task.task_id] = task

    def gateway_port_changed(self, port: int) -> None:
        self.gateway_ports.append(port)


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = VirtualClock()
        self.spawner = FakeSpawner(self.clock)
        self.probes = FakeProbes(self.spawner)
        self.listener = FakeListener()
        ports = itertools.count(20000)
        self.events: list[str] = []
        self.sup = Supervisor(spawner=self.spawner, probes=self.probes, listener=self.listener, ports=lambda: next(ports),
                              clock=self.clock, options=SupervisorOptions(python="py", owner=tmp_path,
                                                                          base_env={"PATH": "/bin"}),
                              event=lambda s, v, m: self.events.append(m))
        self.listener.sup = self.sup
        self.log_dir = tmp_path / "logs"


def spec(**overrides: Any) -> VersionSpec:
    values: dict[str, Any] = dict(service="hello-backend", version="e9d5f17a", app_argv=("py", "-m", "app"),
                                  app_env=(("GREETING", "Yo"),), health_path="/ping", health=TIMINGS,
                                  backends=("hello-db.demo.local",), stop_timeout=10.0)
    values.update(overrides)
    return VersionSpec(**values)


def run(coro_fn: Callable[[World], Coroutine[Any, Any, None]], tmp_path: Path) -> None:
    async def main() -> None:
        world = World(tmp_path)
        try:
            await coro_fn(world)
        finally:
            stopper = asyncio.ensure_future(world.sup.stop_all())
            while not stopper.done():
                await world.clock.advance(1.0)
            await stopper

    asyncio.run(main())


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_delay(n, 0.5, 4.0) for n in range(0, 7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff_delay(10_000, 0.5, 30.0) == 30.0


def test_sidecar_first_then_app_with_its_environment(tmp_path: Path) -> None:
    async def scenario(w: World) -> None:
        app_spawned_with_live_sidecar: list[bool] = []
        w.spawner.on_spawn = lambda p: app_spawned_with_live_sidecar.append(bool(w.listener.live_proxies)) \
            if p.role == "app" else None
        w.sup.start_version(spec(), 2, w.log_dir)
        took = await w.clock.until(lambda: w.sup.version_health("hello-backend", "e9d5f17a").healthy == 2)
        assert took < 1.0  # checked every start interval while starting, not once per 5 s interval
        assert app_spawned_with_live_sidecar == [True, True]
        sidecars, apps = w.spawner.of_role("sidecar"), w.spawner.of_role("app")
        assert len(sidecars) == 2 and len(apps) == 2
        side, app = sidecars[0], apps[0]
        assert side.argv[:5] == ["py", "-m", "meshpipe.engines.local.dataplane", "--mode", "sidecar"]
        assert side.argv[side.argv.index("--allowed-backend") + 1] == "hello-db.demo.local"
        assert side.arg("--app-port") == int(app.env["PORT"])
        egress = side.arg("--egress-port")
        assert app.env["HTTP_PROXY"] == app.env["http_proxy"] == f"http://127.0.0.1:{egress}"
        assert app.env["NO_PROXY"] == "127.0.0.1,localhost"
        assert app.env["GREETING"] == "Yo" and app.env["PATH"] == "/bin"
        assert app.env["MESHPIPE_OWNER"] == str(tmp_path.absolute())
        assert app.log_path == w.log_dir / "hello-backend-e9d5f17a-1-app.log"
        assert side.log_path == w.log_dir / "hello-backend-e9d5f17a-1-envoy.log"
        eps = w.sup.endpoints()["hello-backend"]["e9d5f17a"]
        assert sorted(e.port for e in eps) == sorted(s.arg("--ingress-port") for s in sidecars)
        assert w.listener.tasks["hello-backend-e9d5f17a-1"].actual == TaskState.HEALTHY

    run(scenario, tmp_path)


def test_crashed_app_replaces_the_task_with_backoff(tmp_path: Path) -> None:
    async def scenario(w: World) -> None:
        w.sup.start_version(spec(), 2, w.log_dir)
        await w.clock.until(lambda: w.sup.version_health("hello-backend", "e9d5f17a").healthy == 2)
        first_app = w.spawner.of_role("app")[0]
        first_sidecar = w.spawner.of_role("sidecar")[0]
        first_app.exit(-9)
        await w.clock.settle()
        # Out of the mesh at once, while the other task keeps serving.
        assert w.sup.version_health("hello-backend", "e9d5f17a").healthy == 1
        assert first_sidecar.stopped_by_supervisor and first_sidecar.pid in w.listener.exited
        crash_time = w.clock.now()
        await w.clock.until(lambda: len(w.spawner.of_role("sidecar")) == 3)
        assert w.spawner.of_role("sidecar")[2].started - crash_time == pytest.approx(0.5, abs=0.06)
        await w.clock.until(lambda: w.sup.version_health("hello-backend", "e9d5f17a").healthy == 2)
        new_app = w.spawner.of_role("app")[2]
        assert new_app.env["PORT"] != first_app.env["PORT"]  # a replacement task gets fresh ports
        assert w.listener.tasks["hello-backend-e9d5f17a-1"].restarts == 1
        # Crashing again soon after: the delay doubles.
        new_app.exit(1)
        crash_time = w.clock.now()
        await w.clock.until(lambda: len(w.spawner.of_role("sidecar")) == 4)
        assert w.spawner.of_role("sidecar")[3].started - crash_time == pytest.approx(1.0, abs=0.06)
        assert any("app exited with status 1" in e for e in w.events)

    run(scenario, tmp_path)


def test_crashed_sidecar_replaces_the_whole_task(tmp_path: Path) -> None:
    async def scenario(w: World) -> None:
        w.sup.start_version(spec(), 1, w.log_dir)
        await w.clock.until(lambda: w.sup.version_health("hello-backend", "e9d5f17a").healthy == 1)
        app, sidecar = w.spawner.of_role("app")[0], w.spawner.of_role("sidecar")[0]
        sidecar.exit(1)
        await w.clock.settle()
        assert app.stopped_by_supervisor and w.sup.endpoints() == {}
        assert sidecar.arg("--admin-port") not in w.listener.live_proxies
        await w.clock.until(lambda: w.sup.version_health("hello-backend", "e9d5f17a").healthy == 1)
        assert len(w.spawner.of_role("app")) == 2
        assert "sidecar exited with status 1" in w.listener.tasks["hello-backend-e9d5f17a-1"].last_error

    run(scenario, tmp_path)


def test_health_check_that_never_passes_fails_the_version(tmp_path: Path) -> None:
    async def scenario(w: World) -> None:
        w.spawner.on_spawn = lambda p: setattr(p, "healthy", False)
        w.sup.start_version(spec(), 2, w.log_dir)
        took = await w.clock.until(lambda: w.sup.version_health("hello-backend", "e9d5f17a").failure is not None)
        # Failures in the 10 s start period do not count; then 3 failures, 5 s apart.
        assert 10.0 + 2 * 5.0 <= took <= 10.0 + 3 * 5.0 + 0.5
        health = w.sup.version_health("hello-backend", "e9d5f17a")
        assert health.healthy == 0 and "never passed" in str(health.failure) and "/ping" in str(health.failure)
        assert w.sup.endpoints() == {}

    run(scenario, tmp_path)


def test_late_start_counts_once_it_answers_within_the_start_period(tmp_path: Path) -> None:
    async def scenario(w: World) -> None:
        w.spawner.on_spawn = lambda p: setattr(p, "healthy", False)
        w.sup.start_version(spec(), 1, w.log_dir)
        await w.clock.advance(8.0)
        assert w.sup.version_health("hello-backend", "e9d5f17a").healthy == 0
        w.spawner.of_role("app")[0].healthy = True
        await w.clock.advance(1.0)
        health = w.sup.version_health("hello-backend", "e9d5f17a")
        assert health.healthy == 1 and health.failure is None
        assert len(w.spawner.of_role("app")) == 1

    run(scenario, tmp_path)


def test_healthy_task_tolerates_fewer_failures_than_retries(tmp_path: Path) -> None:
    async def scenario(w: World) -> None:
        w.sup.start_version(spec(), 1, w.log_dir)
        await w.clock.until(lambda: w.sup.version_health("hello-backend", "e9d5f17a").healthy == 1)
        app = w.spawner.of_role("app")[0]
        app.healthy = False
        await w.clock.advance(2 * 5.0 + 0.1)  # two failed checks
        assert w.sup.version_health("hello-backend", "e9d5f17a").healthy == 1
        app.healthy = True
        await w.clock.advance(5.0)
        app.healthy = False
        await w.clock.advance(3 * 5.0 + 0.1)  # the failure count started again: three in a row now
        assert app.stopped_by_supervisor
        assert w.listener.tasks["hello-backend-e9d5f17a-1"].restarts == 1
        assert "health check failed 3 times" in w.listener.tasks["hello-backend-e9d5f17a-1"].last_error
        assert w.sup.version_health("hello-backend", "e9d5f17a").failure is None  # it was healthy once

    run(scenario, tmp_path)


def test_stop_takes_task_out_of_the_mesh_before_stopping_it(tmp_path: Path) -> None:
    async def scenario(w: World) -> None:
        w.sup.start_version(spec(), 2, w.log_dir)
        await w.clock.until(lambda: w.sup.version_health("hello-backend", "e9d5f17a").healthy == 2)
        apps = w.spawner.of_role("app")
        seen: list[bool] = []
        original = w.listener.endpoints_changed

        async def spy() -> None:
            seen.append(all(a.returncode is None for a in apps))
            await original()

        w.listener.endpoints_changed = spy  # type: ignore[method-assign]
        stopper = asyncio.ensure_future(w.sup.stop_version("hello-backend", "e9d5f17a"))
        await w.clock.until(stopper.done)
        assert seen and seen[0] is True
        assert w.spawner.live("app") == [] and w.spawner.live("sidecar") == []
        assert sorted(w.listener.exited) == sorted(p.pid for p in w.spawner.procs)
        assert w.sup.endpoints() == {} and w.listener.live_proxies == set()
        assert w.listener.tasks["hello-backend-e9d5f17a-1"].actual == TaskState.STOPPED

    run(scenario, tmp_path)


def test_sidecar_that_never_goes_live_is_replaced_without_starting_the_app(tmp_path: Path) -> None:
    async def scenario(w: World) -> None:
        w.probes.sidecars_live = False
        w.sup.start_version(spec(), 1, w.log_dir)
        await w.clock.advance(16.0)
        assert w.spawner.of_role("app") == []
        assert w.spawner.of_role("sidecar")[0].stopped_by_supervisor
        assert "not live within" in w.listener.tasks["hello-backend-e9d5f17a-1"].last_error
        w.probes.sidecars_live = True
        await w.clock.until(lambda: w.sup.version_health("hello-backend", "e9d5f17a").healthy == 1)

    run(scenario, tmp_path)


def test_repeated_crashes_before_ready_fail_the_version(tmp_path: Path) -> None:
    async def scenario(w: World) -> None:
        w.spawner.on_spawn = lambda p: p.exit(3) if p.role == "app" else None
        w.sup.start_version(spec(), 1, w.log_dir)
        await w.clock.until(lambda: w.sup.version_health("hello-backend", "e9d5f17a").failure is not None)
        assert "failed 3 times before it was healthy" in str(w.sup.version_health("hello-backend", "e9d5f17a").failure)

    run(scenario, tmp_path)


def test_gateway_restarts_and_moves_port_when_its_port_stays_taken(tmp_path: Path) -> None:
    async def scenario(w: World) -> None:
        gw = w.sup.start_gateway(18080, tmp_path / "gateway.log")
        await w.clock.until(gw.live.is_set)
        first = w.spawner.of_role("gateway")[0]
        assert first.arg("--listen-port") == 18080 and w.listener.live_proxies == {first.arg("--admin-port")}
        first.exit(1)
        await w.clock.until(lambda: len(w.spawner.of_role("gateway")) == 2 and gw.live.is_set())
        assert w.spawner.of_role("gateway")[1].arg("--listen-port") == 18080
        # Port now taken by someone else: the gateway exits at once, three times, then moves.
        w.spawner.on_spawn = lambda p: p.exit(1) if p.role == "gateway" and p.arg("--listen-port") == 18080 else None
        w.spawner.of_role("gateway")[1].exit(1)
        await w.clock.until(lambda: gw.live.is_set() and gw.port != 18080, limit=60)
        assert w.listener.gateway_ports == [gw.port]

    run(scenario, tmp_path)


def left_running(w: World, ports: TaskPorts, app_healthy: bool = True) -> tuple[FakeProc, FakeProc]:
    """A sidecar and an app a previous daemon started (the spawner did not start them here)."""
    sidecar = FakeProc(900, ["py", "-m", "meshpipe.engines.local.dataplane", "--mode", "sidecar",
                             "--admin-port", str(ports.admin), "--ingress-port", str(ports.ingress)],
                       {}, Path("x"), -100.0)
    app = FakeProc(901, ["py", "-m", "app"], {"PORT": str(ports.app)}, Path("y"), -100.0)
    app.healthy = app_healthy
    w.spawner.procs += [sidecar, app]
    return sidecar, app


def test_adopted_task_serves_at_once_and_is_replaced_only_when_it_dies(tmp_path: Path) -> None:
    async def scenario(w: World) -> None:
        ports = TaskPorts(app=30001, ingress=30002, egress=30003, admin=30004)
        sidecar, app = left_running(w, ports)
        w.sup.start_version(spec(), 2, w.log_dir, {1: AdoptedTask(ports, sidecar, app, healthy=True, restarts=4)})
        # An endpoint before the supervisor ran at all: the first config built keeps its traffic.
        assert w.sup.endpoints()["hello-backend"]["e9d5f17a"] == (Endpoint("127.0.0.1", 30002),)
        await w.clock.until(lambda: w.sup.version_health("hello-backend", "e9d5f17a").healthy == 2)
        # Only slot 2 was started; the adopted sidecar got the config like any new proxy.
        assert [p.pid for p in w.spawner.of_role("sidecar")] == [900, w.spawner.of_role("sidecar")[1].pid]
        assert len(w.spawner.of_role("app")) == 2 and 30004 in w.listener.pushes
        assert [pid for pid, role, _ in w.listener.started if role == "sidecar"] == [w.spawner.of_role("sidecar")[1].pid]
        await w.clock.advance(60.0)
        assert sidecar.returncode is None and app.returncode is None  # healthy: left alone
        app.exit(-9)
        await w.clock.until(lambda: len(w.spawner.of_role("app")) == 3
                            and w.sup.version_health("hello-backend", "e9d5f17a").healthy == 2)
        assert sidecar.stopped_by_supervisor and {900, 901} <= set(w.listener.exited)
        task = w.listener.tasks["hello-backend-e9d5f17a-1"]
        assert task.restarts == 5 and task.last_error.startswith("app exited")

    run(scenario, tmp_path)


def test_adopted_unhealthy_task_is_replaced_after_its_retries(tmp_path: Path) -> None:
    async def scenario(w: World) -> None:
        ports = TaskPorts(app=30001, ingress=30002, egress=30003, admin=30004)
        sidecar, app = left_running(w, ports, app_healthy=False)
        w.sup.start_version(spec(), 1, w.log_dir, {1: AdoptedTask(ports, sidecar, app, healthy=False)})
        assert w.sup.endpoints() == {}
        # No start period for a task that has run for a while: retries (3) failed checks, one per interval.
        took = await w.clock.until(lambda: app.stopped_by_supervisor)
        assert 3 * TIMINGS.interval - 0.1 <= took <= 3 * TIMINGS.interval + 0.1
        await w.clock.until(lambda: w.sup.version_health("hello-backend", "e9d5f17a").healthy == 1)
        assert "health check failed 3 times" in w.listener.tasks["hello-backend-e9d5f17a-1"].last_error

    run(scenario, tmp_path)


def test_adopted_gateway_keeps_its_port_and_is_restarted_on_it(tmp_path: Path) -> None:
    async def scenario(w: World) -> None:
        old = FakeProc(800, ["py", "-m", "meshpipe.engines.local.dataplane", "--mode", "gateway",
                             "--admin-port", "30010", "--listen-port", "18080"], {}, Path("g"), -100.0)
        w.spawner.procs.append(old)
        gw = w.sup.start_gateway(18080, tmp_path / "gateway.log", AdoptedProxy(old, 30010))
        await w.clock.until(gw.live.is_set)
        assert w.spawner.of_role("gateway") == [old] and w.listener.live_proxies == {30010}
        old.exit(1)
        await w.clock.until(lambda: len(w.spawner.of_role("gateway")) == 2 and gw.live.is_set())
        assert w.spawner.of_role("gateway")[1].arg("--listen-port") == 18080
        assert 30010 not in w.listener.live_proxies

    run(scenario, tmp_path)


def test_rotate_log_keeps_the_newest_part(tmp_path: Path) -> None:
    log = tmp_path / "t-app.log"
    log.write_bytes(b"a" * 100 + b"b" * 50)
    assert rotate_log(log, max_bytes=60)
    assert log.read_bytes() == b""
    assert (tmp_path / "t-app.log.1").read_bytes() == b"a" * 10 + b"b" * 50
    assert not rotate_log(log, max_bytes=60)


def test_version_spec_comes_from_the_resolved_task_definition() -> None:
    import json

    from meshpipe.engines.local.state.options import LocalOptions
    from meshpipe.engines.local.tasks.deploy import resolved_to_json, task_count, version_spec
    from meshpipe.manifest import load_manifest_text
    from meshpipe.model import resolve
    from meshpipe.platform import local_settings

    manifest = load_manifest_text(
        'Task:\n  Family: "hello-web"\nAppContainer:\n  Image: "wizriz/hello-web:66f2a19"\n  Port: 80\n'
        '  HealthCheckPath: "/ping"\n  Command: ["node", "server", "-b http://hello-backend.demo.local/data"]\n'
        '  Environment:\n    LOG_LEVEL: "debug"\nVirtualNode:\n  Backends: ["hello-backend.demo.local"]\n')
    version = resolve(manifest, local_settings("demo"), "hello-web", "e9d5f17a" * 5)
    resolved = json.loads(json.dumps(resolved_to_json(version)))  # as stored in state.db
    assert task_count(resolved, LocalOptions()) == 2  # the platform policy's min_tasks
    assert task_count(resolved, LocalOptions(tasks_per_version=1)) == 1
    spec_ = version_spec(resolved, ["py", "-m", "web"], LocalOptions(health_time_scale=0.5))
    assert (spec_.service, spec_.version, spec_.health_path) == ("hello-web", "e9d5f17a", "/ping")
    assert spec_.health == HealthTimings(interval=2.5, timeout=1.0, retries=3, start_period=5.0, start_interval=0.25)
    assert spec_.app_env == (("LOG_LEVEL", "debug"),)
    assert spec_.backends == ("hello-backend.demo.local",)
    assert spec_.stop_timeout == 10.0 and spec_.app_argv == ("py", "-m", "web")


def test_log_files_are_found_where_the_daemon_keeps_them(tmp_path: Path) -> None:
    from meshpipe.engines.local.tasks.processes import log_files

    (tmp_path / "svc-1").mkdir()
    (tmp_path / "svc-1" / "svc-1-a-1-app.log").write_text("x")
    (tmp_path / "svc-1" / "notes.txt").write_text("x")
    (tmp_path / "gateway-envoy.log").write_text("x")
    (tmp_path / "gateway-envoy.log.1").write_text("x")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in log_files(tmp_path)) == [
        "gateway-envoy.log", "svc-1/svc-1-a-1-app.log"]
