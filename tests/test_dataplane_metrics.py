"""Latency histograms and counters of the proxies (pure)."""

from __future__ import annotations

import random

from meshpipe.engines.local.dataplane.metrics import BUCKET_BOUNDS_MS, LatencyHistogram, Metrics


def test_quantiles_are_within_a_bucket_of_the_truth() -> None:
    rnd = random.Random(3)
    values = [rnd.lognormvariate(0.0, 1.0) for _ in range(20_000)]  # ms, long tail
    hist = LatencyHistogram()
    for v in values:
        hist.record(v)
    values.sort()
    for q in (0.5, 0.99):
        true = values[int(q * len(values)) - 1]
        got = hist.quantile(q)
        assert got is not None
        assert true <= got <= true * 1.13, (q, true, got)
    assert hist.count == 20_000 and hist.max_ms == values[-1]


def test_empty_and_extreme_values() -> None:
    hist = LatencyHistogram()
    assert hist.summary() == {"p50_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    hist.record(0.0)
    hist.record(10 * BUCKET_BOUNDS_MS[-1])  # beyond the last bucket: still counted, reported as the max
    assert hist.quantile(0.5) == BUCKET_BOUNDS_MS[0]  # the upper bound of the first bucket
    assert hist.quantile(1.0) == 10 * BUCKET_BOUNDS_MS[-1]
    assert len(hist.counts) == len(BUCKET_BOUNDS_MS) + 1  # bounded whatever is recorded


def test_snapshot_groups_upstreams_by_service_and_version() -> None:
    metrics = Metrics()
    metrics.upstream("hello-backend", "e9d5f17a").requests += 3
    metrics.upstream("hello-backend", "0badc0de").errors += 1
    metrics.listener("egress").requests += 4
    snap = metrics.snapshot()
    assert snap["upstreams"]["hello-backend"]["e9d5f17a"]["requests"] == 3
    assert snap["upstreams"]["hello-backend"]["0badc0de"]["errors"] == 1
    assert snap["listeners"]["egress"]["requests"] == 4
    assert snap["app"] is None
