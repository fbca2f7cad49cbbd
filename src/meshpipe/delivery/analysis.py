"""A rollout window's figures and verdict, from two snapshots of the proxies' counters. Pure.

The proxies count, per service and version, the requests they sent, those answered 5xx (or failed on
the connection) and a fixed-bucket latency histogram, all cumulative since the proxy started. A
snapshot holds those counters per proxy; a window is the difference between the snapshot taken when
it began and the one taken when it ends. A proxy that is new, or whose counters went down (it
restarted), counts whole: everything it saw happened inside the window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshpipe.delivery.policy import Analysis

# Below this many milliseconds a p99 difference never fails the relative check: the histogram's buckets
# are 12 % wide and a loaded machine moves a fast service's p99 by a few milliseconds.
RELATIVE_P99_FLOOR_MS = 10.0


@dataclass(frozen=True)
class Counters:
    """Cumulative counters of one version as one proxy saw it."""

    requests: int = 0
    errors: int = 0
    buckets: Mapping[int, int] = field(default_factory=dict)  # histogram bucket index -> count

    def minus(self, before: Counters) -> Counters:
        return Counters(self.requests - before.requests, max(0, self.errors - before.errors),
                        {i: n - before.buckets.get(i, 0) for i, n in self.buckets.items()
                         if n - before.buckets.get(i, 0) > 0})

    def plus(self, other: Counters) -> Counters:
        merged = dict(self.buckets)
        for i, n in other.buckets.items():
            merged[i] = merged.get(i, 0) + n
        return Counters(self.requests + other.requests, self.errors + other.errors, merged)

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors,
                "buckets": {str(i): n for i, n in sorted(self.buckets.items())}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Counters:
        return cls(int(data.get("requests") or 0), int(data.get("errors") or 0),
                   {int(i): int(n) for i, n in (data.get("buckets") or {}).items()})


# proxy (its admin port) -> version -> counters
Snapshot = Mapping[str, Mapping[str, Counters]]


def snapshot_to_json(snapshot: Snapshot) -> dict[str, Any]:
    return {proxy: {v: c.to_json() for v, c in versions.items()} for proxy, versions in snapshot.items()}


def snapshot_from_json(data: Mapping[str, Any]) -> dict[str, dict[str, Counters]]:
    return {proxy: {v: Counters.from_json(c) for v, c in versions.items()} for proxy, versions in data.items()}


def window_counters(before: Snapshot, after: Snapshot) -> dict[str, Counters]:
    """Per version, what happened between two snapshots, summed over every proxy."""
    total: dict[str, Counters] = {}
    for proxy, versions in after.items():
        earlier = before.get(proxy, {})
        for version, now in versions.items():
            was = earlier.get(version)
            delta = now if was is None or now.requests < was.requests else now.minus(was)
            total[version] = total.get(version, Counters()).plus(delta)
    return total


def quantile_ms(buckets: Mapping[int, int], q: float, bounds: Sequence[float]) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (the proxies' own rule); None when empty.
    The last bucket (slower than every bound) is reported as the last bound."""
    count = sum(buckets.values())
    if not count:
        return None
    rank = q * count
    seen = 0
    for i in sorted(buckets):
        seen += buckets[i]
        if seen >= rank:
            return float(bounds[min(i, len(bounds) - 1)])
    return float(bounds[-1])


@dataclass(frozen=True)
class Figures:
    """One version's traffic in one window."""

    requests: int
    errors: int
    p99_ms: float | None

    @property
    def success_rate(self) -> float | None:
        """Percent of answers that were not 5xx; None without requests."""
        return 100.0 * (self.requests - self.errors) / self.requests if self.requests else None

    def to_json(self) -> dict[str, Any]:
        rate = self.success_rate
        return {"requests": self.requests, "errors": self.errors,
                "success_rate": None if rate is None else round(rate, 3), "p99_ms": self.p99_ms}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Figures:
        p99 = data.get("p99_ms")
        return cls(int(data["requests"]), int(data["errors"]), None if p99 is None else float(p99))


def figures(counters: Counters | None, bounds: Sequence[float]) -> Figures:
    if counters is None:
        return Figures(0, 0, None)
    return Figures(max(0, counters.requests), min(counters.errors, max(0, counters.requests)),
                   quantile_ms(counters.buckets, 0.99, bounds))


def combined(window: Mapping[str, Counters], versions: Sequence[str], bounds: Sequence[float]) -> Figures:
    """Several versions as one (the base versions of a rollout, against which the candidate is compared)."""
    total = Counters()
    for v in versions:
        if v in window:
            total = total.plus(window[v])
    return figures(total, bounds)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: tuple[str, ...]  # why it failed, or what was seen when it passed
    # Too few requests to judge: neither passed nor failed (``passed`` is False). The step holds.
    inconclusive: bool = False


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def _pct(value: float) -> str:
    return f"{value:.1f} %" if value < 99.95 or value == 100 else f"{value:.2f} %"


def judge(candidate: Figures, stable: Figures, reference_p99: float | None, analysis: Analysis,
          failed_webhooks: Sequence[str] = ()) -> Verdict:
    """Whether the candidate passed a window. ``stable`` is the base versions' traffic in the same window;
    ``reference_p99`` the stable p99 of an earlier window, used when the stable version had no traffic
    (blue-green after the switch). ``failed_webhooks`` are the messages of rollout webhooks that failed."""
    fails: list[str] = []
    seen: list[str] = []
    if candidate.requests < analysis.min_requests:
        # No traffic is no evidence either way: the window is inconclusive, whatever its few requests
        # showed, unless a webhook failed (a check that does not need traffic).
        webhooks = [f"webhook {m}" for m in failed_webhooks]
        if webhooks:
            return Verdict(False, tuple(webhooks))
        return Verdict(False, (f"only {candidate.requests} request(s) to the new version in the window; at least "
                               f"{analysis.min_requests} needed to judge it",), inconclusive=True)
    rate = candidate.success_rate
    if rate is not None:
        text = f"success rate {_pct(rate)} ({candidate.errors} of {candidate.requests} answers 5xx)"
        if rate < analysis.min_success_rate:
            fails.append(f"{text}, below the {analysis.min_success_rate:g} % allowed")
        else:
            seen.append(text)
    p99 = candidate.p99_ms
    if p99 is not None:
        if analysis.max_p99_ms is not None and p99 > analysis.max_p99_ms:
            fails.append(f"p99 latency {_ms(p99)}, above the {analysis.max_p99_ms:g} ms allowed")
        base_p99 = stable.p99_ms if stable.p99_ms is not None else reference_p99
        limit = analysis.max_p99_increase_percent
        if base_p99 is not None and limit is not None:
            allowed = base_p99 * (1 + limit / 100)
            if p99 > allowed and p99 - base_p99 > RELATIVE_P99_FLOOR_MS:
                fails.append(f"p99 latency {_ms(p99)}, {100 * (p99 / base_p99 - 1):.0f} % above the stable "
                             f"version's {_ms(base_p99)} (at most +{limit:g} % allowed)")
            else:
                seen.append(f"p99 {_ms(p99)} (stable {_ms(base_p99)})")
        elif not fails:
            seen.append(f"p99 {_ms(p99)}")
    if candidate.requests == 0 and not fails:
        seen.append("no requests: nothing to judge")
    fails += [f"webhook {m}" for m in failed_webhooks]
    return Verdict(not fails, tuple(fails or seen))
