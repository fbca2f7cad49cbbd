"""Automated rollouts: walk a new version through weight steps, judging its error rate at each step.

The steps come from :func:`meshpipe.mesh.traffic.stepped` and the verdicts from :func:`meshpipe.mesh.traffic.gate`;
this module only drives an engine through them. The engine, the clock and the sleep are passed in, so a
rollout can be tested against an in-memory engine without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from meshpipe.mesh import traffic
from meshpipe.mesh.routing import Route, WeightedTarget
from meshpipe.mesh.stats import ServiceStats


class RolloutEngine(Protocol):
    def route_show(self, env: str, service: str) -> Route | None: ...
    def route_set(self, env: str, service: str, targets: tuple[WeightedTarget, ...]) -> Route: ...


class Move(StrEnum):
    PROMOTE = "promote"  # all traffic to the new version (default: the canary)
    ROLLBACK = "rollback"  # all traffic back (default: to the stable version)


@runtime_checkable
class Rollouts(Protocol):
    """An engine whose platform shifts traffic itself (ECS deployments): it promotes and rolls back its own
    way. For the others a promotion or a rollback is a route."""

    def rollout_shift(self, env: str, service: str, move: Move, version: str | None = None) -> Route: ...


def targets_for(route: Route | None, move: Move, version: str | None = None) -> tuple[WeightedTarget, ...]:
    """The targets ``move`` leaves a route with."""
    return traffic.promote(route, version) if move is Move.PROMOTE else traffic.rollback(route, version)


def shift(engine: RolloutEngine, env: str, service: str, move: Move, version: str | None = None) -> Route:
    """Promote or roll back, the engine's own way when it has one (:class:`Rollouts`), else by a route."""
    if isinstance(engine, Rollouts):
        return engine.rollout_shift(env, service, move, version)
    return engine.route_set(env, service, targets_for(engine.route_show(env, service), move, version))


def promote(engine: RolloutEngine, env: str, service: str, version: str | None = None) -> Route:
    """All traffic to ``version`` (default: the canary)."""
    return shift(engine, env, service, Move.PROMOTE, version)


def rollback(engine: RolloutEngine, env: str, service: str, to: str | None = None) -> Route:
    """All traffic back to ``to`` (default: the stable version)."""
    return shift(engine, env, service, Move.ROLLBACK, to)


@dataclass(frozen=True)
class RolloutPolicy:
    steps: tuple[int, ...] = (10, 50, 100)
    interval_s: float = 30.0
    max_error_rate: float = 0.01
    min_requests: int = 0


@dataclass
class RolloutReport:
    service: str
    stable: str
    new_version: str
    outcome: str = "in progress"  # promoted | rolled back
    log: list[str] = field(default_factory=list)


def _counters(stats: ServiceStats, version: str) -> traffic.Health:
    found = stats.of(version)
    return traffic.Health(found.requests, found.errors)


def run_rollout(engine: RolloutEngine, env: str, service: str, new_version: str, policy: RolloutPolicy, *,
                stats: Callable[[], ServiceStats] | None, say: Callable[[str], None],
                sleep: Callable[[float], None] = time.sleep) -> RolloutReport:
    """Shift traffic to ``new_version`` step by step; roll back to the stable version on a failed gate.

    ``stats`` returns cumulative per-version counters; with None the rollout is time-based only.
    """
    stable = traffic.stable_version(engine.route_show(env, service))
    steps = traffic.stepped(stable, new_version, list(policy.steps))
    report = RolloutReport(service, stable, new_version)

    def note(message: str) -> None:
        report.log.append(message)
        say(message)

    for step in steps:
        engine.route_set(env, service, step.targets)
        note(f"{step.weight} % of {service} traffic to {new_version}")
        if step.weight == 100:
            break
        before = _counters(stats(), new_version) if stats else None
        sleep(policy.interval_s)
        if stats is None or before is None:
            continue
        after = _counters(stats(), new_version)
        window = traffic.Health(after.requests - before.requests, after.errors - before.errors)
        ok, why = traffic.gate(window, policy.max_error_rate, policy.min_requests)
        note(f"  {'pass' if ok else 'FAIL'}: {why}")
        if not ok:
            engine.route_set(env, service, traffic.rollback(None, to=stable))
            note(f"rolled back: 100 % of {service} traffic to {stable}")
            report.outcome = "rolled back"
            return report
    report.outcome = "promoted"
    note(f"promoted: 100 % of {service} traffic to {new_version}")
    return report
