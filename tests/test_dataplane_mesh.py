"""The original sample's system on one machine, with real processes: gateway, sidecars, the sample apps.

    client -> gateway /hello-service/hello/Bob -> hello-web sidecar -> hello-web app
           -> its sidecar's egress (http://hello-backend.demo.local/data) -> hello-backend sidecar -> app

Two hello-backend versions answer differently ("Hello" and "Yo"), so the page shows which one served.
A few stub apps reached through a second gateway route play a failing, a slow and a healthy endpoint.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from meshpipe.engines.local.dataplane import client
from meshpipe.errors import OperationError
from support.dataplane import (
    LOOPBACK,
    Processes,
    ProxyProcess,
    free_port,
    mesh_document,
    request,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

V1, V2, WEB = "e9d5f17a", "0badc0de", "66f2a19a"
GENERATIONS = itertools.count(1000)
HELLO = "/hello-service/hello/Bob"
SLOW_S = 10.0  # the slow stub's delay: far above every timeout below, so waiting for it shows plainly


@dataclass
class Mesh:
    procs: Processes
    gateway: ProxyProcess
    proxies: list[ProxyProcess]
    backend_ingress: dict[str, int]  # version -> its sidecar's ingress port
    stubs: dict[str, int]  # "ok" / "fail" / "slow" -> app port
    dead_port: int
    generation: int = field(default=0)

    @property
    def ingress_url(self) -> int:
        return self.gateway.ports["listen_port"]

    def push(self, backend: list[tuple[str, int]] | None, *, backend_endpoints: dict[str, list[int]] | None = None,
             flaky: list[tuple[str, int]] | None = None, flaky_endpoints: dict[str, list[int]] | None = None,
             **route_options: Any) -> dict[str, Any]:
        """Push one snapshot to every proxy, as the daemon does; returns it."""
        self.generation = next(GENERATIONS)
        doc = mesh_document(
            self.generation,
            routes={"hello-web": [(WEB, 100)], "hello-backend": backend, "flaky": flaky},
            endpoints={"hello-web": {WEB: [self.proxies[0].ports["ingress_port"]]},
                       "hello-backend": backend_endpoints if backend_endpoints is not None
                       else {v: [p] for v, p in self.backend_ingress.items()},
                       "flaky": flaky_endpoints or {}},
            gateway_routes=[("r-ingress-hello-service", "/hello-service", "hello-web", True),
                            ("r-flaky", "/flaky", "flaky", True),
                            ("r-backend", "/backend", "hello-backend", True)],
            **route_options)
        for proxy in [self.gateway, *self.proxies]:
            client.push_config(proxy.admin_port, doc)
        return doc


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with Processes() as procs:
        backend_ingress = {}
        backend_proxies = []
        for version, greeting, message in ((V1, "Hello", "Welcome to our world!"), (V2, "Yo", "Have a great day!")):
            _, app = procs.sample("hello_backend", ["-g", greeting, "-m", message])
            sidecar = procs.proxy("sidecar", app_port=app, service="hello-backend", version=version)
            backend_ingress[version] = sidecar.ports["ingress_port"]
            backend_proxies.append(sidecar)
        web_egress = free_port()
        _, web_app = procs.sample("hello_web", ["-b", "http://hello-backend.demo.local/data"],
                                  env={"HTTP_PROXY": f"http://{LOOPBACK}:{web_egress}", "NO_PROXY": ""})
        web_sidecar = procs.proxy("sidecar", app_port=web_app, egress_port=web_egress, service="hello-web",
                                  version=WEB, allowed_backends=["hello-backend.demo.local"])
        stubs = {"ok": procs.stub("ok")[1], "fail": procs.stub("fail", status=503)[1],
                 "slow": procs.stub("slow", delay=SLOW_S)[1]}
        gateway = procs.proxy("gateway")
        m = Mesh(procs, gateway, [web_sidecar, *backend_proxies], backend_ingress, stubs, free_port())
        m.push([(V1, 100)])
        yield m


def _greeting(port: int, conn: http.client.HTTPConnection | None = None) -> str:
    resp = request(port, HELLO, conn=conn)
    assert resp.status == 200, resp.body
    text = resp.body.decode()
    assert " Bob<br>" in text
    return text.split(" ", 1)[0]


def test_the_seed_walkthrough_request(mesh: Mesh) -> None:
    resp = request(mesh.ingress_url, HELLO)
    assert resp.status == 200
    assert resp.body.decode().startswith("Hello Bob<br>Welcome to our world!<br><br>timestamp: ")
    assert resp.headers["x-meshpipe-version"] == WEB  # the hello-web sidecar says which version served


def test_gateway_rewrites_the_prefix_and_adds_edge_headers(mesh: Mesh) -> None:
    mesh.push([(V1, 100)], flaky=[("0000000a", 100)], flaky_endpoints={"0000000a": [mesh.stubs["ok"]]})
    seen = request(mesh.ingress_url, "/flaky/some/path?q=1").json()
    assert seen["path"] == "/some/path?q=1"
    assert request(mesh.ingress_url, "/flaky").json()["path"] == "/"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert len(seen["headers"]["x-request-id"]) == 36
    kept = request(mesh.ingress_url, "/flaky/x", headers={"x-request-id": "abc"}).json()
    assert kept["headers"]["x-request-id"] == "abc"


def test_gateway_refusals(mesh: Mesh) -> None:
    mesh.push([(V1, 100)], flaky=None)
    nothing = request(mesh.ingress_url, "/nowhere")
    assert (nothing.status, nothing.headers["x-meshpipe-error"]) == (404, "no_gateway_route")
    no_route = request(mesh.ingress_url, "/flaky/x")
    assert (no_route.status, no_route.headers["x-meshpipe-error"]) == (503, "no_route")
    assert b"flaky.demo.local has no route yet" in no_route.body


def test_no_healthy_endpoint_is_a_503(mesh: Mesh) -> None:
    mesh.push([(V2, 100)], backend_endpoints={V1: [mesh.backend_ingress[V1]]})
    resp = request(mesh.ingress_url, "/backend/data")
    assert (resp.status, resp.headers["x-meshpipe-error"]) == (503, "no_healthy_endpoint")
    assert b"no healthy endpoint for hello-backend version 0badc0de" in resp.body
    mesh.push([(V1, 100)])
    assert request(mesh.ingress_url, "/backend/data").status == 200


def test_canary_split_follows_the_weights(mesh: Mesh) -> None:
    mesh.push([(V1, 90), (V2, 10)])
    conn = http.client.HTTPConnection(LOOPBACK, mesh.ingress_url, timeout=10)
    try:
        greetings = [_greeting(0, conn) for _ in range(400)]
    finally:
        conn.close()
    new = greetings.count("Yo")
    assert greetings.count("Hello") + new == 400
    assert 20 <= new <= 65  # 40 expected; more than 3 standard deviations either way fails
    web_stats = client.stats(mesh.proxies[0].admin_port)["upstreams"]["hello-backend"]
    assert web_stats[V2]["requests"] >= new


def test_a_pushed_route_applies_to_the_very_next_request(mesh: Mesh) -> None:
    conn = http.client.HTTPConnection(LOOPBACK, mesh.ingress_url, timeout=10)
    try:
        for i in range(10):
            version, greeting = (V2, "Yo") if i % 2 == 0 else (V1, "Hello")
            mesh.push([(version, 100)])
            assert _greeting(0, conn) == greeting
            assert client.server_info(mesh.gateway.admin_port)["generation"] == mesh.generation
    finally:
        conn.close()


def test_config_pushes_under_load_lose_no_request(mesh: Mesh) -> None:
    mesh.push([(V1, 100)])
    stop = threading.Event()
    results: list[tuple[int, int]] = []  # (ok, failed) per worker
    errors: list[str] = []

    def worker() -> None:
        ok = failed = 0
        conn = http.client.HTTPConnection(LOOPBACK, mesh.ingress_url, timeout=10)
        try:
            for _ in range(3000):  # bounded in count; the pushes below bound it in time
                if stop.is_set():
                    break
                try:
                    resp = request(0, HELLO, conn=conn)
                    if resp.status == 200 and b" Bob<br>" in resp.body:
                        ok += 1
                    else:
                        failed += 1
                        errors.append(f"{resp.status} {resp.body[:200]!r}")
                except (OSError, http.client.HTTPException) as exc:
                    failed += 1
                    errors.append(repr(exc))
                    conn.close()
                    conn = http.client.HTTPConnection(LOOPBACK, mesh.ingress_url, timeout=10)
        finally:
            conn.close()
            results.append((ok, failed))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        for i in range(20):
            if i % 2 == 0:  # everything to V2, and V1's endpoints leave the config (their pools retire)
                mesh.push([(V2, 100)], backend_endpoints={V2: [mesh.backend_ingress[V2]]})
            else:
                mesh.push([(V1, 50), (V2, 50)])
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    total_ok = sum(ok for ok, _ in results)
    assert errors == []
    assert sum(failed for _, failed in results) == 0
    assert total_ok >= 100  # the pushes really happened under load


def test_connect_failure_is_retried_on_another_endpoint(mesh: Mesh) -> None:
    mesh.push([(V1, 100)], flaky=[("dead0001", 100)],
              flaky_endpoints={"dead0001": [mesh.dead_port, mesh.stubs["ok"]]})
    for _ in range(6):  # round robin starts on the dead endpoint every other request
        assert request(mesh.ingress_url, "/flaky/x").status == 200
    stats = client.stats(mesh.gateway.admin_port)["upstreams"]["flaky"]["dead0001"]
    assert stats["errors"] == 3 and stats["retries"] == 3 and stats["requests"] == 9


def test_5xx_is_retried_for_get_but_not_for_post(mesh: Mesh) -> None:
    mesh.push([(V1, 100)], flaky=[("fail0001", 100)],
              flaky_endpoints={"fail0001": [mesh.stubs["fail"], mesh.stubs["ok"]]})
    for _ in range(4):
        resp = request(mesh.ingress_url, "/flaky/x")
        assert resp.status == 200 and resp.headers["x-stub-name"] == "ok"
    # The route matches GET only (as the original sample's routes do): other methods are not routed at all.
    assert request(mesh.ingress_url, "/flaky/x", method="POST", body=b"{}").status == 404
    mesh.push([(V1, 100)], flaky=[("fail0001", 100)], flaky_endpoints={"fail0001": [mesh.stubs["fail"]]},
              max_retries=2)
    resp = request(mesh.ingress_url, "/flaky/x")
    assert resp.status == 503 and resp.headers["x-stub-name"] == "fail"  # the upstream's own answer, last try
    stats = client.stats(mesh.gateway.admin_port)["upstreams"]["flaky"]["fail0001"]
    assert stats["retries"] >= 2


def test_per_try_timeout_moves_on_and_the_overall_timeout_gives_504(mesh: Mesh) -> None:
    mesh.push([(V1, 100)], flaky=[("slow0001", 100)],
              flaky_endpoints={"slow0001": [mesh.stubs["slow"], mesh.stubs["ok"]]},
              per_retry_timeout_ms=300, timeout_ms=2500)
    for _ in range(2):
        started = time.monotonic()
        resp = request(mesh.ingress_url, "/flaky/x")
        assert resp.status == 200 and resp.headers["x-stub-name"] == "ok"
        assert time.monotonic() - started < SLOW_S / 2  # it did not wait for the slow endpoint
    mesh.push([(V1, 100)], flaky=[("slow0002", 100)], flaky_endpoints={"slow0002": [mesh.stubs["slow"]]},
              per_retry_timeout_ms=0, timeout_ms=500)
    started = time.monotonic()
    resp = request(mesh.ingress_url, "/flaky/x")
    elapsed = time.monotonic() - started
    assert (resp.status, resp.headers["x-meshpipe-error"]) == (504, "upstream_timeout")
    assert 0.45 < elapsed < SLOW_S / 2  # not before the 500 ms timeout; not after the slow answer either


def test_bad_config_is_refused_and_the_old_one_kept(mesh: Mesh) -> None:
    good = mesh.push([(V1, 100)])
    bad = json.loads(json.dumps(good))
    bad["generation"] = good["generation"] + 1
    bad["services"]["hello-backend.demo.local"]["route"]["targets"][0]["weight"] = 500
    with pytest.raises(OperationError, match="weight: must be an integer 0-100"):
        client.push_config(mesh.gateway.admin_port, bad)
    conn = http.client.HTTPConnection(LOOPBACK, mesh.gateway.admin_port, timeout=5)
    try:
        conn.request("PUT", "/config", body=b"{not json")
        resp = conn.getresponse()
        assert resp.status == 400 and b"not JSON" in resp.read()
    finally:
        conn.close()
    assert client.get_config(mesh.gateway.admin_port) == good
    assert _greeting(mesh.ingress_url) == "Hello"


def test_older_generations_are_ignored(mesh: Mesh) -> None:
    newer = mesh.push([(V2, 100)])
    older = mesh_document(newer["generation"] - 1, routes={"hello-web": [(WEB, 100)], "hello-backend": [(V1, 100)]},
                          endpoints={})
    client.push_config(mesh.proxies[0].admin_port, older)  # accepted as a no-op, not an error
    assert client.get_config(mesh.proxies[0].admin_port) == newer
    assert _greeting(mesh.ingress_url) == "Yo"
    mesh.push([(V1, 100)])


def test_config_pushes_keep_pooled_connections_to_kept_endpoints(mesh: Mesh) -> None:
    v1_admin = mesh.proxies[1].admin_port  # hello-backend V1's sidecar
    v1_endpoint = f"127.0.0.1:{mesh.backend_ingress[V1]}"
    conn = http.client.HTTPConnection(LOOPBACK, mesh.ingress_url, timeout=10)
    try:
        mesh.push([(V1, 100)])
        for _ in range(5):
            assert request(0, "/backend/data", conn=conn).status == 200
        opened = client.stats(v1_admin)["listeners"]["ingress"]["connections_total"]
        for _ in range(5):
            mesh.push([(V1, 100)])
            assert request(0, "/backend/data", conn=conn).status == 200
        assert client.stats(v1_admin)["listeners"]["ingress"]["connections_total"] == opened
        assert client.stats(mesh.gateway.admin_port)["upstream_pools"][v1_endpoint] >= 1
        mesh.push([(V2, 100)], backend_endpoints={V2: [mesh.backend_ingress[V2]]})
        assert request(0, "/backend/data", conn=conn).status == 200
        assert v1_endpoint not in client.stats(mesh.gateway.admin_port)["upstream_pools"]  # retired
        deadline = time.monotonic() + 3
        while client.stats(v1_admin)["listeners"]["ingress"]["connections_active"] and time.monotonic() < deadline:
            time.sleep(0.02)  # the closes travel to the other side
        assert client.stats(v1_admin)["listeners"]["ingress"]["connections_active"] == 0
    finally:
        conn.close()
        mesh.push([(V1, 100)])
