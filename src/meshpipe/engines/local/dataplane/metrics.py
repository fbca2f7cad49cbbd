"""Counters and latency histograms of a proxy, answered as JSON by ``GET /stats``.

Recording is a few integer additions and one ``bisect`` per request; quantiles are computed only
when someone asks. Histograms have fixed buckets, so memory stays bounded however long a proxy runs.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any


def _bucket_bounds() -> tuple[float, ...]:
    # Upper bounds in ms: 50 us to 120 s, about 12 % apart, which keeps a quantile within ~6 %.
    bounds = []
    b = 0.05
    while b < 120_000:
        bounds.append(round(b, 4))
        b *= 1.12
    return tuple(bounds)


BUCKET_BOUNDS_MS = _bucket_bounds()


class LatencyHistogram:
    __slots__ = ("count", "counts", "max_ms", "sum_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKET_BOUNDS_MS) + 1)  # the last bucket holds everything slower
        self.count = 0
        self.sum_ms = 0.0
        self.max_ms = 0.0

    def record(self, ms: float) -> None:
        self.counts[bisect_left(BUCKET_BOUNDS_MS, ms)] += 1
        self.count += 1
        self.sum_ms += ms
        if ms > self.max_ms:
            self.max_ms = ms

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the ``q`` quantile (None when nothing was recorded)."""
        if not self.count:
            return None
        rank = q * self.count
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank and n:
                return min(BUCKET_BOUNDS_MS[i], self.max_ms) if i < len(BUCKET_BOUNDS_MS) else self.max_ms
        return self.max_ms

    def summary(self) -> dict[str, float | None]:
        return {
            "p50_ms": _round(self.quantile(0.50)),
            "p99_ms": _round(self.quantile(0.99)),
            "max_ms": _round(self.max_ms if self.count else None),
            "mean_ms": _round(self.sum_ms / self.count if self.count else None),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class UpstreamStats:
    """One version of one service as seen by this proxy. ``requests`` counts attempts (a retried
    request counts once per try); ``errors`` counts tries answered 5xx or failed on the connection."""

    __slots__ = ("errors", "latency", "requests", "retries", "timeouts")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.retries = 0
        self.timeouts = 0
        self.latency = LatencyHistogram()

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "retries": self.retries,
                "timeouts": self.timeouts, **self.latency.summary(),
                # Raw histogram counts (bucket index -> count, non-zero only): windows are diffed from them.
                "buckets": {str(i): n for i, n in enumerate(self.latency.counts) if n}}


class ListenerStats:
    """Everything a listener answered, including its own error replies."""

    __slots__ = ("by_class", "connections_active", "connections_total", "downstream_resets", "errors",
                 "latency", "local_replies", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0  # answered 5xx (by an upstream or locally) or cut short
        self.local_replies = 0
        self.downstream_resets = 0
        self.by_class = [0] * 6  # index = status // 100
        self.connections_total = 0
        self.connections_active = 0
        self.latency = LatencyHistogram()

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "errors": self.errors, "local_replies": self.local_replies,
            "downstream_resets": self.downstream_resets,
            "responses": {f"{i}xx": n for i, n in enumerate(self.by_class) if i},
            "connections_active": self.connections_active, "connections_total": self.connections_total,
            **self.latency.summary(),
        }


class Metrics:
    """What one proxy saw. ``upstreams`` holds what it sent to other services (gateway, egress), so
    summing them over every proxy of an environment counts each request once per hop; a sidecar's
    own app (behind its ingress) is counted apart, in ``app``."""

    __slots__ = ("app", "listeners", "upstreams")

    def __init__(self) -> None:
        self.listeners: dict[str, ListenerStats] = {}
        self.upstreams: dict[tuple[str, str], UpstreamStats] = {}
        self.app: UpstreamStats | None = None

    def listener(self, name: str) -> ListenerStats:
        stats = self.listeners.get(name)
        if stats is None:
            stats = self.listeners[name] = ListenerStats()
        return stats

    def upstream(self, service: str, version: str) -> UpstreamStats:
        key = (service, version)
        stats = self.upstreams.get(key)
        if stats is None:
            stats = self.upstreams[key] = UpstreamStats()
        return stats

    def snapshot(self) -> dict[str, Any]:
        """``{"listeners": {name: {...}}, "upstreams": {service: {version: {...}}}, "app": {...} | None}``."""
        upstreams: dict[str, dict[str, Any]] = {}
        for (service, version), stats in sorted(self.upstreams.items()):
            upstreams.setdefault(service, {})[version] = stats.as_dict()
        return {"listeners": {name: s.as_dict() for name, s in sorted(self.listeners.items())},
                "upstreams": upstreams, "app": self.app.as_dict() if self.app is not None else None}
