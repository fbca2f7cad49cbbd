"""The mesh config a proxy receives, parsed and validated (pure).

The environment daemon pushes one JSON snapshot to every proxy of an environment (``PUT /config`` on
the admin port). :func:`parse_config` turns it into a frozen :class:`DataplaneConfig` or raises a
:class:`ConfigError` listing every problem; a proxy that gets a bad snapshot keeps the one it has.

Everything the request path needs is prepared here once per snapshot (byte strings, gateway routes
longest prefix first, weights summed, timeouts in seconds), so routing a request does no parsing.
This module deliberately imports nothing heavy: a proxy process starts for every task.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from meshpipe.errors import UserError
from meshpipe.mesh.headers import MAX_HEADERS_PER_ROUTE, header_name_problem, header_value_problem

# App Mesh's limits, the same ones meshpipe.mesh.routing enforces before any engine sees a route.
MAX_TARGETS = 10
MAX_WEIGHT = 100
MAX_RETRIES = 25
DEFAULT_MAX_RETRIES = 2
DEFAULT_PER_RETRY_TIMEOUT_MS = 2000
DEFAULT_TIMEOUT_MS = 15000
MAX_HEADER_ROUTES = 9  # App Mesh: 10 routes per virtual router, the weighted one included

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
_DNS_NAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_PREFIX_RE = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")

V = TypeVar("V")


class ConfigError(UserError):
    """A config snapshot that cannot be applied; ``problems`` says everything wrong with it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid mesh config: " + "; ".join(problems),
                         hint="the proxy keeps its previous config until a valid one is pushed")


class Endpoint(NamedTuple):
    """A healthy task of a version: its sidecar's ingress listener. Also the key of an upstream pool."""

    host: str
    port: int


@dataclass(frozen=True)
class Target:
    version: str
    weight: int


@dataclass(frozen=True)
class HeaderCondition:
    """One header a header route matches: ``name`` lower-case, as requests' names are compared."""

    name: bytes
    kind: str  # exact | prefix | regex
    value: str
    pattern: re.Pattern[str] | None = field(default=None, compare=False)

    def matches(self, got: bytes | None) -> bool:
        if got is None:
            return False
        text = got.decode("latin-1")
        if self.kind == "exact":
            return text == self.value
        if self.kind == "prefix":
            return text.startswith(self.value)
        assert self.pattern is not None
        return self.pattern.fullmatch(text) is not None


@dataclass(frozen=True)
class ServiceRoute:
    """A virtual router's route: prefix/method match (and, for a header route, header matches), weighted
    versions, retry policy and timeout."""

    prefix: str
    method: str | None
    targets: tuple[Target, ...]
    max_retries: int
    per_retry_timeout_ms: int  # 0: no per-try timeout
    timeout_ms: int  # 0: no overall timeout
    headers: tuple[HeaderCondition, ...] = ()  # all must match; empty for the weighted route
    name: str = ""
    # Derived once for the request path.
    prefix_bytes: bytes = field(init=False, repr=False, compare=False)
    method_bytes: bytes | None = field(init=False, repr=False, compare=False)
    total_weight: int = field(init=False, repr=False, compare=False)
    per_try_timeout_s: float = field(init=False, repr=False, compare=False)
    timeout_s: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix_bytes", self.prefix.encode("ascii"))
        object.__setattr__(self, "method_bytes", self.method.encode("ascii") if self.method else None)
        object.__setattr__(self, "total_weight", sum(t.weight for t in self.targets))
        object.__setattr__(self, "per_try_timeout_s", self.per_retry_timeout_ms / 1000.0)
        object.__setattr__(self, "timeout_s", self.timeout_ms / 1000.0)


@dataclass(frozen=True)
class VirtualService:
    name: str  # DNS name, e.g. hello-backend.demo.local
    service: str  # e.g. hello-backend
    route: ServiceRoute | None  # None: the service exists but has no route yet
    header_routes: tuple[ServiceRoute, ...] = ()  # tried first, in this order


@dataclass(frozen=True)
class GatewayRoute:
    name: str
    prefix: str
    virtual_service: str
    rewrite_prefix: bool
    prefix_bytes: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix_bytes", self.prefix.encode("ascii"))


@dataclass(frozen=True)
class DataplaneConfig:
    generation: int
    environment: str
    namespace: str
    services: Mapping[str, VirtualService]
    endpoints: Mapping[str, Mapping[str, tuple[Endpoint, ...]]]  # service -> version -> healthy endpoints
    gateway_routes: tuple[GatewayRoute, ...]  # longest prefix first
    # The document as received, answered by GET /config.
    document: Mapping[str, Any] = field(repr=False, compare=False)
    # service -> version -> the virtual node's declared listener port (names the Envoy clusters in stats)
    listener_ports: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))
    services_by_host: Mapping[bytes, VirtualService] = field(init=False, repr=False, compare=False)
    endpoint_set: frozenset[Endpoint] = field(init=False, repr=False, compare=False)
    # Request headers any header route looks at: the only ones a listener keeps while parsing.
    match_header_names: frozenset[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "services_by_host",
                           MappingProxyType({name.encode("ascii"): vs for name, vs in self.services.items()}))
        object.__setattr__(self, "match_header_names", frozenset(
            h.name for vs in self.services.values() for r in vs.header_routes for h in r.headers))
        object.__setattr__(self, "endpoint_set", frozenset(
            ep for versions in self.endpoints.values() for eps in versions.values() for ep in eps))

    def endpoints_of(self, service: str, version: str) -> tuple[Endpoint, ...]:
        return self.endpoints.get(service, {}).get(version, ())

    def listener_port(self, service: str, version: str) -> int | None:
        return self.listener_ports.get(service, {}).get(version)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_local(host: str) -> bool:
    """Loopback, or a private address: a container task's on its environment's internal network."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


class _Checker:
    """Collects every problem in a document, so one push reports all of them at once."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def mapping(self, value: object, where: str) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.fail(where, f"must be an object, got {type(value).__name__}")
            return None
        return value

    def string(self, value: object, where: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str | None:
        if not isinstance(value, str) or not value:
            self.fail(where, "must be a non-empty string")
            return None
        if pattern is not None and not pattern.match(value):
            self.fail(where, f"{value!r} is not {what}")
            return None
        return value

    def integer(self, value: object, where: str, low: int, high: int) -> int | None:
        if not _is_int(value) or not low <= value <= high:  # type: ignore[operator]
            self.fail(where, f"must be an integer {low}-{high}, got {value!r}")
            return None
        return value  # type: ignore[return-value]


def _parse_route(c: _Checker, raw: object, where: str) -> ServiceRoute | None:
    route = c.mapping(raw, where)
    if route is None:
        return None
    prefix = c.string(route.get("prefix", "/"), f"{where}.prefix", _PREFIX_RE, "a path prefix starting with '/'")
    method = route.get("method")
    if method is not None and method not in HTTP_METHODS:
        c.fail(f"{where}.method", f"{method!r} is not an HTTP method (or null for any)")
    targets_raw = route.get("targets")
    targets: list[Target] = []
    if not isinstance(targets_raw, list) or not 1 <= len(targets_raw) <= MAX_TARGETS:
        c.fail(f"{where}.targets", f"must be a list of 1-{MAX_TARGETS} weighted targets")
    else:
        seen: set[str] = set()
        for i, t in enumerate(targets_raw):
            tw = f"{where}.targets[{i}]"
            target = c.mapping(t, tw)
            if target is None:
                continue
            version = c.string(target.get("version"), f"{tw}.version", _TOKEN_RE, "a version id")
            weight = c.integer(target.get("weight"), f"{tw}.weight", 0, MAX_WEIGHT)
            if version is not None and version in seen:
                c.fail(f"{tw}.version", f"version {version} is listed twice")
            if version is not None and weight is not None:
                seen.add(version)
                targets.append(Target(version, weight))
        if len(targets) == len(targets_raw) and not any(t.weight > 0 for t in targets):
            c.fail(f"{where}.targets", "at least one target needs a weight above 0")
    max_retries = c.integer(route.get("max_retries", DEFAULT_MAX_RETRIES), f"{where}.max_retries", 0, MAX_RETRIES)
    per_try = c.integer(route.get("per_retry_timeout_ms", DEFAULT_PER_RETRY_TIMEOUT_MS),
                        f"{where}.per_retry_timeout_ms", 0, 3_600_000)
    timeout = c.integer(route.get("timeout_ms", DEFAULT_TIMEOUT_MS), f"{where}.timeout_ms", 0, 3_600_000)
    if prefix is None or max_retries is None or per_try is None or timeout is None or c.problems:
        return None
    return ServiceRoute(prefix=prefix, method=method, targets=tuple(targets), max_retries=max_retries,
                        per_retry_timeout_ms=per_try, timeout_ms=timeout)


def _parse_header_routes(c: _Checker, raw: object, where: str) -> tuple[ServiceRoute, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_HEADER_ROUTES:
        c.fail(where, f"must be a list of at most {MAX_HEADER_ROUTES} header routes")
        return ()
    routes: list[tuple[int, str, ServiceRoute]] = []
    for i, item in enumerate(raw):
        rw = f"{where}[{i}]"
        entry = c.mapping(item, rw)
        if entry is None:
            continue
        name = c.string(entry.get("name"), f"{rw}.name", _TOKEN_RE, "a route name")
        priority = c.integer(entry.get("priority", 0), f"{rw}.priority", 0, 1000)
        headers_raw = entry.get("headers")
        conditions: list[HeaderCondition] = []
        if not isinstance(headers_raw, list) or not 1 <= len(headers_raw) <= MAX_HEADERS_PER_ROUTE:
            c.fail(f"{rw}.headers", f"must be a list of 1-{MAX_HEADERS_PER_ROUTE} header matches")
        else:
            for j, h_raw in enumerate(headers_raw):
                h = c.mapping(h_raw, f"{rw}.headers[{j}]")
                if h is None:
                    continue
                kind, value, hname = h.get("kind", "exact"), h.get("value"), h.get("name")
                problem = header_name_problem(hname) or header_value_problem(kind, value)
                if problem:
                    c.fail(f"{rw}.headers[{j}]", problem)
                    continue
                conditions.append(HeaderCondition(str(hname).lower().encode("latin-1"), str(kind), str(value),
                                                  re.compile(str(value)) if kind == "regex" else None))
        route = _parse_route(c, entry, rw)
        if route is not None and name is not None and priority is not None and conditions:
            routes.append((priority, name, ServiceRoute(
                prefix=route.prefix, method=route.method, targets=route.targets, max_retries=route.max_retries,
                per_retry_timeout_ms=route.per_retry_timeout_ms, timeout_ms=route.timeout_ms,
                headers=tuple(conditions), name=name)))
    # Lowest priority number first, then the name, so that every proxy tries them in the same order.
    return tuple(r for _, _, r in sorted(routes, key=lambda x: (x[0], x[1])))


def _parse_services(c: _Checker, raw: object) -> dict[str, VirtualService]:
    services: dict[str, VirtualService] = {}
    mapping = c.mapping(raw, "services")
    if mapping is None:
        return services
    for name, entry_raw in mapping.items():
        where = f"services[{name!r}]"
        if not isinstance(name, str) or not _DNS_NAME_RE.match(name):
            c.fail(where, "the key must be a lower-case DNS name such as hello-backend.demo.local")
            continue
        entry = c.mapping(entry_raw, where)
        if entry is None:
            continue
        service = c.string(entry.get("service"), f"{where}.service", _TOKEN_RE, "a service name")
        route_raw = entry.get("route")
        route = None if route_raw is None else _parse_route(c, route_raw, f"{where}.route")
        header_raw = entry.get("header_routes")
        header_routes = () if header_raw is None else _parse_header_routes(c, header_raw, f"{where}.header_routes")
        if service is not None:
            services[name] = VirtualService(name=name, service=service, route=route, header_routes=header_routes)
    return services


def _per_version(c: _Checker, raw: object, key: str,
                 parse_one: Callable[[object, str], V | None]) -> dict[str, Mapping[str, V]]:
    """``{service: {version: value}}`` read with ``parse_one(value, where)``; a value it refuses (None) is left out."""
    result: dict[str, Mapping[str, V]] = {}
    services = c.mapping(raw, key)
    if services is None:
        return result
    for service, versions_raw in services.items():
        versions = c.mapping(versions_raw, f"{key}[{service!r}]")
        if versions is None:
            continue
        parsed: dict[str, V] = {}
        for version, value_raw in versions.items():
            value = parse_one(value_raw, f"{key}[{service!r}][{version!r}]")
            if value is not None:
                parsed[version] = value
        result[service] = MappingProxyType(parsed)
    return result


def _parse_endpoint_list(c: _Checker, eps_raw: object, where: str) -> tuple[Endpoint, ...] | None:
    if not isinstance(eps_raw, list):
        c.fail(where, "must be a list of {host, port}")
        return None
    eps: list[Endpoint] = []
    for i, ep_raw in enumerate(eps_raw):
        ep = c.mapping(ep_raw, f"{where}[{i}]")
        if ep is None:
            continue
        host = ep.get("host")
        port = c.integer(ep.get("port"), f"{where}[{i}].port", 1, 65535)
        # The local engine runs on one machine: a proxy connects to loopback, or to a container task on the
        # environment's internal network, never anywhere else.
        if not isinstance(host, str) or not _is_local(host):
            c.fail(f"{where}[{i}].host", f"{host!r} is not a loopback or private address")
        elif port is not None and Endpoint(host, port) not in eps:
            eps.append(Endpoint(host, port))
    return tuple(eps)


def _parse_endpoints(c: _Checker, raw: object) -> dict[str, Mapping[str, tuple[Endpoint, ...]]]:
    return _per_version(c, raw, "endpoints", lambda eps_raw, where: _parse_endpoint_list(c, eps_raw, where))


def _parse_gateway_routes(c: _Checker, raw: object) -> tuple[GatewayRoute, ...]:
    if not isinstance(raw, list):
        c.fail("gateway_routes", "must be a list")
        return ()
    routes: list[GatewayRoute] = []
    for i, gr_raw in enumerate(raw):
        where = f"gateway_routes[{i}]"
        gr = c.mapping(gr_raw, where)
        if gr is None:
            continue
        name = c.string(gr.get("name"), f"{where}.name", _TOKEN_RE, "a gateway route name")
        prefix = c.string(gr.get("prefix"), f"{where}.prefix", _PREFIX_RE, "a path prefix starting with '/'")
        vs = c.string(gr.get("virtual_service"), f"{where}.virtual_service", _DNS_NAME_RE, "a virtual service name")
        rewrite = gr.get("rewrite_prefix", True)
        if not isinstance(rewrite, bool):
            c.fail(f"{where}.rewrite_prefix", "must be true or false")
        elif name is not None and prefix is not None and vs is not None:
            routes.append(GatewayRoute(name=name, prefix=prefix, virtual_service=vs, rewrite_prefix=rewrite))
    # Longest prefix wins; among equal prefixes the name decides, so every proxy agrees.
    routes.sort(key=lambda r: (-len(r.prefix), r.name))
    return tuple(routes)


def _parse_listener_ports(c: _Checker, raw: object) -> dict[str, Mapping[str, int]]:
    return _per_version(c, raw, "listener_ports", lambda port, where: c.integer(port, where, 1, 65535))


def parse_config(document: object) -> DataplaneConfig:
    """The snapshot as a :class:`DataplaneConfig`; :class:`ConfigError` lists every problem found."""
    c = _Checker()
    doc = c.mapping(document, "config")
    if doc is None:
        raise ConfigError(c.problems)
    generation = c.integer(doc.get("generation"), "generation", 0, 2**63 - 1)
    environment = c.string(doc.get("environment"), "environment", _TOKEN_RE, "an environment name")
    namespace = c.string(doc.get("namespace"), "namespace", _DNS_NAME_RE, "a DNS namespace")
    services = _parse_services(c, doc.get("services", {}))
    endpoints = _parse_endpoints(c, doc.get("endpoints", {}))
    gateway_routes = _parse_gateway_routes(c, doc.get("gateway_routes", []))
    listener_ports = _parse_listener_ports(c, doc.get("listener_ports", {}))
    if c.problems or generation is None or environment is None or namespace is None:
        raise ConfigError(c.problems)
    return DataplaneConfig(generation=generation, environment=environment, namespace=namespace,
                           services=MappingProxyType(services), endpoints=MappingProxyType(endpoints),
                           gateway_routes=gateway_routes, document=document,  # type: ignore[arg-type]
                           listener_ports=MappingProxyType(listener_ports))
