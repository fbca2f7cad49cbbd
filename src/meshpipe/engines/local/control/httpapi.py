"""The daemon's control API (HTTP on 127.0.0.1, bearer token) and the blocking client the CLI uses.

Endpoints (JSON in, JSON out; every one needs ``Authorization: Bearer <token from daemon.json>``)::

    GET    /v1/status                              environment, daemon, ingress, services, versions, routes
    POST   /v1/shutdown                            stop everything and exit
    GET    /v1/config                              the mesh config last pushed to the proxies
    POST   /v1/pipelines                {service}  config repo + virtual service + router
    DELETE /v1/pipelines/{svc}[?delete_repo=1]     refused while versions exist; keeps the config repo
    GET    /v1/pipelines/{svc}/runs                newest first
    GET    /v1/pipelines/{svc}/runs/latest         one run with its stage logs
    GET    /v1/pipelines/{svc}/runs/{run_id}
    POST   /v1/push          {service, ref, old, new}   from the config repo's hook: starts a run
    GET    /v1/routes/{svc}                        the route, or null
    PUT    /v1/routes/{svc}            {targets}   returns once every proxy applied it
    DELETE /v1/routes/{svc}
    GET    /v1/gateway-routes
    PUT    /v1/gateway-routes/{name}   {prefix, service, rewrite_prefix}
    DELETE /v1/gateway-routes/{name}
    GET    /v1/services/{svc}/versions
    DELETE /v1/services/{svc}/versions/{ver}?force=true
    GET    /v1/services/{svc}/stats                per-version requests, errors, latency from every proxy
    GET    /metrics                                the environment's Prometheus page (text); also takes the
                                                   metrics token (metrics.token), which opens nothing else
    GET    /v1/routes/{svc}/headers                the service's header routes
    PUT    /v1/routes/{svc}/headers    {headers, targets}   add or replace the header route of headers[0]
    DELETE /v1/routes/{svc}/headers/{header}
    POST   /v1/rollouts/{svc}          {version}   start a rollout by hand
    GET    /v1/rollouts/{svc}                      the running (else the latest) rollout: step, weights, windows
    POST   /v1/rollouts/{svc}/{action}             pause | resume | abort | promote

Errors come back as ``{"error": {"kind", "message", "hint"}}`` with 400 (bad input), 404 (not found),
409 (conflict), 401 (no or wrong token) or 500, and the client raises the matching meshpipe error.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from meshpipe.engines.base import PipelineInfo, VersionInfo
from meshpipe.errors import ConflictError, MeshpipeError, NotFoundError, OperationError, UserError

if TYPE_CHECKING:
    from meshpipe.mesh.headers import HeaderMatch
    from meshpipe.mesh.routing import GatewayRoute, HeaderRoute, Route, WeightedTarget
    from meshpipe.pipeline.runs import PipelineRun

# The routing and pipeline types are imported where they are built, not here: ``meshpipe versions``,
# a read command, loads this module for its client and needs neither.

MAX_BODY_BYTES = 1024 * 1024  # larger request bodies are refused with 413 (a manifest push is far smaller)
RUN_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}\Z")
METRICS_PATH = "/metrics"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# --- JSON forms of the engine's types ----------------------------------------------------------------


def route_to_json(route: Route | None) -> dict[str, Any] | None:
    if route is None:
        return None
    return {"service": route.service, "targets": [{"version": t.version, "weight": t.weight} for t in route.targets],
            "prefix": route.prefix, "method": route.method, "priority": route.priority,
            "max_retries": route.max_retries, "per_retry_timeout_ms": route.per_retry_timeout_ms,
            "timeout_ms": route.timeout_ms}


def route_from_json(data: dict[str, Any] | None) -> Route | None:
    from meshpipe.mesh.routing import Route, WeightedTarget

    if data is None:
        return None
    return Route(service=data["service"],
                 targets=tuple(WeightedTarget(t["version"], int(t["weight"])) for t in data["targets"]),
                 prefix=data["prefix"], method=data["method"], priority=int(data["priority"]),
                 max_retries=int(data["max_retries"]), per_retry_timeout_ms=int(data["per_retry_timeout_ms"]),
                 timeout_ms=int(data["timeout_ms"]))


def header_route_to_json(route: HeaderRoute) -> dict[str, Any]:
    return {"service": route.service, "name": route.name, "headers": [h.to_json() for h in route.headers],
            "targets": [{"version": t.version, "weight": t.weight} for t in route.targets],
            "prefix": route.prefix, "method": route.method, "priority": route.priority}


def header_route_from_json(data: dict[str, Any]) -> HeaderRoute:
    from meshpipe.mesh.headers import HeaderMatch
    from meshpipe.mesh.routing import HeaderRoute, WeightedTarget

    return HeaderRoute(service=data["service"], headers=tuple(HeaderMatch.from_json(h) for h in data["headers"]),
                       targets=tuple(WeightedTarget(t["version"], int(t["weight"])) for t in data["targets"]),
                       priority=int(data["priority"]), prefix=data["prefix"], method=data["method"])


def gateway_route_to_json(gr: GatewayRoute) -> dict[str, Any]:
    return {"name": gr.name, "prefix": gr.prefix, "service": gr.service, "namespace": gr.namespace,
            "rewrite_prefix": gr.rewrite_prefix, "virtual_service": gr.virtual_service}


def gateway_route_from_json(data: dict[str, Any]) -> GatewayRoute:
    from meshpipe.mesh.routing import GatewayRoute

    return GatewayRoute(name=data["name"], prefix=data["prefix"], service=data["service"],
                        namespace=data["namespace"], rewrite_prefix=bool(data["rewrite_prefix"]))


def run_from_json(data: dict[str, Any]) -> PipelineRun:
    from meshpipe.pipeline.runs import PipelineRun, RunStatus, StageResult

    return PipelineRun(run_id=data["run_id"], service=data["service"], commit=data.get("commit"),
                       status=RunStatus(data["status"]), started_at=data["started_at"],
                       finished_at=data.get("finished_at"),
                       stages=tuple(StageResult(s["name"], RunStatus(s["status"]), s.get("log", ""))
                                    for s in data["stages"]),
                       version=data.get("version"))


def version_from_json(data: dict[str, Any]) -> VersionInfo:
    return VersionInfo(service=data["service"], version=data["version"], commit=data["commit"],
                       stack_name=data["stack_name"], status=data["status"], weight=int(data["weight"]),
                       created_at=data.get("created_at"), healthy_tasks=data.get("healthy_tasks"),
                       desired_tasks=data.get("desired_tasks"), reason=data.get("reason"),
                       scaled_down=bool(data.get("scaled_down", False)))


def pipeline_from_json(data: dict[str, Any]) -> PipelineInfo:
    return PipelineInfo(service=data["service"], environment=data["environment"], clone_url=data["clone_url"],
                        virtual_service=data["virtual_service"], status=data["status"],
                        repo_kept=bool(data.get("repo_kept", False)))


# --- errors on the wire ------------------------------------------------------------------------------

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


def error_from_json(status: int, data: Any) -> MeshpipeError:
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return OperationError(f"the environment's daemon answered HTTP {status}")
    cls = _KINDS.get(str(err.get("kind")), OperationError)
    return cls(str(err.get("message") or f"HTTP {status}"), err.get("hint"))


# --- server --------------------------------------------------------------------------------------------

class ControlTarget(Protocol):
    """What the control API drives: the daemon."""

    async def status(self) -> dict[str, Any]: ...
    async def shutdown(self) -> None: ...
    async def mesh_config(self) -> dict[str, Any] | None: ...
    async def pipeline_create(self, service: str) -> dict[str, Any]: ...
    async def pipeline_delete(self, service: str, delete_repo: bool = False) -> None: ...
    async def pipeline_runs(self, service: str) -> list[dict[str, Any]]: ...
    async def pipeline_run(self, service: str, run_id: str | None) -> dict[str, Any]: ...
    async def push(self, service: str, ref: str, old: str | None, new: str) -> str: ...
    async def route_show(self, service: str) -> Route | None: ...
    async def route_set(self, service: str, targets: tuple[WeightedTarget, ...]) -> tuple[Route, dict[str, Any]]: ...
    async def route_delete(self, service: str) -> None: ...
    async def gateway_routes(self) -> list[GatewayRoute]: ...
    async def gateway_route_set(self, name: str, prefix: str, service: str, rewrite_prefix: bool) -> GatewayRoute: ...
    async def gateway_route_delete(self, name: str) -> None: ...
    async def versions(self, service: str) -> list[dict[str, Any]]: ...
    async def version_delete(self, service: str, version: str, force: bool) -> None: ...
    async def version_scale(self, service: str, version: str, tasks: int) -> dict[str, Any]: ...
    async def stats(self, service: str) -> dict[str, Any]: ...
    async def metrics(self) -> bytes: ...
    async def header_routes(self, service: str) -> list[HeaderRoute]: ...
    async def header_route_set(self, service: str, headers: tuple[HeaderMatch, ...],
                               targets: tuple[WeightedTarget, ...]) -> tuple[HeaderRoute, dict[str, Any]]: ...
    async def header_route_delete(self, service: str, header: str) -> None: ...
    async def rollout_start(self, service: str, version: str) -> dict[str, Any]: ...
    async def rollout_status(self, service: str) -> dict[str, Any]: ...
    async def rollout_control(self, service: str, action: str) -> dict[str, Any]: ...


def _targets(raw_targets: list[Any]) -> tuple[WeightedTarget, ...]:
    from meshpipe.mesh.routing import WeightedTarget

    targets = []
    for t in raw_targets:
        if not isinstance(t, dict):
            raise UserError("each target must be an object with version and weight")
        targets.append(WeightedTarget(_require(t, "version"), _require(t, "weight", int)))
    return tuple(targets)


def _require(body: dict[str, Any], key: str, kind: type = str) -> Any:
    value = body.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise UserError(f"request field {key!r} must be a {kind.__name__}")
    return value


def path_segment(request: Any, key: str) -> str:
    """A name taken from the request path, refused (400) unless it has the form such a name has: no
    ``..``, ``/``, NUL or a thousand characters reach a lookup, a log line or a file name."""
    from meshpipe.mesh.routing import NAME_RE, VERSION_RE, check_service

    value = str(request.match_info[key])
    if key == "svc":
        check_service(value)
    elif key == "ver" and not VERSION_RE.match(value):
        raise UserError(f"{value[:60]!r} is not a version id: {VERSION_RE.pattern[1:-2]}")
    elif key == "name" and not NAME_RE.match(value):
        raise UserError(f"{value[:60]!r} is not a gateway route name: letters, digits, '_', '.', '-', up to 255")
    elif key == "run_id" and value != "latest" and not RUN_ID_RE.match(value):
        raise UserError(f"{value[:60]!r} is not a pipeline run id (like 20260101-120000-a1b2c3) or 'latest'")
    return value


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


def make_control_app(target: ControlTarget, token: str, metrics_token: str | None = None) -> Any:
    """The aiohttp application of the control API. ``metrics_token``, when given, is accepted for
    ``GET /metrics`` only (a scraper holds it; it changes nothing)."""
    # Here, not at the top: the client half of this module is what a read command loads.
    import hmac
    import logging

    from aiohttp import web

    from meshpipe.mesh.headers import HeaderMatch

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
            return web.json_response({"error": {"kind": "operation", "message": f"internal error: {exc}",
                                                "hint": "see the environment's daemon.log"}}, status=500)

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

    def ok(data: Any, status: int = 200) -> web.Response:
        return web.json_response(data, status=status)

    async def status(request: web.Request) -> web.Response:
        return ok(await target.status())

    async def shutdown(request: web.Request) -> web.Response:
        await target.shutdown()
        return ok({"stopping": True}, 202)

    async def config(request: web.Request) -> web.Response:
        return ok(await target.mesh_config())

    async def pipeline_create(request: web.Request) -> web.Response:
        return ok(await target.pipeline_create(_require(await body(request), "service")), 201)

    async def pipeline_delete(request: web.Request) -> web.Response:
        delete_repo = request.query.get("delete_repo", "0") == "1"
        await target.pipeline_delete(path_segment(request, "svc"), delete_repo)
        return ok({"deleted": True, "repo_deleted": delete_repo})

    async def runs(request: web.Request) -> web.Response:
        return ok(await target.pipeline_runs(path_segment(request, "svc")))

    async def run(request: web.Request) -> web.Response:
        run_id = path_segment(request, "run_id")
        return ok(await target.pipeline_run(path_segment(request, "svc"), None if run_id == "latest" else run_id))

    async def push(request: web.Request) -> web.Response:
        data = await body(request)
        old = data.get("old")
        run_id = await target.push(_require(data, "service"), _require(data, "ref"),
                                   old if isinstance(old, str) else None, _require(data, "new"))
        return ok({"run_id": run_id}, 201)

    async def route_show(request: web.Request) -> web.Response:
        service = path_segment(request, "svc")
        route = route_to_json(await target.route_show(service))
        if request.query.get("headers") != "1":
            return ok(route)
        # The whole view of a service's routing in one answer (the CLI's read path asks for this).
        return ok({"route": route, "header_routes": [header_route_to_json(r)
                                                     for r in await target.header_routes(service)]})

    async def route_set(request: web.Request) -> web.Response:
        data = await body(request)
        route, pushed = await target.route_set(path_segment(request, "svc"), _targets(_require(data, "targets", list)))
        return ok({"route": route_to_json(route), "push": pushed})

    async def route_delete(request: web.Request) -> web.Response:
        await target.route_delete(path_segment(request, "svc"))
        return ok({"deleted": True})

    async def gateway_routes(request: web.Request) -> web.Response:
        return ok([gateway_route_to_json(g) for g in await target.gateway_routes()])

    async def gateway_route_set(request: web.Request) -> web.Response:
        data = await body(request)
        rewrite = data.get("rewrite_prefix", True)
        if not isinstance(rewrite, bool):
            raise UserError("request field 'rewrite_prefix' must be true or false")
        gr = await target.gateway_route_set(path_segment(request, "name"), _require(data, "prefix"),
                                            _require(data, "service"), rewrite)
        return ok(gateway_route_to_json(gr))

    async def gateway_route_delete(request: web.Request) -> web.Response:
        await target.gateway_route_delete(path_segment(request, "name"))
        return ok({"deleted": True})

    async def versions(request: web.Request) -> web.Response:
        return ok(await target.versions(path_segment(request, "svc")))

    async def version_delete(request: web.Request) -> web.Response:
        force = request.query.get("force", "false").lower() in ("1", "true", "yes")
        await target.version_delete(path_segment(request, "svc"), path_segment(request, "ver"), force)
        return ok({"deleted": True})

    async def version_scale(request: web.Request) -> web.Response:
        tasks = _require(await body(request), "tasks", int)
        return ok(await target.version_scale(path_segment(request, "svc"), path_segment(request, "ver"), tasks))

    async def stats(request: web.Request) -> web.Response:
        return ok(await target.stats(path_segment(request, "svc")))

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=await target.metrics(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def header_routes(request: web.Request) -> web.Response:
        return ok([header_route_to_json(r) for r in await target.header_routes(path_segment(request, "svc"))])

    async def header_route_set(request: web.Request) -> web.Response:
        data = await body(request)
        headers = []
        for h in _require(data, "headers", list):
            if not isinstance(h, dict):
                raise UserError("each header must be an object with name, kind and value")
            headers.append(HeaderMatch(_require(h, "name"), _require(h, "value"), _require(h, "kind")))
        route, pushed = await target.header_route_set(path_segment(request, "svc"), tuple(headers),
                                                      _targets(_require(data, "targets", list)))
        return ok({"route": header_route_to_json(route), "push": pushed})

    async def header_route_delete(request: web.Request) -> web.Response:
        await target.header_route_delete(path_segment(request, "svc"), request.match_info["header"])
        return ok({"deleted": True})

    async def rollout_start(request: web.Request) -> web.Response:
        data = await body(request)
        return ok(await target.rollout_start(path_segment(request, "svc"), _require(data, "version")), 201)

    async def rollout_status(request: web.Request) -> web.Response:
        return ok(await target.rollout_status(path_segment(request, "svc")))

    async def rollout_control(request: web.Request) -> web.Response:
        return ok(await target.rollout_control(path_segment(request, "svc"), request.match_info["action"]))

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/v1/status", status)
    app.router.add_post("/v1/shutdown", shutdown)
    app.router.add_get("/v1/config", config)
    app.router.add_post("/v1/pipelines", pipeline_create)
    app.router.add_delete("/v1/pipelines/{svc}", pipeline_delete)
    app.router.add_get("/v1/pipelines/{svc}/runs", runs)
    app.router.add_get("/v1/pipelines/{svc}/runs/{run_id}", run)
    app.router.add_post("/v1/push", push)
    app.router.add_get("/v1/routes/{svc}", route_show)
    app.router.add_put("/v1/routes/{svc}", route_set)
    app.router.add_delete("/v1/routes/{svc}", route_delete)
    app.router.add_get("/v1/gateway-routes", gateway_routes)
    app.router.add_put("/v1/gateway-routes/{name}", gateway_route_set)
    app.router.add_delete("/v1/gateway-routes/{name}", gateway_route_delete)
    app.router.add_get("/v1/services/{svc}/versions", versions)
    app.router.add_delete("/v1/services/{svc}/versions/{ver}", version_delete)
    app.router.add_post("/v1/services/{svc}/versions/{ver}/scale", version_scale)
    app.router.add_get("/v1/services/{svc}/stats", stats)
    app.router.add_get(METRICS_PATH, metrics)
    app.router.add_get("/v1/routes/{svc}/headers", header_routes)
    app.router.add_put("/v1/routes/{svc}/headers", header_route_set)
    app.router.add_delete("/v1/routes/{svc}/headers/{header}", header_route_delete)
    app.router.add_post("/v1/rollouts/{svc}", rollout_start)
    app.router.add_get("/v1/rollouts/{svc}", rollout_status)
    app.router.add_post("/v1/rollouts/{svc}/{action}", rollout_control)
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

def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of the HTTP/1.1 response on ``sock`` (asked with ``Connection: close``).

    A few lines instead of http.client, which would cost a read command more than its whole request."""
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(None, 2)
    if not sep or len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {lines[0][:60]!r}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = dechunk(body)
    elif b"content-length" in headers:
        length = int(headers[b"content-length"])
        if len(body) < length:
            raise ValueError(f"the response ended after {len(body)} of {length} bytes")
        body = body[:length]
    return int(parts[1]), body


def dechunk(data: bytes) -> bytes:
    out: list[bytes] = []
    pos = 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2:end + 2 + size])
        pos = end + 2 + size + 2


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

    def metrics(self, timeout: float | None = None) -> str:
        """The environment's Prometheus page."""
        status, raw = self._exchange("GET", METRICS_PATH, None, timeout, accept="text/plain")
        if status != 200:
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            raise error_from_json(status, data)
        return raw.decode("utf-8")

    def call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        try:
            return self._call(method, path, body, timeout)
        except DaemonUnreachable as exc:
            if exc.sent or self.reconnect is None:
                raise
            self.port, self.token = self.reconnect()
            return self._call(method, path, body, timeout)

    def _call(self, method: str, path: str, body: Any, timeout: float | None) -> Any:
        status, raw = self._exchange(method, path, body, timeout)
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            raise OperationError(f"the environment's daemon answered HTTP {status} with something that is "
                                 "not JSON") from None
        if status >= 400:
            raise error_from_json(status, data)
        return data

    def _exchange(self, method: str, path: str, body: Any, timeout: float | None,
                  accept: str = "application/json") -> tuple[int, bytes]:
        """One request on a connection of its own: the answer's status and body."""
        payload = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Authorization: Bearer {self.token}\r\nAccept: {accept}\r\nConnection: close\r\n"
                + (f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n" if body is not None
                   else "") + "\r\n")
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout or self.timeout)
        except OSError as exc:
            raise DaemonUnreachable(f"the environment's daemon on 127.0.0.1:{self.port} did not answer: "
                                    f"{exc.strerror or exc or type(exc).__name__}", sent=False) from None
        try:
            sock.sendall(head.encode("latin-1") + payload)
            return read_response(sock)
        except (ConnectionResetError, TimeoutError) as exc:
            raise DaemonUnreachable(f"the environment's daemon on 127.0.0.1:{self.port} did not answer: "
                                    f"{exc or type(exc).__name__}") from None
        except (OSError, ValueError) as exc:
            raise DaemonUnreachable(f"talking to the environment's daemon failed: {exc}") from None
        finally:
            sock.close()

    # Named calls, so callers read like the API.

    def status(self, timeout: float | None = None) -> dict[str, Any]:
        return dict(self.call("GET", "/v1/status", timeout=timeout))

    def shutdown(self) -> None:
        self.call("POST", "/v1/shutdown")

    def mesh_config(self) -> dict[str, Any] | None:
        data = self.call("GET", "/v1/config")
        return dict(data) if data is not None else None

    def pipeline_create(self, service: str) -> PipelineInfo:
        return pipeline_from_json(self.call("POST", "/v1/pipelines", {"service": service}))

    def pipeline_delete(self, service: str, delete_repo: bool = False) -> None:
        self.call("DELETE", f"/v1/pipelines/{quote(service, safe='')}" + ("?delete_repo=1" if delete_repo else ""))

    def pipeline_runs(self, service: str) -> list[PipelineRun]:
        return [run_from_json(r) for r in self.call("GET", f"/v1/pipelines/{quote(service, safe='')}/runs")]

    def pipeline_run(self, service: str, run_id: str | None = None) -> PipelineRun:
        rid = quote(run_id, safe="") if run_id else "latest"
        return run_from_json(self.call("GET", f"/v1/pipelines/{quote(service, safe='')}/runs/{rid}"))

    def push(self, service: str, ref: str, old: str | None, new: str) -> str:
        return str(self.call("POST", "/v1/push", {"service": service, "ref": ref, "old": old, "new": new})["run_id"])

    def route_show(self, service: str) -> Route | None:
        return route_from_json(self.call("GET", f"/v1/routes/{quote(service, safe='')}"))

    def route_set(self, service: str, targets: tuple[WeightedTarget, ...]) -> tuple[Route, dict[str, Any]]:
        data = self.call("PUT", f"/v1/routes/{quote(service, safe='')}",
                         {"targets": [{"version": t.version, "weight": t.weight} for t in targets]})
        route = route_from_json(data["route"])
        assert route is not None
        return route, data["push"]

    def route_delete(self, service: str) -> None:
        self.call("DELETE", f"/v1/routes/{quote(service, safe='')}")

    def gateway_routes(self) -> list[GatewayRoute]:
        return [gateway_route_from_json(g) for g in self.call("GET", "/v1/gateway-routes")]

    def gateway_route_set(self, gr: GatewayRoute) -> GatewayRoute:
        return gateway_route_from_json(self.call("PUT", f"/v1/gateway-routes/{quote(gr.name, safe='')}",
                                                 {"prefix": gr.prefix, "service": gr.service,
                                                  "rewrite_prefix": gr.rewrite_prefix}))

    def gateway_route_delete(self, name: str) -> None:
        self.call("DELETE", f"/v1/gateway-routes/{quote(name, safe='')}")

    def versions(self, service: str) -> list[VersionInfo]:
        return [version_from_json(v) for v in self.call("GET", f"/v1/services/{quote(service, safe='')}/versions")]

    def version_delete(self, service: str, version: str, force: bool = False) -> None:
        self.call("DELETE", f"/v1/services/{quote(service, safe='')}/versions/{quote(version, safe='')}"
                            f"?force={'true' if force else 'false'}")

    def version_scale(self, service: str, version: str, tasks: int, timeout: float) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "POST", f"/v1/services/{quote(service, safe='')}/versions/{quote(version, safe='')}/scale",
            {"tasks": tasks}, timeout=timeout)
        return result

    def stats(self, service: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/v1/services/{quote(service, safe='')}/stats"))

    def route_view(self, service: str) -> tuple[Route | None, list[HeaderRoute]]:
        """The service's weighted route and its header routes, in one request."""
        data = self.call("GET", f"/v1/routes/{quote(service, safe='')}?headers=1")
        return route_from_json(data["route"]), [header_route_from_json(r) for r in data["header_routes"]]

    def header_routes(self, service: str) -> list[HeaderRoute]:
        return [header_route_from_json(r) for r in self.call("GET", f"/v1/routes/{quote(service, safe='')}/headers")]

    def header_route_set(self, service: str, headers: tuple[HeaderMatch, ...],
                         targets: tuple[WeightedTarget, ...]) -> tuple[HeaderRoute, dict[str, Any]]:
        data = self.call("PUT", f"/v1/routes/{quote(service, safe='')}/headers",
                         {"headers": [h.to_json() for h in headers],
                          "targets": [{"version": t.version, "weight": t.weight} for t in targets]})
        return header_route_from_json(data["route"]), data["push"]

    def header_route_delete(self, service: str, header: str) -> None:
        self.call("DELETE", f"/v1/routes/{quote(service, safe='')}/headers/{quote(header, safe='')}")

    def rollout_start(self, service: str, version: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/v1/rollouts/{quote(service, safe='')}", {"version": version}))

    def rollout_status(self, service: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/v1/rollouts/{quote(service, safe='')}"))

    def rollout_control(self, service: str, action: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/v1/rollouts/{quote(service, safe='')}/{quote(action, safe='')}"))
