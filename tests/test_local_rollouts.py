"""The daemon's rollout controller with a real state.db but fake proxies, webhooks and clock: what it stores,
what it routes, and how a new controller on the same state.db (a daemon after kill -9) carries on."""

from __future__ import annotations

import asyncio
import sqlite3
from bisect import bisect_left
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from meshpipe.delivery.analysis import Counters
from meshpipe.delivery.machine import WebhookResult
from meshpipe.delivery.policy import Analysis, RolloutSpec, Webhook
from meshpipe.engines.local.dataplane.metrics import BUCKET_BOUNDS_MS
from meshpipe.engines.local.delivery.rollouts import ROLLOUT_OWNER, RolloutController, counters_from_stats
from meshpipe.engines.local.state.store import StateStore
from meshpipe.errors import ConflictError
from meshpipe.mesh.headers import HeaderMatch
from meshpipe.mesh.routing import WeightedTarget, make_header_route, make_route
from meshpipe.status import VersionStatus
from support.clock import FakeClock

SVC = "hello-backend"
OLD, NEW, NEWER = "01d01d00", "4e34e300", "4e3e4e3e"


class World:
    """The controller's edges, by hand: a clock, the proxies' counters, webhook answers, pushes."""

    def __init__(self) -> None:
        self.clock = FakeClock(start=1000.0)
        self.counts: dict[str, Counters] = {}
        self.pushes: list[str] = []
        self.answers: dict[str, bool] = {}
        self.hook_calls: list[tuple[str, dict[str, Any]]] = []

    @property
    def now(self) -> float:
        return self.clock.t

    @now.setter
    def now(self, value: float) -> None:
        self.clock.t = value

    def send(self, version: str, n: int, errors: int = 0, ms: float = 2.0) -> None:
        was = self.counts.get(version, Counters())
        self.counts[version] = was.plus(Counters(n, errors, {bisect_left(BUCKET_BOUNDS_MS, ms): n}))

    async def snapshot(self, service: str) -> dict[str, dict[str, Counters]]:
        return {"9901": dict(self.counts)}

    async def hooks(self, hooks: Sequence[Webhook], payload: dict[str, Any]) -> list[WebhookResult]:
        out = []
        for h in hooks:
            self.hook_calls.append((h.name, payload))
            ok = self.answers.get(h.name, True)
            out.append(WebhookResult(h.name, h.type, ok, "HTTP 200" if ok else "HTTP 500"))
        return out

    async def publish(self, reason: str) -> dict[str, Any]:
        self.pushes.append(reason)
        return {}

    def controller(self, store: StateStore) -> RolloutController:
        return RolloutController(store, "demo", self.publish, self.snapshot, self.hooks, BUCKET_BOUNDS_MS,
                                 clock=self.clock)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    s = StateStore(tmp_path / "state.db")
    s.init_environment("demo", "demo.local")
    s.add_service(SVC, f"{SVC}.demo.local", f"vr-{SVC}", "/repos/x")
    for v in (OLD, NEW, NEWER):
        s.create_version(SVC, v, v * 5, f"demo-{SVC}-{v}", 1, {}, {"service": SVC}, None)
        s.set_version_status(SVC, v, VersionStatus.CREATE_COMPLETE)
    yield s
    s.close()


def plan(**kw: Any) -> RolloutSpec:
    return RolloutSpec(**{"strategy": "canary", "steps": (20, 50, 100), "interval_s": 10.0,
                          "analysis": Analysis(min_requests=5, failed_windows=1), **kw})


def weights(store: StateStore) -> dict[str, int]:
    return store.weights(SVC)


async def step(c: RolloutController, world: World, new_requests: int = 20, errors: int = 0) -> None:
    r = c.drivers[SVC].rollout
    assert r is not None and r.next_decision_at is not None
    world.send(OLD, 100)
    world.send(r.candidate, new_requests, errors)
    world.now = r.next_decision_at
    await c._tick(r)


def test_the_first_version_takes_all_traffic(store: StateStore) -> None:
    world = World()
    status = asyncio.run(world.controller(store).start(SVC, OLD, plan(), "by a push"))
    assert status["status"] == "promoted" and weights(store) == {OLD: 100}
    assert world.pushes == [f"first version {OLD} of {SVC} routed"]


def test_a_rollout_is_stored_routed_and_resumed_by_a_new_controller(store: StateStore) -> None:
    world = World()
    store.set_route(make_route(SVC, (WeightedTarget(OLD, 100),)))

    async def first_daemon() -> None:
        c = world.controller(store)
        status = await c.start(SVC, NEW, plan(), "by a push")
        assert (status["step"], status["weights"]) == (1, {OLD: 80, NEW: 20})
        assert weights(store) == {OLD: 80, NEW: 20}
        await step(c, world)
        assert weights(store) == {OLD: 50, NEW: 50}
        c.stop()

    asyncio.run(first_daemon())
    # The daemon dies after storing a step but before its route reached state.db's route table.
    store.set_route(make_route(SVC, (WeightedTarget(OLD, 80), WeightedTarget(NEW, 20))))
    world.now += 3

    async def second_daemon() -> None:
        c = world.controller(store)
        assert await c.restore() == [SVC]
        r = c.drivers[SVC].rollout
        assert r is not None and (r.step, len(r.windows)) == (1, 1)
        assert r.window_started_at == world.now and r.next_decision_at == world.now + 10  # the cut window anew
        await c._tick(r)
        assert weights(store) == {OLD: 50, NEW: 50}  # the route the stored state wants, applied again
        await step(c, world)
        assert r.status == "promoted" and weights(store) == {NEW: 100}
        c.stop()

    asyncio.run(second_daemon())
    events = [e.message for e in store.events(limit=50, service=SVC) if e.kind == "rollout"]
    assert any(e.startswith("resumed after a daemon start at step 2/3 (50 %), 1 window(s) judged") for e in events)
    assert events[-1] == f"promoted: 100 % to {NEW}"


def test_webhooks_a_crash_left_uncalled_are_called_at_the_next_start(store: StateStore) -> None:
    world = World()
    store.set_route(make_route(SVC, (WeightedTarget(OLD, 100),)))
    hooks = (Webhook("notify", "rollback", "http://127.0.0.1:9/"),)

    async def until_rollback() -> None:
        c = world.controller(store)
        await c.start(SVC, NEW, plan(webhooks=hooks), "by a push")
        r = c.drivers[SVC].rollout
        assert r is not None
        world.send(NEW, 20, errors=10)
        world.now = r.next_decision_at or 0
        from meshpipe.delivery import machine as m

        # The decision is stored, then the daemon dies before calling the rollback hook.
        c._record(r, m.conclude(r, world.now, await world.snapshot(SVC), BUCKET_BOUNDS_MS))
        assert r.pending_webhooks == ["rollback"]

    asyncio.run(until_rollback())
    assert world.hook_calls == []

    async def next_start() -> None:
        c = world.controller(store)
        await c.restore()

    asyncio.run(next_start())
    assert [(name, p["status"]) for name, p in world.hook_calls] == [("notify", "rolled-back")]
    assert any("rollback webhook notify: HTTP 200" in e.message for e in store.events(service=SVC))


def test_deleting_the_candidate_ends_its_rollout(store: StateStore) -> None:
    world = World()
    store.set_route(make_route(SVC, (WeightedTarget(OLD, 100),)))

    async def go() -> None:
        c = world.controller(store)
        await c.start(SVC, NEW, plan(), "by hand")
        store.delete_version(SVC, NEW, force=True)
        r = c.drivers[SVC].rollout
        assert r is not None
        await c._tick(r)
        assert r.status == "rolled-back" and "was deleted" in r.reason
        c.stop()

    asyncio.run(go())
    assert weights(store) == {OLD: 100}


def test_blue_green_preview_is_a_header_route_owned_by_the_rollout(store: StateStore) -> None:
    world = World()
    store.set_route(make_route(SVC, (WeightedTarget(OLD, 100),)))
    preview = HeaderMatch("x-canary", "always")

    async def go() -> None:
        c = world.controller(store)
        await c.start(SVC, NEW, plan(strategy="blue-green", steps=(100,), preview=preview), "by hand")
        [route] = store.header_routes(SVC)[SVC]
        assert route.targets == (WeightedTarget(NEW, 100),) and route.headers == (preview,)
        assert store.header_route_owner(SVC, route.name) == ROLLOUT_OWNER
        await step(c, world)
        assert store.header_routes(SVC) == {} and weights(store) == {NEW: 100}
        c.stop()

    asyncio.run(go())


def test_a_preview_header_taken_by_hand_is_not_overwritten(store: StateStore) -> None:
    world = World()
    store.set_route(make_route(SVC, (WeightedTarget(OLD, 100),)))
    store.set_header_route(make_header_route(SVC, [HeaderMatch("x-canary", "me")], [WeightedTarget(OLD, 100)]))
    preview = HeaderMatch("x-canary", "always")

    async def go() -> None:
        c = world.controller(store)
        with pytest.raises(ConflictError, match="set by hand"):
            await c.start(SVC, NEW, plan(strategy="blue-green", steps=(100,), preview=preview), "by hand")
        assert c.store.running_rollouts() == [] and not c.running(SVC)  # refused before anything was stored
        c.stop()

    asyncio.run(go())


def test_counters_from_a_proxys_stats() -> None:
    answer = {"upstreams": {SVC: {NEW: {"requests": 5, "errors": 1, "buckets": {"40": 5}}}, "other": {}}}
    assert counters_from_stats(answer, SVC) == {NEW: Counters(5, 1, {40: 5})}
    assert counters_from_stats({}, SVC) == {}


def test_both_times_of_a_rollout_row_are_written_alike_to_the_millisecond(tmp_path: Path) -> None:
    world = World()
    world.now = 1_777_777_777.123456
    s = StateStore(tmp_path / "state.db", clock=world.clock)
    s.init_environment("demo", "demo.local")
    s.add_service(SVC, f"{SVC}.demo.local", f"vr-{SVC}", "/repos/x")
    s.create_version(SVC, OLD, OLD * 5, f"demo-{SVC}-{OLD}", 1, {}, {"service": SVC}, None)
    s.set_version_status(SVC, OLD, VersionStatus.CREATE_COMPLETE)
    try:
        asyncio.run(world.controller(s).start(SVC, OLD, plan(), "by a push"))
        with sqlite3.connect(s.path) as db:
            [(started, updated)] = db.execute("SELECT started_at, updated_at FROM rollouts").fetchall()
    finally:
        s.close()
    assert started == updated == "2026-05-03T03:09:37.123Z"
