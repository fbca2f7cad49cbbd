"""Merging proxies' histograms and counters (pure): a service's p99 is its traffic's, not its worst proxy's."""

from __future__ import annotations

import itertools
import random
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from meshpipe.engines.local.dataplane.metrics import (
    BUCKET_BOUNDS_MS,
    ENVOY_BOUNDS_MS,
    LatencyHistogram,
    UpstreamStats,
    histogram_of,
)
from meshpipe.engines.local.observe.metrics_view import (
    ControlFigures,
    ProxyScrape,
    SeriesRecorder,
    by_version,
    exposition,
    service_stats,
)


def _proxy(name: str, service: str, version: str, latencies_ms: list[float], fives: int = 0) -> ProxyScrape:
    stats = UpstreamStats()
    for ms in latencies_ms:
        stats.requests += 1
        stats.by_class[2] += 1
        stats.latency.record(ms)
    stats.by_class[2] -= fives
    stats.by_class[5] += fives
    stats.errors += fives
    cluster = {"name": f"cds_egress_demo_vn-{service}-{version}_http_80", "direction": "egress",
               "service": service, "version": version, **stats.raw()}
    raw: dict[str, Any] = {"mode": "sidecar", "service": "caller", "version": "c0ffee00", "mesh": "demo",
                           "node": "vn-caller-c0ffee00", "state": "LIVE", "uptime_s": 1.0,
                           "bucket_count": len(BUCKET_BOUNDS_MS), "listeners": {}, "clusters": [cluster]}
    return ProxyScrape(name, 1, raw)


def test_every_envoy_bound_is_a_bucket_bound_and_steps_stay_fine() -> None:
    assert set(ENVOY_BOUNDS_MS) <= set(BUCKET_BOUNDS_MS)
    assert all(b / a <= 1.12 for a, b in itertools.pairwise(BUCKET_BOUNDS_MS))


def test_envoy_buckets_count_what_is_at_or_below_each_bound() -> None:
    rnd = random.Random(5)
    values = [rnd.lognormvariate(2.0, 2.0) for _ in range(5000)] + [0.5, 1.0, 25.0]  # some exactly on a bound
    hist = LatencyHistogram()
    for v in values:
        hist.record(v)
    for bound, cumulative in hist.envoy_buckets():
        assert cumulative == sum(1 for v in values if v <= bound), bound


def test_the_p99_of_merged_histograms_is_the_services_not_the_worst_proxys() -> None:
    # One proxy sent 1000 fast requests, another 5 slow ones: 0.5 % are slow, so the p99 is fast.
    fast, slow = _proxy("a", "hello", "v1", [1.0] * 1000), _proxy("b", "hello", "v1", [500.0] * 5)
    merged = by_version([fast, slow])[("hello", "v1")]
    assert merged.requests == 1005
    assert merged.latency.quantile(0.99) <= 1.0
    assert histogram_of(slow.raw["clusters"][0]["latency"]).quantile(0.99) >= 500 * 0.9  # the worst proxy's
    stats = service_stats([fast, slow], "hello", proxies=3)
    assert stats["versions"]["v1"]["p99_ms"] <= 1.0 and stats["versions"]["v1"]["requests"] == 1005
    assert (stats["proxies"], stats["answered"]) == (3, 2)


def test_merging_buckets_equals_recording_everything_in_one_place() -> None:
    rnd = random.Random(11)
    parts = [[rnd.expovariate(1 / (5 * (i + 1))) for _ in range(300)] for i in range(4)]
    merged = by_version([_proxy(str(i), "s", "v", p) for i, p in enumerate(parts)])[("s", "v")].latency
    whole = LatencyHistogram()
    for p in parts:
        for v in p:
            whole.record(v)
    assert merged.counts == whole.counts and merged.count == whole.count
    for q in (0.5, 0.9, 0.99):
        assert merged.quantile(q) == whole.quantile(q)


def test_environment_page_labels_each_series_and_adds_the_control_plane() -> None:
    page = exposition([_proxy("hello-web-66f2a19a-1", "hello", "v1", [2.0] * 7, fives=2)],
                      ControlFigures(pipeline_runs={("hello", "Succeeded"): 3, ("hello", "Failed"): 1},
                                     route_changes={"hello": 4, "": 1},
                                     task_restarts={("hello", "v1", "hello-v1-1"): 2},
                                     weights={("hello", "v1"): 100}, config_generation=12)).decode()
    samples = [s for f in text_string_to_metric_families(page) for s in f.samples]

    def one(name: str, **labels: str) -> float:
        found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
        assert len(found) == 1, (name, labels)
        return found[0]

    cluster = "cds_egress_demo_vn-hello-v1_http_80"
    assert one("envoy_cluster_upstream_rq_total", proxy="hello-web-66f2a19a-1", service="hello", version="v1",
               envoy_cluster_name=cluster, appmesh_virtual_node="vn-caller-c0ffee00") == 7
    assert one("envoy_cluster_upstream_rq_xx", envoy_response_code_class="5", service="hello") == 2
    assert one("envoy_server_live", service="caller", version="c0ffee00") == 1  # the proxy's own labels
    assert one("meshpipe_pipeline_runs_total", service="hello", outcome="Failed") == 1
    assert one("meshpipe_route_changes_total", service="hello") == 4
    assert one("meshpipe_task_restarts_total", task="hello-v1-1") == 2
    assert one("meshpipe_route_weight", service="hello", version="v1") == 100
    assert one("meshpipe_config_generation") == 12


def test_series_recorder_turns_scrapes_into_rates_and_interval_quantiles() -> None:
    rec = SeriesRecorder(window_s=60)
    rec.add([_proxy("a", "s", "v", [1.0] * 10)], at=0.0)  # the baseline: no point yet
    assert rec.series("s") == {}
    rec.add([_proxy("a", "s", "v", [1.0] * 10 + [100.0] * 20, fives=5)], at=2.0)
    (point,) = rec.series("s")["v"]
    assert (point.requests, point.rps) == (20, 10.0)
    assert point.success_rate == 0.75
    assert point.p50_ms is not None and point.p50_ms >= 90  # only this interval's (slow) requests
    rec.add([_proxy("a", "s", "v", [3.0] * 4)], at=4.0)  # the proxy restarted: it counts from zero
    assert rec.series("s")["v"][-1].requests == 4
    rec.add([_proxy("a", "s", "v", [3.0] * 4)], at=100.0)
    assert [p.at for p in rec.series("s")["v"]] == [100.0]  # older points left the window


def test_prometheus_client_is_loaded_only_by_an_exposition() -> None:
    """A proxy nobody scrapes, the daemon until someone asks for /metrics, and the command line never load it."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import meshpipe.engines.local.dataplane.process, meshpipe.engines.local.dataplane.admin\n"
            "import meshpipe.engines.local.control.daemon, meshpipe.cli.app\n"
            "assert 'prometheus_client' not in sys.modules, 'loaded at import'\n"
            "from meshpipe.engines.local.dataplane.proxy import DataPlane\n"
            "from meshpipe.engines.local.observe.metrics_view import ControlFigures, exposition\n"
            "exposition([], ControlFigures())\n"
            "assert 'prometheus_client' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
