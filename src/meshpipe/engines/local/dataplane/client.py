"""Talking to a proxy from the daemon: its command line and its admin API (blocking, stdlib only).

The daemon calls these from worker threads; each call opens one short connection to 127.0.0.1 and
raises :class:`~meshpipe.errors.OperationError` with what went wrong.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meshpipe.errors import OperationError
from meshpipe.status import ProxyState

ADMIN_HOST = "127.0.0.1"
EXIT_PORT_IN_USE = 3  # the proxy's exit status when a port is taken: choose other ports and retry


def proxy_command(mode: str, *, admin_port: int, listen_port: int | None = None,
                  ingress_port: int | None = None, egress_port: int | None = None, app_port: int | None = None,
                  service: str | None = None, version: str | None = None,
                  allowed_backends: Iterable[str] = (), config_file: str | None = None,
                  access_log: bool = False, drain_timeout: float | None = None,
                  extra_args: Sequence[str] = (), netns: str | None = None,
                  run_as: int | None = None) -> list[str]:
    """The argv that starts a proxy with this Python (``sys.executable``)."""
    if mode not in ("gateway", "sidecar"):
        raise ValueError(f"mode must be 'gateway' or 'sidecar', not {mode!r}")
    argv = [sys.executable, "-m", "meshpipe.engines.local.dataplane", "--mode", mode,
            "--admin-port", str(admin_port)]
    if mode == "gateway":
        if listen_port is None:
            raise ValueError("a gateway needs listen_port")
        argv += ["--listen-port", str(listen_port)]
    else:
        needed = {"ingress_port": ingress_port, "egress_port": egress_port, "app_port": app_port,
                  "service": service, "version": version}
        missing = [name for name, value in needed.items() if value is None]
        if missing:
            raise ValueError(f"a sidecar needs {', '.join(missing)}")
        argv += ["--ingress-port", str(ingress_port), "--egress-port", str(egress_port),
                 "--app-port", str(app_port), "--service", str(service), "--version", str(version)]
        for backend in allowed_backends:
            argv += ["--allowed-backend", backend]
    if netns is not None:
        argv += ["--netns", netns]
    if run_as is not None:
        argv += ["--run-as", str(run_as)]
    if config_file is not None:
        argv += ["--config-file", config_file]
    if access_log:
        argv.append("--access-log")
    if drain_timeout is not None:
        argv += ["--drain-timeout", f"{drain_timeout:g}"]
    return argv + list(extra_args)


def _request(admin_port: int, method: str, path: str, timeout: float,
             body: bytes | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(ADMIN_HOST, admin_port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise OperationError(f"proxy admin API on {ADMIN_HOST}:{admin_port} ({method} {path}) failed: "
                             f"{exc or type(exc).__name__}",
                             hint="is the proxy running? its log has the reason if it exited") from None
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw) if raw else None
    except ValueError:
        raise OperationError(f"proxy admin API on {ADMIN_HOST}:{admin_port} answered {method} {path} "
                             f"with something that is not JSON: {raw[:200]!r}") from None


def push_config(admin_port: int, config: Mapping[str, Any], timeout: float = 2.0) -> None:
    """Apply ``config``; returns once the proxy answered that it is in effect (or that it already runs
    this generation or a newer one). Raises OperationError when the proxy refuses it."""
    status, answer = _request(admin_port, "PUT", "/config", timeout, json.dumps(config).encode("utf-8"))
    if status != 200:
        detail = answer.get("error") if isinstance(answer, dict) else answer
        raise OperationError(f"proxy on admin port {admin_port} refused config generation "
                             f"{config.get('generation')}: {detail}",
                             hint="the proxy keeps running on its previous config")


def get_config(admin_port: int, timeout: float = 1.0) -> dict[str, Any] | None:
    """The config document in effect, or None before the first push."""
    status, answer = _request(admin_port, "GET", "/config", timeout)
    if status == 404:
        return None
    if status != 200 or not isinstance(answer, dict):
        raise OperationError(f"proxy on admin port {admin_port} answered GET /config with HTTP {status}")
    return answer


def server_info(admin_port: int, timeout: float = 1.0) -> dict[str, Any]:
    status, answer = _request(admin_port, "GET", "/server_info", timeout)
    if status != 200 or not isinstance(answer, dict):
        raise OperationError(f"proxy on admin port {admin_port} answered GET /server_info with HTTP {status}")
    return answer


def stats(admin_port: int, timeout: float = 1.0) -> dict[str, Any]:
    """Counters: ``stats(p)["upstreams"][service][version]["requests"]``, ``...["listeners"][name]``."""
    status, answer = _request(admin_port, "GET", "/stats", timeout)
    if status != 200 or not isinstance(answer, dict):
        raise OperationError(f"proxy on admin port {admin_port} answered GET /stats with HTTP {status}")
    return answer


def wait_live(admin_port: int, timeout: float, process: subprocess.Popen[Any] | None = None) -> None:
    """Wait until the proxy says ``"state": "LIVE"``; with ``process``, stop early if it exits."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        if process is not None and process.poll() is not None:
            raise OperationError(f"proxy (admin port {admin_port}) exited with status {process.returncode} "
                                 "before it was live", hint="its log says why (a port taken exits with 3)")
        try:
            state = server_info(admin_port, timeout=max(0.05, min(1.0, deadline - time.monotonic()))).get("state")
            if state == ProxyState.LIVE:
                return
            last = f"state {state}"
        except OperationError as exc:
            last = exc.message
        if time.monotonic() >= deadline:
            raise OperationError(f"proxy on admin port {admin_port} not live after {timeout:g} s ({last})")
        time.sleep(0.02)


def quit(admin_port: int, timeout: float = 1.0) -> None:
    """Ask the proxy to drain and exit (``POST /quitquitquit``)."""
    status, _ = _request(admin_port, "POST", "/quitquitquit", timeout)
    if status != 200:
        raise OperationError(f"proxy on admin port {admin_port} answered /quitquitquit with HTTP {status}")
