"""Connections to upstreams (the next sidecar's ingress, or the local app) and their keep-alive pools.

A pool holds the idle connections of one endpoint. Pools are keyed by endpoint, not by config, so a
config push leaves every connection in place; pools of endpoints that left the config are retired:
idle connections close at once, busy ones when their exchange ends.

Responses are not re-encoded: the parser only finds where the head ends, the status, the keep-alive
decision and where the message ends, and the bytes go to the client as they came.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from meshpipe.engines.local.dataplane.config import Endpoint

if TYPE_CHECKING:
    from meshpipe.engines.local.dataplane.exchange import Exchange

MAX_IDLE_PER_ENDPOINT = 128


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("closed", "exchange", "head", "headers_done", "keep_alive", "message_done", "parser", "pool",
                 "reading_paused", "received", "reused", "transport")

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.head = b""
        self.headers_done = False
        self.message_done = False
        self.keep_alive = False
        self.closed = False
        self.reused = False
        self.received = False  # any byte of the current response seen
        self.reading_paused = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            ex.upstream_lost(self)
        else:
            self.pool.forget(self)

    def pause_writing(self) -> None:  # the upstream reads the request body slower than the client sends it
        ex = self.exchange
        if ex is not None:
            ex.down.pause(UPSTREAM_BACKPRESSURE)

    def resume_writing(self) -> None:
        ex = self.exchange
        if ex is not None:
            ex.down.resume(UPSTREAM_BACKPRESSURE)

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:  # an idle upstream has nothing to say; whatever it is, this connection is done
            self.close()
            return
        self.received = True
        if self.headers_done:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self._broken(ex)
                return
            ex.response_data(data)
        else:
            self.head += data
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self._broken(ex)
                return
            if not self.headers_done:
                return
            head, self.head = self.head, b""
            if not ex.response_head(self, head):
                return
        if self.message_done and self.exchange is ex:
            ex.response_done(self)

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.headers_done = True
        # Asked now: llhttp forgets the connection flags once the message is complete.
        self.keep_alive = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self.message_done = True

    # used by exchanges and pools
    def send(self, exchange: Exchange, data: bytes) -> None:
        """Start a request on this connection."""
        self.exchange = exchange
        self.head = b""
        self.headers_done = False
        self.message_done = False
        self.received = False
        self.transport.write(data)  # type: ignore[union-attr]

    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def close(self) -> None:
        self.exchange = None
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        self.pool.forget(self)

    def _broken(self, ex: Exchange) -> None:
        self.exchange = None
        self.close()
        ex.upstream_lost(self, bad_response=True)


class UpstreamPool:
    """Idle keep-alive connections to one endpoint, most recently used first."""

    __slots__ = ("endpoint", "idle", "loop", "retired")

    def __init__(self, endpoint: Endpoint, loop: asyncio.AbstractEventLoop) -> None:
        self.endpoint = endpoint
        self.loop = loop
        self.idle: list[UpstreamConnection] = []
        self.retired = False

    def acquire(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def release(self, conn: UpstreamConnection) -> None:
        conn.exchange = None
        if conn.closed:
            return
        if self.retired or len(self.idle) >= MAX_IDLE_PER_ENDPOINT:
            conn.close()
            return
        if conn.reading_paused:
            conn.resume_reading()
        conn.reused = True
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    async def connect(self) -> UpstreamConnection:
        _, conn = await self.loop.create_connection(
            lambda: UpstreamConnection(self), self.endpoint.host, self.endpoint.port)
        return conn

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


# Reasons a downstream connection stops reading (a bit each; reading resumes when none is left).
PIPELINED = 1  # a request waits for the one before it to be answered
UPSTREAM_BACKPRESSURE = 2  # the upstream does not take the request body as fast as it comes
WAITING_FOR_UPSTREAM = 4  # the body piles up while the upstream connection is being opened
BROKEN = 8  # the request stream is unreadable; the connection closes after the current answer
