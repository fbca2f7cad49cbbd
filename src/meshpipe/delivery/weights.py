"""How traffic is split while a candidate takes its share: every other version keeps its relative share.

Before a rollout the route holds some versions with weight (the *base*: the stable version, and maybe
others, such as an A/B pair). At a step of ``p`` % the candidate gets ``p`` and the base versions share
``100 - p`` in the proportions they had, rounded to whole weights by the largest remainder (ties to the
version listed first), so the weights always add up to 100. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshpipe.errors import ConflictError
from meshpipe.mesh.routing import MAX_TARGETS, MAX_WEIGHT, WeightedTarget, validate_targets


def stable_of(base: Mapping[str, int]) -> str:
    """The base version with the most weight (the first listed among equals)."""
    if not base:
        raise ValueError("no base versions")
    top = max(base.values())
    return next(v for v, w in base.items() if w == top)


def share(base: Mapping[str, int], total: int) -> dict[str, int]:
    """``total`` split between the base versions in their proportions; whole numbers that add up to it."""
    weights = {v: w for v, w in base.items() if w > 0}
    whole = sum(weights.values())
    if not weights or total <= 0:
        return {v: 0 for v in weights}
    exact = {v: total * w / whole for v, w in weights.items()}
    out = {v: int(q) for v, q in exact.items()}
    left = total - sum(out.values())
    order = sorted(weights, key=lambda v: -(exact[v] - out[v]))  # stable sort: ties keep their order
    for v in order[:left]:
        out[v] += 1
    return out


def split(base: Mapping[str, int], candidate: str, percent: int) -> tuple[WeightedTarget, ...]:
    """The route's targets with ``percent`` to ``candidate`` and the rest shared by ``base``."""
    if candidate in base:
        raise ValueError("the candidate is not part of the base")
    if not 0 <= percent <= MAX_WEIGHT:
        raise ValueError(f"percent {percent} outside 0-{MAX_WEIGHT}")
    rest = share(base, MAX_WEIGHT - percent)
    targets = [WeightedTarget(v, w) for v, w in rest.items() if w > 0]
    if percent > 0:
        if len(targets) + 1 > MAX_TARGETS:
            raise ConflictError(f"the route already has {len(targets)} versions with traffic: a candidate would be "
                                f"target {len(targets) + 1}, and App Mesh allows {MAX_TARGETS}")
        targets.append(WeightedTarget(candidate, percent))
    return validate_targets(targets)


def base_targets(base: Mapping[str, int]) -> tuple[WeightedTarget, ...]:
    """The route as it was before the rollout (what a rollback goes back to)."""
    return validate_targets([WeightedTarget(v, w) for v, w in base.items() if w > 0])
