"""The local engine's operations, each declared once: its HTTP method and path, its request and its result.

:data:`OPERATIONS` is the one table. The client sends a request with ``ControlClient.call(OP, request)``
and gets the result back typed; the control API's server (``httpapi.make_control_app``) routes each row
to the daemon's method of the same name (``DaemonActions``), which takes the request and returns the result.
A request's fields travel by name: those named in the path in the path, the others in the query string
(GET, DELETE) or in a JSON body (POST, PUT). A result is named by its type as the daemon's method declares
it, and that name is its wire form (``FIELD_FORMS``).

The routing and pipeline types are imported where a value is built, not at the top: ``meshpipe versions``,
a read command, loads this module and needs neither.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import quote, urlencode

from meshpipe.engines.base import PipelineInfo, VersionInfo
from meshpipe.engines.local.control import endpoints
from meshpipe.errors import UserError

if TYPE_CHECKING:
    from meshpipe.mesh.headers import HeaderMatch
    from meshpipe.mesh.routing import GatewayRoute, HeaderRoute, Route, WeightedTarget
    from meshpipe.mesh.stats import ServiceStats
    from meshpipe.pipeline.runs import PipelineRun, StartedRun

RUN_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}\Z")
LATEST = "latest"  # the run id that names a service's newest run

# --- JSON forms of the engine's types ----------------------------------------------------------------


def targets_to_json(targets: tuple[WeightedTarget, ...]) -> list[dict[str, Any]]:
    return [{"version": t.version, "weight": t.weight} for t in targets]


def route_to_json(route: Route | None) -> dict[str, Any] | None:
    if route is None:
        return None
    return {"service": route.service, "targets": targets_to_json(route.targets),
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
            "targets": targets_to_json(route.targets),
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


def run_to_json(run: PipelineRun) -> dict[str, Any]:
    return {"run_id": run.run_id, "service": run.service, "commit": run.commit,
            "status": str(run.status), "version": run.version, "started_at": run.started_at,
            "finished_at": run.finished_at,
            "stages": [{"name": s.name, "status": str(s.status), "log": s.log} for s in run.stages]}


def run_from_json(data: dict[str, Any]) -> PipelineRun:
    from meshpipe.pipeline.runs import PipelineRun, StageResult
    from meshpipe.status import RunStatus

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


# --- requests ------------------------------------------------------------------------------------------
#
# A request is a frozen dataclass whose fields are the operation's inputs. Each field's type names its
# wire form (FIELD_FORMS); a field named in the path is checked as that kind of name (PATH_NAMES).


@dataclass(frozen=True)
class Nothing:
    """The request of an operation that takes nothing."""


@dataclass(frozen=True)
class OfService:
    service: str


@dataclass(frozen=True)
class StatsOf:
    service: str
    window_s: float | None = None  # measure over the next seconds (None: since each proxy started)


@dataclass(frozen=True)
class DeletePipeline:
    service: str
    delete_repo: bool = False  # the config repo goes too (else it is kept, with its history)


@dataclass(frozen=True)
class OfRun:
    service: str
    run_id: str = LATEST


@dataclass(frozen=True)
class Push:
    service: str
    ref: str
    new: str
    old: str | None = None  # only said for the record; a hook may send anything there


@dataclass(frozen=True)
class SetRoute:
    service: str
    targets: tuple[WeightedTarget, ...]


@dataclass(frozen=True)
class OfGatewayRoute:
    name: str


@dataclass(frozen=True)
class SetGatewayRoute:
    name: str
    prefix: str
    service: str
    rewrite_prefix: bool = True


@dataclass(frozen=True)
class OfVersion:
    service: str
    version: str
    force: bool = False


@dataclass(frozen=True)
class ScaleVersion:
    service: str
    version: str
    tasks: int


@dataclass(frozen=True)
class SetHeaderRoute:
    service: str
    headers: tuple[HeaderMatch, ...]
    targets: tuple[WeightedTarget, ...]


@dataclass(frozen=True)
class OfHeaderRoute:
    service: str
    header: str


@dataclass(frozen=True)
class StartRollout:
    service: str
    version: str


@dataclass(frozen=True)
class ControlRollout:
    service: str
    action: str


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"request field {name!r} must be a str")
    return value


def _maybe_text(value: Any, name: str) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserError(f"request field {name!r} must be a int")
    return value


def _maybe_seconds(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"request field {name!r} must be a number of seconds")
    return float(value)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"request field {name!r} must be true or false")
    return value


def _from_query(kind: str, value: str) -> Any:
    """A query string's text as the JSON value a body would hold (a query string has only text)."""
    if kind == "bool":
        return value.lower() in ("1", "true", "yes")
    if kind == "int" and value.isdigit() and len(value) < 10:
        return int(value)
    if kind == "float | None":
        try:
            return float(value)
        except ValueError:
            return value  # refused by the field's form
    return value


def _targets(value: Any, name: str) -> tuple[WeightedTarget, ...]:
    from meshpipe.mesh.routing import WeightedTarget

    if not isinstance(value, list):
        raise UserError(f"request field {name!r} must be a list")
    out = []
    for t in value:
        if not isinstance(t, dict):
            raise UserError("each target must be an object with version and weight")
        out.append(WeightedTarget(_text(t.get("version"), "version"), _int(t.get("weight"), "weight")))
    return tuple(out)


def _headers(value: Any, name: str) -> tuple[HeaderMatch, ...]:
    from meshpipe.mesh.headers import HeaderMatch

    if not isinstance(value, list):
        raise UserError(f"request field {name!r} must be a list")
    out = []
    for h in value:
        if not isinstance(h, dict):
            raise UserError("each header must be an object with name, kind and value")
        out.append(HeaderMatch(_text(h.get("name"), "name"), _text(h.get("value"), "value"),
                               _text(h.get("kind"), "kind")))
    return tuple(out)


def _plain(value: Any) -> Any:
    return value


# a field's type, as written in its dataclass -> (to the wire, from the wire)
FIELD_FORMS: dict[str, tuple[Callable[[Any], Any], Callable[[Any, str], Any]]] = {
    "str": (_plain, _text),
    "str | None": (_plain, _maybe_text),
    "int": (_plain, _int),
    "float | None": (_plain, _maybe_seconds),
    "bool": (_plain, _flag),
    "tuple[WeightedTarget, ...]": (targets_to_json, _targets),
    "tuple[HeaderMatch, ...]": (lambda hs: [h.to_json() for h in hs], _headers),
}


def _check_service(value: str) -> None:
    from meshpipe.mesh.routing import check_service

    check_service(value)


def _check_version(value: str) -> None:
    from meshpipe.mesh.routing import VERSION_RE

    if not VERSION_RE.match(value):
        raise UserError(f"{value[:60]!r} is not a version id: {VERSION_RE.pattern[1:-2]}")


def _check_gateway_route_name(value: str) -> None:
    from meshpipe.mesh.routing import NAME_RE

    if not NAME_RE.match(value):
        raise UserError(f"{value[:60]!r} is not a gateway route name: letters, digits, '_', '.', '-', up to 255")


def _check_run_id(value: str) -> None:
    if value != LATEST and not RUN_ID_RE.match(value):
        raise UserError(f"{value[:60]!r} is not a pipeline run id (like 20260101-120000-a1b2c3) or 'latest'")


# A name taken from a request's path is refused (400) unless it has the form such a name has: no ``..``,
# ``/``, NUL or a thousand characters reach a lookup, a log line or a file name.
PATH_NAMES: dict[str, Callable[[str], None]] = {
    "service": _check_service, "version": _check_version, "name": _check_gateway_route_name, "run_id": _check_run_id,
}


# --- results -------------------------------------------------------------------------------------------
#
# A result is the model the daemon's method returns (a Route, a tuple of PipelineRuns, ...), or one of the
# records below where an answer holds several; an operation names its result by its type as the method
# declares it, and that name is its wire form (FIELD_FORMS). Three results are documents rather than
# records, shown as they are: the environment's status, a rollout's view (``dict[str, Any]``) and the
# mesh config the proxies run.


@dataclass(frozen=True)
class PushReport:
    """How a config push went: its generation, how many live proxies applied it, and which did not (by
    admin port: why)."""

    generation: int | None = None
    proxies: int = 0
    applied: int = 0
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    ms: float = 0.0


@dataclass(frozen=True)
class RouteView:
    """A service's weighted route and its header routes, in one answer (the CLI's read path)."""

    route: Route | None
    header_routes: tuple[HeaderRoute, ...]


@dataclass(frozen=True)
class RouteChanged:
    route: Route
    push: PushReport


@dataclass(frozen=True)
class HeaderRouteChanged:
    route: HeaderRoute
    push: PushReport


Form = tuple[Callable[[Any], Any], Callable[[Any, str], Any]]


def _record(cls: type[Any]) -> Form:
    """The wire form of a record: an object of its fields, each in its own form."""
    fields = dataclasses.fields(cls)

    def encode(value: Any) -> dict[str, Any]:
        return {f.name: FIELD_FORMS[str(f.type)][0](getattr(value, f.name)) for f in fields}

    def decode(data: Any, name: str) -> Any:
        return cls(**{f.name: FIELD_FORMS[str(f.type)][1](data[f.name], f.name) for f in fields if f.name in data})

    return encode, decode


def _started_run(data: dict[str, Any]) -> StartedRun:
    from meshpipe.pipeline.runs import StartedRun

    return StartedRun(str(data["run_id"]), str(data["service"]), str(data["commit"]))


def _service_stats(data: dict[str, Any]) -> ServiceStats:
    from meshpipe.mesh.stats import ServiceStats

    return ServiceStats.from_json(data)


def _many(encode: Callable[[Any], Any], decode: Callable[[Any], Any]) -> Form:
    return (lambda items: [encode(i) for i in items]), (lambda data, name: tuple(decode(i) for i in data))


def _one(encode: Callable[[Any], Any], decode: Callable[[Any], Any]) -> Form:
    return encode, (lambda data, name: decode(data))


FIELD_FORMS.update({
    "None": ((lambda _: {"deleted": True}), (lambda data, name: None)),  # every such operation deletes
    "int | None": (_plain, lambda v, name: None if v is None else _int(v, name)),
    "float": (_plain, lambda v, name: float(v)),
    "bytes": (_plain, lambda v, name: bytes(v)),
    "dict[str, Any]": (_plain, lambda v, name: dict(v)),
    "dict[str, Any] | None": (_plain, lambda v, name: None if v is None else dict(v)),
    "dict[str, str]": (_plain, lambda v, name: {str(k): str(x) for k, x in v.items()}),
    "dict[str, tuple[str, ...]]": ((lambda m: {k: list(v) for k, v in m.items()}),
                                   (lambda v, name: {str(k): tuple(str(x) for x in c) for k, c in v.items()})),
    "PipelineInfo": _one(dataclasses.asdict, lambda d: PipelineInfo(**d)),
    "PipelineRun": _one(run_to_json, run_from_json),
    "tuple[PipelineRun, ...]": _many(run_to_json, run_from_json),
    "StartedRun": _one(dataclasses.asdict, _started_run),
    "Route": _one(route_to_json, route_from_json),
    "Route | None": _one(route_to_json, route_from_json),
    "HeaderRoute": _one(header_route_to_json, header_route_from_json),
    "tuple[HeaderRoute, ...]": _many(header_route_to_json, header_route_from_json),
    "GatewayRoute": _one(gateway_route_to_json, gateway_route_from_json),
    "tuple[GatewayRoute, ...]": _many(gateway_route_to_json, gateway_route_from_json),
    "tuple[VersionInfo, ...]": _many(dataclasses.asdict, version_from_json),
    "ServiceStats": _one(dataclasses.asdict, _service_stats),
})
FIELD_FORMS.update({cls.__name__: _record(cls) for cls in (PushReport, RouteView, RouteChanged, HeaderRouteChanged)})


# --- the table -----------------------------------------------------------------------------------------

Req = TypeVar("Req")
Res = TypeVar("Res", covariant=True)
TEXT_PAGE = "bytes"  # the one result that is not JSON: the Prometheus page


@dataclass(frozen=True)
class Operation(Generic[Req, Res]):
    """One operation: the daemon's method ``name`` answers ``method path`` with ``status``; it takes a
    ``request`` and returns what ``result`` names (its return type as written, which is its wire form)."""

    name: str
    method: str
    path: str  # with {field} for the request's fields that travel in the path
    request: type[Req]
    result: str
    status: int = 200

    def encode(self, value: Any) -> Any:
        """The result's JSON form (or, for the Prometheus page, its bytes)."""
        return FIELD_FORMS[self.result][0](value)

    def decode(self, data: Any) -> Res:
        result: Res = FIELD_FORMS[self.result][1](data, "result")
        return result

    @property
    def path_fields(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)\}", self.path))

    @property
    def body_fields(self) -> tuple[str, ...]:
        """The request's fields that travel in a JSON body (POST and PUT)."""
        if self.method in ("GET", "DELETE"):
            return ()
        return tuple(f.name for f in dataclasses.fields(self.request)  # type: ignore[arg-type]
                     if f.name not in self.path_fields)

    def target(self, request: Req) -> str:
        """The request's path and query string."""
        assert dataclasses.is_dataclass(request)
        values = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
        path = self.path.format(**{k: quote(str(values.pop(k)), safe="") for k in self.path_fields})
        if self.method in ("GET", "DELETE"):
            query = {k: ("true" if v is True else "false" if v is False else v) for k, v in values.items()
                     if v is not None}
            return f"{path}?{urlencode(query)}" if query else path
        return path

    def body(self, request: Req) -> dict[str, Any] | None:
        """The request's JSON body (POST and PUT), its path fields left out."""
        if self.method in ("GET", "DELETE"):
            return None
        assert dataclasses.is_dataclass(request)
        return {f.name: FIELD_FORMS[str(f.type)][0](getattr(request, f.name)) for f in dataclasses.fields(request)
                if f.name not in self.path_fields}

    def parse(self, path: Mapping[str, str], query: Mapping[str, str], body: Mapping[str, Any]) -> Req:
        """The request, from what came in: 400 (UserError) for a missing or malformed field."""
        given: dict[str, Any] = {}
        for f in dataclasses.fields(self.request):  # type: ignore[arg-type]
            if f.name in self.path_fields:
                value: Any = str(path[f.name])
                if f.name in PATH_NAMES:
                    PATH_NAMES[f.name](value)
                given[f.name] = value
                continue
            in_query = self.method in ("GET", "DELETE")
            source = query if in_query else body
            decode = FIELD_FORMS[str(f.type)][1]
            if f.name in source:
                value = _from_query(str(f.type), source[f.name]) if in_query else source[f.name]
                given[f.name] = decode(value, f.name)
            elif f.default is dataclasses.MISSING:
                decode(None, f.name)  # says what the missing field must be
        return self.request(**given)


STATUS: Operation[Nothing, dict[str, Any]] = Operation("status", "GET", endpoints.STATUS, Nothing, "dict[str, Any]")
SHUTDOWN: Operation[Nothing, dict[str, Any]] = Operation("shutdown", "POST", "/v1/shutdown", Nothing,
                                                         "dict[str, Any]", 202)
MESH_CONFIG: Operation[Nothing, dict[str, Any] | None] = Operation(
    "mesh_config", "GET", "/v1/config", Nothing, "dict[str, Any] | None")
BACKENDS: Operation[Nothing, dict[str, tuple[str, ...]]] = Operation(
    "backends", "GET", "/v1/backends", Nothing, "dict[str, tuple[str, ...]]")
METRICS: Operation[Nothing, bytes] = Operation("metrics", "GET", "/metrics", Nothing, TEXT_PAGE)
PIPELINE_CREATE: Operation[OfService, PipelineInfo] = Operation(
    "pipeline_create", "POST", "/v1/pipelines", OfService, "PipelineInfo", 201)
PIPELINE_DELETE: Operation[DeletePipeline, None] = Operation(
    "pipeline_delete", "DELETE", "/v1/pipelines/{service}", DeletePipeline, "None")
PIPELINE_RUNS: Operation[OfService, tuple[PipelineRun, ...]] = Operation(
    "pipeline_runs", "GET", "/v1/pipelines/{service}/runs", OfService, "tuple[PipelineRun, ...]")
PIPELINE_RUN: Operation[OfRun, PipelineRun] = Operation(
    "pipeline_run", "GET", "/v1/pipelines/{service}/runs/{run_id}", OfRun, "PipelineRun")
PUSH: Operation[Push, StartedRun] = Operation("push", "POST", "/v1/push", Push, "StartedRun", 201)
ROUTE_SHOW: Operation[OfService, Route | None] = Operation(
    "route_show", "GET", "/v1/routes/{service}", OfService, "Route | None")
ROUTE_VIEW: Operation[OfService, RouteView] = Operation(
    "route_view", "GET", endpoints.ROUTE_VIEW, OfService, "RouteView")
ROUTE_SET: Operation[SetRoute, RouteChanged] = Operation(
    "route_set", "PUT", "/v1/routes/{service}", SetRoute, "RouteChanged")
ROUTE_DELETE: Operation[OfService, None] = Operation("route_delete", "DELETE", "/v1/routes/{service}", OfService, "None")
HEADER_ROUTES: Operation[OfService, tuple[HeaderRoute, ...]] = Operation(
    "header_routes", "GET", "/v1/routes/{service}/headers", OfService, "tuple[HeaderRoute, ...]")
HEADER_ROUTE_SET: Operation[SetHeaderRoute, HeaderRouteChanged] = Operation(
    "header_route_set", "PUT", "/v1/routes/{service}/headers", SetHeaderRoute, "HeaderRouteChanged")
HEADER_ROUTE_DELETE: Operation[OfHeaderRoute, None] = Operation(
    "header_route_delete", "DELETE", "/v1/routes/{service}/headers/{header}", OfHeaderRoute, "None")
GATEWAY_ROUTES: Operation[Nothing, tuple[GatewayRoute, ...]] = Operation(
    "gateway_routes", "GET", "/v1/gateway-routes", Nothing, "tuple[GatewayRoute, ...]")
GATEWAY_ROUTE_SET: Operation[SetGatewayRoute, GatewayRoute] = Operation(
    "gateway_route_set", "PUT", "/v1/gateway-routes/{name}", SetGatewayRoute, "GatewayRoute")
GATEWAY_ROUTE_DELETE: Operation[OfGatewayRoute, None] = Operation(
    "gateway_route_delete", "DELETE", "/v1/gateway-routes/{name}", OfGatewayRoute, "None")
VERSIONS: Operation[OfService, tuple[VersionInfo, ...]] = Operation(
    "versions", "GET", endpoints.VERSIONS, OfService, "tuple[VersionInfo, ...]")
VERSION_DELETE: Operation[OfVersion, None] = Operation(
    "version_delete", "DELETE", "/v1/services/{service}/versions/{version}", OfVersion, "None")
VERSION_SCALE: Operation[ScaleVersion, dict[str, Any]] = Operation(
    "version_scale", "POST", "/v1/services/{service}/versions/{version}/scale", ScaleVersion, "dict[str, Any]")
STATS: Operation[StatsOf, ServiceStats] = Operation(
    "stats", "GET", endpoints.STATS, StatsOf, "ServiceStats")
ROLLOUT_START: Operation[StartRollout, dict[str, Any]] = Operation(
    "rollout_start", "POST", "/v1/rollouts/{service}", StartRollout, "dict[str, Any]", 201)
ROLLOUT_STATUS: Operation[OfService, dict[str, Any]] = Operation(
    "rollout_status", "GET", "/v1/rollouts/{service}", OfService, "dict[str, Any]")
ROLLOUT_CONTROL: Operation[ControlRollout, dict[str, Any]] = Operation(
    "rollout_control", "POST", "/v1/rollouts/{service}/{action}", ControlRollout, "dict[str, Any]")

OPERATIONS: tuple[Operation[Any, Any], ...] = (
    STATUS, SHUTDOWN, MESH_CONFIG, BACKENDS, METRICS,
    PIPELINE_CREATE, PIPELINE_DELETE, PIPELINE_RUNS, PIPELINE_RUN, PUSH,
    ROUTE_SHOW, ROUTE_VIEW, ROUTE_SET, ROUTE_DELETE, HEADER_ROUTES, HEADER_ROUTE_SET, HEADER_ROUTE_DELETE,
    GATEWAY_ROUTES, GATEWAY_ROUTE_SET, GATEWAY_ROUTE_DELETE,
    VERSIONS, VERSION_DELETE, VERSION_SCALE, STATS,
    ROLLOUT_START, ROLLOUT_STATUS, ROLLOUT_CONTROL,
)

NOTHING = Nothing()
