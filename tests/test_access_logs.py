"""Access logs with Envoy's default fields, from a real sidecar and gateway; and ``meshpipe logs`` on a real
local environment, interleaving app and proxy lines by time."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from meshpipe.engines.base import LogLine
from meshpipe.engines.local.dataplane import client
from meshpipe.engines.local.observe.logs import line_time
from support.dataplane import Processes, mesh_document, request, wait_until
from test_local_engine_e2e import ENV, LocalEnv, make_env  # noqa: F401 (make_env is a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ENVOY_DEFAULT_FIELDS = ["start_time", "method", "path", "protocol", "response_code", "response_flags",
                        "bytes_received", "bytes_sent", "duration", "upstream_service_time", "x_forwarded_for",
                        "user_agent", "request_id", "authority", "upstream_host"]
V = "ab12cd34"


def _lines(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_sidecar_and_gateway_write_envoys_default_fields_as_json(tmp_path: Path) -> None:
    gw_log, sc_log = tmp_path / "gateway.log", tmp_path / "sidecar.log"
    with Processes() as procs, gw_log.open("wb") as gw_out, sc_log.open("wb") as sc_out:
        _, app = procs.stub("web")
        sidecar = procs.proxy("sidecar", app_port=app, service="web", version=V, access_log=True,
                              stdout=sc_out.fileno())
        gateway = procs.proxy("gateway", access_log=True, stdout=gw_out.fileno())
        doc = mesh_document(3, routes={"web": [(V, 100)]}, endpoints={"web": {V: [sidecar.ports["ingress_port"]]}},
                            gateway_routes=[("r-web", "/web", "web", True)])
        for proxy in (gateway, sidecar):
            client.push_config(proxy.admin_port, doc)
        port = gateway.ports["listen_port"]
        before = time.time()
        ok = request(port, "/web/hello?x=1", headers={"user-agent": "probe/1.0", "x-request-id": "req-1"})
        missing = request(port, "/nowhere", headers={"user-agent": "probe/1.0"})
        after = time.time()
        assert (ok.status, missing.status) == (200, 404)
        wait_until(lambda: len(_lines(gw_log)) >= 2 and len(_lines(sc_log)) >= 1, "the access logs are flushed")
    first, second = _lines(gw_log)[:2]
    assert list(first)[:15] == ENVOY_DEFAULT_FIELDS
    assert {k: first[k] for k in ("method", "path", "protocol", "response_code", "response_flags", "user_agent",
                                  "request_id", "upstream_host", "listener")} == {
        "method": "GET", "path": "/web/hello?x=1", "protocol": "HTTP/1.1", "response_code": 200,
        "response_flags": "-", "user_agent": "probe/1.0", "request_id": "req-1",
        "upstream_host": f"127.0.0.1:{sidecar.ports['ingress_port']}", "listener": "gateway"}
    assert before - 1 <= line_time(json.dumps(first)) <= after + 1  # type: ignore[operator]
    assert 0 <= first["upstream_service_time"] <= first["duration"]
    assert first["bytes_sent"] > len(ok.body)  # the body and the response head
    assert (second["response_code"], second["response_flags"], second["meshpipe_flag"]) == (404, "NR",
                                                                                            "no_gateway_route")
    assert second["upstream_host"] is None and second["upstream_service_time"] is None
    # The sidecar saw the rewritten path, and the edge's x-forwarded-for and request id passed on.
    (inner,) = _lines(sc_log)[:1]
    assert (inner["path"], inner["request_id"], inner["x_forwarded_for"], inner["listener"]) == (
        "/hello?x=1", "req-1", "127.0.0.1", "ingress")
    assert inner["upstream_host"] == f"127.0.0.1:{app}"


def test_line_times() -> None:
    assert line_time('{"start_time": "2025-06-01T10:00:00.500Z"}') == 1748772000.5
    assert line_time("2025-06-01 10:00:00,250 INFO started") == 1748772000.25
    assert line_time("[2025-06-01T12:00:00+02:00] x") == 1748772000.0
    assert line_time("hello-web listening on http://127.0.0.1:1234") is None


def test_logs_interleave_app_and_proxy_lines_by_time(make_env) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    engine_env: LocalEnv = make_env(tasks=1, access_log=True)
    version = engine_env.serve_backend()
    for i in range(5):
        assert request(engine_env.ingress_port, f"/backend/data?n={i}").status == 200
    task = f"hello-backend-{version}-1"

    def access_lines() -> list[LogLine]:
        return [line for line in engine_env.engine.logs(ENV, "hello-backend")
                if line.source == f"{task} envoy" and line.text.startswith("{")]

    wait_until(lambda: len(access_lines()) >= 5, "the sidecar's access lines reach its log", timeout=15)
    lines = engine_env.engine.logs(ENV, "hello-backend")
    sources = {line.source for line in lines}
    assert {f"{task} app", f"{task} envoy"} <= sources
    times = [line.at for line in lines]
    assert times == sorted(times)
    paths = [json.loads(line.text)["path"] for line in access_lines()]
    assert paths[-5:] == [f"/data?n={i}" for i in range(5)]
    assert engine_env.engine.logs(ENV, "hello-backend", version, tail=2) == lines[-2:]
    # The command line: the same lines, and an unknown version is a clear error (exit 2).
    done = subprocess.run(["meshpipe", "logs", "hello-backend", "--env", ENV, "--format", "json"],
                          capture_output=True, text=True, timeout=60, env=_cli_env(engine_env))
    assert done.returncode == 0, done.stderr
    assert any(json.loads(line)["source"] == f"{task} envoy" for line in done.stdout.splitlines())
    bad = subprocess.run(["meshpipe", "logs", "hello-backend", "--version", "00000000", "--env", ENV],
                         capture_output=True, text=True, timeout=60, env=_cli_env(engine_env))
    assert bad.returncode == 2 and "no version 00000000" in bad.stderr


def _cli_env(env: LocalEnv) -> dict[str, str]:
    import os
    import sys

    return {**os.environ, "MESHPIPE_HOME": str(env.engine.home),
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
