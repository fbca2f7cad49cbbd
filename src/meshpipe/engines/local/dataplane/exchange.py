"""One request and its response through a proxy: attempts, retries, timeouts, streaming, accounting.

An exchange is created when a request's headers are parsed, with the routing decision already made
(so it finishes on the config it started with, whatever is pushed meanwhile). It begins once it is its
turn on the connection and its request is whole, or its body is bigger than what is kept for a retry
(64 KiB; that body then streams): so a request the client never finishes, or finishes malformed, has
sent nothing upstream. It then either answers locally (a :class:`Refuse`) or forwards (a
:class:`Forward`): pick an endpoint, take a pooled connection or open one, send the head and the body,
pass the response on as it comes.

Retries follow the route's policy: a try that cannot connect is retried on another endpoint of the
same version; a try answered 5xx, reset before answering, or silent past ``per_retry_timeout`` is
retried too when the request is a GET (or HEAD), since repeating it is safe. No retry once a byte of
the response has reached the client, nor once the request body was too big to keep for a replay.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING

from meshpipe.engines.local.dataplane.http11 import CONTINUE_100, LAST_CHUNK, chunk, insert_header, local_reply
from meshpipe.engines.local.dataplane.routing import Forward, Refuse, pick_endpoint
from meshpipe.engines.local.dataplane.upstream import (
    UPSTREAM_BACKPRESSURE,
    WAITING_FOR_UPSTREAM,
    UpstreamConnection,
    UpstreamPool,
)

if TYPE_CHECKING:
    from meshpipe.engines.local.dataplane.config import Endpoint
    from meshpipe.engines.local.dataplane.downstream import DownstreamProtocol
    from meshpipe.engines.local.dataplane.metrics import UpstreamStats
    from meshpipe.engines.local.dataplane.proxy import Listener

# A request body up to this size is kept for a retry; a bigger one streams through without a copy.
MAX_RETAINED_BODY = 64 * 1024
IDEMPOTENT = (b"GET", b"HEAD")

# Flags of failed exchanges (also in access logs and x-meshpipe-error).
UPSTREAM_CONNECT_FAILURE = "upstream_connect_failure"
UPSTREAM_RESET = "upstream_reset"
UPSTREAM_BAD_RESPONSE = "upstream_bad_response"
UPSTREAM_TIMEOUT = "upstream_timeout"
DOWNSTREAM_RESET = "downstream_reset"


class Exchange:
    __slots__ = ("attempt", "attempt_start", "body", "body_size", "bytes_in", "bytes_out", "chunked",
                 "client_keep_alive", "conn", "deadline", "decision", "down", "dp", "endpoint", "expect_continue",
                 "finished", "flag", "free_retry", "head_at", "http10", "listener", "method", "parts", "request_done",
                 "request_head", "response_head_bytes", "response_started", "start", "started", "status", "tried",
                 "upstream_stats", "url")

    def __init__(self, down: DownstreamProtocol, listener: Listener, method: bytes, url: bytes,
                 parts: list[bytes], decision: Forward | Refuse, chunked: bool, expect_continue: bool,
                 keep_alive: bool, http10: bool) -> None:
        self.down = down
        self.listener = listener
        self.dp = listener.dp
        self.method = method
        self.url = url
        self.parts = parts  # the request head for the next hop; parts[0] is filled with the request line
        self.decision = decision
        self.chunked = chunked
        self.expect_continue = expect_continue
        self.client_keep_alive = keep_alive
        self.http10 = http10
        self.request_done = False
        self.started = False  # begun: answered locally, or its first try started
        self.response_started = False
        self.finished = False
        # Body pieces as sent upstream, kept for a replay; None when not kept (refused, or too big).
        self.body: list[bytes] | None = None if type(decision) is Refuse else []
        self.body_size = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.conn: UpstreamConnection | None = None
        self.attempt = 0
        self.tried: tuple[Endpoint, ...] = ()
        self.endpoint: Endpoint | None = None
        self.start = monotonic()
        self.attempt_start = self.start
        self.deadline = 0.0
        self.status = 0
        self.flag = ""
        self.free_retry = True
        self.request_head = b""
        self.response_head_bytes = b""
        self.upstream_stats: UpstreamStats | None = None
        self.head_at = 0.0  # when the answering try's response head arrived (monotonic), for the access log

    # ---- request side (called by the downstream connection) ----

    def turn(self) -> None:
        """This exchange's turn on its connection has come."""
        if self.request_done or self.body_size > MAX_RETAINED_BODY:
            self.begin()
        elif self.expect_continue and type(self.decision) is Forward:
            self.down.transport.write(CONTINUE_100)  # type: ignore[union-attr]

    def begin(self) -> None:
        """Its turn has come and its request is whole (or too big to hold back): answer or forward."""
        self.started = True
        decision = self.decision
        if type(decision) is Refuse:
            self.reply_local(decision.status, decision.flag, decision.message)
            return
        fwd: Forward = decision  # type: ignore[assignment]
        parts = self.parts
        parts[0] = self.method + b" " + fwd.path + (b" HTTP/1.0\r\n" if self.http10 else b" HTTP/1.1\r\n")
        self.request_head = b"".join(parts)
        self.parts = []
        self.upstream_stats = self.listener.app_stats or self.dp.metrics.upstream(fwd.service, fwd.version)
        self.dp.track(self)
        self.start_attempt()

    def request_data(self, data: bytes) -> None:
        if self.chunked:
            data = chunk(data)
        size = len(data)
        self.bytes_in += size
        conn = self.conn
        if conn is not None:
            conn.transport.write(data)  # type: ignore[union-attr]
        body = self.body
        if body is None or self.finished:
            return
        if conn is None:
            body.append(data)  # sent when a connection is ready
            self.body_size += size
            if self.body_size > MAX_RETAINED_BODY:
                if not self.started:
                    self.down.body_ready(self)
                if self.conn is None:
                    self.down.pause(WAITING_FOR_UPSTREAM)
        elif self.body_size + size <= MAX_RETAINED_BODY:
            body.append(data)
            self.body_size += size
        else:
            self.body = None

    def request_complete(self) -> None:
        self.request_done = True
        if self.finished:
            return
        if not self.started:
            if self.down.active is self:
                self.begin()
            return
        if self.chunked and self.conn is not None:
            self.conn.transport.write(LAST_CHUNK)  # type: ignore[union-attr]

    # ---- attempts ----

    def start_attempt(self, same_endpoint: bool = False) -> None:
        fwd: Forward = self.decision  # type: ignore[assignment]
        dp = self.dp
        self.attempt += 1
        endpoint = self.endpoint
        if not same_endpoint or endpoint is None:
            endpoints = fwd.endpoints
            if len(endpoints) == 1:  # a version with one task: nothing to choose
                endpoint = endpoints[0]
            else:
                key = (fwd.service, fwd.version)
                endpoint, counter = pick_endpoint(endpoints, dp.rr.get(key, 0), self.tried)
                if not self.tried:
                    # Only first tries move the round robin on: a retry taking a turn as well would make
                    # every request after a failure start on the same endpoint again.
                    dp.rr[key] = counter
            self.endpoint = endpoint
            self.tried += (endpoint,)
        now = self.attempt_start = monotonic()
        self.deadline = self._deadline(now)
        self.upstream_stats.requests += 1  # type: ignore[union-attr]
        pool = dp.pools.get(endpoint) or dp.pool(endpoint)
        conn = pool.acquire()
        if conn is not None:
            self._attach(conn)
        else:
            dp.loop.create_task(self._connect(pool, self.attempt))

    def _deadline(self, now: float) -> float:
        fwd: Forward = self.decision  # type: ignore[assignment]
        deadline = self.start + fwd.timeout_s if fwd.timeout_s else 0.0
        if fwd.per_try_timeout_s and not self.response_started:
            per_try = now + fwd.per_try_timeout_s
            if not deadline or per_try < deadline:
                deadline = per_try
        return deadline

    async def _connect(self, pool: UpstreamPool, attempt: int) -> None:
        try:
            conn = await pool.connect()
        except OSError as exc:
            if not self.finished and attempt == self.attempt:
                self.attempt_failed(UPSTREAM_CONNECT_FAILURE,
                                    f"cannot connect to {pool.endpoint.host}:{pool.endpoint.port}: "
                                    f"{exc.strerror or exc}", any_method=True)
            return
        if self.finished or attempt != self.attempt:
            pool.release(conn)  # this try was given up meanwhile; the connection is still good
            return
        self._attach(conn)

    def _attach(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        body = self.body
        data = self.request_head
        if body:
            data += b"".join(body)
        if self.request_done and self.chunked:
            data += LAST_CHUNK
        if self.down.writing_paused:
            conn.pause_reading()
        conn.send(self, data)
        if self.body_size > MAX_RETAINED_BODY:
            self.body = None
            self.down.resume(WAITING_FOR_UPSTREAM)

    def _can_retry(self, any_method: bool) -> bool:
        fwd: Forward = self.decision  # type: ignore[assignment]
        if self.attempt > fwd.max_retries or self.body is None or self.response_started:
            return False
        if not any_method and self.method not in IDEMPOTENT:
            return False
        return not (fwd.timeout_s and monotonic() >= self.start + fwd.timeout_s)

    def _drop_conn(self) -> None:
        conn = self.conn
        if conn is not None:
            self.conn = None
            conn.close()

    def attempt_failed(self, flag: str, message: str, any_method: bool, status: int = 503,
                       charged: bool = False) -> None:
        """The current try failed before any response byte reached the client. ``charged``: its
        response class was already counted (a 5xx answer); otherwise it counts as a 5xx, as Envoy does."""
        self._drop_conn()
        stats = self.upstream_stats
        stats.errors += 1  # type: ignore[union-attr]
        if not charged:
            stats.by_class[5] += 1  # type: ignore[union-attr]
        if self._can_retry(any_method):
            stats.retries += 1  # type: ignore[union-attr]
            self.start_attempt()
        else:
            self.fail(status, flag, message)

    def on_timer(self, now: float) -> None:
        """Called by the proxy's timer sweep once ``deadline`` has passed."""
        fwd: Forward = self.decision  # type: ignore[assignment]
        overall = bool(fwd.timeout_s) and now >= self.start + fwd.timeout_s
        if self.response_started:
            if overall:
                self.upstream_stats.timeouts += 1  # type: ignore[union-attr]
                self.abort(UPSTREAM_TIMEOUT)
            else:
                self.deadline = self._deadline(now)
            return
        self.upstream_stats.timeouts += 1  # type: ignore[union-attr]
        waited = now - (self.start if overall else self.attempt_start)
        message = (f"{fwd.service} version {fwd.version} did not answer within {waited * 1000:.0f} ms "
                   f"({'timeout' if overall else 'per-try timeout'}, try {self.attempt})")
        if overall:
            self._drop_conn()
            self.upstream_stats.errors += 1  # type: ignore[union-attr]
            self.upstream_stats.by_class[5] += 1  # type: ignore[union-attr]
            self.fail(504, UPSTREAM_TIMEOUT, message)
        else:
            self.attempt_failed(UPSTREAM_TIMEOUT, message, any_method=False, status=504)

    # ---- response side (called by the upstream connection) ----

    def response_head(self, conn: UpstreamConnection, head: bytes) -> bool:
        """The response head (and maybe the start of its body) arrived. False: stop reading it."""
        status = conn.parser.get_status_code()
        if status < 200:  # 1xx: never asked for (Expect is answered here), so the upstream is confused
            self.upstream_lost(conn, bad_response=True)
            return False
        self.upstream_stats.by_class[status // 100 if status < 600 else 0] += 1  # type: ignore[union-attr]
        if status >= 500:
            if self._can_retry(any_method=False):
                self.attempt_failed(UPSTREAM_RESET, "", any_method=False, charged=True)
                return False
            self.upstream_stats.errors += 1  # type: ignore[union-attr]
        self.status = status
        self.response_started = True
        self.response_head_bytes = head
        if self.listener.access_log is not None:
            self.head_at = monotonic()
        if self.deadline:  # the per-try timeout no longer applies; the overall one still does
            self.deadline = self._deadline(0.0)
        extra = self.listener.response_header
        if self.dp.draining:  # tell the client not to send another request on this connection
            extra += b"connection: close\r\n"
        if extra:
            head = insert_header(head, extra)
        self.bytes_out += len(head)
        self.down.transport.write(head)  # type: ignore[union-attr]
        if self.method == b"HEAD":
            # No body follows whatever Content-Length says; llhttp cannot be told, so the connection
            # is not reused.
            self.conn = None
            conn.close()
            self._complete(conn.keep_alive)
            return False
        return True

    def response_data(self, data: bytes) -> None:
        self.bytes_out += len(data)
        self.down.transport.write(data)  # type: ignore[union-attr]

    def response_done(self, conn: UpstreamConnection) -> None:
        self.conn = None
        keep_alive = conn.keep_alive
        if keep_alive and self.request_done and not self.http10:
            conn.pool.release(conn)  # its own pool: a retired one closes it
        else:
            conn.close()
        now = monotonic()
        self.upstream_stats.latency.record((now - self.attempt_start) * 1000.0)  # type: ignore[union-attr]
        self.finish(self.client_keep_alive and keep_alive and self.request_done and not self.http10, now)

    def upstream_lost(self, conn: UpstreamConnection, bad_response: bool = False) -> None:
        """The upstream connection closed (or spoke nonsense) in the middle of this exchange."""
        if self.conn is conn:
            self.conn = None
        conn.close()
        if self.finished:
            return
        if self.response_started:
            if not bad_response and _close_delimited(self.response_head_bytes):
                self._complete(upstream_keep_alive=False)  # the body ends where the connection does
            else:
                self.upstream_stats.errors += 1  # type: ignore[union-attr]
                self.abort(UPSTREAM_BAD_RESPONSE if bad_response else UPSTREAM_RESET)
            return
        if (conn.reused and not conn.received and not bad_response and self.free_retry
                and self.body is not None):
            # A pooled connection the upstream had already closed: not the endpoint's fault. Its other
            # idle connections are likely stale too (a restart); try once more on a fresh one.
            self.free_retry = False
            conn.pool.close_idle()
            self.upstream_stats.requests -= 1  # type: ignore[union-attr]  # the try never happened
            self.start_attempt(same_endpoint=True)
            return
        ep = conn.pool.endpoint
        if bad_response:
            self.attempt_failed(UPSTREAM_BAD_RESPONSE, f"{ep.host}:{ep.port} sent an invalid HTTP response",
                                any_method=False, status=502)
        else:
            self.attempt_failed(UPSTREAM_RESET, f"{ep.host}:{ep.port} closed the connection before answering",
                                any_method=False, status=502)

    # ---- endings ----

    def _complete(self, upstream_keep_alive: bool) -> None:
        self.upstream_stats.latency.record((monotonic() - self.attempt_start) * 1000.0)  # type: ignore[union-attr]
        self.finish(self.client_keep_alive and upstream_keep_alive and self.request_done and not self.http10)

    def fail(self, status: int, flag: str, message: str) -> None:
        if self.response_started:
            self.abort(flag)
        else:
            self.reply_local(status, flag, message)

    def reply_local(self, status: int, flag: str, message: str) -> None:
        keep_alive = self.client_keep_alive and self.request_done and not self.dp.draining
        data = local_reply(status, flag, message, keep_alive)
        self.status = status
        self.flag = flag
        self.bytes_out += len(data)
        self.listener.stats.local_replies += 1
        self.down.transport.write(data)  # type: ignore[union-attr]
        self.finish(keep_alive)

    def abort(self, flag: str) -> None:
        """Give up after part of the response was sent: the client sees the connection close."""
        self.flag = flag
        self._drop_conn()
        self.finish(False)

    def downstream_lost(self) -> None:
        self.flag = DOWNSTREAM_RESET
        self.listener.stats.downstream_resets += 1
        self._drop_conn()
        self.finish(False)

    def finish(self, keep_alive: bool, now: float = 0.0) -> None:
        if self.finished:
            return
        self.finished = True
        self.dp.inflight.discard(self)
        if self.conn is not None:
            self._drop_conn()
        down = self.down
        if down.paused:  # a pause for this exchange's upload must not outlive it
            down.resume(UPSTREAM_BACKPRESSURE | WAITING_FOR_UPSTREAM)
        stats = self.listener.stats
        stats.requests += 1
        status = self.status
        stats.by_class[status // 100 if status < 600 else 0] += 1
        # Errors: 5xx answers, and answers cut short by the upstream (refusals like 403/404 are not).
        if status >= 500 or (self.flag and self.flag.startswith("upstream_")):
            stats.errors += 1
        stats.latency.record(((now or monotonic()) - self.start) * 1000.0)
        log = self.listener.access_log
        if log is not None:
            log.write(self)
        self.down.exchange_finished(self, keep_alive)


def _close_delimited(head: bytes) -> bool:
    """Whether a response's body runs until the connection closes (no length, not chunked)."""
    end = head.find(b"\r\n\r\n")
    headers = (head[:end] if end >= 0 else head).lower()
    status = head[9:12]
    return (b"\r\ncontent-length:" not in headers and b"\r\ntransfer-encoding:" not in headers
            and status not in (b"204", b"304"))
