"""Pure parts of the data plane: the config document and routing decisions (no sockets)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshpipe.engines.local.dataplane import config as dpconfig
from meshpipe.engines.local.dataplane.config import ConfigError, Endpoint, parse_config
from meshpipe.engines.local.dataplane.routing import (
    EGRESS_DENIED,
    NO_CONFIG,
    NO_GATEWAY_ROUTE,
    NO_HEALTHY_ENDPOINT,
    NO_ROUTE,
    NO_VIRTUAL_SERVICE,
    ROUTE_NOT_MATCHED,
    Forward,
    Refuse,
    decide_egress,
    decide_gateway,
    match_gateway_route,
    pick_endpoint,
    pick_version,
    rewrite_prefix,
    split_absolute_form,
)
from meshpipe.mesh import routing as mesh_routing

CONTRACT_EXAMPLE: dict[str, Any] = {
    "generation": 17,
    "environment": "demo",
    "namespace": "demo.local",
    "services": {
        "hello-backend.demo.local": {
            "service": "hello-backend",
            "route": {"prefix": "/", "method": "GET",
                      "targets": [{"version": "e9d5f17a", "weight": 90}, {"version": "0badc0de", "weight": 10}],
                      "max_retries": 2, "per_retry_timeout_ms": 2000, "timeout_ms": 15000},
        },
        "hello-web.demo.local": {"service": "hello-web", "route": None},
    },
    "endpoints": {
        "hello-backend": {"e9d5f17a": [{"host": "127.0.0.1", "port": 40123}],
                          "0badc0de": [{"host": "127.0.0.1", "port": 40555}]},
    },
    "gateway_routes": [{"name": "r-ingress-hello-service", "prefix": "/hello-service",
                        "virtual_service": "hello-web.demo.local", "rewrite_prefix": True}],
}


def _doc(**changes: Any) -> dict[str, Any]:
    doc = {**CONTRACT_EXAMPLE, **changes}
    return doc


def _always(value: float) -> Any:
    return lambda: value


# ---- the config document ----

def test_contract_example_parses() -> None:
    cfg = parse_config(CONTRACT_EXAMPLE)
    assert cfg.generation == 17
    backend = cfg.services["hello-backend.demo.local"]
    assert backend.service == "hello-backend"
    assert backend.route is not None
    assert [(t.version, t.weight) for t in backend.route.targets] == [("e9d5f17a", 90), ("0badc0de", 10)]
    assert backend.route.per_try_timeout_s == 2.0 and backend.route.timeout_s == 15.0
    assert cfg.services["hello-web.demo.local"].route is None
    assert cfg.endpoints_of("hello-backend", "0badc0de") == (Endpoint("127.0.0.1", 40555),)
    assert cfg.endpoints_of("hello-backend", "ffffffff") == ()
    assert cfg.document is CONTRACT_EXAMPLE


def test_limits_are_the_mesh_model_limits() -> None:
    # The proxies must accept exactly what the routing plans are allowed to produce.
    assert dpconfig.MAX_TARGETS == mesh_routing.MAX_TARGETS
    assert dpconfig.MAX_WEIGHT == mesh_routing.MAX_WEIGHT
    route = mesh_routing.Route("hello-backend", (mesh_routing.WeightedTarget("e9d5f17a", 1),))
    defaults = (dpconfig.DEFAULT_MAX_RETRIES, dpconfig.DEFAULT_PER_RETRY_TIMEOUT_MS, dpconfig.DEFAULT_TIMEOUT_MS)
    assert defaults == (route.max_retries, route.per_retry_timeout_ms, route.timeout_ms)


def test_gateway_routes_come_longest_prefix_first() -> None:
    cfg = parse_config(_doc(gateway_routes=[
        {"name": "short", "prefix": "/a", "virtual_service": "hello-web.demo.local"},
        {"name": "long", "prefix": "/a/b", "virtual_service": "hello-backend.demo.local", "rewrite_prefix": False},
    ]))
    assert [g.name for g in cfg.gateway_routes] == ["long", "short"]
    assert cfg.gateway_routes[1].rewrite_prefix is True  # the default, as on App Mesh


@pytest.mark.parametrize(("change", "expected"), [
    ({"generation": "17"}, "generation: must be an integer"),
    ({"generation": -1}, "generation: must be an integer"),
    ({"namespace": "Demo Local"}, "namespace: 'Demo Local' is not a DNS namespace"),
    ({"services": []}, "services: must be an object"),
    ({"endpoints": {"hello-backend": {"e9d5f17a": [{"host": "8.8.8.8", "port": 80}]}}},
     "'8.8.8.8' is not a loopback or private address"),
    ({"endpoints": {"hello-backend": {"e9d5f17a": [{"host": "127.0.0.1", "port": 70000}]}}},
     "port: must be an integer 1-65535"),
    ({"gateway_routes": [{"name": "g", "prefix": "hello", "virtual_service": "hello-web.demo.local"}]},
     "is not a path prefix"),
    ({"gateway_routes": [{"name": "g", "prefix": "/h", "virtual_service": "hello-web.demo.local",
                          "rewrite_prefix": "yes"}]}, "rewrite_prefix: must be true or false"),
])
def test_bad_documents_are_refused_with_the_reason(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_doc(**change))
    assert expected in err.value.message


@pytest.mark.parametrize(("route", "expected"), [
    ({"targets": []}, "targets: must be a list of 1-10"),
    ({"targets": [{"version": "a", "weight": 1}] * 11}, "targets: must be a list of 1-10"),
    ({"targets": [{"version": "e9d5f17a", "weight": 101}]}, "weight: must be an integer 0-100"),
    ({"targets": [{"version": "e9d5f17a", "weight": True}]}, "weight: must be an integer 0-100"),
    ({"targets": [{"version": "e9d5f17a", "weight": 0}]}, "at least one target needs a weight above 0"),
    ({"targets": [{"version": "e9d5f17a", "weight": 5}, {"version": "e9d5f17a", "weight": 5}]}, "listed twice"),
    ({"targets": [{"version": "e9d5f17a", "weight": 5}], "method": "FETCH"}, "is not an HTTP method"),
    ({"targets": [{"version": "e9d5f17a", "weight": 5}], "max_retries": -1}, "max_retries: must be an integer"),
])
def test_bad_routes_are_refused(route: dict[str, Any], expected: str) -> None:
    services = {"hello-backend.demo.local": {"service": "hello-backend", "route": {"prefix": "/", **route}}}
    with pytest.raises(ConfigError) as err:
        parse_config(_doc(services=services))
    assert expected in err.value.message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"generation": "x", "environment": "", "namespace": 3, "gateway_routes": {}})
    assert len(err.value.problems) == 4


def test_not_an_object() -> None:
    with pytest.raises(ConfigError, match="config: must be an object"):
        parse_config([1, 2])


# ---- gateway ----

def test_longest_prefix_wins() -> None:
    cfg = parse_config(_doc(gateway_routes=[
        {"name": "web", "prefix": "/hello-service", "virtual_service": "hello-web.demo.local"},
        {"name": "api", "prefix": "/hello-service/api", "virtual_service": "hello-backend.demo.local"},
    ]))
    assert match_gateway_route(cfg.gateway_routes, b"/hello-service/api/data").name == "api"  # type: ignore[union-attr]
    assert match_gateway_route(cfg.gateway_routes, b"/hello-service/hello/Bob").name == "web"  # type: ignore[union-attr]
    assert match_gateway_route(cfg.gateway_routes, b"/other") is None


@pytest.mark.parametrize(("path", "rewritten"), [
    (b"/hello-service/hello/Bob", b"/hello/Bob"),
    (b"/hello-service", b"/"),
    (b"/hello-service/", b"/"),
    (b"/hello-service?x=1", b"/?x=1"),
    (b"/hello-service/hello?name=a/b", b"/hello?name=a/b"),
])
def test_prefix_rewrite(path: bytes, rewritten: bytes) -> None:
    assert rewrite_prefix(b"/hello-service", path) == rewritten


@given(st.text(alphabet="abc/-", max_size=12), st.text(alphabet="abc/?=", max_size=12))
def test_rewrite_always_yields_an_origin_form_path(prefix_tail: str, rest: str) -> None:
    prefix = ("/" + prefix_tail).encode()
    out = rewrite_prefix(prefix, prefix + rest.encode())
    assert out.startswith(b"/")
    assert out.endswith(rest.encode())


def test_gateway_forwards_with_rewrite_to_the_picked_version() -> None:
    doc = _doc(gateway_routes=[{"name": "api", "prefix": "/api", "virtual_service": "hello-backend.demo.local"}])
    cfg = parse_config(doc)
    first = decide_gateway(cfg, b"GET", b"/api/data", _always(0.0))
    assert first == Forward("hello-backend.demo.local", "hello-backend", "e9d5f17a",
                            (Endpoint("127.0.0.1", 40123),), b"/data", 2, 2.0, 15.0)
    assert decide_gateway(cfg, b"GET", b"/api/data", _always(0.95)).version == "0badc0de"  # type: ignore[union-attr]


def test_gateway_without_rewrite_keeps_the_path() -> None:
    cfg = parse_config(_doc(gateway_routes=[{"name": "api", "prefix": "/api", "rewrite_prefix": False,
                                             "virtual_service": "hello-backend.demo.local"}]))
    assert decide_gateway(cfg, b"GET", b"/api/data", _always(0.0)).path == b"/api/data"  # type: ignore[union-attr]


def test_gateway_refusals() -> None:
    cfg = parse_config(CONTRACT_EXAMPLE)
    assert decide_gateway(None, b"GET", b"/x", _always(0.0)).flag == NO_CONFIG  # type: ignore[union-attr]
    nomatch = decide_gateway(cfg, b"GET", b"/nope", _always(0.0))
    assert isinstance(nomatch, Refuse) and (nomatch.status, nomatch.flag) == (404, NO_GATEWAY_ROUTE)
    noroute = decide_gateway(cfg, b"GET", b"/hello-service/hello/Bob", _always(0.0))
    assert isinstance(noroute, Refuse) and (noroute.status, noroute.flag) == (503, NO_ROUTE)
    assert "no route" in noroute.message
    dangling = parse_config(_doc(gateway_routes=[{"name": "g", "prefix": "/g", "virtual_service": "gone.demo.local"}]))
    assert decide_gateway(dangling, b"GET", b"/g", _always(0.0)).flag == NO_VIRTUAL_SERVICE  # type: ignore[union-attr]


def test_route_match_on_method_and_prefix() -> None:
    cfg = parse_config(_doc(gateway_routes=[{"name": "api", "prefix": "/api", "virtual_service": "hello-backend.demo.local"}]))
    post = decide_gateway(cfg, b"POST", b"/api/data", _always(0.0))
    assert isinstance(post, Refuse) and (post.status, post.flag) == (404, ROUTE_NOT_MATCHED)


@pytest.mark.parametrize("method", [b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD", b"OPTIONS"])
def test_a_route_without_a_method_matches_every_method(method: bytes) -> None:
    """App Mesh's route match: without ``method`` every method matches; the prefix must still start the
    path, and a header route's headers must still all match."""
    any_method = {**CONTRACT_EXAMPLE["services"]["hello-backend.demo.local"]["route"], "method": None}
    cfg = parse_config(_doc(services={"hello-backend.demo.local": {
        "service": "hello-backend", "route": {**any_method, "prefix": "/data"},
        "header_routes": [{**any_method, "name": "r-h", "priority": 0,
                           "headers": [{"name": "x-canary", "kind": "exact", "value": "always"}],
                           "targets": [{"version": "0badc0de", "weight": 100}]}]}},
        gateway_routes=[{"name": "api", "prefix": "/api", "virtual_service": "hello-backend.demo.local"}]))
    assert decide_gateway(cfg, method, b"/api/data/1", _always(0.0)).version == "e9d5f17a"  # type: ignore[union-attr]
    assert decide_gateway(cfg, method, b"/api/data", _always(0.0), {b"x-canary": b"always"}).version == "0badc0de"  # type: ignore[union-attr]
    outside = decide_gateway(cfg, method, b"/api/other", _always(0.0))
    assert isinstance(outside, Refuse) and outside.flag == ROUTE_NOT_MATCHED


def test_no_healthy_endpoint_for_the_picked_version() -> None:
    cfg = parse_config(_doc(endpoints={"hello-backend": {"e9d5f17a": [{"host": "127.0.0.1", "port": 40123}]}},
                            gateway_routes=[{"name": "api", "prefix": "/api",
                                             "virtual_service": "hello-backend.demo.local"}]))
    assert decide_gateway(cfg, b"GET", b"/api/data", _always(0.0)).version == "e9d5f17a"  # type: ignore[union-attr]
    refused = decide_gateway(cfg, b"GET", b"/api/data", _always(0.99))
    assert isinstance(refused, Refuse) and (refused.status, refused.flag) == (503, NO_HEALTHY_ENDPOINT)
    assert "0badc0de" in refused.message


# ---- weighted pick and round robin ----

def test_weighted_pick_follows_the_weights() -> None:
    route = parse_config(CONTRACT_EXAMPLE).services["hello-backend.demo.local"].route
    assert route is not None
    rnd = random.Random(7).random
    counts = Counter(pick_version(route, rnd) for _ in range(10_000))
    assert 0.08 < counts["0badc0de"] / 10_000 < 0.12
    assert counts["e9d5f17a"] + counts["0badc0de"] == 10_000


def test_weighted_pick_boundaries_and_zero_weights() -> None:
    doc = _doc(services={"s.demo.local": {"service": "s", "route": {"targets": [
        {"version": "aaaaaaaa", "weight": 0}, {"version": "bbbbbbbb", "weight": 30},
        {"version": "cccccccc", "weight": 70}, {"version": "dddddddd", "weight": 0}]}}})
    route = parse_config(doc).services["s.demo.local"].route
    assert route is not None
    assert pick_version(route, _always(0.0)) == "bbbbbbbb"
    assert pick_version(route, _always(0.2999)) == "bbbbbbbb"
    assert pick_version(route, _always(0.3)) == "cccccccc"
    assert pick_version(route, _always(0.9999999999999999)) == "cccccccc"


def test_round_robin_and_skipping_tried_endpoints() -> None:
    eps = (Endpoint("127.0.0.1", 1), Endpoint("127.0.0.1", 2), Endpoint("127.0.0.1", 3))
    counter, seen = 0, []
    for _ in range(6):
        ep, counter = pick_endpoint(eps, counter)
        seen.append(ep.port)
    assert seen == [1, 2, 3, 1, 2, 3]
    assert pick_endpoint(eps, 0, tried=(eps[0],))[0] == eps[1]
    assert pick_endpoint(eps, 1, tried=(eps[1], eps[2]))[0] == eps[0]
    assert pick_endpoint(eps, 0, tried=eps)[0] == eps[0]  # all tried: round robin again


# ---- egress (DROP_ALL) ----

ALLOWED = frozenset({b"hello-backend.demo.local"})


def test_egress_absolute_form_to_a_declared_backend() -> None:
    cfg = parse_config(CONTRACT_EXAMPLE)
    fwd = decide_egress(cfg, ALLOWED, b"GET", b"http://hello-backend.demo.local/data?x=1", None, _always(0.0))
    assert isinstance(fwd, Forward)
    assert (fwd.service, fwd.version, fwd.path) == ("hello-backend", "e9d5f17a", b"/data?x=1")


def test_egress_origin_form_uses_the_host_header() -> None:
    cfg = parse_config(CONTRACT_EXAMPLE)
    fwd = decide_egress(cfg, ALLOWED, b"GET", b"/data", b"Hello-Backend.demo.local:80", _always(0.0))
    assert isinstance(fwd, Forward) and fwd.path == b"/data"


@pytest.mark.parametrize(("target", "host"), [
    (b"http://example.com/", None),
    (b"http://127.0.0.1:8080/data", None),
    (b"http://hello-web.demo.local/", None),  # a real virtual service, but not declared
    (b"http://hello-backend.demo.local.evil.com/data", None),
    (b"/data", b"example.com"),
])
def test_egress_refuses_undeclared_hosts(target: bytes, host: bytes | None) -> None:
    refused = decide_egress(parse_config(CONTRACT_EXAMPLE), ALLOWED, b"GET", target, host, _always(0.0))
    assert isinstance(refused, Refuse)
    assert (refused.status, refused.flag) == (403, EGRESS_DENIED)
    assert "DROP_ALL" in refused.message and "hello-backend.demo.local" in refused.message


def test_egress_refuses_before_knowing_any_config() -> None:
    refused = decide_egress(None, ALLOWED, b"GET", b"http://example.com/", None, _always(0.0))
    assert isinstance(refused, Refuse) and refused.status == 403
    pending = decide_egress(None, ALLOWED, b"GET", b"http://hello-backend.demo.local/", None, _always(0.0))
    assert isinstance(pending, Refuse) and (pending.status, pending.flag) == (503, NO_CONFIG)


def test_egress_other_schemes_and_missing_host() -> None:
    cfg = parse_config(CONTRACT_EXAMPLE)
    assert decide_egress(cfg, ALLOWED, b"CONNECT", b"hello-backend.demo.local:443", None,
                         _always(0.0)).status == 501  # type: ignore[union-attr]
    assert decide_egress(cfg, ALLOWED, b"GET", b"/data", None, _always(0.0)).status == 400  # type: ignore[union-attr]


@pytest.mark.parametrize(("target", "expected"), [
    (b"http://hello-backend.demo.local/data", (b"hello-backend.demo.local", b"/data")),
    (b"HTTP://Hello-Backend.demo.local:80", (b"hello-backend.demo.local", b"/")),
    (b"http://user:pw@hello-backend.demo.local/x#frag", (b"hello-backend.demo.local", b"/x")),
    (b"http://h?q=1", (b"h", b"/?q=1")),
    (b"/data", None),
    (b"https://hello-backend.demo.local/", None),
])
def test_split_absolute_form(target: bytes, expected: tuple[bytes, bytes] | None) -> None:
    assert split_absolute_form(target) == expected


# ---- the daemon's document builder and the proxies agree ----

_service_names = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
_versions = st.from_regex(r"[0-9a-f]{8}", fullmatch=True)


@st.composite
def _snapshots(draw: st.DrawFn) -> Any:
    from meshpipe.engines.local.dataplane.meshconfig import Endpoint as MeshEndpoint
    from meshpipe.engines.local.dataplane.meshconfig import MeshSnapshot

    services = draw(st.lists(_service_names, min_size=1, max_size=4, unique=True))
    routes = {}
    endpoints = {}
    for service in services:
        versions = draw(st.lists(_versions, min_size=1, max_size=mesh_routing.MAX_TARGETS, unique=True))
        weights = draw(st.lists(st.integers(0, 100), min_size=len(versions), max_size=len(versions)))
        if not any(weights):
            weights[0] = 1
        if draw(st.booleans()):
            routes[service] = mesh_routing.make_route(
                service, [mesh_routing.WeightedTarget(v, w) for v, w in zip(versions, weights, strict=True)])
        endpoints[service] = {v: tuple(MeshEndpoint("127.0.0.1", p) for p in draw(
            st.lists(st.integers(1, 65535), max_size=3))) for v in versions}
    gateway_routes = tuple(
        mesh_routing.make_gateway_route(f"g{i}", prefix, draw(st.sampled_from(services)), "demo.local",
                                        rewrite_prefix=draw(st.booleans()))
        for i, prefix in enumerate(draw(st.lists(st.from_regex(r"/[a-z0-9/_.-]{0,12}", fullmatch=True),
                                                 max_size=4, unique=True))))
    return MeshSnapshot(generation=draw(st.integers(0, 2**40)), environment="demo", namespace="demo.local",
                        services=tuple(services), routes=routes, endpoints=endpoints, gateway_routes=gateway_routes)


@given(_snapshots())
def test_every_document_the_daemon_builds_is_accepted(snapshot: Any) -> None:
    from meshpipe.engines.local.dataplane.meshconfig import build_mesh_config

    cfg = parse_config(build_mesh_config(snapshot))
    assert cfg.generation == snapshot.generation
    for service in snapshot.services:
        vs = cfg.services[f"{service}.demo.local"]
        route = snapshot.routes.get(service)
        if route is None:
            assert vs.route is None
        else:
            assert vs.route is not None
            assert [(t.version, t.weight) for t in vs.route.targets] == [(t.version, t.weight) for t in route.targets]
    expected = sorted(snapshot.gateway_routes, key=lambda g: (-len(g.prefix), g.name))
    assert [(g.name, g.prefix, g.rewrite_prefix) for g in cfg.gateway_routes] == [
        (g.name, g.prefix, g.rewrite_prefix) for g in expected]
