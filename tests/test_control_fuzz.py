"""The control API against bad input, sent raw to a real daemon on 127.0.0.1 whose environment has
something to lose: hello-backend with two deployed versions, its weighted route, a header route, a
gateway route, pipeline runs, and a rollout that is running (paused, so no window is judged while the
test looks; it still owns the route).

After every 4xx answer the environment is byte for byte what it was before the request: every file under
the test's folder (the environment's own folder and everything around it, so a name that escapes a path
shows wherever it lands) and every row of state.db (versions, routes, runs, rollout, events). Every
error, whoever answers it (a handler, the auth guard or the router), is a JSON body with ``error``. A
negative control runs the same check against a throwaway daemon with a handler that writes before it
validates, and sees the check fail. Processes the tests started are killed by pid at the end, even when
a test fails."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as stx

from meshpipe.engines.local.control.httpapi import MAX_BODY_BYTES, make_control_app
from meshpipe.engines.local.engine import LocalEngine
from meshpipe.engines.local.state.daemonfiles import read_daemon_file
from meshpipe.engines.local.state.options import LocalOptions
from meshpipe.engines.local.tasks import processes as procs
from meshpipe.mesh.headers import HeaderMatch
from meshpipe.mesh.routing import NAME_RE, WeightedTarget
from support.env_state import Capture, capture, settled
from support.load import wait_until
from support.rollout_env import ENV, SERVICE, RolloutEnv, backend_manifest, rollout_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

FIRST_ROLLOUT = "  Strategy: canary\n  Steps: [20, 100]\n  Interval: 2\n"
# Long enough that no window of the running rollout is judged while the test runs, even if it is resumed.
HELD_ROLLOUT = "  Strategy: canary\n  Steps: [20, 50, 100]\n  Interval: 3600\n"


@dataclass
class Daemon:
    env: RolloutEnv
    root: Path  # the test's folder: the environment's home, the git work tree, and whatever lands around them
    stable: str = ""
    candidate: str = ""
    reached: set[tuple[str, str]] = field(default_factory=set)  # (method, route) a handler answered

    def __post_init__(self) -> None:
        data = read_daemon_file(self.env.paths.daemon_json)
        assert data is not None
        self.pid, self.port, self.token = int(data["pid"]), int(data["control_port"]), str(data["token"])

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def capture(self) -> Capture:
        return capture(self.root, self.env.paths.state_db)

    def settled(self) -> Capture:
        return settled(self.root, self.env.paths.state_db)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("fuzz")
    old_home = os.environ.get("MESHPIPE_HOME")
    os.environ["MESHPIPE_HOME"] = str(root / "home")
    try:
        with rollout_env(root) as env:
            stable = env.push(backend_manifest("-g Hello", rollout=FIRST_ROLLOUT), "first")
            env.deployed(stable)
            env.finished(stable, 60)
            candidate = env.push(backend_manifest("-g Yo", rollout=HELD_ROLLOUT), "second")
            env.deployed(candidate)
            wait_until(lambda: (env.rollout_of(candidate) or {}).get("weights", {}).get(candidate) == 20, 60,
                       "the rollout's first step")
            env.engine.rollout_control(ENV, SERVICE, "pause")
            env.engine.header_route_set(ENV, SERVICE, (HeaderMatch("x-debug", "1"),), (WeightedTarget(stable, 100),))
            env.note_pids()
            made = Daemon(env, root, stable, candidate)
            status = env.status()
            assert status["status"] == "running" and status["paused"], status
            assert env.weights() == {stable: 80, candidate: 20}
            yield made
            env.note_pids()
    finally:
        if old_home is None:
            os.environ.pop("MESHPIPE_HOME", None)
        else:
            os.environ["MESHPIPE_HOME"] = old_home


def send(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None,
         declared_length: int | None = None) -> tuple[int, bytes]:
    """One raw HTTP/1.1 exchange (anything may be sent); (status, body), status 0 when none came."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if "Transfer-Encoding" not in headers and (body is not None or declared_length is not None):
        lines.append(f"Content-Length: {declared_length if declared_length is not None else len(body or b'')}")
    raw = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + (body or b"")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
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


def error_of(status: int, method: str, text: bytes) -> dict[str, Any] | None:
    """The ``error`` object of an error answer; fails unless the body is JSON with one (the answer to a HEAD
    has none, unless the request was too malformed to be known as a HEAD)."""
    if method == "HEAD" and text == b"":
        return None
    try:
        data = json.loads(text)
    except ValueError:
        raise AssertionError(f"HTTP {status} with a body that is not JSON: {text[:200]!r}") from None
    error = data.get("error") if isinstance(data, dict) else None
    assert isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"], text[:300]
    assert error.get("kind") in ("user", "not_found", "conflict"), text[:300]
    return error


def exchange(daemon: Daemon, before: Capture, method: str, path: str, headers: dict[str, str],
             body: bytes | None) -> tuple[int, bytes, Capture]:
    """Send one request and check the invariant: a 4xx left everything as ``before``, with a JSON error;
    a 2xx may change things, and the returned capture is the new baseline once the change has settled."""
    status, text = send(daemon.port, method, path, headers, body)
    assert 200 <= status < 500, (method, path, headers, body and body[:200], status, text[:300])
    if status < 400:
        return status, text, daemon.settled()
    error_of(status, method, text)
    after = daemon.capture()
    changed = before.differences(after)
    assert not changed, f"{method} {path[:120]} answered {status} {text[:200]!r} yet changed: {changed}"
    return status, text, after


# --- every handler, each with the inputs that must be refused ------------------------------------------

def sweep_cases(d: Daemon) -> list[tuple[str, str, str, Any, set[int]]]:
    """(route as registered, method, path, JSON body or raw bytes, allowed statuses) for every endpoint
    but shutdown (the negative control's daemon takes that one)."""
    svc, v1, v2 = SERVICE, d.stable, d.candidate
    bad_json = b'{"service": '
    return [
        ("/v1/status", "GET", "/v1/status", None, {200}),
        ("/v1/config", "GET", "/v1/config", None, {200}),
        ("/v1/backends", "GET", "/v1/backends", None, {200}),
        ("/metrics", "GET", "/metrics", None, {200}),
        ("/v1/pipelines", "POST", "/v1/pipelines", {"service": svc}, {409}),
        ("/v1/pipelines", "POST", "/v1/pipelines", {"service": "../escape"}, {400}),
        ("/v1/pipelines", "POST", "/v1/pipelines", {"service": "Bad_Name"}, {400}),
        ("/v1/pipelines", "POST", "/v1/pipelines", bad_json, {400}),
        ("/v1/pipelines", "POST", "/v1/pipelines", [1, 2], {400}),
        ("/v1/pipelines/{service}", "DELETE", f"/v1/pipelines/{svc}", None, {409}),
        ("/v1/pipelines/{service}", "DELETE", "/v1/pipelines/nosuch", None, {404}),
        ("/v1/pipelines/{service}", "DELETE", "/v1/pipelines/..%2F..%2Fhome", None, {400}),
        ("/v1/pipelines/{service}/runs", "GET", f"/v1/pipelines/{svc}/runs", None, {200}),
        ("/v1/pipelines/{service}/runs", "GET", "/v1/pipelines/nosuch/runs", None, {404}),
        ("/v1/pipelines/{service}/runs/{run_id}", "GET", f"/v1/pipelines/{svc}/runs/latest", None, {200}),
        ("/v1/pipelines/{service}/runs/{run_id}", "GET", f"/v1/pipelines/{svc}/runs/20260101-120000-a1b2c3", None, {404}),
        ("/v1/pipelines/{service}/runs/{run_id}", "GET", f"/v1/pipelines/{svc}/runs/..%2Fx", None, {400}),
        ("/v1/push", "POST", "/v1/push", {"service": svc, "ref": "refs/heads/main", "new": "zz"}, {400}),
        ("/v1/push", "POST", "/v1/push", {"service": svc, "ref": "main", "new": "e9d5f17a" * 5}, {400}),
        ("/v1/push", "POST", "/v1/push", {"service": "nosuch", "ref": "refs/heads/main", "new": "e9d5f17a" * 5},
         {404}),
        ("/v1/push", "POST", "/v1/push", {"service": svc, "ref": "refs/heads/main", "new": "0" * 40}, {400}),
        ("/v1/routes/{service}/view", "GET", f"/v1/routes/{svc}/view", None, {200}),
        ("/v1/routes/{service}/view", "GET", "/v1/routes/nosuch/view", None, {404}),
        ("/v1/routes/{service}", "GET", f"/v1/routes/{svc}", None, {200}),
        ("/v1/routes/{service}", "GET", "/v1/routes/nosuch", None, {404}),
        ("/v1/routes/{service}", "PUT", f"/v1/routes/{svc}", {"targets": [{"version": v1, "weight": 100}]}, {409}),
        ("/v1/routes/{service}", "PUT", f"/v1/routes/{svc}", {"targets": [{"version": v1, "weight": 101}]}, {400}),
        ("/v1/routes/{service}", "PUT", f"/v1/routes/{svc}", {"targets": "all"}, {400}),
        ("/v1/routes/{service}", "PUT", "/v1/routes/nosuch", {"targets": [{"version": v1, "weight": 100}]}, {404}),
        ("/v1/routes/{service}", "DELETE", f"/v1/routes/{svc}", None, {409}),
        ("/v1/gateway-routes", "GET", "/v1/gateway-routes", None, {200}),
        ("/v1/gateway-routes/{name}", "PUT", "/v1/gateway-routes/r-other",
         {"prefix": "/backend", "service": svc}, {409}),
        ("/v1/gateway-routes/{name}", "PUT", "/v1/gateway-routes/r-other",
         {"prefix": "/other", "service": "nosuch"}, {404}),
        ("/v1/gateway-routes/{name}", "PUT", "/v1/gateway-routes/r-other", {"prefix": "no-slash", "service": svc},
         {400}),
        ("/v1/gateway-routes/{name}", "PUT", "/v1/gateway-routes/r-other",
         {"prefix": "/other", "service": svc, "rewrite_prefix": "yes"}, {400}),
        ("/v1/gateway-routes/{name}", "DELETE", "/v1/gateway-routes/r-nosuch", None, {404}),
        ("/v1/gateway-routes/{name}", "DELETE", "/v1/gateway-routes/..", None, {400}),
        ("/v1/services/{service}/versions", "GET", f"/v1/services/{svc}/versions", None, {200}),
        ("/v1/services/{service}/versions", "GET", "/v1/services/nosuch/versions", None, {404}),
        ("/v1/services/{service}/versions/{version}", "DELETE", f"/v1/services/{svc}/versions/{v1}", None, {409}),
        ("/v1/services/{service}/versions/{version}", "DELETE", f"/v1/services/{svc}/versions/{v2}", None, {409}),
        ("/v1/services/{service}/versions/{version}", "DELETE", f"/v1/services/{svc}/versions/deadbeef", None, {404}),
        ("/v1/services/{service}/versions/{version}", "DELETE", f"/v1/services/{svc}/versions/..%2F..", None, {400}),
        ("/v1/services/{service}/versions/{version}/scale", "POST", f"/v1/services/{svc}/versions/{v1}/scale",
         {"tasks": 999}, {400}),
        ("/v1/services/{service}/versions/{version}/scale", "POST", f"/v1/services/{svc}/versions/{v1}/scale",
         {"tasks": "two"}, {400}),
        ("/v1/services/{service}/versions/{version}/scale", "POST", f"/v1/services/{svc}/versions/deadbeef/scale",
         {"tasks": 1}, {404}),
        ("/v1/services/{service}/stats", "GET", f"/v1/services/{svc}/stats", None, {200}),
        ("/v1/services/{service}/stats", "GET", "/v1/services/nosuch/stats", None, {404}),
        ("/v1/services/{service}/stats", "GET", f"/v1/services/{svc}/stats?window_s=soon", None, {400}),
        ("/v1/services/{service}/stats", "GET", f"/v1/services/{svc}/stats?window_s=0", None, {400}),
        ("/v1/services/{service}/stats", "GET", f"/v1/services/{svc}/stats?window_s=9999", None, {400}),
        ("/v1/services/{service}/versions/{version}/scale", "POST", f"/v1/services/{svc}/versions/{v1}/scale",
         {"tasks": 0}, {409}),
        ("/v1/routes/{service}/headers", "GET", f"/v1/routes/{svc}/headers", None, {200}),
        ("/v1/routes/{service}/headers", "PUT", f"/v1/routes/{svc}/headers",
         {"headers": [{"name": "host", "kind": "exact", "value": "x"}], "targets": [{"version": v1, "weight": 100}]},
         {400}),
        ("/v1/routes/{service}/headers", "PUT", f"/v1/routes/{svc}/headers",
         {"headers": [{"name": "x-a", "kind": "exact", "value": "1"}],
          "targets": [{"version": "deadbeef", "weight": 100}]}, {400, 404, 409}),
        ("/v1/routes/{service}/headers", "PUT", f"/v1/routes/{svc}/headers", {"headers": "x-a"}, {400}),
        ("/v1/routes/{service}/headers/{header}", "DELETE", f"/v1/routes/{svc}/headers/x-nosuch", None, {404}),
        ("/v1/rollouts/{service}", "POST", f"/v1/rollouts/{svc}", {"version": v1}, {409}),
        ("/v1/rollouts/{service}", "POST", f"/v1/rollouts/{svc}", {"version": "deadbeef"}, {404}),
        ("/v1/rollouts/{service}", "POST", f"/v1/rollouts/{svc}", {}, {400}),
        ("/v1/rollouts/{service}", "GET", f"/v1/rollouts/{svc}", None, {200}),
        ("/v1/rollouts/{service}", "GET", "/v1/rollouts/nosuch", None, {404}),
        ("/v1/rollouts/{service}/{action}", "POST", f"/v1/rollouts/{svc}/explode", None, {400}),
        ("/v1/rollouts/{service}/{action}", "POST", "/v1/rollouts/nosuch/abort", None, {404}),
        ("/v1/rollouts/{service}/{action}", "POST", f"/v1/rollouts/{svc}/pause", None, {200, 409}),
    ]


def registered_routes() -> set[tuple[str, str]]:
    """(method, route) of every endpoint the control app has (HEAD twins of GETs left out)."""
    app = make_control_app(target=None, token="x" * 40)  # type: ignore[arg-type]
    return {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}


def test_every_handler_refuses_bad_input_without_changing_anything(daemon: Daemon) -> None:
    baseline = daemon.settled()
    for route, method, path, payload, allowed in sweep_cases(daemon):
        body = payload if isinstance(payload, bytes) or payload is None else json.dumps(payload).encode()
        headers = {**daemon.auth, **({"Content-Type": "application/json"} if body is not None else {})}
        status, text, baseline = exchange(daemon, baseline, method, path, headers, body)
        assert status in allowed, (method, path, status, text[:300])
        daemon.reached.add((method, route))
    # The running rollout and the versions are as they were: nothing above got through.
    assert daemon.env.weights() == {daemon.stable: 80, daemon.candidate: 20}
    assert daemon.env.status()["status"] == "running"
    missing = registered_routes() - daemon.reached - {("POST", "/v1/shutdown")}
    assert not missing, f"endpoints the sweep never reached: {sorted(missing)}"


def test_errors_from_the_router_and_the_guard_are_json_too(daemon: Daemon) -> None:
    baseline = daemon.settled()
    for method, path, headers, want in [
        ("GET", "/v2/status", daemon.auth, 404), ("GET", "/", daemon.auth, 404),
        ("POST", "/v1/status", daemon.auth, 405), ("FOO", "/v1/status", daemon.auth, 400),
        ("GET", "/v1/status", {}, 401), ("DELETE", f"/v1/services/{SERVICE}/versions/{daemon.stable}",
                                         {"Authorization": "Bearer nope"}, 401),
    ]:
        status, text, baseline = exchange(daemon, baseline, method, path, headers, None)
        assert status == want, (method, path, status, text[:200])
    status, text = send(daemon.port, "POST", "/v1/status", daemon.auth, None)
    assert status == 405 and "POST is not allowed on /v1/status" in json.loads(text)["error"]["message"]
    # aiohttp's parser refuses a method it does not know before any handler runs; the answer is JSON all the same.
    status, text = send(daemon.port, "FOO", "/v1/status", daemon.auth, None)
    assert status == 400 and json.loads(text)["error"]["message"] == "malformed HTTP request: Invalid method encountered"


# --- random requests ------------------------------------------------------------------------------------

TEMPLATES = ["/v1/status", "/v1/config", "/v1/pipelines", "/v1/pipelines/{}", "/v1/pipelines/{}/runs",
             "/v1/pipelines/{}/runs/{}", "/v1/push", "/v1/routes/{}", "/v1/routes/{}/headers",
             "/v1/routes/{}/headers/{}", "/v1/gateway-routes", "/v1/gateway-routes/{}", "/v1/services/{}/versions",
             "/v1/services/{}/versions/{}", "/v1/services/{}/stats", "/v1/rollouts/{}", "/v1/rollouts/{}/{}",
             "/metrics", "/v1/shutdown", "/", "/v2/status", "/v1/{}"]
JSON_KEYS = ["service", "ref", "old", "new", "targets", "version", "weight", "prefix", "rewrite_prefix", "headers",
             "name", "kind", "value", "x"]


def segments(d: Daemon) -> stx.SearchStrategy[str]:
    """Path segments: the environment's real names (so the handlers find something), names that could
    escape a path, and anything. Never ``abort`` or ``promote``: the rollout stays for the later examples."""
    return stx.one_of(
        stx.sampled_from([SERVICE, d.stable, d.candidate, "r-backend", "x-debug", "latest", "pause", "resume",
                          "nosuch", "..", "../..", "../../../../tmp", "\x00", "a" * 5000, "", "%", f"{SERVICE}/../x",
                          "20260101-120000-a1b2c3", "Ω", "null"]),
        stx.text(max_size=40))


def json_values(d: Daemon) -> stx.SearchStrategy[Any]:
    leaves = (stx.none() | stx.booleans() | stx.integers() | stx.floats(allow_nan=True) | stx.text(max_size=30)
              | stx.sampled_from([SERVICE, d.stable, d.candidate, "refs/heads/main", "/backend", 100, "exact"]))
    return stx.recursive(leaves, lambda inner: stx.lists(inner, max_size=4) | stx.dictionaries(
        stx.sampled_from(JSON_KEYS) | stx.text(max_size=8), inner, max_size=5), max_leaves=12)


@stx.composite
def requests(draw: Any, d: Daemon) -> tuple[str, str, dict[str, str], bytes | None]:
    template = draw(stx.sampled_from(TEMPLATES))
    path = template.format(*(quote(draw(segments(d)), safe="") for _ in range(template.count("{}"))))
    if draw(stx.booleans()):
        path += "?" + quote(draw(stx.text(max_size=20)), safe="=&")
    method = draw(stx.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "FOO"]))
    auth = draw(stx.sampled_from(["right", "right", "wrong", "none", "odd"]))
    headers = {"right": d.auth, "wrong": {"Authorization": "Bearer nope"},
               "none": {}, "odd": {"Authorization": "Bearer \udcff\udcfe"}}[auth]
    if auth == "right" and method == "POST" and path.startswith("/v1/shutdown"):
        method = "GET"  # the one call that is meant to stop the daemon
    if draw(stx.booleans()):
        headers = {**headers, "Content-Type": draw(stx.sampled_from(["application/json", "text/plain", "x/\x7f"]))}
    body = draw(stx.one_of(
        stx.none(), stx.binary(max_size=300), json_values(d).map(lambda v: json.dumps(v).encode()),
        stx.sampled_from([b"[" * 100_000, b"{" * 5000, b"\xff\xfe",
                          json.dumps({"targets": [{"version": d.stable, "weight": 100}]}).encode(),
                          json.dumps({"service": SERVICE, "ref": "refs/heads/main", "new": "0" * 39 + "1"}).encode(),
                          json.dumps({"prefix": "/backend", "service": SERVICE}).encode(),
                          json.dumps({"version": d.candidate}).encode()])))
    return method, path, headers, body


def test_random_requests_leave_state_unchanged_on_every_4xx(daemon: Daemon) -> None:
    fds_before = len(os.listdir(f"/proc/{daemon.pid}/fd"))
    answers: list[int] = []
    baseline = [daemon.settled()]

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(requests(daemon))
    def check(request: tuple[str, str, dict[str, str], bytes | None]) -> None:
        method, path, headers, body = request
        status, _, baseline[0] = exchange(daemon, baseline[0], method, path, headers, body)
        answers.append(status)

    check()
    # Up, the same process, answering; nothing half-made: every service has its repo and no repo is extra.
    assert procs.is_running(daemon.pid)
    status = daemon.env.engine.status(ENV)
    assert status["daemon"]["pid"] == daemon.pid
    repos = {p.name for p in daemon.env.paths.repos.iterdir()}
    assert repos == {f"{s['name']}-cfg.git" for s in status["services"]}
    assert len(os.listdir(f"/proc/{daemon.pid}/fd")) <= fds_before + 10
    assert {401, 404, 400} <= set(answers) and any(200 <= a < 300 for a in answers), sorted(set(answers))


def test_bodies_over_the_limit_are_refused_with_413(daemon: Daemon) -> None:
    baseline = daemon.settled()
    auth = {**daemon.auth, "Content-Type": "application/json"}
    status, text = send(daemon.port, "POST", "/v1/pipelines", auth, b"", declared_length=MAX_BODY_BYTES + 1)
    assert status == 413 and str(MAX_BODY_BYTES) in json.loads(text)["error"]["message"]
    big = b'{"service": "' + b"a" * (MAX_BODY_BYTES + 10) + b'"}'
    status, text = send(daemon.port, "PUT", f"/v1/routes/{SERVICE}", auth, big)
    assert status == 413 and error_of(status, "PUT", text)
    # Without a length (chunked), the body is cut off at the limit all the same.
    chunked = {**auth, "Transfer-Encoding": "chunked"}
    chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)
    status, text = send(daemon.port, "POST", "/v1/push", chunked, chunk)
    assert status == 413 and error_of(status, "POST", text)
    assert procs.is_running(daemon.pid)
    assert not baseline.differences(daemon.capture())


@pytest.mark.parametrize("name", ["..", "../etc", "../../../../escaped", "svc/../svc", "\x00", "a" * 300, "Svc",
                                  "-x", "svc\n"])
def test_names_that_could_escape_a_path_are_refused_with_400_and_land_nowhere(daemon: Daemon, name: str) -> None:
    baseline = daemon.settled()
    seg = quote(name, safe="")
    calls = [("GET", f"/v1/services/{seg}/versions"), ("DELETE", f"/v1/pipelines/{seg}"),
             ("GET", f"/v1/pipelines/{seg}/runs"), ("GET", f"/v1/pipelines/{SERVICE}/runs/{seg}"),
             ("DELETE", f"/v1/services/{SERVICE}/versions/{seg}"), ("GET", f"/v1/services/{seg}/stats"),
             ("PUT", f"/v1/routes/{seg}"), ("POST", f"/v1/rollouts/{seg}"), ("GET", f"/v1/routes/{seg}/headers")]
    if not NAME_RE.match(name):  # gateway route names may have capitals
        calls.append(("DELETE", f"/v1/gateway-routes/{seg}"))
    for method, path in calls:
        status, text, baseline = exchange(daemon, baseline, method, path, daemon.auth,
                                          b'{"targets": []}' if method in ("PUT", "POST") else None)
        assert status == 400, (method, path, status, text[:200])
    for path, payload in [("/v1/pipelines", {"service": name}),
                          ("/v1/push", {"service": name, "ref": "refs/heads/main", "new": "e9d5f17a" * 5})]:
        status, text, baseline = exchange(daemon, baseline, "POST", path, daemon.auth, json.dumps(payload).encode())
        assert status == 400, (path, status, text[:200])


# --- the negative control: a handler that writes before it validates -------------------------------------

# Loaded by every Python process of the throwaway environment (PYTHONPATH): the daemon's pipeline create
# makes the service's repo folder first and only then checks the name, as a careless handler would.
BROKEN_HANDLER = '''
import os
if os.environ.get("MESHPIPE_TEST_BROKEN_HANDLER"):
    from meshpipe.engines.local.control import actions

    original = actions.DaemonActions.pipeline_create

    async def pipeline_create(self, request):
        os.makedirs(self.paths.repo(request.service), exist_ok=True)
        return await original(self, request)

    actions.DaemonActions.pipeline_create = pipeline_create
'''


@pytest.fixture
def broken_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(BROKEN_HANDLER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hooks), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("MESHPIPE_TEST_BROKEN_HANDLER", "1")
    monkeypatch.setenv("MESHPIPE_HOME", str(tmp_path / "home"))
    engine = LocalEngine(home=tmp_path / "home", options=LocalOptions(tasks_per_version=1, health_time_scale=0.2))
    env = RolloutEnv(engine, tmp_path / "work")
    try:
        engine.env_create(ENV)
        env.note_pids()
        engine.pipeline_create(ENV, SERVICE)
        yield Daemon(env, tmp_path)
    finally:
        try:
            if env.paths.exists():
                env.note_pids()
                engine.env_delete(ENV)
        finally:
            procs.kill_all([(pid, None) for pid in env.seen_pids if procs.is_running(pid)], timeout=3.0)


@pytest.mark.parametrize("name", ["Bad_Name", "../../../escaped"])
def test_the_invariant_catches_a_handler_that_writes_before_it_validates(broken_daemon: Daemon, name: str) -> None:
    d = broken_daemon
    assert sys.executable  # the daemon runs this interpreter, so it loads the broken handler
    before = d.settled()
    with pytest.raises(AssertionError, match="yet changed") as caught:
        exchange(d, before, "POST", "/v1/pipelines", d.auth, json.dumps({"service": name}).encode())
    print(caught.value)
    if name.startswith(".."):
        # It landed outside the environment's folder, and the capture saw it there.
        assert "home/envs/demo/repos" not in str(caught.value) and "escaped-cfg.git: created" in str(caught.value)
    # The one call that stops the daemon reaches its handler: 202, and the daemon goes.
    status, text = send(d.port, "POST", "/v1/shutdown", d.auth, None)
    assert status == 202 and json.loads(text) == {"stopping": True}
    wait_until(lambda: not procs.is_running(d.pid), 30, "the daemon stopped")
