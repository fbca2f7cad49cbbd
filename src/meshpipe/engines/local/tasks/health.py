"""Health checks of a task's containers, as ECS runs them, against local processes.

The app container's check is ``curl -f http://localhost:<port><HealthCheckPath>``: healthy when the
server answers with a status below 400 within the timeout. The sidecar's check asks its admin API
whether its state is LIVE (``/ready``). Timings (interval, timeout, retries, start period) come from
the task definition; :class:`HealthTimings` holds them with the rules Docker applies:

* during the start period a failure does not count, and one success makes the container healthy;
* after it, ``retries`` consecutive failures make it unhealthy.

While a container is starting it is checked every ``start_interval`` seconds (Docker's start interval),
so a version is ready as soon as its app answers instead of one whole interval later.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace

LOOPBACK = "127.0.0.1"
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class HealthTimings:
    interval: float = 5.0
    timeout: float = 2.0
    retries: int = 3
    start_period: float = 10.0
    start_interval: float = 0.25

    def scaled(self, factor: float) -> HealthTimings:
        """All durations times ``factor`` (tests and demos run the same rules faster)."""
        if factor == 1.0:
            return self
        return replace(self, interval=self.interval * factor, timeout=self.timeout * factor,
                       start_period=self.start_period * factor,
                       start_interval=min(self.start_interval, self.interval * factor))


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: str


class _Exchange(asyncio.Protocol):
    """One ``GET`` on a fresh connection, as a bare protocol: no streams, no extra tasks, so that a check
    costs the daemon as little as a check can (an environment runs hundreds of them a minute)."""

    def __init__(self, request: bytes, read_body: bool, done: asyncio.Future[tuple[int, bytes]]) -> None:
        self.request = request
        self.read_body = read_body
        self.done = done
        self.buffer = bytearray()
        self.status: int | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.status is None:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > 1024:
                    self._settle(ValueError("no HTTP status line"))
                return
            parts = bytes(self.buffer[:end]).split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                self._settle(ValueError(f"not an HTTP response: {bytes(self.buffer[:60])!r}"))
                return
            self.status = int(parts[1])
            if not self.read_body:
                self._settle((self.status, b""))
                return
        if len(self.buffer) > MAX_BODY:
            self._settle(self._answer())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.status is None:
            self._settle(exc or ConnectionResetError("closed before answering"))
        else:
            self._settle(self._answer())

    def _answer(self) -> tuple[int, bytes]:
        head_end = self.buffer.find(b"\r\n\r\n")
        body = bytes(self.buffer[head_end + 4:]) if head_end >= 0 else b""
        return self.status or 0, body[:MAX_BODY]

    def _settle(self, outcome: tuple[int, bytes] | BaseException) -> None:
        if not self.done.done():
            if isinstance(outcome, BaseException):
                self.done.set_exception(outcome)
            else:
                self.done.set_result(outcome)
        if self.transport is not None:
            self.transport.close()


async def _get(port: int, path: str, timeout: float, read_body: bool) -> tuple[int, bytes]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, bytes]] = loop.create_future()
    request = (f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUser-Agent: meshpipe-health\r\n"
               "Accept: */*\r\nConnection: close\r\n\r\n").encode("ascii")
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(lambda: _Exchange(request, read_body, done), LOOPBACK, port)
            return await done
    finally:
        if transport is not None:
            transport.close()
        if done.done() and not done.cancelled():
            done.exception()  # retrieved: an answer nobody waited for is not an error to report


async def check_http(port: int, path: str, timeout: float) -> Probe:
    """``curl -f http://localhost:PORT/PATH``: a status below 400 within ``timeout`` is healthy."""
    url = f"http://localhost:{port}{path}"
    try:
        status, _ = await _get(port, path, timeout, read_body=False)
    except TimeoutError:
        return Probe(False, f"{url} did not answer within {timeout:g} s")
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConnectionRefusedError):
            reason = "connection refused"  # asyncio and uvloop word it differently
        else:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        return Probe(False, f"{url}: {reason}")
    if status >= 400:
        return Probe(False, f"{url} answered HTTP {status}")
    return Probe(True, f"{url} answered HTTP {status}")


async def server_info(admin_port: int, timeout: float) -> dict[str, object] | None:
    """A proxy's ``/server_info`` document, or None when it does not answer with one in time."""
    try:
        status, body = await _get(admin_port, "/server_info", timeout, read_body=True)
        info = json.loads(body.decode("utf-8", "replace")) if status == 200 else None
    except (TimeoutError, OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


async def check_sidecar(admin_port: int, timeout: float) -> Probe:
    """The sidecar's check: its admin API says the state is LIVE.

    The task definition's check greps ``/server_info`` for it; ``/ready`` answers the same question (200
    exactly when the state is LIVE) without a document to build and parse, twice per task per interval."""
    try:
        status, _ = await _get(admin_port, "/ready", timeout, read_body=False)
    except TimeoutError:
        return Probe(False, f"sidecar admin port {admin_port} did not answer within {timeout:g} s")
    except (OSError, ValueError) as exc:
        return Probe(False, f"sidecar admin port {admin_port}: {exc}")
    if status != 200:
        return Probe(False, f"sidecar is not LIVE (/ready answered HTTP {status})")
    return Probe(True, "sidecar LIVE")
