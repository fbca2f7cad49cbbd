"""How much a proxy takes from a client before it refuses: the size of a request head, its headers, and
the time the client has to send a request the proxy is holding.

Sizes follow Envoy's defaults (``max_request_headers_kb`` 60, ``max_headers_count`` 100; both answered
431). Envoy leaves ``request_headers_timeout`` and ``request_timeout`` off by default and bounds a
stalled client only by its 5-minute stream idle timeout, which a client sending a byte now and then
never reaches; here both are on, so a slow client costs a socket for seconds, not for ever.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools

DEFAULT_MAX_REQUEST_HEADERS_KB = 60
DEFAULT_MAX_HEADERS_COUNT = 100
DEFAULT_REQUEST_HEADERS_TIMEOUT_MS = 10000
DEFAULT_REQUEST_TIMEOUT_MS = 15000

# What parses requests; the tests hand in one with a check turned off, to show that a test notices.
ParserFactory = Callable[[Any], httptools.HttpRequestParser]


@dataclass(frozen=True)
class RequestLimits:
    max_head_bytes: int = DEFAULT_MAX_REQUEST_HEADERS_KB * 1024  # request line and header lines together
    max_headers: int = DEFAULT_MAX_HEADERS_COUNT
    # The whole head must arrive within this of its first byte (answered 408).
    headers_timeout_s: float = DEFAULT_REQUEST_HEADERS_TIMEOUT_MS / 1000
    # A request the proxy holds (its body not complete and small enough to keep back) must arrive whole
    # within this of its head; once forwarded, the route's timeouts bound it instead.
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_MS / 1000
