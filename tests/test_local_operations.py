"""The local engine's table of operations: every row is answered by the daemon's method of its name with
its request and result types, every request and result crosses the wire and comes back equal, bad input
is refused naming the field, and the client and the HTTP server (a real aiohttp server on 127.0.0.1)
speak through the same rows."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from meshpipe.engines.base import PipelineInfo, VersionInfo
from meshpipe.engines.local.control import operations as ops
from meshpipe.engines.local.control.actions import DaemonActions
from meshpipe.engines.local.control.httpapi import ControlClient, make_control_app
from meshpipe.errors import NotFoundError, UserError
from meshpipe.mesh.headers import HeaderMatch
from meshpipe.mesh.routing import GatewayRoute, HeaderRoute, Route, WeightedTarget
from meshpipe.mesh.stats import ServiceStats, VersionStats
from meshpipe.pipeline.runs import PipelineRun, RunStatus, StageResult, StartedRun

# What a field of a given name holds in the samples: names the paths check must have their form.
SAMPLE_TEXT = {"service": "hello-web", "version": "0a1b2c3d", "name": "web", "run_id": "20260101-120000-a1b2c3",
               "ref": "refs/heads/main", "new": "a" * 40, "prefix": "/web", "header": "x-canary",
               "action": "pause"}
SAMPLE_BY_TYPE: dict[str, Any] = {
    "int": 7, "bool": True, "str | None": "b" * 40, "float | None": 30.0,
    "tuple[WeightedTarget, ...]": (WeightedTarget("0a1b2c3d", 90), WeightedTarget("1b2c3d4e", 10)),
    "tuple[HeaderMatch, ...]": (HeaderMatch("x-canary", "always", "exact"),),
}
ROUTE = Route("hello-web", (WeightedTarget("0a1b2c3d", 90), WeightedTarget("1b2c3d4e", 10)))
HEADER_ROUTE = HeaderRoute("hello-web", (HeaderMatch("x-canary", "always", "exact"),), (WeightedTarget("1b2c3d4e", 100),))
RUN = PipelineRun("20260101-120000-a1b2c3", "hello-web", "a" * 40, RunStatus.SUCCEEDED, "2026-01-01T12:00:00Z",
                  "2026-01-01T12:00:09Z", (StageResult("Source", RunStatus.SUCCEEDED, "read manifest.yaml"),),
                  "0a1b2c3d")
# A result of each form, as the daemon's methods return them.
SAMPLE_RESULTS: dict[str, Any] = {
    "None": None, "bytes": b"# TYPE meshpipe_route_weight gauge\n",
    "dict[str, Any]": {"environment": "demo", "services": []}, "dict[str, Any] | None": None,
    "dict[str, tuple[str, ...]]": {"hello-web": ("hello-backend",)},
    "PipelineInfo": PipelineInfo("hello-web", "demo", "file:///r/hello-web-cfg.git", "hello-web.demo.local",
                                 "CREATE_COMPLETE"),
    "tuple[PipelineRun, ...]": (RUN,), "PipelineRun": RUN,
    "StartedRun": StartedRun("20260101-120000-a1b2c3", "hello-web", "a" * 40),
    "Route | None": ROUTE, "RouteView": ops.RouteView(ROUTE, (HEADER_ROUTE,)),
    "RouteChanged": ops.RouteChanged(ROUTE, ops.PushReport(12, 3, 2, {"40123": "timed out"}, 1.5)),
    "HeaderRouteChanged": ops.HeaderRouteChanged(HEADER_ROUTE, ops.PushReport(13, 3, 3, {}, 0.8)),
    "tuple[HeaderRoute, ...]": (HEADER_ROUTE,),
    "GatewayRoute": GatewayRoute("web", "/web", "hello-web", "demo.local"),
    "tuple[GatewayRoute, ...]": (GatewayRoute("web", "/web", "hello-web", "demo.local", rewrite_prefix=False),),
    "tuple[VersionInfo, ...]": (VersionInfo("hello-web", "0a1b2c3d", "a" * 40, "demo-hello-web-0a1b2c3d",
                                            "CREATE_COMPLETE", 90, "2026-01-01T12:00:09Z", 2, 2),),
    "ServiceStats": ServiceStats("hello-web", {"0a1b2c3d": VersionStats(requests=10, responses={"2xx": 10},
                                                                        p50_ms=1.5)}, 3, 3),
}


def sample_request(op: ops.Operation[Any, Any]) -> Any:
    values = {}
    for f in dataclasses.fields(op.request):
        values[f.name] = SAMPLE_TEXT[f.name] if str(f.type) == "str" else SAMPLE_BY_TYPE[str(f.type)]
    return op.request(**values)


def test_every_operation_is_a_daemon_method_taking_its_request_and_returning_its_result() -> None:
    names = [op.name for op in ops.OPERATIONS]
    assert len(set(names)) == len(names)
    assert len({(op.method, op.path) for op in ops.OPERATIONS}) == len(ops.OPERATIONS)
    for op in ops.OPERATIONS:
        method = getattr(DaemonActions, op.name, None)
        assert method is not None, f"DaemonActions answers no {op.name}"
        declared = method.__annotations__  # as written: the result's name is its wire form
        assert declared["request"] == f"ops.{op.request.__name__}", op.name
        assert declared["return"].removeprefix("ops.") == op.result, op.name
        assert op.result in SAMPLE_RESULTS, op.name
        fields = {f.name for f in dataclasses.fields(op.request)}
        assert set(op.path_fields) <= fields, op.name


@pytest.mark.parametrize("op", ops.OPERATIONS, ids=lambda op: op.name)
def test_a_request_crosses_the_wire_and_comes_back_equal(op: ops.Operation[Any, Any]) -> None:
    request = sample_request(op)
    target = op.target(request)
    path, _, query = target.partition("?")
    # What the server's router takes from the path, and aiohttp from the query string.
    segments = dict(zip(op.path.split("/"), path.split("/"), strict=True))
    given = {name: segments["{" + name + "}"] for name in op.path_fields}
    from urllib.parse import parse_qsl

    assert op.parse(given, dict(parse_qsl(query)), op.body(request) or {}) == request


@pytest.mark.parametrize("op", ops.OPERATIONS, ids=lambda op: op.name)
def test_a_result_crosses_the_wire_and_comes_back_equal(op: ops.Operation[Any, Any]) -> None:
    import json

    sent = op.encode(SAMPLE_RESULTS[op.result])
    wire = sent if op.result == ops.TEXT_PAGE else json.loads(json.dumps(sent))
    assert op.decode(wire) == SAMPLE_RESULTS[op.result]


def test_the_wire_keeps_the_forms_the_hook_and_the_tests_read() -> None:
    # The post-receive hook reads run_id from the push's answer; a document travels as it is.
    assert ops.PUSH.encode(StartedRun("r1", "s", "c"))["run_id"] == "r1"
    assert ops.STATUS.encode({"a": 1}) == {"a": 1}
    assert ops.VERSIONS.encode(SAMPLE_RESULTS["tuple[VersionInfo, ...]"])[0]["version"] == "0a1b2c3d"


@pytest.mark.parametrize(("body", "says"), [
    ({}, "request field 'targets' must be a list"),
    ({"targets": "0a1b2c3d=100"}, "request field 'targets' must be a list"),
    ({"targets": [["0a1b2c3d", 100]]}, "each target must be an object with version and weight"),
    ({"targets": [{"version": "0a1b2c3d", "weight": True}]}, "request field 'weight' must be a int"),
    ({"targets": [{"version": 7, "weight": 100}]}, "request field 'version' must be a str"),
])
def test_a_malformed_request_is_refused_naming_its_field(body: dict[str, Any], says: str) -> None:
    with pytest.raises(UserError) as err:
        ops.ROUTE_SET.parse({"service": "hello-web"}, {}, body)
    assert says in err.value.message


@pytest.mark.parametrize(("op", "path"), [
    (ops.ROUTE_SET, {"service": "../etc"}), (ops.VERSION_DELETE, {"service": "web", "version": "x/../y"}),
    (ops.GATEWAY_ROUTE_DELETE, {"name": "a" * 300}), (ops.PIPELINE_RUN, {"service": "web", "run_id": "../../x"}),
])
def test_a_name_in_the_path_that_could_escape_is_refused(op: ops.Operation[Any, Any], path: dict[str, str]) -> None:
    with pytest.raises(UserError):
        op.parse(path, {}, {"targets": []})


class FakeDaemon:
    """Answers two operations as the daemon would; records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[Any] = []

    async def route_set(self, request: ops.SetRoute) -> ops.RouteChanged:
        self.asked.append(request)
        return ops.RouteChanged(Route(request.service, request.targets), ops.PushReport(5, 2, 2))

    async def route_show(self, request: ops.OfService) -> Route | None:
        self.asked.append(request)
        raise NotFoundError(f"service {request.service!r} has no pipeline in this environment", hint="create it")

    def __getattr__(self, name: str) -> Any:
        async def not_here(request: Any) -> Any:
            raise NotImplementedError(name)

        return not_here


@pytest.fixture
def served() -> Iterator[tuple[FakeDaemon, int]]:
    from aiohttp import web

    daemon = FakeDaemon()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_control_app(daemon, "t0ken"))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = int(runner.addresses[0][1])
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield daemon, port
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_the_client_and_the_server_speak_through_the_same_rows(served: tuple[FakeDaemon, int]) -> None:
    daemon, port = served
    client = ControlClient(port, "t0ken", timeout=10)
    changed = client.call(ops.ROUTE_SET, ops.SetRoute("hello-web", ROUTE.targets))
    assert changed == ops.RouteChanged(ROUTE, ops.PushReport(5, 2, 2))
    assert daemon.asked == [ops.SetRoute("hello-web", ROUTE.targets)]
    with pytest.raises(NotFoundError) as err:  # the daemon's error comes back as itself
        client.call(ops.ROUTE_SHOW, ops.OfService("nope"))
    assert err.value.hint == "create it"
    with pytest.raises(UserError):  # the wrong token opens nothing
        ControlClient(port, "wrong", timeout=10).call(ops.ROUTE_SET, ops.SetRoute("hello-web", ROUTE.targets))
    assert len(daemon.asked) == 2


def test_a_flag_is_text_only_in_a_query_string() -> None:
    # In a query string everything is text: "1", "true" and "yes" say yes.
    assert ops.VERSION_DELETE.parse({"service": "hello-web", "version": "0a1b2c3d"}, {"force": "yes"}, {}).force
    # In a JSON body a flag is true or false, and text is refused rather than guessed at.
    with pytest.raises(UserError) as err:
        ops.GATEWAY_ROUTE_SET.parse({"name": "web"}, {}, {"prefix": "/web", "service": "hello-web",
                                                          "rewrite_prefix": "yes"})
    assert "'rewrite_prefix' must be true or false" in err.value.message
