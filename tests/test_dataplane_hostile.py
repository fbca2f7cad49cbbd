"""Hostile HTTP at the gateway and a sidecar: refused at once, nothing forwarded, everyone else served.

Each proxy is a real process in front of a :class:`RecordingBackend`, which keeps every byte it is sent:
a refused request must leave it empty, and a good request right after must be the only thing it sees.

Negative controls: every case names how to break the check that refuses it (one of llhttp's checks
turned off, a parser that reads a header wrongly or swallows its error, a limit lifted), and
``test_the_check_is_what_refuses`` runs the same assertions against a gateway broken that way,
expecting them to fail. A case whose control passes proves nothing about its check.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshpipe.engines.local.dataplane import client
from support.dataplane import LOOPBACK, Processes, mesh_document
from support.recording_backend import RecordingBackend

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

BROKEN_PROXY = [sys.executable, str(Path(__file__).parent / "support" / "broken_proxy.py")]
HEADERS_TIMEOUT_MS = 1500
REQUEST_TIMEOUT_MS = 1500
# "At once": a refusal takes the proxy well under a millisecond; this bound only absorbs a loaded machine.
ANSWER_WITHIN_S = 3.0
TIMEOUTS = ["--request-headers-timeout-ms", str(HEADERS_TIMEOUT_MS), "--request-timeout-ms", str(REQUEST_TIMEOUT_MS)]


@dataclass
class Edge:
    kind: str
    port: int
    backend: RecordingBackend


def start_edge(procs: Processes, kind: str, backend: RecordingBackend, launcher: list[str] | None = None,
               extra_args: list[str] | None = None) -> int:
    """A gateway routing everything (any method) to ``backend``, or a sidecar whose app is ``backend``."""
    args = [*TIMEOUTS, *(extra_args or [])]
    if kind == "gateway":
        proxy = procs.proxy("gateway", launcher=launcher or (), extra_args=args)
        doc = mesh_document(1, routes={"app": [("v1", 100)]}, endpoints={"app": {"v1": [backend.port]}},
                            gateway_routes=[("r-all", "/", "app", False)])
        for service in doc["services"].values():
            service["route"]["method"] = None
        client.push_config(proxy.admin_port, doc)
        return int(proxy.ports["listen_port"])
    proxy = procs.proxy("sidecar", app_port=backend.port, service="app", version="v1", launcher=launcher or (),
                        extra_args=args)
    return int(proxy.ports["ingress_port"])


@pytest.fixture(scope="module")
def procs() -> Iterator[Processes]:
    with Processes() as p:
        yield p


@pytest.fixture(scope="module", params=["gateway", "sidecar"])
def edge(request: pytest.FixtureRequest, procs: Processes) -> Iterator[Edge]:
    with RecordingBackend() as backend:
        yield Edge(request.param, start_edge(procs, request.param, backend), backend)


# ---- talking to a proxy on a raw socket ----

def exchange(port: int, data: bytes, half_close: bool = False, within: float = ANSWER_WITHIN_S) -> bytes:
    """Send ``data``, read until the proxy closes; fail if it has not within ``within`` seconds."""
    with socket.create_connection((LOOPBACK, port), timeout=within) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        return read_until_closed(s, time.monotonic() + within)


def read_until_closed(s: socket.socket, deadline: float) -> bytes:
    raw = b""
    while True:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = s.recv(65536)
        except TimeoutError:
            raise AssertionError(f"no answer and no close in time; got {raw[:200]!r}") from None
        except ConnectionResetError:
            return raw
        if not data:
            return raw
        raw += data


def assert_answered(raw: bytes, status: int) -> None:
    assert raw.startswith(b"HTTP/1.1 %d " % status), f"expected {status}, got {raw[:300]!r}"
    assert b"\r\nconnection: close\r\n" in raw.lower()


def assert_serves_others(port: int, backend: RecordingBackend) -> None:
    """A good request right after is answered, and is the only thing the backend has seen."""
    assert backend.received == b"", f"the backend was sent {backend.received[:300]!r}"
    raw = exchange(port, b"GET /after HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"ok"), raw[:300]
    assert [r.target for r in backend.requests] == [b"/after"], backend.received[:300]
    assert backend.received.startswith(b"GET /after HTTP/1.1\r\n")


def assert_refused(port: int, backend: RecordingBackend, data: bytes, status: int, half_close: bool = False) -> None:
    backend.reset()
    assert_answered(exchange(port, data, half_close), status)
    assert_serves_others(port, backend)


# ---- the cases ----

POST = b"POST /smuggled HTTP/1.1\r\nHost: app\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    status: int
    broken: str | None  # how the negative control breaks the check (see support/broken_proxy.py)
    half_close: bool = False


CASES = [
    # request smuggling: two readings of where the body ends
    Case("content_length_and_chunked", POST + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
         400, "lenient_chunked_length"),
    Case("chunked_and_content_length", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG",
         400, "lenient_chunked_length"),
    Case("two_content_lengths", POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400,
         r"rewrite:Content-Length: 6\r\n=X-Dropped: 6\r\n"),
    Case("comma_joined_content_length", POST + b"Content-Length: 5, 6\r\n\r\nhello!", 400,
         "rewrite:Content-Length: 5, 6=Content-Length: 5"),
    Case("negative_content_length", POST + b"Content-Length: -1\r\n\r\n", 400, "silent"),
    Case("chunked_then_identity", POST + b"Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400,
         "lenient_transfer_encoding"),
    Case("transfer_encoding_without_chunked", POST + b"Transfer-Encoding: gzip\r\n\r\nhello", 400,
         "lenient_transfer_encoding"),
    Case("obs_fold", POST + b"Content-Length: 0\r\nX-A: 1\r\n folded\r\n\r\n", 400, "lenient_headers"),
    Case("space_before_colon", POST + b"Content-Length : 5\r\n\r\nhello", 400, "lenient_headers"),
    Case("nul_in_a_header", POST + b"X-A: 1\x002\r\nContent-Length: 0\r\n\r\n", 400, "lenient_headers"),
    Case("bare_lf", b"GET /smuggled HTTP/1.1\nHost: app\n\n", 400, "silent"),
    # chunk sizes and extensions
    Case("chunk_size_not_hex", CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n", 400, "silent"),
    Case("chunk_size_overflow", CHUNKED + b"f" * 20 + b"\r\nhello\r\n", 400, "silent"),
    Case("chunk_size_then_space", CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", 400, "lenient_spaces_after_chunk_size"),
    Case("chunk_extension_control_char", CHUNKED + b"5;\x01\r\nhello\r\n0\r\n\r\n", 400, "silent"),
    Case("chunk_extension_unterminated_quote", CHUNKED + b'5;a="b\r\nhello\r\n0\r\n\r\n', 400, "silent"),
    # sizes (Envoy: 60 KiB of request line and headers, 100 headers; 431)
    Case("request_line_70_kib", b"GET /smuggled?" + b"a" * 70 * 1024 + b" HTTP/1.1\r\nHost: app\r\n\r\n", 431,
         "--max-request-headers-kb=1000"),
    Case("header_70_kib", b"GET /smuggled HTTP/1.1\r\nHost: app\r\nX-Big: " + b"a" * 70 * 1024 + b"\r\n\r\n", 431,
         "--max-request-headers-kb=1000"),
    Case("head_that_never_ends", b"GET /smuggled HTTP/1.1\r\nHost: app\r\nX-Big: " + b"a" * 200 * 1024, 431,
         "--max-request-headers-kb=1000"),
    Case("header_101", b"GET /smuggled HTTP/1.1\r\nHost: app\r\n"
         + b"".join(b"X-H%d: 1\r\n" % i for i in range(100)) + b"\r\n", 431, "--max-headers-count=1000"),
    # methods, targets, versions, Host
    Case("method_with_a_space", b"GE T /smuggled HTTP/1.1\r\nHost: app\r\n\r\n", 400, "silent"),
    Case("unknown_method", b"FOO /smuggled HTTP/1.1\r\nHost: app\r\n\r\n", 400, "silent"),
    Case("lower_case_method", b"get /smuggled HTTP/1.1\r\nHost: app\r\n\r\n", 400, "silent"),
    Case("authority_form_target", b"GET app:80 HTTP/1.1\r\nHost: app\r\n\r\n", 400, "silent"),
    Case("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "silent"),
    Case("http_1_2", b"GET /smuggled HTTP/1.2\r\nHost: app\r\n\r\n", 400, "silent"),
    Case("http_2_0_in_http1_syntax", b"GET /smuggled HTTP/2.0\r\nHost: app\r\n\r\n", 505, "version"),
    Case("two_hosts", b"GET /smuggled HTTP/1.1\r\nHost: app\r\nHost: other\r\n\r\n", 400,
         "rewrite:Host: other=X-Host: other"),
    Case("no_host", b"GET /smuggled HTTP/1.1\r\nX-A: 1\r\n\r\n", 400, "rewrite:X-A: 1=Host: a"),
    # upgrades other than h2c (Envoy answers 403 when an upgrade is not configured)
    Case("websocket_upgrade", b"GET /smuggled HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
         b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 501,
         "rewrite:Upgrade: websocket=X-Upgrade: websocket"),
    Case("connect", b"CONNECT app:443 HTTP/1.1\r\nHost: app:443\r\n\r\n", 501, None),
    # a body shorter than its Content-Length, the client then half-closing
    Case("body_shorter_than_content_length", POST + b"Content-Length: 100\r\n\r\n" + b"x" * 10, 400,
         "rewrite:Content-Length: 100=Content-Length: 10", half_close=True),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request_is_refused_and_reaches_nothing(edge: Edge, case: Case) -> None:
    assert_refused(edge.port, edge.backend, case.data, case.status, case.half_close)


# ---- negative controls ----

@pytest.fixture(scope="module")
def broken_gateways(procs: Processes) -> Iterator[Callable[[str], Edge]]:
    """A gateway broken as a case says, one per way of breaking (started on first use)."""
    started: dict[str, Edge] = {}
    backends: list[RecordingBackend] = []

    def get(broken: str) -> Edge:
        if broken not in started:
            backend = RecordingBackend()
            backends.append(backend)
            if broken.startswith("--"):
                port = start_edge(procs, "gateway", backend, extra_args=broken.split("="))
            else:
                port = start_edge(procs, "gateway", backend, launcher=[*BROKEN_PROXY, broken])
            started[broken] = Edge("gateway", port, backend)
        return started[broken]

    yield get
    for backend in backends:
        backend.close()


CONTROLLED = [c for c in CASES if c.broken]


@pytest.mark.parametrize("case", CONTROLLED, ids=[c.name for c in CONTROLLED])
def test_the_check_is_what_refuses(broken_gateways: Callable[[str], Edge], case: Case) -> None:
    broken = broken_gateways(case.broken)  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        assert_refused(broken.port, broken.backend, case.data, case.status, case.half_close)


# ---- h2c: ignored, answered over HTTP/1.1 (as Envoy does) ----

H2C = (b"Host: app\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
       b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n")
H2C_CASES = {
    "get": (b"GET /h2c HTTP/1.1\r\n" + H2C + b"\r\n", b""),
    "post_with_content_length": (b"POST /h2c HTTP/1.1\r\n" + H2C + b"Content-Length: 5\r\n\r\nhello", b"hello"),
    "post_chunked": (b"POST /h2c HTTP/1.1\r\n" + H2C + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                     b"hello"),
}


def assert_h2c_ignored(port: int, backend: RecordingBackend, data: bytes, body: bytes) -> None:
    backend.reset()
    after = b"GET /after HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"
    raw = exchange(port, data + after)  # the request after it on the same connection is HTTP/1.1 too
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]
    assert raw.count(b"HTTP/1.1 200 ") == 2 and b" 101 " not in raw, raw[:600]
    first, second = backend.requests
    assert (first.target, first.body, second.target) == (b"/h2c", body, b"/after")
    for name in (b"upgrade", b"http2-settings", b"connection"):
        assert first.header(name) == [], f"{name!r} was forwarded: {first.headers}"


@pytest.mark.parametrize("kind", list(H2C_CASES))
def test_h2c_upgrade_is_ignored_and_answered_over_http11(edge: Edge, kind: str) -> None:
    assert_h2c_ignored(edge.port, edge.backend, *H2C_CASES[kind])


def test_h2c_control_refusing_the_upgrade_fails(broken_gateways: Callable[[str], Edge]) -> None:
    broken = broken_gateways("rewrite:Upgrade: h2c=Upgrade: h2x")  # an upgrade the proxy does not ignore
    with pytest.raises(AssertionError):
        assert_h2c_ignored(broken.port, broken.backend, *H2C_CASES["get"])


# ---- what goes upstream is written from the parser's reading, not copied ----

def test_framing_is_written_afresh(edge: Edge) -> None:
    edge.backend.reset()
    raw = exchange(edge.port, POST.replace(b"/smuggled", b"/framing") + b"Content-Length: 005\r\nX-Keep: 1\r\n"
                   b"Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n\r\nhello"
                   + CHUNKED.replace(b"/smuggled", b"/chunks") + b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"
                   + b"GET /after HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
    assert raw.count(b"HTTP/1.1 200 ") == 3, raw[:600]
    wire = edge.backend.received
    first, second, _ = edge.backend.requests
    assert first.header(b"content-length") == [b"5"] and first.body == b"hello"
    assert first.header(b"x-keep") == [b"1"]
    assert first.header(b"x-hop") == [] and first.header(b"keep-alive") == [], "Connection-named headers are hop-by-hop"
    assert second.header(b"transfer-encoding") == [b"chunked"] and second.body == b"hello"
    assert b"ext=1" not in wire and b"X-Trailer" not in wire, "chunk extensions and trailers stay here"


def test_connection_cannot_strip_end_to_end_headers(edge: Edge) -> None:
    edge.backend.reset()
    raw = exchange(edge.port, b"GET /named HTTP/1.1\r\nHost: app\r\nX-Request-Id: rid-1\r\nX-Hop: 1\r\n"
                   b"Connection: close, host, x-request-id, x-forwarded-for, X-Hop\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]
    (request,) = edge.backend.requests
    assert request.header(b"host") == [b"app"], "a Connection header names no end-to-end field (RFC 9110, 7.6.1)"
    assert request.header(b"x-request-id") == [b"rid-1"]
    if edge.kind == "gateway":  # the ingress adds the client's address, whatever Connection names
        assert request.header(b"x-forwarded-for") != []
    assert request.header(b"x-hop") == [], "a field Connection may name still goes"


def test_a_hundred_headers_pass(edge: Edge) -> None:
    edge.backend.reset()
    headers = b"Host: app\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(98)) + b"Connection: close\r\n"
    raw = exchange(edge.port, b"GET /hundred HTTP/1.1\r\n" + headers + b"\r\n")
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]
    assert [r.target for r in edge.backend.requests] == [b"/hundred"]


# ---- slow clients: bounded by the header and request timeouts (408) ----

def trickle(port: int, head: bytes, drip: bytes, every: float, for_at_most: float) -> tuple[bytes, float]:
    """Send ``head``, then ``drip`` a byte at a time; return the answer and when it came (s after ``head``)."""
    with socket.create_connection((LOOPBACK, port), timeout=for_at_most) as s:
        started = time.monotonic()
        s.sendall(head)
        s.settimeout(every)
        raw = b""
        for byte in (drip[i:i + 1] for i in range(len(drip))):
            if time.monotonic() - started > for_at_most:
                break
            try:
                s.sendall(byte)
                data = s.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            raw += data
            if data:
                break
        raw += read_until_closed(s, time.monotonic() + ANSWER_WITHIN_S)
        return raw, time.monotonic() - started


SLOW = {
    # a head sent a byte every 0.1 s never completes within the header timeout
    "headers": (b"GET /smuggled HTTP/1.1\r\n", b"X-Slow: " + b"a" * 200 + b"\r\n\r\n", HEADERS_TIMEOUT_MS,
                "--request-headers-timeout-ms=600000"),
    # a body sent a byte every 0.1 s: the proxy holds it, and stops waiting at the request timeout
    "body": (POST + b"Content-Length: 200\r\n\r\n", b"x" * 200, REQUEST_TIMEOUT_MS, "--request-timeout-ms=600000"),
}


def assert_cut_off(port: int, backend: RecordingBackend, head: bytes, drip: bytes, bound_ms: int) -> None:
    backend.reset()
    raw, after = trickle(port, head, drip, every=0.1, for_at_most=bound_ms / 1000 + 10)
    assert_answered(raw, 408)
    # Not before the bound, and well before the client would have finished (20 s at this pace); the
    # slack above the bound is for a loaded machine, not a measure of speed.
    assert bound_ms / 1000 - 0.05 <= after <= bound_ms / 1000 + 8, f"answered after {after:.2f} s"
    assert_serves_others(port, backend)


@pytest.mark.parametrize("part", list(SLOW))
def test_slow_client_is_cut_off_at_the_timeout(edge: Edge, part: str) -> None:
    head, drip, bound_ms, _ = SLOW[part]
    assert_cut_off(edge.port, edge.backend, head, drip, bound_ms)


@pytest.mark.parametrize("part", list(SLOW))
def test_slow_client_control_without_the_timeout_fails(broken_gateways: Callable[[str], Edge], part: str) -> None:
    head, drip, bound_ms, broken = SLOW[part]
    gateway = broken_gateways(broken)
    with pytest.raises(AssertionError):
        assert_cut_off(gateway.port, gateway.backend, head, drip, bound_ms)


def test_a_stalled_body_is_answered_408_and_reaches_nothing(edge: Edge) -> None:
    edge.backend.reset()
    raw = exchange(edge.port, POST + b"Content-Length: 100\r\n\r\n" + b"x" * 10,
                   within=REQUEST_TIMEOUT_MS / 1000 + ANSWER_WITHIN_S)
    assert_answered(raw, 408)
    assert_serves_others(edge.port, edge.backend)


# ---- absolute-form targets: routed by their path, never to their host ----

def test_absolute_form_at_the_gateway_goes_where_the_route_says(procs: Processes) -> None:
    with RecordingBackend() as backend, RecordingBackend() as victim:
        port = start_edge(procs, "gateway", backend)
        raw = exchange(port, b"GET http://127.0.0.1:%d/abs?x=1 HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"
                       % victim.port)
        assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]
        (forwarded,) = backend.requests
        assert forwarded.target == b"/abs?x=1"
        assert forwarded.header(b"host") == [b"127.0.0.1:%d" % victim.port]  # the target's authority (RFC 9112)
        assert victim.received == b"" and victim.connections == 0


# ---- many idle clients ----

IDLE = 1000


def assert_serves_with_idle_clients(port: int, backend: RecordingBackend) -> None:
    idle: list[socket.socket] = []
    try:
        for _ in range(IDLE):
            idle.append(socket.create_connection((LOOPBACK, port), timeout=5))
        idle[-1].sendall(b"GET /busy")  # one idle client has begun a request, too
        backend.reset()
        raw = exchange(port, b"GET /after HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", within=10)
        assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"ok"), raw[:300]
        assert [r.target for r in backend.requests] == [b"/after"]
    finally:
        for s in idle:
            s.close()


def test_a_thousand_idle_connections_do_not_stop_the_gateway(procs: Processes) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < IDLE + 200:  # this test's own sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, IDLE + 1000), hard))
    with RecordingBackend() as backend:
        assert_serves_with_idle_clients(start_edge(procs, "gateway", backend), backend)


def test_idle_connections_control_with_few_file_descriptors_fails(procs: Processes) -> None:
    with RecordingBackend() as backend:
        port = start_edge(procs, "gateway", backend, launcher=[*BROKEN_PROXY, "nofile:256"])
        with pytest.raises(AssertionError):
            assert_serves_with_idle_clients(port, backend)
