"""Health checks of a task's containers, as ECS runs them, against local processes.

The app container's check is ``curl -f http://localhost:<port><HealthCheckPath>``: healthy when the
server answers with a status below 400 within the timeout. The sidecar's check asks its admin API's
``/server_info`` for ``"state": "LIVE"``. Timings (interval, timeout, retries, start period) come from
the task definition; :class:`HealthTimings` holds them with the rules Docker applies:

* during the start period a failure does not count, and one success makes the container healthy;
* after it, ``retries`` consecutive failures make it unhealthy.

While a container is starting it is checked every ``start_interval`` seconds (Docker's start interval),
so a version is ready as soon as its app answers instead of one whole interval later.
"""

from __future__ import annotations

import asyncio
import contextlib
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


async def _get(port: int, path: str, timeout: float, read_body: bool) -> tuple[int, bytes]:
    async def exchange() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUser-Agent: meshpipe-health\r\n"
                         "Accept: */*\r\nConnection: close\r\n\r\n".encode("ascii"))
            await writer.drain()
            status_line = await reader.readline()
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                raise ValueError(f"not an HTTP response: {status_line[:60]!r}")
            status = int(parts[1])
            body = b""
            if read_body:
                # Skip the headers, then read until the server closes (we asked it to).
                while await reader.readline() not in (b"\r\n", b"\n", b""):
                    pass
                body = await reader.read(MAX_BODY)
            return status, body
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    return await asyncio.wait_for(exchange(), timeout)


async def check_http(port: int, path: str, timeout: float) -> Probe:
    """``curl -f http://localhost:PORT/PATH``: a status below 400 within ``timeout`` is healthy."""
    url = f"http://localhost:{port}{path}"
    try:
        status, _ = await _get(port, path, timeout, read_body=False)
    except TimeoutError:
        return Probe(False, f"{url} did not answer within {timeout:g} s")
    except (OSError, ValueError) as exc:
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
    """The sidecar's check: its admin API's /server_info says the state is LIVE."""
    try:
        status, body = await _get(admin_port, "/server_info", timeout, read_body=True)
    except TimeoutError:
        return Probe(False, f"sidecar admin port {admin_port} did not answer within {timeout:g} s")
    except (OSError, ValueError) as exc:
        return Probe(False, f"sidecar admin port {admin_port}: {exc}")
    if status != 200:
        return Probe(False, f"sidecar /server_info answered HTTP {status}")
    try:
        state = json.loads(body.decode("utf-8", "replace")).get("state")
    except (ValueError, AttributeError):
        # Tolerate chunked framing or trailing bytes: what the original sample's grep would see is enough.
        state = "LIVE" if b'"LIVE"' in body else None
    if state != "LIVE":
        return Probe(False, f"sidecar state is {state!r}, not LIVE")
    return Probe(True, "sidecar LIVE")
