"""The proxy as a process: command line, start-up failures, admin API, draining on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshpipe.engines.local.dataplane import client
from meshpipe.engines.local.dataplane.client import EXIT_PORT_IN_USE, proxy_command
from meshpipe.errors import OperationError
from support.dataplane import (
    LOOPBACK,
    Processes,
    free_port,
    mesh_document,
    refuses_connections,
    request,
    served,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def procs() -> Iterator[Processes]:
    with Processes() as p:
        yield p


def _run(argv: list[str], timeout: float = 15) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def test_proxy_command_builds_the_contract_argv() -> None:
    assert proxy_command("gateway", admin_port=9901, listen_port=8080) == [
        sys.executable, "-m", "meshpipe.engines.local.dataplane", "--mode", "gateway", "--admin-port", "9901",
        "--listen-port", "8080"]
    argv = proxy_command("sidecar", admin_port=1, ingress_port=2, egress_port=3, app_port=4, service="hello-web",
                         version="66f2a19a", allowed_backends=["a.demo.local", "b.demo.local"], access_log=True)
    assert argv[3:] == ["--mode", "sidecar", "--admin-port", "1", "--ingress-port", "2", "--egress-port", "3",
                        "--app-port", "4", "--service", "hello-web", "--version", "66f2a19a",
                        "--allowed-backend", "a.demo.local", "--allowed-backend", "b.demo.local", "--access-log"]
    with pytest.raises(ValueError, match="app_port"):
        proxy_command("sidecar", admin_port=1, ingress_port=2, egress_port=3, service="s", version="v")


def test_missing_arguments_exit_2() -> None:
    result = _run([sys.executable, "-m", "meshpipe.engines.local.dataplane", "--mode", "gateway",
                   "--admin-port", str(free_port())])
    assert result.returncode == 2
    assert "--mode gateway needs --listen-port" in result.stderr


def test_a_taken_port_exits_3_with_a_clear_message() -> None:
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = _run(proxy_command("gateway", admin_port=free_port(), listen_port=taken))
        assert result.returncode == EXIT_PORT_IN_USE
        assert f"cannot listen on 127.0.0.1:{taken} for the gateway listener" in result.stderr
        assert "in use" in result.stderr.lower()
        result = _run(proxy_command("gateway", admin_port=taken, listen_port=free_port()))
        assert result.returncode == EXIT_PORT_IN_USE
        assert f"cannot listen on 127.0.0.1:{taken} for the admin API" in result.stderr


def test_invalid_config_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"generation": 1, "environment": "demo", "namespace": "demo.local",
                               "gateway_routes": [{"name": "g", "prefix": "nope", "virtual_service": "a.demo.local"}]}))
    result = _run([*proxy_command("gateway", admin_port=free_port(), listen_port=free_port()),
                   "--config-file", str(bad)])
    assert result.returncode == 2
    assert "gateway_routes[0].prefix: 'nope' is not a path prefix" in result.stderr


def test_config_file_is_in_effect_from_the_start(procs: Processes, tmp_path: Path) -> None:
    _, app = procs.stub("ok")
    doc = mesh_document(5, routes={"svc": [("aaaaaaaa", 100)]}, endpoints={"svc": {"aaaaaaaa": [app]}},
                        gateway_routes=[("g", "/svc", "svc", True)])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    gateway = procs.proxy("gateway", config_file=str(path))
    assert client.server_info(gateway.admin_port)["generation"] == 5
    assert request(gateway.ports["listen_port"], "/svc/x").json()["path"] == "/x"


def test_server_info_and_admin_errors(procs: Processes) -> None:
    sidecar = procs.proxy("sidecar", app_port=free_port(), service="hello-web", version="66f2a19a",
                          allowed_backends=["hello-backend.demo.local"])
    info = client.server_info(sidecar.admin_port)
    assert info["state"] == "LIVE"
    assert info["pid"] == sidecar.popen.pid
    assert info["listeners"]["ingress"]["port"] == sidecar.ports["ingress_port"]
    assert info["allowed_backends"] == ["hello-backend.demo.local"]
    assert client.get_config(sidecar.admin_port) is None
    assert request(sidecar.admin_port, "/nope").status == 404
    assert request(sidecar.admin_port, "/stats", method="DELETE").status == 405


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_seeds_envoy_health_check_works_unchanged(procs: Processes) -> None:
    gateway = procs.proxy("gateway")
    check = subprocess.run(["sh", "-c", f"curl -s http://localhost:{gateway.admin_port}/server_info "
                                        "| grep state | grep -q LIVE"], timeout=10)
    assert check.returncode == 0
    client.quit(gateway.admin_port)
    gateway.popen.wait(timeout=10)
    failed = subprocess.run(["sh", "-c", f"curl -s http://localhost:{gateway.admin_port}/server_info "
                                         "| grep state | grep -q LIVE"], timeout=10)
    assert failed.returncode != 0


def test_client_failures_are_operation_errors() -> None:
    nobody = free_port()
    with pytest.raises(OperationError, match=f"127.0.0.1:{nobody}"):
        client.server_info(nobody, timeout=0.5)
    with pytest.raises(OperationError, match="not live after"):
        client.wait_live(nobody, timeout=0.3)


def test_wait_live_stops_early_when_the_proxy_exits(procs: Processes) -> None:
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        popen = procs.spawn(proxy_command("gateway", admin_port=free_port(), listen_port=holder.getsockname()[1]))
        started = time.monotonic()
        with pytest.raises(OperationError, match="exited with status 3"):
            client.wait_live(free_port(), timeout=20, process=popen)
        assert time.monotonic() - started < 10


def test_sigterm_lets_requests_in_flight_finish_then_exits_0(procs: Processes) -> None:
    _, app = procs.stub("slow-ish")
    sidecar = procs.proxy("sidecar", app_port=app, service="svc", version="aaaaaaaa")
    ingress = sidecar.ports["ingress_port"]
    idle = socket.create_connection((LOOPBACK, ingress), timeout=5)  # a keep-alive client doing nothing
    outcome: dict[str, object] = {}

    def slow_request() -> None:
        try:
            outcome["response"] = request(ingress, "/anything?sleep=1", timeout=10)
        except OSError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=slow_request)
    worker.start()
    try:
        wait_until(lambda: served(app) == 1, "the slow request reached the app")
        os.kill(sidecar.popen.pid, signal.SIGTERM)
        wait_until(lambda: refuses_connections(ingress), "the draining sidecar refuses new connections")
        assert idle.recv(10) == b""  # idle connections are closed at once
        assert sidecar.popen.wait(timeout=10) == 0
    finally:
        worker.join(timeout=15)
        idle.close()
    assert "error" not in outcome
    response = outcome["response"]
    assert response.status == 200  # type: ignore[attr-defined]
    assert response.headers["connection"] == "close"  # type: ignore[attr-defined]


def test_quitquitquit_drains_and_exits(procs: Processes) -> None:
    gateway = procs.proxy("gateway")
    client.quit(gateway.admin_port)
    assert gateway.popen.wait(timeout=10) == 0


def test_drain_gives_up_after_the_drain_timeout(procs: Processes) -> None:
    _, app = procs.stub("stuck", delay=30)
    sidecar = procs.proxy("sidecar", app_port=app, service="svc", version="aaaaaaaa", drain_timeout=0.5)
    with socket.create_connection((LOOPBACK, sidecar.ports["ingress_port"]), timeout=5) as s:
        s.sendall(b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: served(app) == 1, "the request reached the stuck app")
        started = time.monotonic()
        os.kill(sidecar.popen.pid, signal.SIGTERM)
        assert sidecar.popen.wait(timeout=10) == 0
        assert time.monotonic() - started < 15  # the stuck request would hold it 30 s


def test_access_log_writes_one_line_per_request(procs: Processes) -> None:
    _, app = procs.stub("logged")
    sidecar = procs.proxy("sidecar", app_port=app, service="svc", version="aaaaaaaa", access_log=True,
                          stdout=subprocess.PIPE, allowed_backends=["other.demo.local"])
    for path in ("/a", "/b?x=1"):
        assert request(sidecar.ports["ingress_port"], path).status == 200
    assert request(sidecar.ports["egress_port"], "http://example.com/").status == 403
    client.quit(sidecar.admin_port)
    out, _ = sidecar.popen.communicate(timeout=10)
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert len(lines) == 3
    assert [(x["method"], x["path"], x["response_code"], x["response_flags"], x["listener"]) for x in lines] == [
        ("GET", "/a", 200, "-", "ingress"), ("GET", "/b?x=1", 200, "-", "ingress"),
        ("GET", "http://example.com/", 403, "NR", "egress")]
    assert (lines[0]["upstream_host"], lines[0]["upstream_cluster"]) == (f"127.0.0.1:{app}", "svc/aaaaaaaa")
    assert (lines[2]["upstream_host"], lines[2]["meshpipe_flag"]) == (None, "egress_denied")
