"""Running proxies and stub apps as real processes on 127.0.0.1, for tests and the benchmark.

:class:`Processes` starts what a test needs and, on exit (also when the test fails), stops every
process it started by pid: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import http.client
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshpipe.engines.local.dataplane.client import EXIT_PORT_IN_USE, proxy_command, wait_live
from meshpipe.errors import OperationError

STUB_APP = Path(__file__).with_name("stubapp.py")

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port the OS just handed out (bound to port 0, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class ProxyProcess:
    popen: subprocess.Popen[bytes]
    admin_port: int
    ports: dict[str, int]


@dataclass
class Processes:
    """Every process started here is stopped by pid when the ``with`` block ends."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def spawn(self, argv: list[str], env: Mapping[str, str] | None = None,
              stdout: int | None = subprocess.PIPE) -> subprocess.Popen[bytes]:
        full_env = dict(os.environ)
        for key in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            full_env.pop(key, None)  # nothing here may leave the machine through an inherited proxy
        full_env.update(env or {})
        popen = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, env=full_env)
        self.started.append(popen)
        return popen

    def stub(self, name: str, backend: str | None = None, env: Mapping[str, str] | None = None,
             status: int | None = None, delay: float = 0.0,
             timeout: float = 15.0) -> tuple[subprocess.Popen[bytes], int]:
        """Start a stub app on a port the OS picks; returns it and its port."""
        argv = [sys.executable, str(STUB_APP), "--name", name, "--port", "0"]
        if backend:
            argv += ["--backend", backend]
        if status is not None:
            argv += ["--status", str(status)]
        if delay:
            argv += ["--delay", str(delay)]
        popen = self.spawn(argv, env=env)
        line = _read_line(popen, timeout)
        if "listening on" not in line:
            raise RuntimeError(f"stub {name} did not start: {line!r} {_stderr(popen)}")
        return popen, int(line.rsplit(":", 1)[1])

    def sample(self, module: str, args: list[str], env: Mapping[str, str] | None = None,
               timeout: float = 15.0) -> tuple[subprocess.Popen[bytes], int]:
        """Start a bundled sample app (``meshpipe.samples.<module>``) on a port the OS picks."""
        popen = self.spawn([sys.executable, "-m", f"meshpipe.samples.{module}", "-p", "0", *args], env=env)
        line = _read_line(popen, timeout)
        if "listening on" not in line:
            raise RuntimeError(f"sample {module} did not start: {line!r} {_stderr(popen)}")
        return popen, int(line.rsplit(":", 1)[1])

    def proxy(self, mode: str, timeout: float = 15.0, stdout: int | None = subprocess.DEVNULL,
              launcher: Sequence[str] = (), env: Mapping[str, str] | None = None, **kwargs: Any) -> ProxyProcess:
        """Start a proxy on free ports (tried again if one was taken meanwhile) and wait until LIVE.

        Ports not given are picked here: ``admin_port``, and ``listen_port`` or ``ingress_port`` and
        ``egress_port``. ``launcher`` replaces ``python -m meshpipe.engines.local.dataplane`` (e.g. a
        script running the proxy with a broken parser); ``env`` is added to its environment."""
        for _ in range(5):
            ports = {"admin_port": kwargs.get("admin_port") or free_port()}
            if mode == "gateway":
                ports["listen_port"] = kwargs.get("listen_port") or free_port()
            else:
                ports["ingress_port"] = kwargs.get("ingress_port") or free_port()
                ports["egress_port"] = kwargs.get("egress_port") or free_port()
            argv = proxy_command(mode, **{**kwargs, **ports})
            if launcher:
                argv = [*launcher, *argv[3:]]
            popen = self.spawn(argv, env=env, stdout=stdout)
            try:
                wait_live(ports["admin_port"], timeout, process=popen)
            except OperationError:
                if popen.wait(timeout=5) == EXIT_PORT_IN_USE:
                    continue
                raise RuntimeError(f"proxy did not start: {_stderr(popen)}") from None
            return ProxyProcess(popen, ports["admin_port"], ports)
        raise RuntimeError("proxy did not find free ports in 5 tries")

    def stop(self, popen: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
        if popen.poll() is None:
            try:
                os.kill(popen.pid, signal.SIGTERM)
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(popen.pid, signal.SIGKILL)
                popen.wait(timeout=grace)
            except ProcessLookupError:
                pass
        for stream in (popen.stdout, popen.stderr):
            if stream is not None:
                stream.close()
        return popen.returncode

    def stop_all(self) -> None:
        for popen in reversed(self.started):
            self.stop(popen)


def _read_line(popen: subprocess.Popen[bytes], timeout: float) -> str:
    assert popen.stdout is not None
    ready, _, _ = select.select([popen.stdout], [], [], timeout)
    if not ready:
        return ""
    return popen.stdout.readline().decode("utf-8", "replace").strip()


def _stderr(popen: subprocess.Popen[bytes]) -> str:
    if popen.poll() is None or popen.stderr is None:
        return "(still running)" if popen.poll() is None else ""
    return popen.stderr.read().decode("utf-8", "replace")[-2000:]


def wait_port(port: int, timeout: float, popen: subprocess.Popen[bytes] | None = None) -> bool:
    """True once something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            return False
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def request(port: int, target: str, method: str = "GET", body: bytes | None = None,
            headers: Mapping[str, str] | None = None, timeout: float = 5.0,
            conn: http.client.HTTPConnection | None = None) -> Response:
    """One HTTP/1.1 request to 127.0.0.1:``port`` (``target`` may be absolute-form, as to a proxy)."""
    own = conn is None
    c = conn or http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        c.request(method, target, body=body, headers=dict(headers or {}))
        resp = c.getresponse()
        data = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        if own:
            c.close()


def mesh_document(generation: int, *, routes: Mapping[str, Any], endpoints: Mapping[str, Mapping[str, list[int]]],
                  gateway_routes: Sequence[tuple[str, str, str, bool]] = (),
                  namespace: str = "demo.local", max_retries: int = 2, per_retry_timeout_ms: int = 2000,
                  timeout_ms: int = 15000) -> dict[str, Any]:
    """A config document as the daemon pushes it.

    ``routes``: service -> ``[(version, weight), ...]`` or None (no route yet); ``endpoints``:
    service -> version -> sidecar ingress ports; ``gateway_routes``: (name, prefix, service, rewrite).
    """
    services: dict[str, Any] = {}
    for service, targets in routes.items():
        route = None if targets is None else {
            "prefix": "/", "method": "GET", "targets": [{"version": v, "weight": w} for v, w in targets],
            "max_retries": max_retries, "per_retry_timeout_ms": per_retry_timeout_ms, "timeout_ms": timeout_ms}
        services[f"{service}.{namespace}"] = {"service": service, "route": route}
    return {
        "generation": generation, "environment": "demo", "namespace": namespace, "services": services,
        "endpoints": {svc: {ver: [{"host": LOOPBACK, "port": p} for p in ports] for ver, ports in versions.items()}
                      for svc, versions in endpoints.items()},
        "gateway_routes": [{"name": name, "prefix": prefix, "virtual_service": f"{service}.{namespace}",
                            "rewrite_prefix": rewrite} for name, prefix, service, rewrite in gateway_routes],
    }


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0, every: float = 0.02) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(every)


def served(app_port: int) -> int:
    """How many requests a stub app has started on (its own count, asked directly, not through a proxy)."""
    return int(request(app_port, "/_count").json()["served"])


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
    except OSError:
        return True
    return False
