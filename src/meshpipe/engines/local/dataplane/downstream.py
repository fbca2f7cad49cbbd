"""A client connection to a listener: parse requests with httptools, hand each to an :class:`Exchange`.

Requests on one connection are answered in order. A pipelined request that arrives while the one
before it is being answered waits (with its body) and the connection stops reading until its turn.

The request head for the next hop is built while the headers are parsed, from the parser's fields,
never from the client's bytes: hop-by-hop headers (and those ``Connection`` names) are dropped, the
body's framing is written afresh from what the parser decided (one ``content-length`` or
``transfer-encoding`` line), ``Expect: 100-continue`` is answered here, and the gateway adds
``x-forwarded-for``, ``x-forwarded-proto`` and ``x-request-id`` as an edge proxy does.

Hostile input is refused where it is found. llhttp refuses malformed framing (Content-Length with
Transfer-Encoding, duplicate or non-numeric Content-Length, chunked not last, obs-fold, bad chunk
sizes); this module refuses oversized heads (431), a missing or repeated Host, protocol versions other
than 1.0 and 1.1, and clients too slow to send their request (408). A request goes upstream only once
it is whole (or once its body passes the size kept for a retry), so a refused or unfinished request
has sent nothing anywhere. An ``Upgrade: h2c`` is ignored, as Envoy does: the client gets HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import traceback
from collections import deque
from typing import TYPE_CHECKING

import httptools

from meshpipe.engines.local.dataplane.exchange import Exchange
from meshpipe.engines.local.dataplane.http11 import (
    CONNECTION_OPTIONS,
    CRLF,
    END_TO_END,
    HEADER_SEP,
    HOP_BY_HOP,
    local_reply,
)
from meshpipe.engines.local.dataplane.upstream import BROKEN, PIPELINED

if TYPE_CHECKING:
    from meshpipe.engines.local.dataplane.proxy import Listener

(_HOST, _TRANSFER_ENCODING, _CONTENT_LENGTH, _EXPECT, _HOP, _CONNECTION, _UPGRADE, _FORWARDED_FOR,
 _REQUEST_ID) = range(9)
_SPECIAL = {
    **{name: _HOP for name in HOP_BY_HOP},
    b"host": _HOST, b"transfer-encoding": _TRANSFER_ENCODING, b"content-length": _CONTENT_LENGTH,
    b"expect": _EXPECT, b"connection": _CONNECTION, b"upgrade": _UPGRADE,
    b"x-forwarded-for": _FORWARDED_FOR, b"x-request-id": _REQUEST_ID,
}

BAD_REQUEST = "bad_request"
HEADERS_TOO_LARGE = "request_headers_too_large"
REQUEST_TIMEOUT = "request_timeout"

LINGER_S = 1.0

_NOTHING: frozenset[bytes] = frozenset()
_VERSIONS = ("1.1", "1.0")


class Refusal(Exception):
    """Raised in a parser callback: the request is refused with ``status`` and parsing stops."""

    def __init__(self, status: int, flag: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.flag = flag
        self.message = message


class _RequestIds:
    """``x-request-id`` values shaped as version-4 UUIDs: 76 random bits drawn once per process, then a
    48-bit counter. Unique in a process by the counter, across processes by the random part; drawing
    16 random bytes per request (a system call) cost a tenth of the gateway's time per request."""

    def __init__(self) -> None:
        raw = os.urandom(10).hex()
        self.prefix = f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-{raw[16:20]}-".encode("ascii")
        self.counter = itertools.count(int.from_bytes(os.urandom(6), "big"))

    def next(self) -> bytes:
        return self.prefix + b"%012x" % (next(self.counter) & 0xFFFFFFFFFFFF)


_request_ids = _RequestIds()


def _absolute_authority(url: bytes) -> bytes | None:
    """``http://user@hello-backend.demo.local:80/data`` -> ``hello-backend.demo.local:80``."""
    if url[:7].lower() != b"http://":
        return None
    rest = url[7:]
    for sep in (b"/", b"?", b"#"):
        cut = rest.find(sep)
        if cut >= 0:
            rest = rest[:cut]
    return rest[rest.rfind(b"@") + 1:]


class DownstreamProtocol(asyncio.Protocol):
    __slots__ = ("active", "chunked", "closing", "connection_names", "content_length", "dp", "edge",
                 "edge_lines", "expect", "forwarded_for", "h2c", "has_request_id", "head_bytes", "host",
                 "host_at", "in_head", "limits", "listener", "match_headers", "parser", "parts", "paused",
                 "peer", "queue", "read_size", "reading", "refusal", "replaying", "skipped", "skipped_bytes",
                 "timer", "transport", "upgrade", "url", "wanted", "writing_paused")

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.dp = dp = listener.dp
        self.edge = listener.edge
        self.limits = dp.limits
        self.parser = dp.new_parser(self)
        self.transport: asyncio.Transport | None = None
        self.active: Exchange | None = None  # the exchange being answered
        self.reading: Exchange | None = None  # the exchange whose request is being read
        self.queue: deque[Exchange] | None = None  # pipelined exchanges waiting for their turn
        self.closing = False
        self.paused = 0
        self.writing_paused = False
        self.peer = b"127.0.0.1"
        self.edge_lines = b""  # x-forwarded-for and x-forwarded-proto of a client that sent no x-forwarded-for
        self.read_size = 0
        self.in_head = False  # a request head has begun and is not complete
        self.head_bytes = 0  # bytes read since then (a bound on what the parser may be holding)
        self.timer: asyncio.TimerHandle | None = None  # armed only while a read ended inside a request
        self.refusal: tuple[int, str, str] | None = None  # answered once the requests before it are
        # An ignored h2c upgrade: b"" without a body, else the framing line of the body still to come.
        self.h2c: bytes | None = None
        self.replaying = False
        self._reset_request()

    def _reset_request(self) -> None:
        self.url = b""
        self.parts: list[bytes] = [b""]  # [request line (filled in later), header lines...]
        self.host: bytes | None = None
        self.host_at = 0  # where the Host line is in parts; -1 when there were two
        self.skipped = 0  # headers not copied into parts (framing, hop-by-hop), and their bytes
        self.skipped_bytes = 0
        self.chunked: bytes | None = None  # the Transfer-Encoding value (llhttp accepts it only with chunked last)
        self.content_length: bytes | None = None
        self.expect = False
        self.forwarded_for: bytes | None = None
        self.has_request_id = False
        self.connection_names: list[bytes] | None = None
        self.upgrade: bytes | None = None
        # Names of the headers some header route matches on, and their values (kept only when the config
        # has such routes).
        config = self.dp.config
        self.wanted: frozenset[bytes] = config.match_header_names if config is not None else _NOTHING
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
            self.edge_lines = b"x-forwarded-for: " + self.peer + b"\r\nx-forwarded-proto: http\r\n"

    def connection_lost(self, exc: Exception | None) -> None:
        listener = self.listener
        if self in listener.connections:
            listener.connections.discard(self)
            listener.stats.connections_active -= 1
        self._cancel_timer()
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
        if self.in_head:
            self.head_bytes += len(data)
        self.read_size = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade(data, exc)
            return
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__
            if isinstance(refusal, Refusal):
                self.refuse(refusal.status, refusal.flag, refusal.message)
                return
            print("meshpipe proxy: internal error while handling a request:", file=sys.stderr)
            traceback.print_exc()
            self.refuse(500, "internal_error", "internal proxy error")
            return
        except httptools.HttpParserError as exc:
            self.refuse(400, BAD_REQUEST, f"malformed HTTP request: {exc}")
            return
        if self.in_head:
            if self.head_bytes > self.limits.max_head_bytes:
                self.refuse(431, HEADERS_TOO_LARGE, self._too_large("request line and headers").message)
            elif self.timer is None:
                self._arm(self.limits.headers_timeout_s)
        elif self.timer is None and self.reading is not None and self.reading is self.active \
                and not self.reading.started:
            self._arm(self.limits.request_timeout_s)

    def eof_received(self) -> bool | None:
        """The client sends nothing more. A request it left unfinished that the proxy still holds (none
        of it went upstream) is answered 400, for a client that only half-closed to read the answer.
        Otherwise the connection closes and an exchange in flight counts as a client reset, as Envoy
        treats a client's FIN on HTTP/1.1."""
        if self.in_head or (self.reading is not None and not self.reading.started):
            self.refuse(400, BAD_REQUEST, "the request ended before it was complete")
            return True  # refuse() answers and closes
        return None

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

    def on_message_begin(self) -> None:
        self.in_head = True
        self.head_bytes = 0
        self._reset_request()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_head_bytes:
            raise self._too_large("request line")

    def on_header(self, name: bytes, value: bytes) -> None:
        # The hot path: most headers are copied as they are. Limits are checked once the head is
        # complete (and after every read on the bytes so far, see data_received).
        if not self.in_head:
            return  # a trailer field of a chunked body: trailers are not forwarded
        lower = name.lower()
        if self.wanted and lower in self.wanted:
            if self.match_headers is None:
                self.match_headers = {}
            self.match_headers.setdefault(lower, value)  # the first of repeated headers decides
        kind = _SPECIAL.get(lower)
        if kind is None:
            self.parts.append(name + HEADER_SEP + value + CRLF)
        elif kind == _HOST:
            self.host = value
            self.host_at = -1 if self.host_at else len(self.parts)
            self.parts.append(name + HEADER_SEP + value + CRLF)
        else:
            self._special(kind, name, value)

    def _special(self, kind: int, name: bytes, value: bytes) -> None:
        """A header the proxy reads: kept (x-request-id; x-forwarded-for inside the mesh) or taken out of
        the head, to be written afresh (framing, x-forwarded-for at the edge) or dropped (hop-by-hop)."""
        if kind == _REQUEST_ID or (kind == _FORWARDED_FOR and not self.edge):
            self.has_request_id = self.has_request_id or kind == _REQUEST_ID
            self.parts.append(name + HEADER_SEP + value + CRLF)
            return
        self.skipped += 1
        self.skipped_bytes += len(name) + len(value) + 4
        if kind == _TRANSFER_ENCODING:
            self.chunked = value if self.chunked is None else self.chunked + b", " + value
        elif kind == _CONTENT_LENGTH:
            self.content_length = value
        elif kind == _EXPECT:
            self.expect = value.lower() == b"100-continue"
        elif kind == _CONNECTION:
            for token in value.lower().split(b","):
                token = token.strip()
                if token and token not in CONNECTION_OPTIONS and token not in END_TO_END:
                    if self.connection_names is None:
                        self.connection_names = []
                    self.connection_names.append(token)
        elif kind == _UPGRADE:
            self.upgrade = value
        elif kind == _FORWARDED_FOR:  # at the edge: appended to once the head is complete
            self.forwarded_for = value

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.timer is not None:
            self._cancel_timer()
        if self.replaying:  # the framing of an ignored h2c upgrade's body: the exchange already exists
            self.replaying = False
            return
        parts = self.parts
        url = self.url
        limits = self.limits
        if len(parts) + self.skipped > limits.max_headers + 1:
            raise Refusal(431, HEADERS_TOO_LARGE, f"more than {limits.max_headers} request headers")
        # The head is within the bytes read since it began: only a head that may be too large is measured.
        if self.head_bytes + self.read_size > limits.max_head_bytes and \
                len(url) + sum(map(len, parts)) + self.skipped_bytes > limits.max_head_bytes:
            raise self._too_large("request line and headers")
        parser = self.parser
        version = parser.get_http_version()
        if version not in _VERSIONS:
            raise Refusal(505, BAD_REQUEST, f"HTTP/{version} is not supported: HTTP/1.1 or HTTP/1.0")
        method = parser.get_method()
        if (self.upgrade is not None or method == b"CONNECT") and parser.should_upgrade():
            if method == b"CONNECT" or (self.upgrade or b"").strip().lower() != b"h2c":
                self.reading = None  # refused when the parser stops (HttpParserUpgrade)
                return
            # Asked to switch to HTTP/2: carry on in HTTP/1.1 as if not asked. llhttp stops here anyway
            # (its body, if any, is read with a fresh parser; see _upgrade).
            self.h2c = (b"transfer-encoding: chunked" if self.chunked is not None else
                        b"content-length: %d" % int(self.content_length) if self.content_length else b"")
        if self.host_at <= 0:
            if self.host_at < 0:
                raise Refusal(400, BAD_REQUEST, "more than one Host header")
            if version == "1.1" and url[:1] == b"/":
                raise Refusal(400, BAD_REQUEST, "HTTP/1.1 request without a Host header")
        listener = self.listener
        decision = listener.decide(method, url, self.host, self.match_headers)
        if self.connection_names is not None:
            parts = self._drop_connection_named(parts)
        authority = _absolute_authority(url) if url[:1] != b"/" else None
        if authority is not None:  # an absolute-form target's authority replaces Host (RFC 9112, 3.2.2)
            line = b"host: " + authority + CRLF
            if self.host_at:
                parts[self.host_at] = line
            else:
                parts.append(line)
        if self.chunked is not None:
            parts.append(b"transfer-encoding: " + self.chunked + CRLF)
        elif self.content_length is not None:
            parts.append(b"content-length: %d\r\n" % int(self.content_length))
        if self.edge:
            forwarded = self.forwarded_for
            if forwarded is None:
                parts.append(self.edge_lines)
            else:
                parts.append(b"x-forwarded-for: " + forwarded + b", " + self.peer + b"\r\nx-forwarded-proto: http\r\n")
            if not self.has_request_id:
                parts.append(b"x-request-id: " + _request_ids.next() + CRLF)
        parts.append(CRLF)
        ex = Exchange(self, listener, method, url, parts, decision, self.chunked is not None, self.expect,
                      parser.should_keep_alive(), version == "1.0")
        self.reading = ex
        if self.active is None:
            self.active = ex
            ex.turn()
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
        if self.h2c:
            return  # llhttp ends an upgrade request at its head; its body is still to come
        ex = self.reading
        if ex is not None:
            self.reading = None
            if self.timer is not None:
                self._cancel_timer()
            ex.request_complete()

    # ---- used by exchanges and the proxy ----

    def exchange_finished(self, ex: Exchange, keep_alive: bool) -> None:
        if ex is not self.active:
            return
        self.active = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not keep_alive:
            self._close()
            return
        queue = self.queue
        if queue:
            nxt = queue.popleft()
            if not queue:
                self.resume(PIPELINED)
            self.active = nxt
            nxt.turn()
        elif self.refusal is not None:
            self._write_refusal()
        elif self.closing:
            transport.close()

    def body_ready(self, ex: Exchange) -> None:
        """``ex`` holds more body than it keeps back: it goes upstream now, if it is its turn."""
        if ex is self.active and not ex.started:
            if self.timer is not None:
                self._cancel_timer()
            ex.begin()

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

    def refuse(self, status: int, flag: str, message: str) -> None:
        """The request stream cannot be read any further: answer the request being read with ``status``
        once those before it are answered (at once if none are), then close."""
        self.pause(BROKEN)
        self._cancel_timer()
        self.closing = True
        self.in_head = False
        ex, self.reading = self.reading, None
        if ex is not None and not ex.finished:
            if ex is self.active:
                ex.fail(status, flag, message)  # an upstream try, if one started, is dropped
                return
            if self.queue is not None and ex in self.queue:
                self.queue.remove(ex)
        self.refusal = (status, flag, message)
        if self.active is None:
            self._write_refusal()

    # ---- internals ----

    def _write_refusal(self) -> None:
        status, flag, message = self.refusal  # type: ignore[misc]
        self.refusal = None
        self.queue = None
        if self.transport is None or self.transport.is_closing():
            return
        stats = self.listener.stats
        stats.requests += 1
        stats.local_replies += 1
        stats.by_class[status // 100] += 1
        if status >= 500:
            stats.errors += 1
        self.transport.write(local_reply(status, flag, message, keep_alive=False))
        self._close()

    def _close(self) -> None:
        """Close after an answer. When the client may still be sending (a refused request), closing at
        once would make the kernel reset the connection, and a reset can destroy the answer before the
        client reads it: so send FIN, read and drop what still comes for a moment, then close
        (Envoy's delayed close, 1 s by default)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not self.paused & BROKEN or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        transport.resume_reading()  # data_received drops everything while BROKEN
        self.listener.dp.loop.call_later(LINGER_S, transport.close)

    def _too_large(self, what: str) -> Refusal:
        kb = self.limits.max_head_bytes // 1024
        return Refusal(431, HEADERS_TOO_LARGE, f"{what} larger than {kb} KiB")

    def _upgrade(self, data: bytes, exc: httptools.HttpParserUpgrade) -> None:
        framing, self.h2c = self.h2c, None
        if framing is None:
            self.refuse(501, "unsupported", "protocol upgrades and CONNECT are not supported")
            return
        # llhttp stops after an upgrade request's head: the rest of the stream is HTTP/1.1 still.
        self.parser = self.listener.dp.new_parser(self)
        if framing:  # the request's body comes next: give the fresh parser its framing first
            self.replaying = True
            self.parser.feed_data(b"POST / HTTP/1.1\r\n" + framing + b"\r\n\r\n")
        rest = data[exc.args[0]:] if exc.args else b""
        if rest:
            self.data_received(rest)

    def _drop_connection_named(self, parts: list[bytes]) -> list[bytes]:
        names = self.connection_names or ()
        kept = [parts[0]]
        for i, line in enumerate(parts[1:], 1):
            if line.split(b":", 1)[0].lower() in names:
                if i == self.host_at:
                    self.host_at = 0
                continue
            if i == self.host_at:
                self.host_at = len(kept)
            kept.append(line)
        return kept

    def _arm(self, seconds: float) -> None:
        self.timer = self.listener.dp.loop.call_later(seconds, self._timed_out)

    def _cancel_timer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()

    def _timed_out(self) -> None:
        self.timer = None
        if self.in_head:
            self.refuse(408, REQUEST_TIMEOUT, f"request headers not received within "
                                              f"{self.limits.headers_timeout_s * 1000:.0f} ms")
        elif self.reading is not None and not self.reading.started:
            self.refuse(408, REQUEST_TIMEOUT, f"request body not received within "
                                              f"{self.limits.request_timeout_s * 1000:.0f} ms")

