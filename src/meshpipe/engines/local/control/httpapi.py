"""The daemon's control API (HTTP on 127.0.0.1, bearer token) and the blocking client the CLI uses.

Every endpoint is a row of ``operations.OPERATIONS`` (method, path, request, result): the server routes
each row to the daemon's method of the same name, and the client sends any row with
:meth:`ControlClient.call`. JSON in, JSON out; every request needs ``Authorization: Bearer <token from
daemon.json>``, except that ``GET /metrics`` also takes the metrics token (``metrics.token``), which
opens nothing else.

Errors come back as ``{"error": {"kind", "message", "hint"}}`` with 400 (bad input), 404 (not found),
409 (conflict), 401 (no or wrong token), 413 (a body over the limit) or 500, and the client raises the
matching meshpipe error; a failure that is no meshpipe error is a bug of the daemon (kind ``bug``), which the
client raises as a :class:`~meshpipe.errors.Defect`, for the CLI's bug boundary.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from meshpipe.engines.local.control.operations import METRICS, OPERATIONS, TEXT_PAGE, Operation, Req, Res
from meshpipe.engines.local.control.wire import connect, read_response, request_head
from meshpipe.errors import ConflictError, Defect, MeshpipeError, NotFoundError, OperationError, UserError

MAX_BODY_BYTES = 1024 * 1024  # larger request bodies are refused with 413 (a manifest push is far smaller)
METRICS_PATH = METRICS.path
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# --- errors on the wire ------------------------------------------------------------------------------

BUG_KIND = "bug"
_KINDS: dict[str, type[MeshpipeError]] = {
    "not_found": NotFoundError, "conflict": ConflictError, "user": UserError, "operation": OperationError,
}


def error_kind(exc: MeshpipeError) -> tuple[str, int]:
    if isinstance(exc, NotFoundError):
        return "not_found", 404
    if isinstance(exc, ConflictError):
        return "conflict", 409
    if isinstance(exc, UserError):
        return "user", 400
    return "operation", 500


def error_from_json(status: int, data: Any) -> MeshpipeError | Defect:
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return OperationError(f"the environment's daemon answered HTTP {status}")
    if err.get("kind") == BUG_KIND:
        return Defect(f"the environment's daemon hit a bug: {err.get('message')} ({err.get('hint')})")
    cls = _KINDS.get(str(err.get("kind")), OperationError)
    return cls(str(err.get("message") or f"HTTP {status}"), err.get("hint"))


# --- server --------------------------------------------------------------------------------------------

def _problem(kind: str, message: str, hint: str | None, status: int) -> Any:
    from aiohttp import web

    return web.json_response({"error": {"kind": kind, "message": message, "hint": hint}}, status=status)


def _http_problem(request: Any, exc: Any) -> Any:
    """aiohttp's own refusals (no such endpoint, a method it does not take, a body over the limit) in the
    API's error form, so that every error a client gets is JSON with ``error``."""
    if exc.status == 404:
        kind, message = "not_found", f"no endpoint {request.method} {request.path[:200]}"
    elif exc.status == 405:
        kind, message = "user", f"{request.method[:20]} is not allowed on {request.path[:200]}"
    elif exc.status == 413:
        kind, message = "user", f"request body is over the limit of {MAX_BODY_BYTES} bytes"
    else:
        kind, message = "user", exc.reason or f"HTTP {exc.status}"
    response = _problem(kind, message, "see the endpoints in the API reference (docs/local-engine.md)"
                        if exc.status in (404, 405) else None, exc.status)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def make_control_app(target: object, token: str, metrics_token: str | None = None) -> Any:
    """The aiohttp application of the control API: each operation's request goes to ``target``'s method of
    the same name (the daemon's ``DaemonActions``). ``metrics_token``, when given, is accepted for
    ``GET /metrics`` only (a scraper holds it; it changes nothing)."""
    # Here, not at the top: the client half of this module is what a read command loads.
    import hmac
    import logging

    from aiohttp import web

    log = logging.getLogger("meshpipe.daemon")

    expected = f"Bearer {token}".encode()
    scraper = f"Bearer {metrics_token}".encode() if metrics_token else None

    def allowed(request: web.Request) -> bool:
        # Any header a client sends, even one that is not text, is only ever compared, never trusted.
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if hmac.compare_digest(given, expected):
            return True
        return (scraper is not None and request.path == METRICS_PATH and request.method in ("GET", "HEAD")
                and hmac.compare_digest(given, scraper))

    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if not allowed(request):
            return _problem("user", "missing or wrong bearer token",
                            "use the token in the environment's daemon.json", 401)
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _problem("user", f"request body of {request.content_length} bytes is over the limit of "
                                    f"{MAX_BODY_BYTES} bytes", None, 413)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _http_problem(request, exc)
        except MeshpipeError as exc:
            kind, status = error_kind(exc)
            return web.json_response({"error": {"kind": kind, "message": exc.message, "hint": exc.hint}},
                                     status=status)
        except Exception as exc:
            log.exception("control API: %s %s failed", request.method, request.path)
            return web.json_response({"error": {"kind": BUG_KIND, "message": f"{type(exc).__name__}: {exc}",
                                                "hint": "its traceback is in the environment's daemon.log"}},
                                     status=500)

    async def body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()  # bodies sent without a length stop at client_max_size, with 413
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise UserError("request body is not JSON") from None
        if not isinstance(data, dict):
            raise UserError("request body must be a JSON object")
        return data

    def handler(op: Operation[Any, Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
        reads_body = op.body_fields

        async def handle(request: web.Request) -> web.Response:
            given = await body(request) if reads_body else {}
            answer = getattr(target, op.name)
            result = op.encode(await answer(op.parse(request.match_info, request.query, given)))
            if op.result == TEXT_PAGE:
                return web.Response(body=result, headers={"Content-Type": METRICS_CONTENT_TYPE})
            return web.json_response(result, status=op.status)

        return handle

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    for op in OPERATIONS:
        if op.method == "GET":
            app.router.add_get(op.path, handler(op))  # HEAD too
        else:
            app.router.add_route(op.method, op.path, handler(op))
    return app


def control_runner(app: Any, **kwargs: Any) -> Any:
    """An aiohttp runner of the control app whose refusals of malformed HTTP (a bad method, a broken
    request line or header, which aiohttp's parser answers before any handler or middleware runs) are
    JSON with ``error`` too, like every other error of the API.

    aiohttp offers no setting for that answer; its connection handler's ``handle_error`` makes it, so the
    runner's server hands out a subclass that rewrites it (aiohttp is pinned; the control-API fuzz test
    sends such requests)."""
    from aiohttp import web, web_protocol, web_server

    class JsonErrorHandler(web_protocol.RequestHandler):
        def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                         message: str | None = None) -> web.StreamResponse:
            super().handle_error(request, status, exc, message)  # logs it, and checks nothing was sent yet
            first = (message or "").strip().splitlines()[0].rstrip(":") if (message or "").strip() else ""
            kind = "user" if status < 500 else "operation"
            text = f"malformed HTTP request: {first[:200]}" if status < 500 and first else f"HTTP {status}"
            response = web.json_response({"error": {"kind": kind, "message": text, "hint": None}}, status=status)
            response.force_close()
            return response

    class JsonErrorServer(web_server.Server):
        def __call__(self) -> web_protocol.RequestHandler:
            return JsonErrorHandler(self, loop=self._loop, **self._kwargs)

    class Runner(web.AppRunner):
        async def _make_server(self) -> web_server.Server:
            server = await super()._make_server()
            server.__class__ = JsonErrorServer
            return server

    return Runner(app, **kwargs)


# --- client --------------------------------------------------------------------------------------------

class DaemonUnreachable(OperationError):
    """Nothing answers on the daemon's control port. ``sent``: the request may have reached a daemon (so
    repeating it could do it twice); False when no connection was made at all."""

    def __init__(self, message: str, hint: str | None = None, sent: bool = True) -> None:
        super().__init__(message, hint)
        self.sent = sent


class ControlClient:
    """Blocking client of one daemon's control API (what the CLI process uses): one request per call.

    ``reconnect``, when given, is called once if no connection can be made (the daemon died, or is
    being restarted): it brings a daemon up and returns its port and token, and the call is sent again.
    """

    def __init__(self, port: int, token: str, timeout: float = 30.0,
                 reconnect: Callable[[], tuple[int, str]] | None = None) -> None:
        self.port = port
        self.token = token
        self.timeout = timeout
        self.reconnect = reconnect

    def call(self, op: Operation[Req, Res], request: Req, timeout: float | None = None) -> Res:
        """Send one operation's request and return its result, typed."""
        try:
            return self._call(op, request, timeout)
        except DaemonUnreachable as exc:
            if exc.sent or self.reconnect is None:
                raise
            self.port, self.token = self.reconnect()
            return self._call(op, request, timeout)

    def _call(self, op: Operation[Req, Res], request: Req, timeout: float | None) -> Res:
        page = op.result == TEXT_PAGE
        status, raw = self._exchange(op.method, op.target(request), op.body(request), timeout,
                                     accept="text/plain" if page else "application/json")
        if page and status == 200:
            return op.decode(raw)
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            if status >= 400:
                raise error_from_json(status, None) from None
            raise OperationError(f"the environment's daemon answered HTTP {status} with something that is "
                                 "not JSON") from None
        if status >= 400:
            raise error_from_json(status, data)
        try:
            return op.decode(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise OperationError(f"the environment's daemon answered {op.method} {op.path} with a document "
                                 f"this meshpipe does not read ({type(exc).__name__}: {exc})",
                                 hint="a daemon of another meshpipe version may be running: stop it by pid; "
                                      "the next command starts this one") from None

    def _exchange(self, method: str, path: str, body: Any, timeout: float | None,
                  accept: str = "application/json") -> tuple[int, bytes]:
        """One request on a connection of its own: the answer's status and body."""
        payload = json.dumps(body).encode() if body is not None else b""
        head = request_head(method, path, self.port, self.token, accept,
                            len(payload) if body is not None else None)
        try:
            sock = connect(self.port, timeout or self.timeout)
        except OSError as exc:
            raise DaemonUnreachable(f"the environment's daemon on 127.0.0.1:{self.port} did not answer: "
                                    f"{exc.strerror or exc or type(exc).__name__}", sent=False) from None
        try:
            sock.sendall(head + payload)
            return read_response(sock)
        except (ConnectionResetError, TimeoutError) as exc:
            raise DaemonUnreachable(f"the environment's daemon on 127.0.0.1:{self.port} did not answer: "
                                    f"{exc or type(exc).__name__}") from None
        except (OSError, ValueError) as exc:
            raise DaemonUnreachable(f"talking to the environment's daemon failed: {exc}") from None
        finally:
            sock.close()
