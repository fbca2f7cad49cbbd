"""The daemon's control API (HTTP on 127.0.0.1, bearer token) and the blocking client the CLI uses.

Endpoints (JSON in, JSON out; every one needs ``Authorization: Bearer <token from daemon.json>``)::

    GET    /v1/status                              environment, daemon, ingress, services, versions, routes
    POST   /v1/shutdown                            stop everything and exit
    GET    /v1/config                              the mesh config last pushed to the proxies
    POST   /v1/pipelines                {service}  config repo + virtual service + router
    DELETE /v1/pipelines/{svc}                     refused while versions exist
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

import hmac
import http.client
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import quote

from meshpipe.engines.base import PipelineInfo, PipelineRun, StageResult, VersionInfo
from meshpipe.errors import ConflictError, MeshpipeError, NotFoundError, OperationError, UserError
from meshpipe.mesh.headers import HeaderMatch
from meshpipe.mesh.routing import GatewayRoute, HeaderRoute, Route, WeightedTarget

log = logging.getLogger("meshpipe.daemon")

MAX_BODY_BYTES = 1024 * 1024

# --- JSON forms of the engine's types ----------------------------------------------------------------


def route_to_json(route: Route | None) -> dict[str, Any] | None:
    if route is None:
        return None
    return {"service": route.service, "targets": [{"version": t.version, "weight": t.weight} for t in route.targets],
            "prefix": route.prefix, "method": route.method, "priority": route.priority,
            "max_retries": route.max_retries, "per_retry_timeout_ms": route.per_retry_timeout_ms,
            "timeout_ms": route.timeout_ms}


def route_from_json(data: dict[str, Any] | None) -> Route | None:
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
    return HeaderRoute(service=data["service"], headers=tuple(HeaderMatch.from_json(h) for h in data["headers"]),
                       targets=tuple(WeightedTarget(t["version"], int(t["weight"])) for t in data["targets"]),
                       priority=int(data["priority"]), prefix=data["prefix"], method=data["method"])


def gateway_route_to_json(gr: GatewayRoute) -> dict[str, Any]:
    return {"name": gr.name, "prefix": gr.prefix, "service": gr.service, "namespace": gr.namespace,
            "rewrite_prefix": gr.rewrite_prefix, "virtual_service": gr.virtual_service}


def gateway_route_from_json(data: dict[str, Any]) -> GatewayRoute:
    return GatewayRoute(name=data["name"], prefix=data["prefix"], service=data["service"],
                        namespace=data["namespace"], rewrite_prefix=bool(data["rewrite_prefix"]))


def run_from_json(data: dict[str, Any]) -> PipelineRun:
    return PipelineRun(run_id=data["run_id"], service=data["service"], commit=data.get("commit"),
                       status=data["status"], started_at=data["started_at"], finished_at=data.get("finished_at"),
                       stages=tuple(StageResult(s["name"], s["status"], s.get("log", "")) for s in data["stages"]),
                       version=data.get("version"))


def version_from_json(data: dict[str, Any]) -> VersionInfo:
    return VersionInfo(service=data["service"], version=data["version"], commit=data["commit"],
                       stack_name=data["stack_name"], status=data["status"], weight=int(data["weight"]),
                       created_at=data.get("created_at"), healthy_tasks=data.get("healthy_tasks"),
                       desired_tasks=data.get("desired_tasks"), reason=data.get("reason"))


def pipeline_from_json(data: dict[str, Any]) -> PipelineInfo:
    return PipelineInfo(service=data["service"], environment=data["environment"], clone_url=data["clone_url"],
                        virtual_service=data["virtual_service"], status=data["status"])


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
    async def pipeline_delete(self, service: str) -> None: ...
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
    async def stats(self, service: str) -> dict[str, Any]: ...
    async def header_routes(self, service: str) -> list[HeaderRoute]: ...
    async def header_route_set(self, service: str, headers: tuple[HeaderMatch, ...],
                               targets: tuple[WeightedTarget, ...]) -> tuple[HeaderRoute, dict[str, Any]]: ...
    async def header_route_delete(self, service: str, header: str) -> None: ...
    async def rollout_start(self, service: str, version: str) -> dict[str, Any]: ...
    async def rollout_status(self, service: str) -> dict[str, Any]: ...
    async def rollout_control(self, service: str, action: str) -> dict[str, Any]: ...


def _targets(raw_targets: list[Any]) -> tuple[WeightedTarget, ...]:
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


def make_control_app(target: ControlTarget, token: str) -> Any:
    """The aiohttp application of the control API."""
    from aiohttp import web

    expected = f"Bearer {token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"error": {"kind": "user", "message": "missing or wrong bearer token",
                                                "hint": "use the token in the environment's daemon.json"}},
                                     status=401)
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except MeshpipeError as exc:
            kind, status = error_kind(exc)
            return web.json_response({"error": {"kind": kind, "message": exc.message, "hint": exc.hint}},
                                     status=status)
        except Exception as exc:
            log.exception("control API: %s %s failed", request.method, request.path)
            return web.json_response({"error": {"kind": "operation", "message": f"internal error: {exc}",
                                                "hint": "see the environment's daemon.log"}}, status=500)

    async def body(request: web.Request) -> dict[str, Any]:
        if request.content_length and request.content_length > MAX_BODY_BYTES:
            raise UserError("request body too large")
        raw = await request.read()
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
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
        await target.pipeline_delete(request.match_info["svc"])
        return ok({"deleted": True})

    async def runs(request: web.Request) -> web.Response:
        return ok(await target.pipeline_runs(request.match_info["svc"]))

    async def run(request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        return ok(await target.pipeline_run(request.match_info["svc"], None if run_id == "latest" else run_id))

    async def push(request: web.Request) -> web.Response:
        data = await body(request)
        old = data.get("old")
        run_id = await target.push(_require(data, "service"), _require(data, "ref"),
                                   old if isinstance(old, str) else None, _require(data, "new"))
        return ok({"run_id": run_id}, 201)

    async def route_show(request: web.Request) -> web.Response:
        return ok(route_to_json(await target.route_show(request.match_info["svc"])))

    async def route_set(request: web.Request) -> web.Response:
        data = await body(request)
        route, pushed = await target.route_set(request.match_info["svc"], _targets(_require(data, "targets", list)))
        return ok({"route": route_to_json(route), "push": pushed})

    async def route_delete(request: web.Request) -> web.Response:
        await target.route_delete(request.match_info["svc"])
        return ok({"deleted": True})

    async def gateway_routes(request: web.Request) -> web.Response:
        return ok([gateway_route_to_json(g) for g in await target.gateway_routes()])

    async def gateway_route_set(request: web.Request) -> web.Response:
        data = await body(request)
        rewrite = data.get("rewrite_prefix", True)
        if not isinstance(rewrite, bool):
            raise UserError("request field 'rewrite_prefix' must be true or false")
        gr = await target.gateway_route_set(request.match_info["name"], _require(data, "prefix"),
                                            _require(data, "service"), rewrite)
        return ok(gateway_route_to_json(gr))

    async def gateway_route_delete(request: web.Request) -> web.Response:
        await target.gateway_route_delete(request.match_info["name"])
        return ok({"deleted": True})

    async def versions(request: web.Request) -> web.Response:
        return ok(await target.versions(request.match_info["svc"]))

    async def version_delete(request: web.Request) -> web.Response:
        force = request.query.get("force", "false").lower() in ("1", "true", "yes")
        await target.version_delete(request.match_info["svc"], request.match_info["ver"], force)
        return ok({"deleted": True})

    async def stats(request: web.Request) -> web.Response:
        return ok(await target.stats(request.match_info["svc"]))

    async def header_routes(request: web.Request) -> web.Response:
        return ok([header_route_to_json(r) for r in await target.header_routes(request.match_info["svc"])])

    async def header_route_set(request: web.Request) -> web.Response:
        data = await body(request)
        headers = []
        for h in _require(data, "headers", list):
            if not isinstance(h, dict):
                raise UserError("each header must be an object with name, kind and value")
            headers.append(HeaderMatch(_require(h, "name"), _require(h, "value"), _require(h, "kind")))
        route, pushed = await target.header_route_set(request.match_info["svc"], tuple(headers),
                                                      _targets(_require(data, "targets", list)))
        return ok({"route": header_route_to_json(route), "push": pushed})

    async def header_route_delete(request: web.Request) -> web.Response:
        await target.header_route_delete(request.match_info["svc"], request.match_info["header"])
        return ok({"deleted": True})

    async def rollout_start(request: web.Request) -> web.Response:
        data = await body(request)
        return ok(await target.rollout_start(request.match_info["svc"], _require(data, "version")), 201)

    async def rollout_status(request: web.Request) -> web.Response:
        return ok(await target.rollout_status(request.match_info["svc"]))

    async def rollout_control(request: web.Request) -> web.Response:
        return ok(await target.rollout_control(request.match_info["svc"], request.match_info["action"]))

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
    app.router.add_get("/v1/services/{svc}/stats", stats)
    app.router.add_get("/v1/routes/{svc}/headers", header_routes)
    app.router.add_put("/v1/routes/{svc}/headers", header_route_set)
    app.router.add_delete("/v1/routes/{svc}/headers/{header}", header_route_delete)
    app.router.add_post("/v1/rollouts/{svc}", rollout_start)
    app.router.add_get("/v1/rollouts/{svc}", rollout_status)
    app.router.add_post("/v1/rollouts/{svc}/{action}", rollout_control)
    return app


# --- client --------------------------------------------------------------------------------------------

class DaemonUnreachable(OperationError):
    """Nothing answers on the daemon's control port."""


class ControlClient:
    """Blocking client of one daemon's control API (what the CLI process uses)."""

    def __init__(self, port: int, token: str, timeout: float = 30.0) -> None:
        self.port = port
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout or self.timeout)
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (ConnectionRefusedError, ConnectionResetError, TimeoutError) as exc:
            raise DaemonUnreachable(f"the environment's daemon on 127.0.0.1:{self.port} did not answer: "
                                    f"{exc or type(exc).__name__}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise DaemonUnreachable(f"talking to the environment's daemon failed: {exc}") from None
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            raise OperationError(f"the environment's daemon answered HTTP {resp.status} with something that is "
                                 "not JSON") from None
        if resp.status >= 400:
            raise error_from_json(resp.status, data)
        return data

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

    def pipeline_delete(self, service: str) -> None:
        self.call("DELETE", f"/v1/pipelines/{quote(service, safe='')}")

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

    def stats(self, service: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/v1/services/{quote(service, safe='')}/stats"))

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
