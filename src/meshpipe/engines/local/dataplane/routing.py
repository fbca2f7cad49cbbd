"""Routing decisions (pure): where a request goes, or why it goes nowhere.

The proxies call these on every request with the config snapshot current when the request arrived,
the request's method and target as the parser gave them (bytes), and an injected random source, so
every decision can be tested without sockets and replayed with a seeded ``random.Random``.

A request to a virtual service goes: virtual service -> its first header route whose headers match,
else its weighted route (prefix and method match) -> a version picked by weight -> (the proxy then picks a healthy endpoint of that version round robin,
with :func:`pick_endpoint`, and forwards to that task's sidecar ingress).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import NamedTuple

from meshpipe.engines.local.dataplane.config import (
    DataplaneConfig,
    Endpoint,
    GatewayRoute,
    ServiceRoute,
    VirtualService,
)

RandomSource = Callable[[], float]  # uniform in [0, 1), e.g. random.Random(7).random


class Forward(NamedTuple):
    """Send the request to one of ``endpoints`` (all of the picked version) with ``path`` as target."""

    virtual_service: str
    service: str
    version: str
    endpoints: tuple[Endpoint, ...]
    path: bytes
    max_retries: int
    per_try_timeout_s: float  # 0: none
    timeout_s: float  # 0: none


class Refuse(NamedTuple):
    """Answer locally with ``status``; ``flag`` names the reason (also sent as ``x-meshpipe-error``)."""

    status: int
    flag: str
    message: str


# Flags of locally answered requests, in the spirit of Envoy's response flags.
NO_CONFIG = "no_config"
NO_GATEWAY_ROUTE = "no_gateway_route"
NO_VIRTUAL_SERVICE = "no_virtual_service"
NO_ROUTE = "no_route"
ROUTE_NOT_MATCHED = "route_not_matched"
NO_HEALTHY_ENDPOINT = "no_healthy_endpoint"
EGRESS_DENIED = "egress_denied"
UNSUPPORTED = "unsupported"

_HTTP_SCHEME = b"http://"


def host_without_port(host: bytes) -> bytes:
    """``Hello-Backend.demo.local:80`` -> ``hello-backend.demo.local`` (DNS names compare lower-case)."""
    if host.startswith(b"["):  # IPv6 literal
        end = host.find(b"]")
        return host[: end + 1].lower() if end > 0 else host.lower()
    colon = host.rfind(b":")
    return (host[:colon] if colon >= 0 else host).lower()


def split_absolute_form(target: bytes) -> tuple[bytes, bytes] | None:
    """``http://hello-backend.demo.local/data?x=1`` -> (``hello-backend.demo.local``, ``/data?x=1``).

    None when ``target`` is not an absolute ``http://`` URL (origin-form, or another scheme).
    """
    if target[:7].lower() != _HTTP_SCHEME:
        return None
    rest = target[7:]
    cut = len(rest)
    for sep in (b"/", b"?", b"#"):
        i = rest.find(sep)
        if 0 <= i < cut:
            cut = i
    authority, path = rest[:cut], rest[cut:]
    at = authority.rfind(b"@")  # userinfo never travels further
    if at >= 0:
        authority = authority[at + 1:]
    fragment = path.find(b"#")
    if fragment >= 0:
        path = path[:fragment]
    if not path.startswith(b"/"):
        path = b"/" + path
    return host_without_port(authority), path


def match_gateway_route(routes: Sequence[GatewayRoute], path: bytes) -> GatewayRoute | None:
    """The gateway route with the longest prefix of ``path`` (``routes`` come longest first)."""
    for route in routes:
        if path.startswith(route.prefix_bytes):
            return route
    return None


def rewrite_prefix(prefix: bytes, path: bytes) -> bytes:
    """Replace the matched ``prefix`` with ``/``: ``/hello-service/hello/Bob`` -> ``/hello/Bob``,
    ``/hello-service`` -> ``/``, ``/hello-service?x=1`` -> ``/?x=1``."""
    rest = path[len(prefix):]
    return rest if rest.startswith(b"/") else b"/" + rest


def route_matches(route: ServiceRoute, method: bytes, path: bytes) -> bool:
    return (route.method_bytes is None or route.method_bytes == method) and path.startswith(route.prefix_bytes)


def pick_version(route: ServiceRoute, rnd: RandomSource) -> str:
    """A version drawn by weight: with weights 90/10, ``rnd() < 0.9`` picks the first."""
    roll = rnd() * route.total_weight
    for target in route.targets:
        if roll < target.weight:
            return target.version
        roll -= target.weight
    # Floating point can leave a sliver past the last bucket: it belongs to the last weighted target.
    return next(t.version for t in reversed(route.targets) if t.weight > 0)


def pick_endpoint(endpoints: Sequence[Endpoint], counter: int,
                  tried: Collection[Endpoint] = ()) -> tuple[Endpoint, int]:
    """Round robin from ``counter``, skipping endpoints already ``tried`` while others remain.

    Returns the endpoint and the counter to use next time.
    """
    n = len(endpoints)
    if tried:
        for i in range(n):
            endpoint = endpoints[(counter + i) % n]
            if endpoint not in tried:
                return endpoint, counter + i + 1
    return endpoints[counter % n], counter + 1


def match_header_route(vs: VirtualService, method: bytes, path: bytes,
                       headers: Mapping[bytes, bytes] | None) -> ServiceRoute | None:
    """The first header route (priority order) whose match and headers all fit the request."""
    if not headers:
        return None
    for route in vs.header_routes:
        if route_matches(route, method, path) and all(h.matches(headers.get(h.name)) for h in route.headers):
            return route
    return None


def decide_virtual_service(config: DataplaneConfig, vs: VirtualService, method: bytes, path: bytes,
                           rnd: RandomSource, headers: Mapping[bytes, bytes] | None = None) -> Forward | Refuse:
    route = (match_header_route(vs, method, path, headers) if vs.header_routes else None) or vs.route
    if route is None:
        return Refuse(503, NO_ROUTE, f"virtual service {vs.name} has no route yet")
    if not route_matches(route, method, path):
        return Refuse(404, ROUTE_NOT_MATCHED,
                      f"the route of {vs.name} matches {route.method or 'any method'} {route.prefix}*, "
                      f"not {method.decode('latin-1')} {path.decode('latin-1')}")
    version = pick_version(route, rnd)
    endpoints = config.endpoints_of(vs.service, version)
    if not endpoints:
        return Refuse(503, NO_HEALTHY_ENDPOINT, f"no healthy endpoint for {vs.service} version {version}")
    return Forward(vs.name, vs.service, version, endpoints, path, route.max_retries,
                   route.per_try_timeout_s, route.timeout_s)


def decide_gateway(config: DataplaneConfig | None, method: bytes, target: bytes,
                   rnd: RandomSource, headers: Mapping[bytes, bytes] | None = None) -> Forward | Refuse:
    """The ingress gateway: longest gateway-route prefix, prefix rewrite, then the virtual service."""
    if config is None:
        return Refuse(503, NO_CONFIG, "the gateway has no mesh config yet")
    absolute = split_absolute_form(target)
    path = absolute[1] if absolute is not None else target
    gateway_route = match_gateway_route(config.gateway_routes, path)
    if gateway_route is None:
        return Refuse(404, NO_GATEWAY_ROUTE, f"no gateway route matches {path.decode('latin-1')}")
    if gateway_route.rewrite_prefix:
        path = rewrite_prefix(gateway_route.prefix_bytes, path)
    vs = config.services.get(gateway_route.virtual_service)
    if vs is None:
        return Refuse(503, NO_VIRTUAL_SERVICE,
                      f"gateway route {gateway_route.name} targets {gateway_route.virtual_service}, "
                      "which is not a virtual service of this mesh")
    return decide_virtual_service(config, vs, method, path, rnd, headers)


def decide_egress(config: DataplaneConfig | None, allowed: Collection[bytes], method: bytes, target: bytes,
                  host: bytes | None, rnd: RandomSource,
                  headers: Mapping[bytes, bytes] | None = None) -> Forward | Refuse:
    """A sidecar's egress (the app's HTTP proxy), filter DROP_ALL: only declared backends are reachable.

    ``allowed`` holds the declared virtual service names, lower-case. The target is absolute-form
    (``http://name/path``, as an HTTP proxy receives it) or origin-form with a ``Host`` header.
    """
    absolute = split_absolute_form(target)
    if absolute is not None:
        name, path = absolute
    elif target.startswith(b"/"):
        if not host:
            return Refuse(400, UNSUPPORTED, "request without a Host header: cannot tell the backend")
        name, path = host_without_port(host), target
    else:
        return Refuse(501, UNSUPPORTED, f"egress supports plain http:// requests only, not {target[:40]!r}")
    if name not in allowed:
        declared = ", ".join(sorted(a.decode("latin-1") for a in allowed)) or "none"
        return Refuse(403, EGRESS_DENIED,
                      f"egress to {name.decode('latin-1')} refused: not a declared backend (egress filter "
                      f"DROP_ALL; declared: {declared}); declare it under VirtualNode.Backends in the manifest")
    if config is None:
        return Refuse(503, NO_CONFIG, "the sidecar has no mesh config yet")
    vs = config.services_by_host.get(name)
    if vs is None:
        return Refuse(503, NO_VIRTUAL_SERVICE, f"{name.decode('latin-1')} is not a virtual service of this mesh")
    return decide_virtual_service(config, vs, method, path, rnd, headers)
