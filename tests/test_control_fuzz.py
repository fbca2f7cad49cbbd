"""The control API against bad input: random methods, paths, bodies, sizes and tokens sent to a real
daemon on 127.0.0.1. Every answer is 2xx or 4xx, the daemon stays up and answers, and what it keeps
(services, their repos, its open files and threads) stays consistent. Processes it started are killed by
pid at the end, even when the test fails."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as stx

from meshpipe.engines.local.control.httpapi import MAX_BODY_BYTES
from meshpipe.engines.local.engine import LocalEngine
from meshpipe.engines.local.state.daemonfiles import read_daemon_file
from meshpipe.engines.local.state.options import LocalOptions
from meshpipe.engines.local.tasks import processes as procs
from meshpipe.mesh.routing import NAME_RE

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ENV = "fuzz"


class Daemon:
    def __init__(self, engine: LocalEngine) -> None:
        self.engine = engine
        data = read_daemon_file(engine.paths(ENV).daemon_json)
        assert data is not None
        self.pid, self.port, self.token = int(data["pid"]), int(data["control_port"]), str(data["token"])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("fuzz-home")
    old = os.environ.get("MESHPIPE_HOME")
    os.environ["MESHPIPE_HOME"] = str(home)
    engine = LocalEngine(home=home, options=LocalOptions(tasks_per_version=1, health_time_scale=0.2))
    seen: set[int] = set()
    try:
        engine.env_create(ENV)
        engine.pipeline_create(ENV, "svc")
        seen.update(engine.running_pids(ENV))
        yield Daemon(engine)
    finally:
        try:
            if engine.paths(ENV).exists():
                seen.update(engine.running_pids(ENV))
                engine.env_delete(ENV)
        finally:
            procs.kill_all([(pid, None) for pid in seen if procs.is_running(pid)], timeout=3.0)
            if old is None:
                os.environ.pop("MESHPIPE_HOME", None)
            else:
                os.environ["MESHPIPE_HOME"] = old


def send(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None,
         declared_length: int | None = None) -> tuple[int, bytes]:
    """One raw HTTP/1.1 exchange (anything may be sent); (status, body), status 0 when none came."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if "Transfer-Encoding" not in headers and (body is not None or declared_length is not None):
        lines.append(f"Content-Length: {declared_length if declared_length is not None else len(body or b'')}")
    raw = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + (body or b"")
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        # The server may answer (413) and close before reading everything.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(65536):
                chunks.append(data)
    answer = b"".join(chunks)
    status_line = answer.split(b"\r\n", 1)[0].split()
    status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
    return status, answer.partition(b"\r\n\r\n")[2]


TEMPLATES = ["/v1/status", "/v1/config", "/v1/pipelines", "/v1/pipelines/{}", "/v1/pipelines/{}/runs",
             "/v1/pipelines/{}/runs/{}", "/v1/push", "/v1/routes/{}", "/v1/gateway-routes", "/v1/gateway-routes/{}",
             "/v1/services/{}/versions", "/v1/services/{}/versions/{}", "/v1/services/{}/stats", "/v1/shutdown",
             "/", "/v2/status", "/v1/{}"]
SEGMENTS = stx.one_of(
    stx.sampled_from(["svc", "hello", "..", "../..", "latest", "e9d5f17a", "\x00", "a" * 5000, "", "%", "svc/../x",
                      "20260101-120000-a1b2c3", "r-ingress", "Ω", "null"]),
    stx.text(max_size=40))
JSON_VALUES = stx.recursive(
    stx.none() | stx.booleans() | stx.integers() | stx.floats(allow_nan=True) | stx.text(max_size=30),
    lambda inner: stx.lists(inner, max_size=4) | stx.dictionaries(
        stx.sampled_from(["service", "ref", "old", "new", "targets", "version", "weight", "prefix",
                          "rewrite_prefix", "x"]) | stx.text(max_size=8), inner, max_size=5),
    max_leaves=12)
BODIES = stx.one_of(
    stx.none(), stx.binary(max_size=300), JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    stx.sampled_from([b"[" * 100_000, b"{" * 5000, b"\xff\xfe", b'{"service": "svc", "ref": "refs/heads/main", '
                      b'"new": "' + b"0" * 40 + b'"}', b'{"targets": [{"version": "e9d5f17a", "weight": 100}]}']))


@stx.composite
def requests(draw: Any, token: str) -> tuple[str, str, dict[str, str], bytes | None]:
    template = draw(stx.sampled_from(TEMPLATES))
    path = template.format(*(quote(draw(SEGMENTS), safe="") for _ in range(template.count("{}"))))
    if draw(stx.booleans()):
        path += "?" + quote(draw(stx.text(max_size=20)), safe="=&")
    method = draw(stx.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "FOO"]))
    auth = draw(stx.sampled_from(["right", "wrong", "none", "odd"]))
    headers = {"right": {"Authorization": f"Bearer {token}"}, "wrong": {"Authorization": "Bearer nope"},
               "none": {}, "odd": {"Authorization": "Bearer \udcff\udcfe"}}[auth]
    if auth == "right" and method == "POST" and path.startswith("/v1/shutdown"):
        method = "GET"  # the one call that is meant to stop the daemon
    if draw(stx.booleans()):
        headers = {**headers, "Content-Type": draw(stx.sampled_from(["application/json", "text/plain", "x/\x7f"]))}
    return method, path, headers, draw(BODIES)


def test_random_requests_get_2xx_or_4xx_and_leave_the_daemon_consistent(daemon: Daemon) -> None:
    fds_before = len(os.listdir(f"/proc/{daemon.pid}/fd"))
    answers: list[int] = []

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(requests(daemon.token))
    def check(request: tuple[str, str, dict[str, str], bytes | None]) -> None:
        method, path, headers, body = request
        status, text = send(daemon.port, method, path, headers, body)
        answers.append(status)
        assert 200 <= status < 500, (method, path, headers, body and body[:200], status, text[:300])
        if status >= 400 and method != "HEAD" and text.startswith(b"{"):
            error = json.loads(text).get("error")
            assert error is None or error["message"], text

    check()
    # Up, the same process, answering; nothing half-made: every service has its repo and no repo is extra.
    assert procs.is_running(daemon.pid)
    status = daemon.engine.status(ENV)
    assert status["daemon"]["pid"] == daemon.pid
    repos = {p.name for p in daemon.engine.paths(ENV).repos.iterdir()}
    assert repos == {f"{s['name']}-cfg.git" for s in status["services"]}
    assert len(os.listdir(f"/proc/{daemon.pid}/fd")) <= fds_before + 10
    assert sum(1 for a in answers if a == 401) > 0 and sum(1 for a in answers if 200 <= a < 300) > 0


def test_bodies_over_the_limit_are_refused_with_413(daemon: Daemon) -> None:
    auth = {"Authorization": f"Bearer {daemon.token}", "Content-Type": "application/json"}
    status, text = send(daemon.port, "POST", "/v1/pipelines", auth, b"", declared_length=MAX_BODY_BYTES + 1)
    assert status == 413 and str(MAX_BODY_BYTES) in json.loads(text)["error"]["message"]
    big = b'{"service": "' + b"a" * (MAX_BODY_BYTES + 10) + b'"}'
    status, _ = send(daemon.port, "PUT", "/v1/routes/svc", auth, big)
    assert status == 413
    # Without a length (chunked), the body is cut off at the limit all the same.
    chunked = {**auth, "Transfer-Encoding": "chunked"}
    chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)
    status, _ = send(daemon.port, "POST", "/v1/push", chunked, chunk)
    assert status == 413
    assert procs.is_running(daemon.pid)


@pytest.mark.parametrize("name", ["..", "../etc", "svc/../svc", "\x00", "a" * 300, "Svc", "-x", "svc\n"])
def test_names_that_could_escape_a_path_are_refused_with_400(daemon: Daemon, name: str) -> None:
    auth = {"Authorization": f"Bearer {daemon.token}"}
    seg = quote(name, safe="")
    calls = [("GET", f"/v1/services/{seg}/versions"), ("DELETE", f"/v1/pipelines/{seg}"),
             ("GET", f"/v1/pipelines/{seg}/runs"), ("GET", f"/v1/pipelines/svc/runs/{seg}"),
             ("DELETE", f"/v1/services/svc/versions/{seg}"), ("GET", f"/v1/services/{seg}/stats"),
             ("PUT", f"/v1/routes/{seg}")]
    if not NAME_RE.match(name):  # gateway route names may have capitals
        calls.append(("DELETE", f"/v1/gateway-routes/{seg}"))
    for method, path in calls:
        status, text = send(daemon.port, method, path, auth, b'{"targets": []}' if method == "PUT" else None)
        assert status == 400, (method, path, status, text[:200])
    status, _ = send(daemon.port, "POST", "/v1/pipelines", auth, json.dumps({"service": name}).encode())
    assert status == 400
    status, _ = send(daemon.port, "POST", "/v1/push", auth, json.dumps(
        {"service": name, "ref": "refs/heads/main", "new": "e9d5f17a" * 5}).encode())
    assert status == 400
    assert not [p for p in Path(daemon.engine.paths(ENV).root).rglob("*") if name[:20] in p.name and name.strip()]
