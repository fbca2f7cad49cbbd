"""Header routes: the mesh model checked against App Mesh's own limits (botocore's service model), the
config document the daemon builds, and the local data plane's decisions."""

from __future__ import annotations

import random
from typing import Any

import botocore.session
import pytest

from meshpipe.engines.local.dataplane.config import ConfigError, parse_config
from meshpipe.engines.local.dataplane.meshconfig import Endpoint, MeshSnapshot, build_mesh_config
from meshpipe.engines.local.dataplane.routing import Forward, decide_egress, decide_gateway
from meshpipe.errors import UserError
from meshpipe.mesh import headers as hdr
from meshpipe.mesh.headers import HeaderMatch, parse_header_arg
from meshpipe.mesh.routing import (
    HEADER_ROUTE_PRIORITY,
    MAX_PRIORITY,
    WeightedTarget,
    make_header_route,
    make_route,
)

OLD, NEW = "e9d5f17a", "0badc0de"


def appmesh_shape(name: str) -> Any:
    return botocore.session.get_session().get_service_model("appmesh").shape_for(name)


def test_limits_are_app_meshs_own() -> None:
    assert appmesh_shape("HeaderName").metadata == {"min": 1, "max": hdr.MAX_NAME}
    assert appmesh_shape("HeaderMatch").metadata == {"min": 1, "max": hdr.MAX_VALUE}
    assert appmesh_shape("HttpRouteHeaders").metadata == {"min": 1, "max": hdr.MAX_HEADERS_PER_ROUTE}
    methods = appmesh_shape("HeaderMatchMethod").members
    assert set(hdr.MATCH_KINDS) <= set(methods)
    assert appmesh_shape("RoutePriority").metadata == {"min": 0, "max": MAX_PRIORITY}
    assert 0 <= HEADER_ROUTE_PRIORITY < make_route("svc", (WeightedTarget(OLD, 100),)).priority


@pytest.mark.parametrize(("arg", "expected"), [
    ("x-canary=always", HeaderMatch("x-canary", "always", "exact")),
    ("X-User=^beta-", HeaderMatch("X-User", "beta-", "prefix")),
    ("x-user=~beta-[0-9]+", HeaderMatch("x-user", "beta-[0-9]+", "regex")),
])
def test_header_arguments(arg: str, expected: HeaderMatch) -> None:
    assert parse_header_arg(arg) == expected


@pytest.mark.parametrize(("arg", "words"), [
    ("x-canary", "NAME=VALUE"), ("x-canary=", "non-empty value"), ("x canary=1", "not an HTTP header name"),
    ("host=a", "Host"), ("x-a=~(", "not a regular expression"), ("x-" + "a" * 49 + "=1", "at most 50"),
    ("x-a=" + "v" * 256, "at most 255"),
])
def test_bad_header_arguments(arg: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_header_arg(arg)


def test_the_app_mesh_spec_of_a_header_route_is_a_valid_create_route_input() -> None:
    route = make_header_route("hello-backend", [HeaderMatch("X-Canary", "always"), HeaderMatch("x-u", "b", "prefix")],
                              [WeightedTarget(NEW, 100)])
    assert route.name == "r-hello-backend-h-x-canary" and route.router == "vr-hello-backend"
    spec = route.to_appmesh_spec()
    assert spec["priority"] == 0
    assert spec["httpRoute"]["match"] == {"prefix": "/", "headers": [  # type: ignore[index]
        {"name": "x-canary", "match": {"exact": "always"}}, {"name": "x-u", "match": {"prefix": "b"}}]}
    # botocore validates the request against App Mesh's model: a wrong shape would raise here.
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("appmesh").operation_model("CreateRoute")
    report = ParamValidator().validate({"meshName": "demo", "virtualRouterName": route.router,
                                        "routeName": route.name, "spec": spec}, model.input_shape)
    assert not report.has_errors(), report.generate_report()


def test_header_route_limits_are_checked_before_any_engine() -> None:
    target = [WeightedTarget(NEW, 100)]
    with pytest.raises(UserError, match="1-10 headers"):
        make_header_route("svc", [HeaderMatch(f"x-{i}", "1") for i in range(11)], target)
    with pytest.raises(UserError, match="matched twice"):
        make_header_route("svc", [HeaderMatch("x-a", "1"), HeaderMatch("X-A", "2")], target)
    with pytest.raises(UserError, match="not an HTTP header name"):
        make_header_route("svc", [HeaderMatch("x a", "1")], target)
    with pytest.raises(UserError, match="weighted targets"):
        make_header_route("svc", [HeaderMatch("x-a", "1")], [])


def config_with_header_routes(*header_routes: Any) -> dict[str, Any]:
    snapshot = MeshSnapshot(
        generation=3, environment="demo", namespace="demo.local", services=("hello-backend",),
        routes={"hello-backend": make_route("hello-backend", (WeightedTarget(OLD, 100),))},
        endpoints={"hello-backend": {OLD: (Endpoint("127.0.0.1", 40001),), NEW: (Endpoint("127.0.0.1", 40002),)}},
        header_routes={"hello-backend": list(header_routes)})
    return build_mesh_config(snapshot)


def test_the_config_document_lists_header_routes_in_the_order_they_are_tried() -> None:
    preview = make_header_route("hello-backend", [HeaderMatch("x-canary", "always")], [WeightedTarget(NEW, 100)])
    beta = make_header_route("hello-backend", [HeaderMatch("x-beta", "1")], [WeightedTarget(NEW, 100)])
    doc = config_with_header_routes(preview, beta)
    names = [r["name"] for r in doc["services"]["hello-backend.demo.local"]["header_routes"]]
    assert names == ["r-hello-backend-h-x-beta", "r-hello-backend-h-x-canary"]
    # Without header routes the document is what it always was.
    assert "header_routes" not in config_with_header_routes()["services"]["hello-backend.demo.local"]


def test_matching_requests_go_to_the_header_routes_version_and_the_rest_by_weight() -> None:
    routes = [make_header_route("hello-backend", [HeaderMatch("x-canary", "always")], [WeightedTarget(NEW, 100)]),
              make_header_route("hello-backend", [HeaderMatch("x-user", "beta-", "prefix"),
                                                  HeaderMatch("x-tier", "gold|silver", "regex")],
                                [WeightedTarget(NEW, 100)])]
    config = parse_config(config_with_header_routes(*routes))
    assert config.match_header_names == {b"x-canary", b"x-user", b"x-tier"}
    rnd = random.Random(1).random
    allowed = frozenset({b"hello-backend.demo.local"})

    def version(headers: dict[bytes, bytes] | None) -> str:
        decision = decide_egress(config, allowed, b"GET", b"http://hello-backend.demo.local/data", None, rnd, headers)
        assert isinstance(decision, Forward)
        return decision.version

    assert [version({b"x-canary": b"always"}) for _ in range(200)] == [NEW] * 200
    assert [version(None) for _ in range(200)] == [OLD] * 200
    assert version({b"x-canary": b"Always"}) == OLD  # exact is exact
    assert version({b"x-user": b"beta-7", b"x-tier": b"gold"}) == NEW
    assert version({b"x-user": b"beta-7", b"x-tier": b"bronze"}) == OLD  # every header of a route must match
    assert version({b"x-tier": b"gold"}) == OLD
    # The gateway routes the same way.
    gateway = parse_config({**config_with_header_routes(*routes), "gateway_routes": [
        {"name": "r-b", "prefix": "/b", "virtual_service": "hello-backend.demo.local", "rewrite_prefix": True}]})
    decision = decide_gateway(gateway, b"GET", b"/b/data", rnd, {b"x-canary": b"always"})
    assert isinstance(decision, Forward) and decision.version == NEW


def test_a_bad_header_route_in_a_pushed_config_is_refused_whole() -> None:
    doc = config_with_header_routes(
        make_header_route("hello-backend", [HeaderMatch("x-canary", "always")], [WeightedTarget(NEW, 100)]))
    bad = doc["services"]["hello-backend.demo.local"]["header_routes"][0]
    bad["headers"] = [{"name": "x a", "kind": "exact", "value": "1"}, {"name": "x-b", "kind": "glob", "value": "1"}]
    with pytest.raises(ConfigError) as caught:
        parse_config(doc)
    assert len(caught.value.problems) == 2
