"""A client connection to a listener: parse requests with httptools, hand each to an :class:`Exchange`.

Requests on one connection are answered in order. A pipelined request that arrives while the one
before it is being answered waits (with its body) and the connection stops reading until its turn.
The request head for the next hop is built while the headers are parsed: hop-by-hop headers are
dropped, ``Expect: 100-continue`` is answered here, and the gateway adds ``x-forwarded-for``,
``x-forwarded-proto`` and ``x-request-id`` as an edge proxy does.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from collections import deque
from typing import TYPE_CHECKING

import httptools

from meshpipe.engines.local.dataplane.exchange import Exchange
from meshpipe.engines.local.dataplane.http11 import CRLF, HEADER_SEP, HOP_BY_HOP, local_reply
from meshpipe.engines.local.dataplane.upstream import BROKEN, PIPELINED

if TYPE_CHECKING:
    from meshpipe.engines.local.dataplane.proxy import Listener

_HOST, _TRANSFER_ENCODING, _EXPECT, _HOP, _FORWARDED_FOR, _REQUEST_ID = range(6)
_SPECIAL = {
    b"host": _HOST, b"transfer-encoding": _TRANSFER_ENCODING, b"expect": _EXPECT,
    b"x-forwarded-for": _FORWARDED_FOR, b"x-request-id": _REQUEST_ID,
    **{name: _HOP for name in HOP_BY_HOP},
}


_NOTHING: frozenset[bytes] = frozenset()


def _request_id() -> bytes:
    raw = os.urandom(16).hex()
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-{raw[16:20]}-{raw[20:]}".encode("ascii")


class DownstreamProtocol(asyncio.Protocol):
    __slots__ = ("active", "chunked", "closing", "expect", "forwarded_for", "has_request_id", "host", "listener",
                 "match_headers", "parser", "parts", "paused", "peer", "queue", "reading", "transport", "url",
                 "wanted", "writing_paused")

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.active: Exchange | None = None  # the exchange being answered
        self.reading: Exchange | None = None  # the exchange whose request is being read
        self.queue: deque[Exchange] | None = None  # pipelined exchanges waiting for their turn
        self.closing = False
        self.paused = 0
        self.writing_paused = False
        self.peer = b"127.0.0.1"
        self._reset_request()

    def _reset_request(self) -> None:
        self.url = b""
        self.parts: list[bytes] = [b""]  # [request line (filled in later), header lines...]
        self.host: bytes | None = None
        self.chunked = False
        self.expect = False
        self.forwarded_for: bytes | None = None
        self.has_request_id = False
        # Values of the headers some header route matches on (kept only when the config has such routes).
        self.wanted: frozenset[bytes] = _NOTHING
        self.match_headers: dict[bytes, bytes] | None = None

    # ---- asyncio callbacks ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        listener = self.listener
        if listener.dp.draining:
            transport.close()
            return
        listener.connections.add(self)
        stats = listener.stats
        stats.connections_total += 1
        stats.connections_active += 1
        if listener.edge:
            peer = transport.get_extra_info("peername")
            if peer:
                self.peer = str(peer[0]).encode("ascii")

    def connection_lost(self, exc: Exception | None) -> None:
        listener = self.listener
        if self in listener.connections:
            listener.connections.discard(self)
            listener.stats.connections_active -= 1
        self.closing = True
        self.queue = None
        self.reading = None
        ex = self.active
        if ex is not None and not ex.finished:
            ex.downstream_lost()
        self.active = None
        listener.dp.connection_closed()

    def data_received(self, data: bytes) -> None:
        if self.paused & BROKEN:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse_stream(501, "unsupported", "protocol upgrades and CONNECT are not supported")
        except httptools.HttpParserCallbackError:
            print("meshpipe proxy: internal error while handling a request:", file=sys.stderr)
            traceback.print_exc()
            self._refuse_stream(500, "internal_error", "internal proxy error")
        except httptools.HttpParserError as exc:
            self._refuse_stream(400, "bad_request", f"malformed HTTP request: {exc}")

    def pause_writing(self) -> None:  # the client reads the response slower than the upstream sends it
        self.writing_paused = True
        ex = self.active
        if ex is not None and ex.conn is not None:
            ex.conn.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        ex = self.active
        if ex is not None and ex.conn is not None:
            ex.conn.resume_reading()

    # ---- httptools callbacks ----

    def on_url(self, url: bytes) -> None:
        if not self.url:
            config = self.listener.dp.config
            self.wanted = config.match_header_names if config is not None else _NOTHING
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if self.wanted and lower in self.wanted:
            if self.match_headers is None:
                self.match_headers = {}
            self.match_headers.setdefault(lower, value)  # the first of repeated headers decides
        kind = _SPECIAL.get(lower)
        if kind is not None:
            if kind == _HOST:
                self.host = value
            elif kind == _TRANSFER_ENCODING:
                self.chunked = b"chunked" in value.lower()
            elif kind == _EXPECT:
                self.expect = value.lower() == b"100-continue"
                return
            elif kind == _HOP:
                return
            elif kind == _FORWARDED_FOR:
                if self.listener.edge:
                    self.forwarded_for = value
                    return
            else:
                self.has_request_id = True
        self.parts.append(name + HEADER_SEP + value + CRLF)

    def on_headers_complete(self) -> None:
        parser = self.parser
        if parser.should_upgrade():
            self.reading = None  # refused when the parser stops (HttpParserUpgrade)
            self._reset_request()
            return
        listener = self.listener
        method = parser.get_method()
        url = self.url
        decision = listener.decide(method, url, self.host, self.match_headers)
        parts = self.parts
        if listener.edge:
            forwarded = self.forwarded_for
            parts.append(b"x-forwarded-for: " + (forwarded + b", " + self.peer if forwarded else self.peer) + CRLF)
            parts.append(b"x-forwarded-proto: http\r\n")
            if not self.has_request_id:
                parts.append(b"x-request-id: " + _request_id() + CRLF)
        parts.append(CRLF)
        ex = Exchange(self, listener, method, url, parts, decision, self.chunked, self.expect,
                      parser.should_keep_alive(), parser.get_http_version() == "1.0")
        self._reset_request()
        self.reading = ex
        if self.active is None:
            self.active = ex
            ex.begin()
        else:
            if self.queue is None:
                self.queue = deque()
            self.queue.append(ex)
            self.pause(PIPELINED)

    def on_body(self, body: bytes) -> None:
        ex = self.reading
        if ex is not None:
            ex.request_data(body)

    def on_message_complete(self) -> None:
        ex = self.reading
        if ex is not None:
            self.reading = None
            ex.request_complete()

    # ---- used by exchanges and the proxy ----

    def exchange_finished(self, ex: Exchange, keep_alive: bool) -> None:
        if ex is not self.active:
            return
        self.active = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not keep_alive or self.closing:
            transport.close()
            return
        queue = self.queue
        if queue:
            nxt = queue.popleft()
            if not queue:
                self.resume(PIPELINED)
            self.active = nxt
            nxt.begin()

    def close_when_idle(self) -> None:
        """Drain: finish the exchange in progress (if any), then close."""
        self.closing = True
        if self.active is None and self.transport is not None:
            self.transport.close()

    def pause(self, reason: int) -> None:
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def _refuse_stream(self, status: int, flag: str, message: str) -> None:
        """The request stream cannot be read any further: answer (if it is our turn) and close."""
        self.pause(BROKEN)
        self.reading = None
        self.queue = None
        self.closing = True
        if self.active is None and self.transport is not None:
            stats = self.listener.stats
            stats.requests += 1
            stats.local_replies += 1
            stats.by_class[status // 100] += 1
            if status >= 500:
                stats.errors += 1
            self.transport.write(local_reply(status, flag, message, keep_alive=False))
            self.transport.close()
