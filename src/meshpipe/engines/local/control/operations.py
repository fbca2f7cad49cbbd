"""The local engine's operations, each declared once: its HTTP method and path, its request and its result.

:data:`OPERATIONS` is the one table. The client sends a request with ``ControlClient.call(OP, request)``
and gets the result back typed; the control API's server (``httpapi.make_control_app``) routes each row
to the daemon's method of the same name (``ControlApi``), which takes the request and returns the result.
A request's fields travel by name: those named in the path in the path, the others in the query string
(GET, DELETE) or in a JSON body (POST, PUT); a result knows its own JSON form (``to_json``/``from_json``).

Three results are documents rather than records: the environment's status, a rollout's view and the mesh
config. They are shown as they are (``--format json``, the dashboard's pages, the proxies), so their
result types carry the document whole.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import quote, urlencode

from meshpipe.engines.base import PipelineInfo, VersionInfo
from meshpipe.errors import OperationError, UserError
from meshpipe.mesh.headers import HeaderMatch
from meshpipe.mesh.routing import NAME_RE, VERSION_RE, GatewayRoute, HeaderRoute, Route, WeightedTarget, check_service
from meshpipe.mesh.stats import ServiceStats
from meshpipe.pipeline.runs import PipelineRun, RunStatus, StageResult, StartedRun

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
    return HeaderRoute(service=data["service"], headers=tuple(HeaderMatch.from_json(h) for h in data["headers"]),
                       targets=tuple(WeightedTarget(t["version"], int(t["weight"])) for t in data["targets"]),
                       priority=int(data["priority"]), prefix=data["prefix"], method=data["method"])


def gateway_route_to_json(gr: GatewayRoute) -> dict[str, Any]:
    return {"name": gr.name, "prefix": gr.prefix, "service": gr.service, "namespace": gr.namespace,
            "rewrite_prefix": gr.rewrite_prefix, "virtual_service": gr.virtual_service}


def gateway_route_from_json(data: dict[str, Any]) -> GatewayRoute:
    return GatewayRoute(name=data["name"], prefix=data["prefix"], service=data["service"],
                        namespace=data["namespace"], rewrite_prefix=bool(data["rewrite_prefix"]))


def run_to_json(run: PipelineRun) -> dict[str, Any]:
    return {"run_id": run.run_id, "service": run.service, "commit": run.commit,
            "status": str(run.status), "version": run.version, "started_at": run.started_at,
            "finished_at": run.finished_at,
            "stages": [{"name": s.name, "status": str(s.status), "log": s.log} for s in run.stages]}


def run_from_json(data: dict[str, Any]) -> PipelineRun:
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
                       desired_tasks=data.get("desired_tasks"), reason=data.get("reason"))


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
    if isinstance(value, str) and value.isdigit() and len(value) < 10:
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserError(f"request field {name!r} must be a int")
    return value


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, str):  # from a query string
        return value.lower() in ("1", "true", "yes")
    if not isinstance(value, bool):
        raise UserError(f"request field {name!r} must be true or false")
    return value


def _targets(value: Any, name: str) -> tuple[WeightedTarget, ...]:
    if not isinstance(value, list):
        raise UserError(f"request field {name!r} must be a list")
    out = []
    for t in value:
        if not isinstance(t, dict):
            raise UserError("each target must be an object with version and weight")
        out.append(WeightedTarget(_text(t.get("version"), "version"), _int(t.get("weight"), "weight")))
    return tuple(out)


def _headers(value: Any, name: str) -> tuple[HeaderMatch, ...]:
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
    "bool": (_plain, _flag),
    "tuple[WeightedTarget, ...]": (targets_to_json, _targets),
    "tuple[HeaderMatch, ...]": (lambda hs: [h.to_json() for h in hs], _headers),
}


def _check_version(value: str) -> None:
    if not VERSION_RE.match(value):
        raise UserError(f"{value[:60]!r} is not a version id: {VERSION_RE.pattern[1:-2]}")


def _check_gateway_route_name(value: str) -> None:
    if not NAME_RE.match(value):
        raise UserError(f"{value[:60]!r} is not a gateway route name: letters, digits, '_', '.', '-', up to 255")


def _check_run_id(value: str) -> None:
    if value != LATEST and not RUN_ID_RE.match(value):
        raise UserError(f"{value[:60]!r} is not a pipeline run id (like 20260101-120000-a1b2c3) or 'latest'")


# A name taken from a request's path is refused (400) unless it has the form such a name has: no ``..``,
# ``/``, NUL or a thousand characters reach a lookup, a log line or a file name.
PATH_NAMES: dict[str, Callable[[str], object]] = {
    "service": check_service, "version": _check_version, "name": _check_gateway_route_name, "run_id": _check_run_id,
}


# --- results -------------------------------------------------------------------------------------------
#
# A result is a frozen dataclass too, and its JSON form follows from its fields' types (FIELD_FORMS): a
# result of one field is that field's JSON, a result of several is an object of them, and a result of
# none says what its class says (``SAYS``).

R = TypeVar("R", bound="Result")


class Result:
    SAYS: ClassVar[dict[str, Any]] = {}

    def to_json(self) -> Any:
        assert dataclasses.is_dataclass(self)
        fields = dataclasses.fields(self)
        if not fields:
            return self.SAYS
        out = {f.name: FIELD_FORMS[str(f.type)][0](getattr(self, f.name)) for f in fields}
        return out[fields[0].name] if len(fields) == 1 else out

    @classmethod
    def from_json(cls: type[R], data: Any) -> R:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        if len(fields) == 1:
            data = {fields[0].name: data}
        return cls(**{f.name: FIELD_FORMS[str(f.type)][1](data[f.name], f.name) for f in fields})


@dataclass(frozen=True)
class Done(Result):
    """What a delete answers: it is done."""

    SAYS: ClassVar[dict[str, Any]] = {"deleted": True}


@dataclass(frozen=True)
class Stopping(Result):
    SAYS: ClassVar[dict[str, Any]] = {"stopping": True}


@dataclass(frozen=True)
class Document(Result):
    """A JSON document shown as it is: the environment's status, a rollout's view, the mesh config."""

    document: dict[str, Any] | None

    @property
    def doc(self) -> dict[str, Any]:
        """The document, which the status and the rollout operations always have."""
        if self.document is None:
            raise OperationError("the environment's daemon answered with no document")
        return self.document


@dataclass(frozen=True)
class PushReport(Result):
    """How a config push went: its generation, how many live proxies applied it, and which did not (by
    admin port: why)."""

    generation: int | None = None
    proxies: int = 0
    applied: int = 0
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    ms: float = 0.0

    @classmethod
    def of(cls, pushed: dict[str, Any]) -> PushReport:
        """The report of what ``Publisher.publish`` answered."""
        return cls.from_json(pushed)


@dataclass(frozen=True)
class PipelineCreated(Result):
    info: PipelineInfo


@dataclass(frozen=True)
class Runs(Result):
    runs: tuple[PipelineRun, ...]


@dataclass(frozen=True)
class Run(Result):
    run: PipelineRun


@dataclass(frozen=True)
class RunStarted(Result):
    started: StartedRun


@dataclass(frozen=True)
class RouteFound(Result):
    route: Route | None


@dataclass(frozen=True)
class RouteView(Result):
    """A service's weighted route and its header routes, in one answer (the CLI's read path)."""

    route: Route | None
    header_routes: tuple[HeaderRoute, ...]


@dataclass(frozen=True)
class RouteChanged(Result):
    route: Route
    push: PushReport


@dataclass(frozen=True)
class HeaderRouteChanged(Result):
    route: HeaderRoute
    push: PushReport


@dataclass(frozen=True)
class HeaderRoutes(Result):
    routes: tuple[HeaderRoute, ...]


@dataclass(frozen=True)
class GatewayRouteSet(Result):
    route: GatewayRoute


@dataclass(frozen=True)
class GatewayRoutes(Result):
    routes: tuple[GatewayRoute, ...]


@dataclass(frozen=True)
class Versions(Result):
    versions: tuple[VersionInfo, ...]


@dataclass(frozen=True)
class Stats(Result):
    stats: ServiceStats


@dataclass(frozen=True)
class Backends(Result):
    """service -> the services its versions call."""

    calls: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class MetricsPage(Result):
    """The environment's Prometheus page: text, not JSON."""

    CONTENT_TYPE: ClassVar[str] = "text/plain; version=0.0.4; charset=utf-8"

    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    @classmethod
    def from_json(cls: type[R], data: Any) -> R:
        return cls(bytes(data))  # type: ignore[call-arg]


def _many(encode: Callable[[Any], Any], decode: Callable[[Any], Any]) -> tuple[Callable[[Any], Any],
                                                                            Callable[[Any, str], Any]]:
    return (lambda items: [encode(i) for i in items]), (lambda data, name: tuple(decode(i) for i in data))


def _one(encode: Callable[[Any], Any], decode: Callable[[Any], Any]) -> tuple[Callable[[Any], Any],
                                                                           Callable[[Any, str], Any]]:
    return encode, (lambda data, name: decode(data))


FIELD_FORMS.update({
    "int | None": (_plain, lambda v, name: None if v is None else _int(v, name)),
    "float": (_plain, lambda v, name: float(v)),
    "bytes": (_plain, lambda v, name: bytes(v)),
    "dict[str, Any] | None": (_plain, lambda v, name: None if v is None else dict(v)),
    "dict[str, str]": (_plain, lambda v, name: {str(k): str(x) for k, x in v.items()}),
    "dict[str, tuple[str, ...]]": ((lambda m: {k: list(v) for k, v in m.items()}),
                                   (lambda v, name: {str(k): tuple(str(x) for x in c) for k, c in v.items()})),
    "PushReport": _one(PushReport.to_json, PushReport.from_json),
    "PipelineInfo": _one(dataclasses.asdict, lambda d: PipelineInfo(**d)),
    "PipelineRun": _one(run_to_json, run_from_json),
    "tuple[PipelineRun, ...]": _many(run_to_json, run_from_json),
    "StartedRun": _one(dataclasses.asdict, lambda d: StartedRun(str(d["run_id"]), str(d["service"]),
                                                                str(d["commit"]))),
    "Route": _one(route_to_json, route_from_json),
    "Route | None": _one(route_to_json, route_from_json),
    "HeaderRoute": _one(header_route_to_json, header_route_from_json),
    "tuple[HeaderRoute, ...]": _many(header_route_to_json, header_route_from_json),
    "GatewayRoute": _one(gateway_route_to_json, gateway_route_from_json),
    "tuple[GatewayRoute, ...]": _many(gateway_route_to_json, gateway_route_from_json),
    "tuple[VersionInfo, ...]": _many(dataclasses.asdict, version_from_json),
    "ServiceStats": _one(dataclasses.asdict, ServiceStats.from_json),
})


# --- the table -----------------------------------------------------------------------------------------

Req = TypeVar("Req")
Res = TypeVar("Res", bound=Result)


@dataclass(frozen=True)
class Operation(Generic[Req, Res]):
    """One operation: the daemon's method ``name`` answers ``method path`` with ``status``."""

    name: str
    method: str
    path: str  # with {field} for the request's fields that travel in the path
    request: type[Req]
    result: type[Res]
    status: int = 200

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
            source = query if self.method in ("GET", "DELETE") else body
            decode = FIELD_FORMS[str(f.type)][1]
            if f.name in source:
                given[f.name] = decode(source[f.name], f.name)
            elif f.default is dataclasses.MISSING:
                decode(None, f.name)  # says what the missing field must be
        return self.request(**given)


STATUS = Operation("status", "GET", "/v1/status", Nothing, Document)
SHUTDOWN = Operation("shutdown", "POST", "/v1/shutdown", Nothing, Stopping, 202)
MESH_CONFIG = Operation("mesh_config", "GET", "/v1/config", Nothing, Document)
BACKENDS = Operation("backends", "GET", "/v1/backends", Nothing, Backends)
METRICS = Operation("metrics", "GET", "/metrics", Nothing, MetricsPage)
PIPELINE_CREATE = Operation("pipeline_create", "POST", "/v1/pipelines", OfService, PipelineCreated, 201)
PIPELINE_DELETE = Operation("pipeline_delete", "DELETE", "/v1/pipelines/{service}", OfService, Done)
PIPELINE_RUNS = Operation("pipeline_runs", "GET", "/v1/pipelines/{service}/runs", OfService, Runs)
PIPELINE_RUN = Operation("pipeline_run", "GET", "/v1/pipelines/{service}/runs/{run_id}", OfRun, Run)
PUSH = Operation("push", "POST", "/v1/push", Push, RunStarted, 201)
ROUTE_SHOW = Operation("route_show", "GET", "/v1/routes/{service}", OfService, RouteFound)
ROUTE_VIEW = Operation("route_view", "GET", "/v1/routes/{service}/view", OfService, RouteView)
ROUTE_SET = Operation("route_set", "PUT", "/v1/routes/{service}", SetRoute, RouteChanged)
ROUTE_DELETE = Operation("route_delete", "DELETE", "/v1/routes/{service}", OfService, Done)
HEADER_ROUTES = Operation("header_routes", "GET", "/v1/routes/{service}/headers", OfService, HeaderRoutes)
HEADER_ROUTE_SET = Operation("header_route_set", "PUT", "/v1/routes/{service}/headers", SetHeaderRoute,
                             HeaderRouteChanged)
HEADER_ROUTE_DELETE = Operation("header_route_delete", "DELETE", "/v1/routes/{service}/headers/{header}",
                                OfHeaderRoute, Done)
GATEWAY_ROUTES = Operation("gateway_routes", "GET", "/v1/gateway-routes", Nothing, GatewayRoutes)
GATEWAY_ROUTE_SET = Operation("gateway_route_set", "PUT", "/v1/gateway-routes/{name}", SetGatewayRoute,
                              GatewayRouteSet)
GATEWAY_ROUTE_DELETE = Operation("gateway_route_delete", "DELETE", "/v1/gateway-routes/{name}", OfGatewayRoute, Done)
VERSIONS = Operation("versions", "GET", "/v1/services/{service}/versions", OfService, Versions)
VERSION_DELETE = Operation("version_delete", "DELETE", "/v1/services/{service}/versions/{version}", OfVersion, Done)
STATS = Operation("stats", "GET", "/v1/services/{service}/stats", OfService, Stats)
ROLLOUT_START = Operation("rollout_start", "POST", "/v1/rollouts/{service}", StartRollout, Document, 201)
ROLLOUT_STATUS = Operation("rollout_status", "GET", "/v1/rollouts/{service}", OfService, Document)
ROLLOUT_CONTROL = Operation("rollout_control", "POST", "/v1/rollouts/{service}/{action}", ControlRollout, Document)

OPERATIONS: tuple[Operation[Any, Any], ...] = (
    STATUS, SHUTDOWN, MESH_CONFIG, BACKENDS, METRICS,
    PIPELINE_CREATE, PIPELINE_DELETE, PIPELINE_RUNS, PIPELINE_RUN, PUSH,
    ROUTE_SHOW, ROUTE_VIEW, ROUTE_SET, ROUTE_DELETE, HEADER_ROUTES, HEADER_ROUTE_SET, HEADER_ROUTE_DELETE,
    GATEWAY_ROUTES, GATEWAY_ROUTE_SET, GATEWAY_ROUTE_DELETE,
    VERSIONS, VERSION_DELETE, STATS,
    ROLLOUT_START, ROLLOUT_STATUS, ROLLOUT_CONTROL,
)

NOTHING = Nothing()
