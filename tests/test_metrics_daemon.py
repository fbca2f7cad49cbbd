"""The daemon's /metrics and stats on a real local environment: known traffic through the gateway, the
page parsed with prometheus_client, counts checked exactly, the control plane's figures included."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from test_local_engine_e2e import ENV, LocalEnv, get, make_env  # noqa: F401 (make_env is a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

N = 30


def _samples(text: str) -> list:  # type: ignore[type-arg]
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def _sum(samples: list, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def _get(port: int, path: str, token: str | None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_environment_metrics_count_traffic_per_proxy_and_the_control_plane(make_env) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    env: LocalEnv = make_env(tasks=2)
    version = env.serve_backend()
    conn = http.client.HTTPConnection("127.0.0.1", env.ingress_port, timeout=10)
    for _ in range(N):
        assert get(env.ingress_port, "/backend/data", conn)[0] == 200
    conn.close()

    samples = _samples(env.engine.metrics(ENV))
    egress = f"cds_egress_demo_vn-hello-backend-{version}_http_80"
    ingress = f"cds_ingress_demo_vn-hello-backend-{version}_http_80"
    # The gateway sent every request to the version once; its two tasks' sidecars passed them all to their apps.
    assert _sum(samples, "envoy_cluster_upstream_rq_total", envoy_cluster_name=egress, proxy="gateway",
                service="hello-backend", version=version) == N
    per_task = {s.labels["proxy"]: s.value for s in samples
                if s.name == "envoy_cluster_upstream_rq_total" and s.labels.get("envoy_cluster_name") == ingress}
    assert sorted(per_task) == [f"hello-backend-{version}-1", f"hello-backend-{version}-2"]
    assert sum(per_task.values()) == N
    assert _sum(samples, "envoy_cluster_upstream_rq_time_count", envoy_cluster_name=egress) == N
    assert _sum(samples, "envoy_http_downstream_rq_total", proxy="gateway") == N
    # The control plane.
    assert _sum(samples, "meshpipe_pipeline_runs_total", service="hello-backend", outcome="Succeeded") == 1
    assert _sum(samples, "meshpipe_route_changes_total", service="hello-backend") == 1
    assert _sum(samples, "meshpipe_route_changes_total", service="") == 1  # the gateway route
    assert _sum(samples, "meshpipe_route_weight", service="hello-backend", version=version) == 100
    assert _sum(samples, "meshpipe_healthy_tasks", service="hello-backend", version=version) == 2
    assert _sum(samples, "meshpipe_task_restarts_total", service="hello-backend") == 0

    stats = env.engine.stats(ENV, "hello-backend")
    figures = stats.versions[version]
    assert figures.requests == N and figures.errors == 0 and figures.responses["2xx"] == N
    assert figures.p50_ms is not None and figures.p99_ms is not None
    assert 0 < figures.p50_ms <= figures.p99_ms


def test_scrape_token_opens_metrics_and_nothing_else(make_env) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    env: LocalEnv = make_env(tasks=1)
    target = env.engine.metrics_target(ENV)
    port = int(target["target"].rsplit(":", 1)[1])
    token = Path(target["credentials_file"]).read_text(encoding="utf-8").strip()
    status, text = _get(port, "/metrics", token)
    assert status == 200 and _sum(_samples(text), "envoy_server_live", proxy="gateway") == 1
    assert _get(port, "/v1/status", token)[0] == 401
    assert _get(port, "/metrics", None)[0] == 401
    assert _get(port, "/metrics", "wrong")[0] == 401


def test_stats_over_a_window_count_only_what_it_saw(make_env) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    import threading

    env: LocalEnv = make_env(tasks=1)
    version = env.serve_backend()
    conn = http.client.HTTPConnection("127.0.0.1", env.ingress_port, timeout=10)
    for _ in range(N):  # before the window
        assert get(env.ingress_port, "/backend/data", conn)[0] == 200
    found: list = []  # type: ignore[type-arg]
    measuring = threading.Thread(target=lambda: found.append(env.engine.stats(ENV, "hello-backend", 3.0)))
    measuring.start()
    import time

    time.sleep(1.0)  # well inside the window, on a loaded machine too
    for _ in range(7):
        assert get(env.ingress_port, "/backend/data", conn)[0] == 200
    measuring.join(timeout=20)
    conn.close()
    [windowed] = found
    assert windowed.window_s == 3.0
    assert windowed.versions[version].requests == 7 and windowed.versions[version].p99_ms is not None
    assert env.engine.stats(ENV, "hello-backend").versions[version].requests == N + 7  # since start: all
