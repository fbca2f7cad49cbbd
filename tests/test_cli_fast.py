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

    def do_GET(self) -> None:
        FakeDaemon.requests.append(("GET", self.path, self.headers.get("Authorization", "")))
        body = json.dumps([VERSION] if self.path == "/v1/services/svc/versions" else {"error": {
            "kind": "not_found", "message": "service 'nope' has no pipeline in this environment", "hint": "h"}})
        self.send_response(200 if "svc" in self.path else 404)
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
    try:
        yield {**os.environ, "MESHPIPE_HOME": str(tmp_path), "MESHPIPE_ENV": "demo"}
    finally:
        server.shutdown()
        server.server_close()


# What a read command must not load: the full command line's libraries, and what only writes, the daemon or
# other commands need (state.db is the daemon's to read for a running environment).
HEAVY = ("typer", "rich", "pydantic", "yaml", "asyncio", "aiohttp", "sqlite3", "hmac", "logging", "tempfile",
         "meshpipe.rollout", "meshpipe.mesh.graph", "meshpipe.mesh.plans")


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
