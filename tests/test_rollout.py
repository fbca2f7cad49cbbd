"""Automated rollouts against an in-memory engine and scripted traffic counters."""

from __future__ import annotations

from meshpipe.mesh.routing import Route, WeightedTarget, make_route
from meshpipe.mesh.stats import ServiceStats, VersionStats
from meshpipe.rollout import RolloutPolicy, run_rollout

OLD, NEW = "e9d5f17a", "0badc0de"


class MemoryEngine:
    def __init__(self, route: Route) -> None:
        self.route: Route | None = route
        self.history: list[dict[str, int]] = []

    def route_show(self, env: str, service: str) -> Route | None:
        return self.route

    def route_set(self, env: str, service: str, targets: tuple[WeightedTarget, ...]) -> Route:
        self.route = make_route(service, targets)
        self.history.append({t.version: t.weight for t in targets})
        return self.route


class Traffic:
    """Cumulative counters that grow by a scripted (requests, errors) per sleep."""

    def __init__(self, per_window: list[tuple[int, int]]) -> None:
        self.windows = iter(per_window)
        self.requests = self.errors = 0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        requests, errors = next(self.windows)
        self.requests += requests
        self.errors += errors

    def stats(self) -> ServiceStats:
        return ServiceStats("hello-backend", {NEW: VersionStats(requests=self.requests, errors=self.errors)})


def start() -> MemoryEngine:
    return MemoryEngine(make_route("hello-backend", [WeightedTarget(OLD, 100)]))


def test_healthy_rollout_walks_every_step_to_full_weight():
    engine, traffic = start(), Traffic([(100, 0), (500, 2)])
    report = run_rollout(engine, "demo", "hello-backend", NEW, RolloutPolicy(steps=(10, 50, 100), interval_s=5),
                         stats=traffic.stats, say=lambda _: None, sleep=traffic.sleep)
    assert report.outcome == "promoted"
    assert engine.history == [{OLD: 90, NEW: 10}, {OLD: 50, NEW: 50}, {NEW: 100}]
    assert traffic.slept == [5, 5]


def test_failing_gate_rolls_back_to_the_stable_version():
    engine, traffic = start(), Traffic([(100, 0), (200, 30)])
    report = run_rollout(engine, "demo", "hello-backend", NEW, RolloutPolicy(steps=(10, 50, 100), max_error_rate=0.05),
                         stats=traffic.stats, say=lambda _: None, sleep=traffic.sleep)
    assert report.outcome == "rolled back"
    assert engine.history[-1] == {OLD: 100}
    assert any("FAIL" in line and "15.0%" in line for line in report.log)


def test_errors_are_judged_per_window_not_cumulatively():
    # A bad first window is caught even though later traffic would dilute the cumulative rate.
    engine, traffic = start(), Traffic([(10, 5), (10_000, 0)])
    report = run_rollout(engine, "demo", "hello-backend", NEW, RolloutPolicy(steps=(10, 50, 100)),
                         stats=traffic.stats, say=lambda _: None, sleep=traffic.sleep)
    assert report.outcome == "rolled back"
    assert len(engine.history) == 2


def test_without_metrics_the_rollout_is_time_based():
    engine, traffic = start(), Traffic([(0, 0), (0, 0)])
    report = run_rollout(engine, "demo", "hello-backend", NEW, RolloutPolicy(steps=(25, 75, 100)),
                         stats=None, say=lambda _: None, sleep=traffic.sleep)
    assert report.outcome == "promoted"
    assert [h.get(NEW) for h in engine.history] == [25, 75, 100]


def test_too_little_traffic_fails_a_step_when_traffic_is_required():
    engine, traffic = start(), Traffic([(3, 0)])
    report = run_rollout(engine, "demo", "hello-backend", NEW, RolloutPolicy(steps=(10, 100), min_requests=20),
                         stats=traffic.stats, say=lambda _: None, sleep=traffic.sleep)
    assert report.outcome == "rolled back"
    assert engine.history[-1] == {OLD: 100}


def test_promote_and_rollback_use_routes_when_the_engine_has_no_way_of_its_own():
    from meshpipe import rollout

    engine = MemoryEngine(make_route("hello-backend", [WeightedTarget(OLD, 90), WeightedTarget(NEW, 10)]))
    assert {t.version: t.weight for t in rollout.rollback(engine, "demo", "hello-backend").targets} == {OLD: 100}
    engine.route_set("demo", "hello-backend", (WeightedTarget(OLD, 90), WeightedTarget(NEW, 10)))
    assert {t.version: t.weight for t in rollout.promote(engine, "demo", "hello-backend").targets} == {NEW: 100}


def test_promote_and_rollback_defer_to_an_engine_that_shifts_traffic_itself():
    from meshpipe import rollout

    class EcsLike(MemoryEngine):
        def __init__(self, route):
            super().__init__(route)
            self.asked: list[tuple[str, str | None]] = []

        def rollout_shift(self, env, service, move, version=None):
            self.asked.append((str(move), version))
            return self.route

    engine = EcsLike(make_route("hello-backend", [WeightedTarget(OLD, 100)]))
    rollout.promote(engine, "demo", "hello-backend", NEW)
    rollout.rollback(engine, "demo", "hello-backend")
    assert engine.asked == [("promote", NEW), ("rollback", None)]
    assert engine.history == []  # no route was set behind the engine's back
