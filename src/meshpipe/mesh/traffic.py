"""Traffic moves: canary, promote, rollback and stepped rollouts as pure functions of the current route.

A move only computes the next weighted targets; an engine applies them with ``route_set``. The stable
version of a route is the one carrying the most weight (ties are ambiguous and must be named).
"""

from __future__ import annotations

from dataclasses import dataclass

from meshpipe.errors import UserError
from meshpipe.mesh.routing import MAX_WEIGHT, Route, WeightedTarget, validate_targets


def stable_version(route: Route | None) -> str:
    if route is None or not route.targets:
        raise UserError("the service has no route yet", hint="route it first: meshpipe route set SVC VERSION=100")
    top = max(t.weight for t in route.targets)
    leaders = [t.version for t in route.targets if t.weight == top]
    if len(leaders) > 1:
        raise UserError(f"no single stable version: {', '.join(leaders)} carry {top} each",
                        hint="name the version explicitly")
    return leaders[0]


def canary(route: Route | None, new_version: str, weight: int = 10) -> tuple[WeightedTarget, ...]:
    """Send ``weight`` % to ``new_version`` and the rest to the stable version (the original sample's 90/10)."""
    if not 0 < weight < MAX_WEIGHT:
        raise UserError(f"a canary weight must be 1-{MAX_WEIGHT - 1}, got {weight}")
    stable = stable_version(route)
    if stable == new_version:
        raise UserError(f"{new_version} already is the stable version")
    return validate_targets((WeightedTarget(stable, MAX_WEIGHT - weight), WeightedTarget(new_version, weight)))


def canary_version(route: Route | None) -> str:
    """The version being tried: the only target besides the stable one."""
    stable = stable_version(route)
    assert route is not None
    others = [t.version for t in route.targets if t.version != stable]
    if len(others) != 1:
        raise UserError("the route has no single canary to promote" if not others
                        else f"several candidates ({', '.join(others)}): name the version to promote",
                        hint="name the version: meshpipe rollout promote SERVICE VERSION")
    return others[0]


def promote(route: Route | None, version: str | None = None) -> tuple[WeightedTarget, ...]:
    """All traffic to ``version`` (default: the canary)."""
    target = version or canary_version(route)
    return validate_targets((WeightedTarget(target, MAX_WEIGHT),))


def rollback(route: Route | None, to: str | None = None) -> tuple[WeightedTarget, ...]:
    """All traffic back to ``to`` (default: the stable version)."""
    target = to or stable_version(route)
    return validate_targets((WeightedTarget(target, MAX_WEIGHT),))


@dataclass(frozen=True)
class Step:
    weight: int  # percent to the new version
    targets: tuple[WeightedTarget, ...]


def stepped(stable: str, new_version: str, steps: list[int]) -> list[Step]:
    """A linear or custom rollout: e.g. [10, 25, 50, 100]; weights must rise and end at 100."""
    if not steps:
        raise UserError("a rollout needs at least one step")
    if steps != sorted(set(steps)) or steps[0] <= 0 or steps[-1] != MAX_WEIGHT:
        raise UserError(f"steps must rise strictly from above 0 to {MAX_WEIGHT}, got {steps}")
    if stable == new_version:
        raise UserError(f"{new_version} already is the stable version")
    made = []
    for w in steps:
        targets = (WeightedTarget(new_version, w),) if w == MAX_WEIGHT else (
            WeightedTarget(stable, MAX_WEIGHT - w), WeightedTarget(new_version, w))
        made.append(Step(w, validate_targets(targets)))
    return made


@dataclass(frozen=True)
class Health:
    """A version's traffic over one observation window."""

    requests: int
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def gate(window: Health, max_error_rate: float, min_requests: int = 0) -> tuple[bool, str]:
    """Whether a rollout step may go on, and why: on the new version's error rate in the window.

    With ``min_requests`` above 0 a window with less traffic fails: no evidence is not good evidence.
    """
    if window.requests < min_requests:
        return False, f"only {window.requests} request(s) in the window; at least {min_requests} needed to judge"
    if window.requests == 0:
        return True, "no requests in the window: nothing to judge"
    rate = window.error_rate
    if rate > max_error_rate:
        return False, f"error rate {rate:.1%} over {window.requests} requests exceeds {max_error_rate:.1%}"
    return True, f"error rate {rate:.1%} over {window.requests} requests"
