"""Access log lines on stdout, one per request, close to Envoy's default format.

    [2025-06-01T10:00:00.123Z] "GET /hello/Bob HTTP/1.1" 200 - 0 57 3 "hello-web" "66f2a19a" "127.0.0.1:40123" ingress

Fields: start time, request line as received, status (0: the client left first), failure flag or ``-``,
request body bytes, response bytes, duration in ms, upstream service, version and endpoint, listener.
Lines are buffered and flushed by the proxy's timer a few times a second while requests are in flight, and
within 20 ms of the last one ending; not per request.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TYPE_CHECKING, TextIO

from meshpipe.engines.local.dataplane.routing import Forward

if TYPE_CHECKING:
    from meshpipe.engines.local.dataplane.exchange import Exchange


class AccessLog:
    __slots__ = ("_second", "_stamp", "listener", "out")

    def __init__(self, listener: str, out: TextIO | None = None) -> None:
        self.listener = listener
        self.out = out if out is not None else sys.stdout
        self._second = -1
        self._stamp = ""

    def _timestamp(self, wall: float) -> str:
        second = int(wall)
        if second != self._second:  # formatting a date is the expensive part: once a second
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((wall - second) * 1000):03d}Z"

    def write(self, ex: Exchange) -> None:
        duration_s = time.monotonic() - ex.start
        decision = ex.decision
        if type(decision) is Forward and ex.endpoint is not None:
            upstream = f'"{decision.service}" "{decision.version}" "{ex.endpoint.host}:{ex.endpoint.port}"'
        else:
            upstream = '"-" "-" "-"'
        proto = "HTTP/1.0" if ex.http10 else "HTTP/1.1"
        self.out.write(
            f'[{self._timestamp(time.time() - duration_s)}] "{ex.method.decode("latin-1")} '
            f'{ex.url.decode("latin-1")} {proto}" {ex.status} {ex.flag or "-"} {ex.bytes_in} {ex.bytes_out} '
            f"{duration_s * 1000:.0f} {upstream} {self.listener}\n")

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # stdout gone: nothing left to do with log lines
            self.out.flush()
