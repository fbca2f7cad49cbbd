"""Prometheus exposition of real proxies: known traffic in, the text parsed with prometheus_client's parser.

    client -> gateway /slow -> slow's sidecar -> stub app answering after 30 ms
                      /fast -> fast's two sidecars (round robin) -> stub apps
                      /broken -> broken's sidecar -> stub app answering 500 (retried twice)

Counts are checked exactly against the requests sent; latency histograms against the delays and the
latencies measured by the client (a proxy's time for a request is never longer than the client's).
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshpipe.engines.local.dataplane import client
from meshpipe.engines.local.dataplane.metrics import ENVOY_BOUNDS_MS
from support.dataplane import Processes, ProxyProcess, mesh_document, request

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SLOW, FAST, BROKEN = "5103a1aa", "fa57fa57", "b0b0b0b0"
DELAY_S = 0.03
N_SLOW, N_FAST, N_BROKEN = 20, 40, 5
PORT = 8080  # the listener port the manifests declare (names the clusters)


@dataclass
class Scene:
    gateway: ProxyProcess
    sidecars: dict[str, list[ProxyProcess]]
    slow_latencies_ms: list[float]


def _send(port: int, path: str, n: int) -> list[float]:
    """``n`` GETs on one keep-alive connection; each one's latency in ms as the client saw it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    took = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            request(port, path, conn=conn)
            took.append((time.perf_counter() - start) * 1000)
    finally:
        conn.close()
    return took


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    with Processes() as procs:
        _, slow_app = procs.stub("slow", delay=DELAY_S)
        fast_apps = [procs.stub(f"fast{i}")[1] for i in range(2)]
        _, broken_app = procs.stub("broken", status=500)
        sidecars = {
            "slow": [procs.proxy("sidecar", app_port=slow_app, service="slow", version=SLOW)],
            "fast": [procs.proxy("sidecar", app_port=p, service="fast", version=FAST) for p in fast_apps],
            "broken": [procs.proxy("sidecar", app_port=broken_app, service="broken", version=BROKEN)],
        }
        gateway = procs.proxy("gateway")
        doc = mesh_document(
            7, routes={"slow": [(SLOW, 100)], "fast": [(FAST, 100)], "broken": [(BROKEN, 100)]},
            endpoints={svc: {ver: [p.ports["ingress_port"] for p in sidecars[svc]]}
                       for svc, ver in (("slow", SLOW), ("fast", FAST), ("broken", BROKEN))},
            gateway_routes=[(f"r-{s}", f"/{s}", s, True) for s in ("slow", "fast", "broken")])
        doc["listener_ports"] = {"slow": {SLOW: PORT}, "fast": {FAST: PORT}, "broken": {BROKEN: PORT}}
        for proxy in [gateway, *(p for ps in sidecars.values() for p in ps)]:
            client.push_config(proxy.admin_port, doc)
        port = gateway.ports["listen_port"]
        slow = _send(port, "/slow/x", N_SLOW)
        _send(port, "/fast/x", N_FAST)
        _send(port, "/broken/x", N_BROKEN)
        yield Scene(gateway, sidecars, slow)


def scrape(proxy: ProxyProcess, path: str = "/stats/prometheus") -> dict[str, Any]:
    """Family name -> family, parsed by prometheus_client from the proxy's page."""
    resp = request(proxy.admin_port, path)
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(resp.body.decode())}


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    """The one sample named ``sample`` whose labels include ``labels``."""
    found = [s.value for family in families.values() for s in family.samples
             if s.name == sample and labels.items() <= s.labels.items()]
    assert len(found) == 1, (sample, labels, found)
    return float(found[0])


def buckets(families: dict[str, Any], name: str, **labels: str) -> dict[str, float]:
    family = families[name]
    return {s.labels["le"]: s.value for s in family.samples
            if s.name == f"{name}_bucket" and labels.items() <= s.labels.items()}


def cluster(direction: str, service: str, version: str) -> str:
    return f"cds_{direction}_demo_vn-{service}-{version}_http_{PORT}"


def test_gateway_counts_every_request_exactly(scene: Scene) -> None:
    page = scrape(scene.gateway)
    gw = {"appmesh_mesh": "demo", "appmesh_virtual_gateway": "vg-ingress"}
    assert page["envoy_cluster_upstream_rq"].type == "counter"
    assert value(page, "envoy_cluster_upstream_rq_total", envoy_cluster_name=cluster("egress", "slow", SLOW),
                 **gw) == N_SLOW
    assert value(page, "envoy_cluster_upstream_rq_total", envoy_cluster_name=cluster("egress", "fast", FAST)) == N_FAST
    # 500 is retried twice (GET, max_retries 2): three tries per request, every one a 5xx.
    broken = cluster("egress", "broken", BROKEN)
    assert value(page, "envoy_cluster_upstream_rq_total", envoy_cluster_name=broken) == 3 * N_BROKEN
    assert value(page, "envoy_cluster_upstream_rq_xx", envoy_cluster_name=broken, envoy_response_code_class="5") \
        == 3 * N_BROKEN
    assert value(page, "envoy_cluster_upstream_rq_xx", envoy_cluster_name=broken, envoy_response_code_class="2") == 0
    assert value(page, "envoy_cluster_upstream_rq_retry", envoy_cluster_name=broken) == 2 * N_BROKEN
    assert value(page, "envoy_cluster_upstream_rq_xx", envoy_cluster_name=cluster("egress", "fast", FAST),
                 envoy_response_code_class="2") == N_FAST
    # The listener: every request once, by the class the client got.
    http_labels = {"envoy_http_conn_manager_prefix": "ingress", **gw}
    assert value(page, "envoy_http_downstream_rq_total", **http_labels) == N_SLOW + N_FAST + N_BROKEN
    assert value(page, "envoy_http_downstream_rq_xx", envoy_response_code_class="2", **http_labels) == N_SLOW + N_FAST
    assert value(page, "envoy_http_downstream_rq_xx", envoy_response_code_class="5", **http_labels) == N_BROKEN
    assert value(page, "envoy_http_downstream_cx_total", **http_labels) == 3  # one keep-alive connection per batch
    assert value(page, "envoy_server_live", **gw) == 1


def test_sidecars_count_what_reached_their_app(scene: Scene) -> None:
    slow = scrape(scene.sidecars["slow"][0])
    node = {"appmesh_mesh": "demo", "appmesh_virtual_node": f"vn-slow-{SLOW}"}
    assert value(slow, "envoy_cluster_upstream_rq_total", envoy_cluster_name=cluster("ingress", "slow", SLOW),
                 **node) == N_SLOW
    assert value(slow, "envoy_http_downstream_rq_total", envoy_http_conn_manager_prefix="ingress", **node) == N_SLOW
    assert value(slow, "envoy_http_downstream_rq_total", envoy_http_conn_manager_prefix="egress", **node) == 0
    # Round robin over fast's two tasks: exactly half each.
    for sidecar in scene.sidecars["fast"]:
        page = scrape(sidecar)
        assert value(page, "envoy_cluster_upstream_rq_total",
                     envoy_cluster_name=cluster("ingress", "fast", FAST)) == N_FAST / 2


def test_latency_histograms_have_envoys_buckets_and_the_measured_latencies(scene: Scene) -> None:
    for proxy, name, labels in (
            (scene.gateway, "envoy_cluster_upstream_rq_time", {"envoy_cluster_name": cluster("egress", "slow", SLOW)}),
            (scene.sidecars["slow"][0], "envoy_cluster_upstream_rq_time",
             {"envoy_cluster_name": cluster("ingress", "slow", SLOW)}),
            (scene.sidecars["slow"][0], "envoy_http_downstream_rq_time", {"envoy_http_conn_manager_prefix": "ingress"})):
        page = scrape(proxy)
        assert page[name].type == "histogram"
        got = buckets(page, name, **labels)
        assert [float(le) for le in got if le != "+Inf"] == [float(b) for b in ENVOY_BOUNDS_MS]
        assert got["+Inf"] == N_SLOW == value(page, f"{name}_count", **labels)
        counts = [got[le] for le in got]
        assert counts == sorted(counts)  # cumulative
        for le, cumulative in got.items():
            bound = float(le)
            if bound < DELAY_S * 1000:
                assert cumulative == 0, (le, cumulative)  # the app sleeps 30 ms before it answers
            # The proxy's time for a request is inside the client's, so at least as many fall under a bound.
            assert cumulative >= sum(1 for ms in scene.slow_latencies_ms if ms <= bound), (le, cumulative)
        total_ms = value(page, f"{name}_sum", **labels)
        assert N_SLOW * DELAY_S * 1000 <= total_ms <= sum(scene.slow_latencies_ms)


def test_the_envoy_query_form_and_the_raw_form(scene: Scene) -> None:
    page = scrape(scene.gateway, "/stats?format=prometheus")
    assert value(page, "envoy_cluster_upstream_rq_total", envoy_cluster_name=cluster("egress", "fast", FAST)) == N_FAST
    raw = request(scene.gateway.admin_port, "/stats/raw").json()
    by_name = {c["name"]: c for c in raw["clusters"]}
    slow = by_name[cluster("egress", "slow", SLOW)]
    assert (slow["service"], slow["version"], slow["direction"], slow["requests"]) == ("slow", SLOW, "egress", N_SLOW)
    assert sum(slow["latency"]["buckets"].values()) == N_SLOW
