"""The command line's fast path (cli/fast.py): which command lines it takes, that a read command is one
request to the daemon and loads neither Typer, Rich nor pydantic, and that its text is what Rich prints."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from meshpipe.cli import fast, readouts
from meshpipe.engines.local.state.daemonfiles import write_daemon_file
from meshpipe.engines.local.state.home import env_paths
from meshpipe.engines.local.state.store import StateStore

VERSION = {"service": "svc", "version": "e9d5f17a", "commit": "e9d5f17a" * 5, "stack_name": "demo-svc-e9d5f17a",
           "status": "CREATE_COMPLETE", "weight": 100, "created_at": "2026-01-01T00:00:00.00Z",
           "healthy_tasks": 2, "desired_tasks": 2, "reason": ""}


@pytest.mark.parametrize(("argv", "expected"), [
    (["versions", "svc"], (("versions",), "svc", {})),
    (["versions", "--env", "prod", "svc", "--format=json"], (("versions",), "svc", {"--env": "prod", "--format": "json"})),
    (["route", "show", "svc", "--engine", "local"], (("route", "show"), "svc", {"--engine": "local"})),
    (["env", "status", "demo"], (("env", "status"), "demo", {})),
    (["stats", "svc", "--env=x"], (("stats",), "svc", {"--env": "x"})),
])
def test_plain_read_commands_are_taken(argv: list[str], expected: object) -> None:
    assert fast.parse(argv) == expected


@pytest.mark.parametrize("argv", [
    ["versions"], ["versions", "a", "b"], ["versions", "svc", "--help"], ["versions", "svc", "--env"],
    ["versions", "svc", "--format", "yaml"], ["env", "status", "demo", "--env", "x"], ["route", "set", "svc", "a=1"],
    ["versions", "svc", "--env", "a", "--env", "b"], ["--version"], [], ["env", "create", "demo"],
])
def test_anything_else_goes_to_the_full_command_line(argv: list[str]) -> None:
    assert fast.parse(argv) is None


def test_other_engines_and_synth_variants_go_to_the_full_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fast.run(["versions", "svc", "--engine", "aws"]) is None
    monkeypatch.setenv("MESHPIPE_ENGINE", "aws")
    assert fast.run(["stats", "svc"]) is None
    assert fast.parse_synth(["synth", "m.yaml", "-o", "out", "--commit=abc"]) == ("m.yaml", {"output_dir": "out",
                                                                                           "commit": "abc"})
    assert fast.parse_synth(["synth", "m.yaml", "--help"]) is None
    assert fast.parse_synth(["synth", "m.yaml", "-oout"]) is None
    assert fast.parse_synth(["synth"]) is None


def test_tables_look_as_rich_draws_them() -> None:
    from rich.console import Console
    from rich.table import Table

    headers = ("version", "stack", "weight")
    rows = [("e9d5f17a", "demo-hello-backend-e9d5f17a", "90 (90 %)"), ("0badc0de", "", "10")]
    rich_out = io.StringIO()
    console = Console(file=rich_out, width=200, highlight=False, soft_wrap=True)
    table = Table(*headers)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(Table(*headers))  # no rows
    ours = readouts.Text(io.StringIO())
    ours.table(headers, rows)
    ours.table(headers, [])
    ours.write()
    assert ours.stream.getvalue() == rich_out.getvalue()  # type: ignore[attr-defined]


class FakeDaemon(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, str]] = []
    answers: dict[str, object] = {}  # path -> JSON answer; the default: versions of svc

    def do_GET(self) -> None:
        FakeDaemon.requests.append(("GET", self.path, self.headers.get("Authorization", "")))
        answers = {"/v1/services/svc/versions": [VERSION], **FakeDaemon.answers}
        known = self.path in answers
        body = json.dumps(answers[self.path] if known else {"error": {
            "kind": "not_found", "message": "service 'nope' has no pipeline in this environment", "hint": "h"}})
        self.send_response(200 if known else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_daemon(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment whose daemon.json points at a stub control API (this test process stands for the pid)."""
    paths = env_paths(tmp_path, "demo")
    paths.make_dirs()
    StateStore(paths.state_db).close()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeDaemon)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    write_daemon_file(paths.daemon_json, {"pid": os.getpid(), "control_port": server.server_address[1],
                                          "token": "t0ken"})
    FakeDaemon.requests = []
    FakeDaemon.answers = {}
    try:
        yield {**os.environ, "MESHPIPE_HOME": str(tmp_path), "MESHPIPE_ENV": "demo"}
    finally:
        server.shutdown()
        server.server_close()


# What a read command must not load: the full command line's libraries, and what only writes, the daemon or
# other commands need (state.db is the daemon's to read for a running environment).
# A read sends its request and prints the JSON answer: it loads neither the engine, its typed operation table
# and types, nor the modules only they need (typing, dataclasses and inspect, pathlib, urllib, the idna codec
# that socket.create_connection's getaddrinfo loads), each a tenth of a read or more.
HEAVY = ("typer", "rich", "pydantic", "yaml", "asyncio", "aiohttp", "sqlite3", "hmac", "logging", "tempfile",
         "meshpipe.rollout", "meshpipe.mesh.graph", "meshpipe.mesh.traffic",
         "typing", "dataclasses", "inspect", "pathlib", "urllib.parse", "http.client", "encodings.idna",
         "meshpipe.errors", "meshpipe.engines.base", "meshpipe.engines.local.engine",
         "meshpipe.engines.local.control.operations", "meshpipe.engines.local.control.httpapi",
         "meshpipe.mesh.routing", "meshpipe.mesh.stats")


def test_a_read_command_is_one_request_and_loads_no_heavy_module(fake_daemon: dict[str, str]) -> None:
    probe = (f"import sys; HEAVY = {HEAVY!r}; from meshpipe.cli import main; code = main(['versions', 'svc']); "
             "heavy = [m for m in HEAVY if m in sys.modules]; "
             "print('HEAVY', heavy); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", probe], env=fake_daemon, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    assert "│ e9d5f17a │ demo-svc-e9d5f17a │ CREATE_COMPLETE │ 100    │ 2/2   │" in done.stdout
    assert FakeDaemon.requests == [("GET", "/v1/services/svc/versions", "Bearer t0ken")]


def test_a_read_command_error_reads_as_the_full_command_line_says_it(fake_daemon: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "meshpipe", "versions", "nope"], env=fake_daemon,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == "error: service 'nope' has no pipeline in this environment\nhint: h\n"
    assert len(FakeDaemon.requests) == 1


# What a running daemon answers each read, in its wire form: encoded by the operation table itself.
def _wire_answers() -> dict[str, object]:
    from meshpipe.engines.base import VersionInfo
    from meshpipe.engines.local.control import operations as ops
    from meshpipe.mesh.headers import HeaderMatch
    from meshpipe.mesh.routing import HeaderRoute, Route, WeightedTarget
    from meshpipe.mesh.stats import ServiceStats, VersionStats

    versions = (VersionInfo(**{**VERSION, "reason": "health check never passed"}),
                VersionInfo("svc", "0badc0de", "0badc0de" * 5, "demo-svc-0badc0de", "CREATE_COMPLETE", 0,
                            scaled_down=True))
    route = Route("svc", (WeightedTarget("e9d5f17a", 90), WeightedTarget("0badc0de", 10)), method="GET")
    preview = HeaderRoute("hdr", (HeaderMatch("x-canary", "always"), HeaderMatch("x-user", "b", "prefix")),
                          (WeightedTarget("0badc0de", 100),))
    stats = ServiceStats("svc", {"e9d5f17a": VersionStats(12, 1, 2, 0, {"2xx": 11, "5xx": 1}, 3.5, 9.25, 11.0, 4.0),
                                 "0badc0de": VersionStats()}, 3, 3)
    status = {"environment": "demo", "namespace": "demo.local", "daemon": {"pid": 4242},
              "ingress_url": "http://127.0.0.1:8080", "gateway": {"live": True},
              "services": [{"name": "svc", "virtual_service": "svc.demo.local",
                            "versions": [{"version": "e9d5f17a", "status": "CREATE_COMPLETE", "healthy_tasks": 2,
                                          "desired_tasks": 2, "weight": 100}]}],
              "gateway_routes": [{"name": "gr-svc", "prefix": "/svc", "virtual_service": "svc.demo.local"}]}
    return {"/v1/services/svc/versions": ops.VERSIONS.encode(versions),
            "/v1/routes/svc/view": ops.ROUTE_VIEW.encode(ops.RouteView(route, ())),
            "/v1/routes/bare/view": ops.ROUTE_VIEW.encode(ops.RouteView(None, ())),
            "/v1/routes/hdr/view": ops.ROUTE_VIEW.encode(ops.RouteView(route, (preview,))),
            "/v1/routes/hdr": ops.ROUTE_SHOW.encode(route), "/v1/routes/hdr/headers": ops.HEADER_ROUTES.encode((preview,)),
            # what the full command line asks instead (route, then header routes)
            "/v1/routes/svc": ops.ROUTE_SHOW.encode(route), "/v1/routes/bare": ops.ROUTE_SHOW.encode(None),
            "/v1/routes/svc/headers": ops.HEADER_ROUTES.encode(()), "/v1/routes/bare/headers": [],
            "/v1/services/svc/stats": ops.STATS.encode(stats),
            "/v1/status": ops.STATUS.encode(status)}


@pytest.mark.parametrize("argv", [
    ["versions", "svc"], ["route", "show", "svc"], ["route", "show", "bare"], ["route", "show", "hdr"], ["env", "status"],
    ["stats", "svc"],
])
@pytest.mark.parametrize("form", ["text", "json"])
def test_each_read_prints_what_the_full_command_line_prints(fake_daemon: dict[str, str], argv: list[str],
                                                            form: str) -> None:
    FakeDaemon.answers = _wire_answers()
    command = [*argv, "--format", form]
    fast_way = subprocess.run([sys.executable, "-m", "meshpipe", *command], env=fake_daemon, capture_output=True,
                              text=True, timeout=60)
    assert fast_way.returncode == 0, fast_way.stderr
    assert len(FakeDaemon.requests) == 1
    full = ("import sys; from meshpipe.cli import main; from meshpipe.cli.app import app; "
            "sys.exit(main(sys.argv[1:], app=app))")
    full_way = subprocess.run([sys.executable, "-c", full, *command], env=fake_daemon, capture_output=True,
                              text=True, timeout=60)
    assert full_way.returncode == 0, full_way.stderr
    assert fast_way.stdout == full_way.stdout
    assert fast_way.stdout.strip()


def test_every_read_command_loads_no_heavy_module(fake_daemon: dict[str, str]) -> None:
    FakeDaemon.answers = _wire_answers()
    probe = (f"import sys; HEAVY = {HEAVY!r}; from meshpipe.cli import main; code = main(sys.argv[1:]); "
             "print('HEAVY', [m for m in HEAVY if m in sys.modules]); sys.exit(code)")
    for argv in (["route", "show", "svc"], ["env", "status"], ["stats", "svc", "--format", "json"]):
        done = subprocess.run([sys.executable, "-c", probe, *argv], env=fake_daemon, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert "HEAVY []" in done.stdout, (argv, done.stdout)
