"""The mesh config document built from a snapshot (pure)."""

from __future__ import annotations

from meshpipe.engines.local.dataplane.meshconfig import Endpoint, MeshSnapshot, build_mesh_config
from meshpipe.mesh.routing import GatewayRoute, Route, WeightedTarget


def _snapshot(**overrides: object) -> MeshSnapshot:
    values: dict[str, object] = dict(
        generation=17, environment="demo", namespace="demo.local", services=("hello-web", "hello-backend"),
        routes={"hello-backend": Route("hello-backend", (WeightedTarget("e9d5f17a", 90), WeightedTarget("0badc0de", 10)))},
        endpoints={"hello-backend": {"e9d5f17a": (Endpoint("127.0.0.1", 40123),),
                                     "0badc0de": (Endpoint("127.0.0.1", 40555),)}},
        gateway_routes=(GatewayRoute("r-ingress-hello-service", "/hello-service", "hello-web", "demo.local"),),
    )
    values.update(overrides)
    return MeshSnapshot(**values)  # type: ignore[arg-type]


def test_matches_the_contract_example() -> None:
    assert build_mesh_config(_snapshot()) == {
        "generation": 17, "environment": "demo", "namespace": "demo.local",
        "services": {
            "hello-backend.demo.local": {"service": "hello-backend", "route": {
                "prefix": "/", "method": None,
                "targets": [{"version": "e9d5f17a", "weight": 90}, {"version": "0badc0de", "weight": 10}],
                "max_retries": 2, "per_retry_timeout_ms": 2000, "timeout_ms": 15000}},
            "hello-web.demo.local": {"service": "hello-web", "route": None},
        },
        "endpoints": {"hello-backend": {"0badc0de": [{"host": "127.0.0.1", "port": 40555}],
                                        "e9d5f17a": [{"host": "127.0.0.1", "port": 40123}]}},
        "gateway_routes": [{"name": "r-ingress-hello-service", "prefix": "/hello-service",
                            "virtual_service": "hello-web.demo.local", "rewrite_prefix": True}],
    }


def test_same_snapshot_same_document_whatever_the_order() -> None:
    a = _snapshot(endpoints={"hello-backend": {"e9d5f17a": (Endpoint("127.0.0.1", 2), Endpoint("127.0.0.1", 1))}})
    b = _snapshot(services=("hello-backend", "hello-web"),
                  endpoints={"hello-backend": {"e9d5f17a": (Endpoint("127.0.0.1", 1), Endpoint("127.0.0.1", 2),
                                                            Endpoint("127.0.0.1", 1))}})
    assert build_mesh_config(a) == build_mesh_config(b)
    assert build_mesh_config(a)["endpoints"]["hello-backend"]["e9d5f17a"] == [
        {"host": "127.0.0.1", "port": 1}, {"host": "127.0.0.1", "port": 2}]


def test_versions_without_healthy_tasks_have_no_endpoints() -> None:
    doc = build_mesh_config(_snapshot(endpoints={"hello-backend": {"e9d5f17a": (), "0badc0de": (Endpoint("127.0.0.1", 9),)}}))
    assert doc["endpoints"] == {"hello-backend": {"0badc0de": [{"host": "127.0.0.1", "port": 9}]}}


def test_gateway_routes_longest_prefix_first_and_only_for_known_services() -> None:
    doc = build_mesh_config(_snapshot(gateway_routes=(
        GatewayRoute("short", "/a", "hello-web", "demo.local"),
        GatewayRoute("long", "/a/b", "hello-backend", "demo.local", rewrite_prefix=False),
        GatewayRoute("gone", "/gone", "deleted-service", "demo.local"),
    )))
    assert [(g["name"], g["rewrite_prefix"]) for g in doc["gateway_routes"]] == [("long", False), ("short", True)]


def test_unknown_service_endpoints_and_empty_routes_are_left_out() -> None:
    doc = build_mesh_config(_snapshot(
        routes={"hello-web": Route("hello-web", ())},
        endpoints={"orphan": {"e9d5f17a": (Endpoint("127.0.0.1", 1),)}}))
    assert doc["endpoints"] == {}
    assert doc["services"]["hello-web.demo.local"]["route"] is None
    assert doc["services"]["hello-backend.demo.local"]["route"] is None
