"""Access log lines on stdout, one JSON object per request, with Envoy's default access-log fields.

    {"start_time": "2025-06-01T10:00:00.123Z", "method": "GET", "path": "/hello/Bob", "protocol": "HTTP/1.1",
     "response_code": 200, "response_flags": "-", "bytes_received": 0, "bytes_sent": 187, "duration": 3,
     "upstream_service_time": 2, "x_forwarded_for": "127.0.0.1", "user_agent": "curl/8.5.0",
     "request_id": "3f1c…", "authority": "hello-backend.demo.local", "upstream_host": "127.0.0.1:40123",
     "upstream_cluster": "hello-backend/e9d5f17a", "listener": "egress", "meshpipe_flag": null}

The first fifteen keys are the fields of Envoy's default format (``start_time`` … ``upstream_host``);
``response_flags`` uses Envoy's short flags (``UF`` no connection, ``UH`` no healthy endpoint, ``NR``
no route, ``UT`` timeout, ``UC`` upstream closed, ``DC`` client left, ``URX`` retries exhausted …), and
``meshpipe_flag`` says the same in meshpipe's words. ``duration`` and ``upstream_service_time`` are in ms;
``bytes_sent`` counts what was written to the client, response head included. A value the request did not
carry is null. Lines are buffered and flushed by the proxy's timer a few times a second while requests are in flight,
and within 20 ms of the last one ending, not per request;
the headers are read back from the request head only when a line is written, so the request path pays
nothing when the log is off.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import TYPE_CHECKING, TextIO

from meshpipe.engines.local.dataplane.routing import Forward

if TYPE_CHECKING:
    from meshpipe.engines.local.dataplane.exchange import Exchange

# meshpipe's failure flags -> Envoy's response flags.
ENVOY_FLAGS = {
    "upstream_connect_failure": "UF", "upstream_reset": "UC", "upstream_bad_response": "UPE",
    "upstream_timeout": "UT", "downstream_reset": "DC", "no_healthy_endpoint": "UH", "no_route": "NR",
    "route_not_matched": "NR", "no_gateway_route": "NR", "no_virtual_service": "NR", "egress_denied": "NR",
    "no_config": "NC", "bad_request": "DPE", "unsupported": "DPE",
}
_WANTED = {b"user-agent": "user_agent", b"x-request-id": "request_id", b"x-forwarded-for": "x_forwarded_for",
           b"host": "authority"}


def _headers(head: bytes) -> dict[str, str]:
    """The few request headers the log shows, from a request head (first value of each)."""
    found: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        key = _WANTED.get(name.strip().lower()) if sep else None
        if key is not None and key not in found:
            found[key] = value.strip().decode("latin-1")
    return found


def response_flags(ex: Exchange) -> str:
    flags = []
    if ex.flag:
        flags.append(ENVOY_FLAGS.get(ex.flag, ex.flag))
    decision = ex.decision
    if type(decision) is Forward and ex.attempt > 1 and ex.status >= 500 and ex.attempt > decision.max_retries:
        flags.append("URX")
    return ",".join(flags) or "-"


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

    def line(self, ex: Exchange) -> dict[str, object]:
        now = time.monotonic()
        duration_s = now - ex.start
        decision = ex.decision
        headers = _headers(ex.request_head or b"".join(ex.parts))
        upstream_host = cluster = None
        if type(decision) is Forward and ex.endpoint is not None:
            upstream_host = f"{ex.endpoint.host}:{ex.endpoint.port}"
            cluster = f"{decision.service}/{decision.version}"
        if type(decision) is Forward and not headers.get("authority"):
            headers["authority"] = decision.service
        return {
            "start_time": self._timestamp(time.time() - duration_s),
            "method": ex.method.decode("latin-1"),
            "path": ex.url.decode("latin-1"),
            "protocol": "HTTP/1.0" if ex.http10 else "HTTP/1.1",
            "response_code": ex.status,
            "response_flags": response_flags(ex),
            "bytes_received": ex.bytes_in,
            "bytes_sent": ex.bytes_out,
            "duration": round(duration_s * 1000),
            "upstream_service_time": round((ex.head_at - ex.attempt_start) * 1000) if ex.head_at else None,
            "x_forwarded_for": headers.get("x_forwarded_for"),
            "user_agent": headers.get("user_agent"),
            "request_id": headers.get("request_id"),
            "authority": headers.get("authority"),
            "upstream_host": upstream_host,
            "upstream_cluster": cluster,
            "listener": self.listener,
            "meshpipe_flag": ex.flag or None,
        }

    def write(self, ex: Exchange) -> None:
        self.out.write(json.dumps(self.line(ex)) + "\n")

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # stdout gone: nothing left to do with log lines
            self.out.flush()
