"""A sidecar as a real process in front of a real app: ingress, egress (DROP_ALL), HTTP/1.1 details.

Two tasks: ``hello-backend`` (stub app + sidecar) and ``hello-web`` (stub app whose HTTP_PROXY is its
sidecar's egress, declaring hello-backend.demo.local as its only backend).
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from meshpipe.engines.local.dataplane import client
from support.dataplane import (
    LOOPBACK,
    Processes,
    ProxyProcess,
    free_port,
    mesh_document,
    request,
    served,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

BACKEND_VS = "hello-backend.demo.local"
VERSION = "e9d5f17a"
WEB_VERSION = "66f2a19a"
GENERATIONS = itertools.count(100)


@dataclass
class Task:
    app_port: int
    sidecar: ProxyProcess

    @property
    def ingress(self) -> int:
        return self.sidecar.ports["ingress_port"]

    @property
    def egress(self) -> int:
        return self.sidecar.ports["egress_port"]

    @property
    def admin(self) -> int:
        return self.sidecar.admin_port


@dataclass
class Mesh:
    procs: Processes
    backend: Task
    web: Task


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with Processes() as procs:
        _, backend_app = procs.stub("backend")
        backend = Task(backend_app, procs.proxy(
            "sidecar", app_port=backend_app, service="hello-backend", version=VERSION))
        web_egress = free_port()
        _, web_app = procs.stub("web", backend=f"http://{BACKEND_VS}",
                                env={"HTTP_PROXY": f"http://{LOOPBACK}:{web_egress}", "NO_PROXY": ""})
        web = Task(web_app, procs.proxy(
            "sidecar", app_port=web_app, egress_port=web_egress, service="hello-web", version=WEB_VERSION,
            allowed_backends=[BACKEND_VS]))
        doc = mesh_document(next(GENERATIONS), routes={"hello-backend": [(VERSION, 100)], "hello-web": None},
                            endpoints={"hello-backend": {VERSION: [backend.ingress]}})
        for task in (backend, web):
            client.push_config(task.admin, doc)
        yield Mesh(procs, backend, web)


def _upstream(admin: int, service: str, version: str) -> dict[str, int]:
    return client.stats(admin)["upstreams"].get(service, {}).get(version, {"requests": 0, "errors": 0})


# ---- ingress ----

def test_ingress_forwards_to_the_app_and_counts(mesh: Mesh) -> None:
    before = client.stats(mesh.backend.admin)
    for i in range(5):
        resp = request(mesh.backend.ingress, f"/data?i={i}")
        assert resp.status == 200
        assert resp.headers["x-meshpipe-version"] == VERSION
        assert resp.json()["path"] == f"/data?i={i}"
    resp = request(mesh.backend.ingress, "/anything?status=503")
    assert resp.status == 503
    after = client.stats(mesh.backend.admin)
    up_before, up_after = before["app"], after["app"]
    assert (up_after["service"], up_after["version"]) == ("hello-backend", VERSION)
    assert after["upstreams"] == {}  # the app is not another service: per-hop sums count a request once
    assert up_after["requests"] - up_before["requests"] == 6
    assert up_after["errors"] - up_before["errors"] == 1  # the 503; the ingress never retries
    assert after["listeners"]["ingress"]["requests"] - before["listeners"]["ingress"]["requests"] == 6
    assert after["listeners"]["ingress"]["responses"]["5xx"] - before["listeners"]["ingress"]["responses"]["5xx"] == 1
    assert up_after["p50_ms"] is not None and up_after["p99_ms"] >= up_after["p50_ms"]


def test_ingress_keeps_client_connections_alive(mesh: Mesh) -> None:
    conn = http.client.HTTPConnection(LOOPBACK, mesh.backend.ingress, timeout=5)
    try:
        pids = {request(0, f"/k{i}", conn=conn).json()["pid"] for i in range(20)}
        assert len(pids) == 1
        before = client.stats(mesh.backend.admin)["listeners"]["ingress"]["connections_total"]
        for i in range(5):
            assert request(0, f"/k{i}", conn=conn).status == 200
        assert client.stats(mesh.backend.admin)["listeners"]["ingress"]["connections_total"] == before
    finally:
        conn.close()


def test_request_bodies_are_forwarded_intact(mesh: Mesh) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB: streamed, not kept for a retry
    resp = request(mesh.backend.ingress, "/upload", method="POST", body=body, timeout=20)
    assert resp.status == 200
    assert resp.json()["body_length"] == len(body)
    assert resp.json()["body_sha256"] == hashlib.sha256(body).hexdigest()

    pieces = [b"alpha-" * 1000, b"", b"beta" * 7, b"gamma" * 30000]
    conn = http.client.HTTPConnection(LOOPBACK, mesh.backend.ingress, timeout=20)
    try:
        conn.request("POST", "/chunked", body=iter([p for p in pieces if p]), encode_chunked=True)
        got = conn.getresponse()
        answer = got.read()
    finally:
        conn.close()
    assert got.status == 200
    joined = b"".join(pieces)
    assert b'"body_sha256": "%s"' % hashlib.sha256(joined).hexdigest().encode() in answer


def test_large_responses_stream_through(mesh: Mesh) -> None:
    size = 20 * 1024 * 1024
    resp = request(mesh.backend.ingress, f"/bytes?size={size}", timeout=30)
    assert resp.status == 200
    assert len(resp.body) == size and resp.body[:4] == b"mmmm"


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_a_slow_client_holds_the_upstream_back(mesh: Mesh) -> None:
    pid = mesh.backend.sidecar.popen.pid
    before = _rss_kib(pid)
    size = 300 * 1024 * 1024  # far more than the proxy may hold: it must stop reading the app
    with socket.create_connection((LOOPBACK, mesh.backend.ingress), timeout=5) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"GET /bytes?size=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
        received = 0
        while received < 1024 * 1024:
            received += len(s.recv(65536))
        time.sleep(1.5)  # the app could send everything by now; the proxy must not take it in
        grown_mib = (_rss_kib(pid) - before) / 1024
    assert grown_mib < 64, f"the sidecar grew by {grown_mib:.0f} MiB while its client was not reading"
    assert request(mesh.backend.ingress, "/after-slow-client").status == 200


def _raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data``, read until the proxy closes the connection (bounded by ``timeout``)."""
    chunks = []
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        s.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        else:
            pytest.fail("the proxy did not close the connection")
    return b"".join(chunks)


def test_http10_client_gets_a_plain_response_and_a_close(mesh: Mesh) -> None:
    raw = _raw_exchange(mesh.backend.ingress, b"GET /old HTTP/1.0\r\nHost: x\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
    assert b"transfer-encoding" not in head.lower()  # an HTTP/1.0 client cannot read chunks
    assert b'"path": "/old"' in body


def test_connection_close_is_honoured(mesh: Mesh) -> None:
    raw = _raw_exchange(mesh.backend.ingress, b"GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200") and b'"path": "/bye"' in raw


def test_pipelined_requests_are_answered_in_order(mesh: Mesh) -> None:
    data = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3))
    raw = _raw_exchange(mesh.backend.ingress, data + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    order = [raw.find(b'"path": "/p%d"' % i) for i in range(3)] + [raw.find(b'"path": "/last"')]
    assert all(pos > 0 for pos in order) and order == sorted(order)
    assert raw.count(b"HTTP/1.1 200") == 4


def test_head_requests_get_no_body_and_keep_the_connection(mesh: Mesh) -> None:
    conn = http.client.HTTPConnection(LOOPBACK, mesh.backend.ingress, timeout=5)
    try:
        head = request(0, "/h", method="HEAD", conn=conn)
        assert head.status == 200 and head.body == b""
        assert request(0, "/after-head", conn=conn).json()["path"] == "/after-head"
    finally:
        conn.close()


def test_expect_continue_is_answered_by_the_proxy(mesh: Mesh) -> None:
    with socket.create_connection((LOOPBACK, mesh.backend.ingress), timeout=5) as s:
        s.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"hello")
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200") and b'"body_length": 5' in reply


def test_malformed_requests_get_400(mesh: Mesh) -> None:
    raw = _raw_exchange(mesh.backend.ingress, b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400")
    assert b"x-meshpipe-error: bad_request" in raw


def test_client_leaving_mid_request_does_not_hurt_the_proxy(mesh: Mesh) -> None:
    before = client.stats(mesh.backend.admin)["listeners"]["ingress"]["downstream_resets"]
    first = served(mesh.backend.app_port)
    with socket.create_connection((LOOPBACK, mesh.backend.ingress), timeout=5) as s:
        # More body than the proxy holds back (64 KiB), so the upstream try starts before the body is whole.
        s.sendall(b"POST /partial HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 70000)
        wait_until(lambda: served(mesh.backend.app_port) == first + 1, "the upstream try started with part of the body")
    with socket.create_connection((LOOPBACK, mesh.backend.ingress), timeout=5) as s:
        s.sendall(b"GET /anything?sleep=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: served(mesh.backend.app_port) == first + 2, "the app is working on the request")
    wait_until(lambda: client.stats(mesh.backend.admin)["listeners"]["ingress"]["downstream_resets"] >= before + 2,
               "the proxy counted both resets", timeout=5)
    assert client.stats(mesh.backend.admin)["listeners"]["ingress"]["downstream_resets"] == before + 2
    assert request(mesh.backend.ingress, "/still-fine").status == 200


def test_upstream_dying_mid_response_closes_the_client_connection(mesh: Mesh) -> None:
    conn = http.client.HTTPConnection(LOOPBACK, mesh.backend.ingress, timeout=5)
    try:
        conn.request("GET", "/cut")
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises(http.client.IncompleteRead) as err:
            resp.read()
        assert err.value.partial == b"0123456789"
    finally:
        conn.close()
    assert request(mesh.backend.ingress, "/after-cut").status == 200


def test_upstream_closing_before_answering_is_a_502(mesh: Mesh) -> None:
    resp = request(mesh.backend.ingress, "/drop")
    assert resp.status == 502
    assert resp.headers["x-meshpipe-error"] == "upstream_reset"


def test_app_not_listening_is_a_503(mesh: Mesh) -> None:
    sidecar = mesh.procs.proxy("sidecar", app_port=free_port(), service="hello-backend", version="0badc0de")
    try:
        resp = request(sidecar.ports["ingress_port"], "/data")
        assert resp.status == 503
        assert resp.headers["x-meshpipe-error"] == "upstream_connect_failure"
        assert client.stats(sidecar.admin_port)["app"]["errors"] == 1
    finally:
        mesh.procs.stop(sidecar.popen)


# ---- egress ----

def test_egress_absolute_form_reaches_the_backend_sidecar(mesh: Mesh) -> None:
    served_before = served(mesh.backend.app_port)
    ingress_before = client.stats(mesh.backend.admin)["listeners"]["ingress"]["requests"]
    egress_before = _upstream(mesh.web.admin, "hello-backend", VERSION)["requests"]
    resp = request(mesh.web.egress, f"http://{BACKEND_VS}/data?x=1")
    assert resp.status == 200
    assert resp.json()["path"] == "/data?x=1"
    assert resp.json()["headers"]["host"] == BACKEND_VS
    assert resp.headers["x-meshpipe-version"] == VERSION
    assert served(mesh.backend.app_port) == served_before + 1
    assert client.stats(mesh.backend.admin)["listeners"]["ingress"]["requests"] == ingress_before + 1
    assert _upstream(mesh.web.admin, "hello-backend", VERSION)["requests"] == egress_before + 1


def test_egress_origin_form_with_host_header(mesh: Mesh) -> None:
    resp = request(mesh.web.egress, "/data", headers={"Host": f"{BACKEND_VS}:80"})
    assert resp.status == 200 and resp.json()["path"] == "/data"


def test_app_reaches_its_backend_through_its_sidecar(mesh: Mesh) -> None:
    resp = request(mesh.web.ingress, "/call?path=/data")
    assert resp.status == 200
    answer = resp.json()
    assert answer["backend_status"] == 200 and answer["backend_version"] == VERSION
    assert resp.headers["x-meshpipe-version"] == WEB_VERSION


@pytest.mark.parametrize("target", ["http://example.com/", "http://hello-web.demo.local/",
                                    "http://127.0.0.1:{app}/anything", "http://localhost:{app}/anything"])
def test_egress_refuses_undeclared_backends_without_sending_anything(mesh: Mesh, target: str) -> None:
    served_before = served(mesh.backend.app_port)
    resp = request(mesh.web.egress, target.format(app=mesh.backend.app_port))
    assert resp.status == 403
    assert resp.headers["x-meshpipe-error"] == "egress_denied"
    assert b"DROP_ALL" in resp.body and BACKEND_VS.encode() in resp.body
    assert served(mesh.backend.app_port) == served_before  # the app behind that address saw nothing


def test_egress_refuses_connect_tunnels(mesh: Mesh) -> None:
    raw = _raw_exchange(mesh.web.egress, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 501")
