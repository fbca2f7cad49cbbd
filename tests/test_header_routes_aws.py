"""Header routes through the AWS engine on App Mesh (moto): extra routes of the service's virtual router."""

from __future__ import annotations

import pytest

from meshpipe.errors import NotFoundError, UserError
from meshpipe.mesh.headers import HeaderMatch
from meshpipe.mesh.routing import WeightedTarget
from test_aws_routes import OLD, World, world  # noqa: F401 - the fixture

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")
VERSION = OLD[:8]


def test_a_header_route_is_an_extra_route_of_the_router_at_priority_0(world: World) -> None:  # noqa: F811
    world.engine.route_set("demo", "hello-backend", (WeightedTarget(VERSION, 100),))
    canary = (HeaderMatch("X-Canary", "always"),)
    made = world.engine.header_route_set("demo", "hello-backend", canary, (WeightedTarget(VERSION, 100),))
    assert made.name == "r-hello-backend-h-x-canary"
    described = world.aws.raw("appmesh").describe_route(meshName="demo", virtualRouterName="vr-hello-backend",
                                                        routeName=made.name)["route"]["spec"]
    assert described["priority"] == 0
    assert described["httpRoute"]["match"]["headers"] == [{"name": "x-canary", "match": {"exact": "always"}}]
    # Setting it again updates it; the weighted route is another route, untouched.
    world.engine.header_route_set("demo", "hello-backend", (HeaderMatch("x-canary", "beta-", "prefix"),),
                                  (WeightedTarget(VERSION, 100),))
    [listed] = world.engine.header_routes("demo", "hello-backend")
    assert listed.headers == (HeaderMatch("x-canary", "beta-", "prefix"),) and listed.targets == (
        WeightedTarget(VERSION, 100),)
    assert world.engine.route_show("demo", "hello-backend").targets == (WeightedTarget(VERSION, 100),)
    world.engine.header_route_delete("demo", "hello-backend", "x-canary")
    assert world.engine.header_routes("demo", "hello-backend") == []
    with pytest.raises(NotFoundError):
        world.engine.header_route_delete("demo", "hello-backend", "x-canary")


def test_a_header_route_to_a_version_that_does_not_exist_is_refused_before_any_app_mesh_call(
        world: World) -> None:  # noqa: F811
    with pytest.raises(NotFoundError):
        world.engine.header_route_set("demo", "hello-backend", (HeaderMatch("x-canary", "always"),),
                                      (WeightedTarget("deadbeef", 100),))
    with pytest.raises(UserError, match="not an HTTP header name"):
        world.engine.header_route_set("demo", "hello-backend", (HeaderMatch("x canary", "always"),),
                                      (WeightedTarget(VERSION, 100),))
    assert world.aws.calls("appmesh") == []
