"""Counters and latency histograms of a proxy, answered by ``GET /stats`` (JSON for people),
``GET /stats/raw`` (every bucket, for the daemon to merge) and ``GET /stats/prometheus``.

Recording is a few integer additions and one ``bisect`` per request; quantiles are computed only
when someone asks. Histograms have fixed buckets, so memory stays bounded however long a proxy runs,
and histograms of different proxies merge by adding their buckets.

The buckets refine Envoy's default histogram bounds (0.5 ms … 1 h): every Envoy bound is one of ours,
with finer steps between, about 12 % apart. Quantiles come from the fine buckets (within ~6 %); the
Prometheus exposition sums them into exactly Envoy's buckets, so dashboards written for Envoy work.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping
from typing import Any

# Envoy's default histogram bucket bounds, in milliseconds (its ``histogram_bucket_settings`` default).
ENVOY_BOUNDS_MS: tuple[float, ...] = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                                      60000, 300000, 600000, 1800000, 3600000)
_FINEST_MS = 0.05
_STEP = 1.12


def _bucket_bounds() -> tuple[float, ...]:
    """Upper bounds in ms from 50 us to 1 h: each Envoy bound, and geometric steps of at most 12 % between."""
    bounds: list[float] = []
    low = _FINEST_MS
    for high in ENVOY_BOUNDS_MS:
        steps = max(1, math.ceil(math.log(high / low) / math.log(_STEP)))
        for k in range(1, steps):
            bounds.append(round(low * (high / low) ** (k / steps), 4))
        bounds.append(float(high))
        low = high
    return tuple(bounds)


BUCKET_BOUNDS_MS = _bucket_bounds()
# Where each Envoy bound sits among ours: Envoy bucket i counts our buckets 0..ENVOY_INDEX[i].
ENVOY_INDEX: tuple[int, ...] = tuple(BUCKET_BOUNDS_MS.index(float(b)) for b in ENVOY_BOUNDS_MS)


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

    # ---- every bucket, for merging across proxies ----

    def raw(self) -> dict[str, Any]:
        """Sparse: only buckets that hold something (most of the ~170 are empty)."""
        return {"count": self.count, "sum_ms": self.sum_ms, "max_ms": self.max_ms,
                "buckets": {str(i): n for i, n in enumerate(self.counts) if n}}

    def add_raw(self, raw: Mapping[str, Any]) -> None:
        """Add another histogram's :meth:`raw` form to this one."""
        for key, n in (raw.get("buckets") or {}).items():
            i = int(key)
            if 0 <= i < len(self.counts):
                self.counts[i] += int(n)
        self.count += int(raw.get("count") or 0)
        self.sum_ms += float(raw.get("sum_ms") or 0.0)
        self.max_ms = max(self.max_ms, float(raw.get("max_ms") or 0.0))

    def subtract(self, earlier: LatencyHistogram) -> LatencyHistogram:
        """What was recorded since ``earlier`` (the same source, read before); a reset keeps all of self."""
        if earlier.count > self.count or any(b > a for a, b in zip(self.counts, earlier.counts, strict=True)):
            return self  # the source restarted: everything it holds is new
        out = LatencyHistogram()
        out.counts = [a - b for a, b in zip(self.counts, earlier.counts, strict=True)]
        out.count = self.count - earlier.count
        out.sum_ms = max(0.0, self.sum_ms - earlier.sum_ms)
        out.max_ms = self.max_ms  # the largest since the start: an upper bound for the interval
        return out

    def envoy_buckets(self) -> list[tuple[float, int]]:
        """Cumulative counts at Envoy's bounds (``le`` in ms), without +Inf (that is ``count``)."""
        out = []
        running = 0
        last = -1
        for bound, index in zip(ENVOY_BOUNDS_MS, ENVOY_INDEX, strict=True):
            running += sum(self.counts[last + 1:index + 1])
            last = index
            out.append((bound, running))
        return out


def histogram_of(raw: Mapping[str, Any]) -> LatencyHistogram:
    hist = LatencyHistogram()
    hist.add_raw(raw)
    return hist


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class UpstreamStats:
    """One version of one service as seen by this proxy (an Envoy cluster). ``requests`` counts
    attempts (a retried request counts once per try); ``errors`` counts tries answered 5xx or failed on
    the connection; ``by_class`` counts tries by response class (index = status // 100; a try that
    failed without an answer counts as 5xx, as Envoy charges it)."""

    __slots__ = ("by_class", "errors", "latency", "requests", "retries", "timeouts")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.retries = 0
        self.timeouts = 0
        self.by_class = [0] * 6
        self.latency = LatencyHistogram()

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "retries": self.retries,
                "timeouts": self.timeouts, **self.latency.summary(),
                # Raw histogram counts (bucket index -> count, non-zero only): windows are diffed from them.
                "buckets": {str(i): n for i, n in enumerate(self.latency.counts) if n}}

    def raw(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "retries": self.retries,
                "timeouts": self.timeouts, "by_class": list(self.by_class), "latency": self.latency.raw()}


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

    def raw(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "local_replies": self.local_replies,
                "downstream_resets": self.downstream_resets, "by_class": list(self.by_class),
                "connections_active": self.connections_active, "connections_total": self.connections_total,
                "latency": self.latency.raw()}


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
