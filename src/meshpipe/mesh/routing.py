"""Weighted routes and gateway routes as data, validated before any engine sees them.

App Mesh's limits apply to every engine, so a plan that works locally also works on AWS:
1-10 weighted targets per route, integer weights 0-100, at least one weight above 0, priority 0-1000,
gateway-route prefixes of 1-255 characters starting with '/'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshpipe import naming
from meshpipe.errors import UserError
from meshpipe.mesh.headers import MAX_HEADERS_PER_ROUTE, HeaderMatch
from meshpipe.naming import check_service_name
from meshpipe.text import shorten
from meshpipe.validation.rules import VERSION_LEN  # not meshpipe.model: no pydantic for routes

MAX_TARGETS = 10
MAX_WEIGHT = 100
MAX_PRIORITY = 1000
# Header routes are matched before the service's weighted route (priority 1, the original sample's).
HEADER_ROUTE_PRIORITY = 0
# App Mesh's default quota of routes per virtual router: the weighted route and up to 9 header routes.
MAX_ROUTES_PER_ROUTER = 10
VERSION_RE = re.compile(rf"^[0-9a-f]{{{VERSION_LEN}}}\Z")
MAX_PREFIX = 255
# A URL path: unreserved and sub-delimiter characters, with '%' only as an escape; no query or fragment.
PREFIX_RE = re.compile(r"^/(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*\Z", re.ASCII)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}\Z", re.ASCII)
NAMESPACE_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\Z",
                          re.ASCII)


_shown = shorten


def check_service(service: str) -> str:
    if not isinstance(service, str):
        raise UserError(f"{_shown(service)} is not a service name")
    check_service_name(service)
    return service


node_name = naming.virtual_node_name


def version_of_node(service: str, virtual_node: str) -> str | None:
    version = naming.version_in_node_name(service, virtual_node)
    return version if version is not None and VERSION_RE.match(version) else None


@dataclass(frozen=True)
class WeightedTarget:
    version: str
    weight: int

    def virtual_node(self, service: str) -> str:
        return node_name(service, self.version)


@dataclass(frozen=True)
class Route:
    """The one HTTP route of a service's virtual router: prefix / -> weighted versions.

    ``method`` None matches every method, as an App Mesh route match without ``method`` does; a route
    that names one matches only requests with exactly that method.
    """

    service: str
    targets: tuple[WeightedTarget, ...]
    prefix: str = "/"
    method: str | None = None
    priority: int = 1
    # Retry policy and timeout applied by the sidecar that sends the request (App Mesh route semantics).
    max_retries: int = 2
    per_retry_timeout_ms: int = 2000
    timeout_ms: int = 15000

    @property
    def name(self) -> str:
        return naming.route_name(self.service)

    @property
    def router(self) -> str:
        return naming.virtual_router_name(self.service)

    def weight_of(self, version: str) -> int:
        return sum(t.weight for t in self.targets if t.version == version)

    def to_appmesh_spec(self) -> dict[str, object]:
        """The route spec as the App Mesh API takes it (and as the original sample's JSON files spell it)."""
        return _http_route_spec(self.service, self.targets, {"prefix": self.prefix}, self.method, self.priority)


@dataclass(frozen=True)
class HeaderRoute:
    """An extra route of a service's virtual router: requests whose headers match go to its targets.

    It takes precedence over the service's weighted route (priority 0 against 1), which keeps every
    request that does not match. The blue-green preview and A/B tests are made of these.
    """

    service: str
    headers: tuple[HeaderMatch, ...]
    targets: tuple[WeightedTarget, ...]
    priority: int = HEADER_ROUTE_PRIORITY
    prefix: str = "/"
    method: str | None = None
    max_retries: int = 2
    per_retry_timeout_ms: int = 2000
    timeout_ms: int = 15000

    @property
    def name(self) -> str:
        return naming.header_route_name(self.service, self.headers[0].key)

    @property
    def router(self) -> str:
        return naming.virtual_router_name(self.service)

    def describe(self) -> str:
        return " and ".join(h.describe() for h in self.headers)

    def to_appmesh_spec(self) -> dict[str, object]:
        match: dict[str, object] = {"prefix": self.prefix, "headers": [h.to_appmesh() for h in self.headers]}
        return _http_route_spec(self.service, self.targets, match, self.method, self.priority)


@dataclass(frozen=True)
class GatewayRoute:
    """A path prefix on the ingress gateway -> a virtual service; the prefix is rewritten to '/' by default."""

    name: str
    prefix: str
    service: str  # service name, e.g. hello-web
    namespace: str  # e.g. demo.local
    rewrite_prefix: bool = True

    @property
    def virtual_service(self) -> str:
        return f"{self.service}.{self.namespace}"

    def to_appmesh_spec(self) -> dict[str, object]:
        route: dict[str, object] = {
            "action": {"target": {"virtualService": {"virtualServiceName": self.virtual_service}}},
            "match": {"prefix": self.prefix},
        }
        if not self.rewrite_prefix:
            route["action"] = {**route["action"], "rewrite": {"prefix": {"defaultPrefix": "DISABLED"}}}  # type: ignore[dict-item]
        return {"httpRoute": route}


def parse_version_ref(service: str, ref: str) -> str:
    """A version given by id (``e9d5f17a``), by commit (``e9d5f17a3c...``) or by node (``vn-svc-e9d5f17a``)."""
    ref = ref.strip()
    from_node = version_of_node(service, ref.lower())
    if from_node:
        return from_node
    if ref.startswith(naming.VIRTUAL_NODE_PREFIX):
        raise UserError(f"{_shown(ref)} is not a virtual node of {service!r}",
                        hint=f"virtual nodes of this service are named vn-{service}-<version>")
    if re.fullmatch(r"[0-9a-f]{8,40}", ref.lower()):
        return ref.lower()[:VERSION_LEN]
    raise UserError(f"{_shown(ref)} is not a version: give an 8-character version id, a commit id "
                    f"or vn-{service}-<version>")


def parse_weight_args(service: str, args: list[str]) -> tuple[WeightedTarget, ...]:
    """``["e9d5f17a=90", "vn-svc-0badc0de=10"]`` -> weighted targets, validated."""
    targets = []
    for arg in args:
        ref, sep, weight = arg.partition("=")
        if not sep:
            raise UserError(f"{arg!r} is not VERSION=WEIGHT", hint="e.g. route set hello-backend e9d5f17a=90 0badc0de=10")
        if not re.fullmatch(r"\s*[0-9]{1,3}\s*", weight):
            raise UserError(f"weight {_shown(weight)} in {_shown(arg)} is not an integer 0-{MAX_WEIGHT}")
        w = int(weight)
        targets.append(WeightedTarget(parse_version_ref(service, ref), w))
    return validate_targets(targets)


def validate_targets(targets: list[WeightedTarget] | tuple[WeightedTarget, ...]) -> tuple[WeightedTarget, ...]:
    """Check App Mesh's limits on a route's weighted targets; return them as a tuple."""
    if not 1 <= len(targets) <= MAX_TARGETS:
        raise UserError(f"a route needs 1-{MAX_TARGETS} weighted targets, got {len(targets)}")
    seen: set[str] = set()
    for t in targets:
        if isinstance(t.weight, bool) or not isinstance(t.weight, int) or not 0 <= t.weight <= MAX_WEIGHT:
            raise UserError(f"weight {_shown(t.weight)} of {_shown(t.version)} is not an integer 0-{MAX_WEIGHT}")
        if not isinstance(t.version, str) or not VERSION_RE.match(t.version):
            raise UserError(f"{_shown(t.version)} is not a version id (8 lowercase hex characters)")
        if t.version in seen:
            raise UserError(f"version {t.version} is listed twice")
        seen.add(t.version)
    if not any(t.weight > 0 for t in targets):
        raise UserError("at least one target needs a weight above 0: traffic must go somewhere")
    return tuple(targets)


def make_route(service: str, targets: list[WeightedTarget] | tuple[WeightedTarget, ...], priority: int = 1) -> Route:
    check_service(service)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        raise UserError(f"priority {_shown(priority)} is not an integer 0-{MAX_PRIORITY}")
    return Route(service=service, targets=validate_targets(targets), priority=priority)


def make_header_route(service: str, headers: list[HeaderMatch] | tuple[HeaderMatch, ...],
                      targets: list[WeightedTarget] | tuple[WeightedTarget, ...]) -> HeaderRoute:
    """A header route, checked against App Mesh's limits (HttpRouteHeader: name 1-50 characters, value
    1-255, 1-10 headers per route) before any engine sees it."""
    check_service(service)
    if not 1 <= len(headers) <= MAX_HEADERS_PER_ROUTE:
        raise UserError(f"a header route matches 1-{MAX_HEADERS_PER_ROUTE} headers, got {len(headers)}")
    seen: set[str] = set()
    for h in headers:
        problems = h.problems()
        if problems:
            raise UserError(f"header match {_shown(h.describe())}: {'; '.join(problems)}")
        if h.key in seen:
            raise UserError(f"header {h.name!r} is matched twice in one route")
        seen.add(h.key)
    return HeaderRoute(service=service, headers=tuple(headers), targets=validate_targets(targets))


def make_gateway_route(name: str, prefix: str, service: str, namespace: str, rewrite_prefix: bool = True) -> GatewayRoute:
    if not NAME_RE.match(name):
        raise UserError(f"{_shown(name)} is not a gateway route name: 1-255 letters, digits, '-', '_' or '.', "
                        "starting with a letter or digit")
    if len(prefix) > MAX_PREFIX:
        raise UserError(f"a path prefix of {len(prefix)} characters: App Mesh allows at most {MAX_PREFIX}")
    if not prefix.startswith("/"):
        raise UserError(f"{_shown(prefix)} is not a path prefix: it must start with '/', e.g. /hello-service")
    if not PREFIX_RE.match(prefix):
        raise UserError(f"{_shown(prefix)} is not a path prefix: letters, digits, - . _ ~ / and URL sub-delimiters, "
                        "'%' only in %XX escapes; no spaces, '?' or '#'")
    check_service(service)
    if not NAMESPACE_RE.match(namespace):
        raise UserError(f"{_shown(namespace)} is not a namespace name like demo.local")
    return GatewayRoute(name=name, prefix=prefix, service=service, namespace=namespace, rewrite_prefix=rewrite_prefix)


def total_weight(targets: tuple[WeightedTarget, ...]) -> int:
    return sum(t.weight for t in targets)


def pick_target(targets: tuple[WeightedTarget, ...], roll: int) -> str:
    """The version a request goes to, for ``roll`` drawn uniformly from 0..total-1 (pure, so testable).

    Over every roll in that range, each version is picked exactly as many times as its weight.
    """
    if roll < 0:
        raise ValueError("roll outside the total weight")
    for t in targets:
        if roll < t.weight:
            return t.version
        roll -= t.weight
    raise ValueError("roll outside the total weight")


def _http_route_spec(service: str, targets: tuple[WeightedTarget, ...], match: dict[str, object],
                     method: str | None, priority: int) -> dict[str, object]:
    """An App Mesh HTTP route spec: ``match`` (plus ``method`` when set) sends requests to weighted targets."""
    if method:
        match = {**match, "method": method}
    return {
        "httpRoute": {
            "action": {"weightedTargets": [{"virtualNode": t.virtual_node(service), "weight": t.weight}
                                           for t in targets]},
            "match": match,
        },
        "priority": priority,
    }
