"""Routes, gateway routes, versions and pipelines through the AWS engine, against moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from moto import mock_aws

from meshpipe.engines.aws.engine import AwsEngine
from meshpipe.engines.aws.names import StackKinds
from meshpipe.errors import ConflictError, NotFoundError, UserError
from meshpipe.mesh.routing import WeightedTarget, make_gateway_route
from meshpipe.rollout import Move
from support.aws import (
    FakeClock,
    RecordingFactory,
    existing_appmesh_environment,
    make_engine,
    use_fake_credentials,
    version_template,
)

OLD = "e9d5f17a" + "1" * 32
NEW = "0badc0de" + "2" * 32

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")


@dataclass
class World:
    aws: RecordingFactory
    engine: AwsEngine

    def deploy_version(self, service: str, commit: str, env: str = "demo") -> str:
        """What the pipeline's Deploy stage does for one commit."""
        name = f"{env}-{service}-{commit[:8]}"
        self.aws.raw("cloudformation").create_stack(StackName=name,
                                                    TemplateBody=json.dumps(version_template(service, commit)))
        return name

    def add_pipeline(self, service: str) -> None:
        self.engine.pipeline_create("demo", service)
        self.aws.raw("appmesh").create_virtual_router(
            meshName="demo", virtualRouterName=f"vr-{service}",
            spec={"listeners": [{"portMapping": {"port": 80, "protocol": "http"}}]})

    def stacks(self) -> list[str]:
        return sorted(s["StackName"] for s in self.aws.raw("cloudformation").list_stacks()["StackSummaries"]
                      if s["StackStatus"] != "DELETE_COMPLETE")


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """An App Mesh environment (made before the shutdown) with the hello-backend pipeline and one deployed
    version, no routes yet."""
    use_fake_credentials(monkeypatch)
    with mock_aws():
        aws = RecordingFactory()
        engine = make_engine(aws, FakeClock())
        existing_appmesh_environment(aws, "demo")
        w = World(aws, engine)
        w.add_pipeline("hello-backend")
        w.deploy_version("hello-backend", OLD)
        aws.log.clear()
        yield w


def test_a_route_to_a_version_that_does_not_exist_is_refused_before_any_app_mesh_call(world: World) -> None:
    with pytest.raises(NotFoundError) as caught:
        world.engine.route_set("demo", "hello-backend", (WeightedTarget("e9d5f17a", 90),
                                                         WeightedTarget("deadbeef", 10)))
    assert "no version deadbeef" in caught.value.message and "vn-hello-backend-deadbeef" in caught.value.message
    assert world.aws.calls("appmesh") == []


@pytest.mark.parametrize("targets, problem", [
    ((WeightedTarget("e9d5f17a", 0),), "at least one target"),
    ((WeightedTarget("e9d5f17a", 101),), "not an integer 0-100"),
    (tuple(WeightedTarget(f"{i:08x}", 10) for i in range(11)), "1-10 weighted targets"),
])
def test_routes_outside_app_mesh_limits_are_refused_before_any_call(
        world: World, targets: tuple[WeightedTarget, ...], problem: str) -> None:
    with pytest.raises(UserError, match=problem):
        world.engine.route_set("demo", "hello-backend", targets)
    assert world.aws.log == []


def test_a_route_needs_the_service_pipeline(world: World) -> None:
    with pytest.raises(NotFoundError, match="hello-web has no pipeline"):
        world.engine.route_set("demo", "hello-web", (WeightedTarget("e9d5f17a", 100),))
    assert world.aws.calls("appmesh") == []


def test_route_set_creates_then_updates(world: World) -> None:
    world.deploy_version("hello-backend", NEW)
    world.engine.route_set("demo", "hello-backend", (WeightedTarget("e9d5f17a", 100),))
    world.engine.route_set("demo", "hello-backend", (WeightedTarget("e9d5f17a", 50), WeightedTarget("0badc0de", 50)))
    assert [c.operation for c in world.aws.calls("appmesh") if c.operation.endswith("_route")] == [
        "describe_route", "create_route", "describe_route", "update_route"]
    route = world.engine.route_show("demo", "hello-backend")
    assert route is not None
    assert {t.version: t.weight for t in route.targets} == {"e9d5f17a": 50, "0badc0de": 50}
    assert (route.prefix, route.method, route.priority) == ("/", None, 1)  # every method


def test_a_version_with_weight_cannot_be_deleted_unless_forced(world: World) -> None:
    world.engine.route_set("demo", "hello-backend", (WeightedTarget("e9d5f17a", 100),))
    with pytest.raises(ConflictError) as caught:
        world.engine.version_delete("demo", "hello-backend", "e9d5f17a")
    assert "still receives 100%" in caught.value.message
    assert caught.value.hint and "meshpipe route set hello-backend" in caught.value.hint
    assert "demo-hello-backend-e9d5f17a" in world.stacks()

    world.engine.version_delete("demo", "hello-backend", "vn-hello-backend-e9d5f17a", force=True)
    assert "demo-hello-backend-e9d5f17a" not in world.stacks()
    # The route pointed only at the deleted version, so it went first.
    assert world.engine.route_show("demo", "hello-backend") is None


def test_deleting_an_unweighted_version_takes_it_out_of_the_route(world: World) -> None:
    world.deploy_version("hello-backend", NEW)
    world.engine.route_set("demo", "hello-backend", (WeightedTarget("e9d5f17a", 0), WeightedTarget("0badc0de", 100)))
    world.engine.version_delete("demo", "hello-backend", "e9d5f17a")
    route = world.engine.route_show("demo", "hello-backend")
    assert route is not None and route.targets == (WeightedTarget("0badc0de", 100),)
    update = world.aws.calls("appmesh", "update_route")[-1]
    delete = world.aws.calls("cloudformation", "delete_stack")[0]
    assert world.aws.log.index(update) < world.aws.log.index(delete)


def test_deleting_a_version_that_does_not_exist_is_not_found(world: World) -> None:
    with pytest.raises(NotFoundError, match="no version 12345678"):
        world.engine.version_delete("demo", "hello-backend", "12345678")


def test_versions_lists_weights_task_counts_and_routed_versions_whose_stack_is_gone(world: World) -> None:
    world.aws.raw("appmesh").create_route(
        meshName="demo", virtualRouterName="vr-hello-backend", routeName="r-hello-backend",
        spec={"httpRoute": {"action": {"weightedTargets": [
            {"virtualNode": "vn-hello-backend-e9d5f17a", "weight": 70},
            {"virtualNode": "vn-hello-backend-deadbeef", "weight": 30}]},
            "match": {"prefix": "/", "method": "GET"}}, "priority": 1})
    versions = {v.version: v for v in world.engine.versions("demo", "hello-backend")}
    assert set(versions) == {"e9d5f17a", "deadbeef"}
    assert (versions["e9d5f17a"].weight, versions["e9d5f17a"].commit) == (70, OLD)
    assert versions["e9d5f17a"].desired_tasks == 2
    assert (versions["deadbeef"].status, versions["deadbeef"].weight) == ("MISSING", 30)


def test_gateway_routes_create_update_list_and_delete(world: World) -> None:
    engine = world.engine
    route = make_gateway_route("r-ingress-hello-service", "/hello-service", "hello-backend", "ignored.local",
                               rewrite_prefix=False)
    set_route = engine.gateway_route_set("demo", route)
    assert set_route.virtual_service == "hello-backend.demo.local"
    [listed] = engine.gateway_routes("demo")
    assert (listed.prefix, listed.service, listed.namespace, listed.rewrite_prefix) == (
        "/hello-service", "hello-backend", "demo.local", False)

    engine.gateway_route_set("demo", make_gateway_route("r-ingress-hello-service", "/hello", "hello-backend",
                                                        "demo.local"))
    assert world.aws.calls("appmesh", "update_gateway_route")
    [listed] = engine.gateway_routes("demo")
    assert (listed.prefix, listed.rewrite_prefix) == ("/hello", True)

    with pytest.raises(ConflictError, match="already matches prefix /hello"):
        engine.gateway_route_set("demo", make_gateway_route("r-other", "/hello", "hello-backend", "demo.local"))

    engine.gateway_route_delete("demo", "r-ingress-hello-service")
    assert engine.gateway_routes("demo") == []
    with pytest.raises(NotFoundError):
        engine.gateway_route_delete("demo", "r-ingress-hello-service")


def test_a_gateway_route_needs_the_target_service_pipeline(world: World) -> None:
    with pytest.raises(NotFoundError, match="hello-web has no pipeline"):
        world.engine.gateway_route_set("demo", make_gateway_route("r-web", "/web", "hello-web", "demo.local"))
    assert world.aws.calls("appmesh", "create_gateway_route") == []


def test_a_pipeline_with_versions_is_kept_unless_forced_then_versions_go_first(world: World) -> None:
    engine = world.engine
    engine.route_set("demo", "hello-backend", (WeightedTarget("e9d5f17a", 100),))
    with pytest.raises(ConflictError) as caught:
        engine.pipeline_delete("demo", "hello-backend")
    assert "demo-hello-backend-e9d5f17a" in caught.value.message
    assert "demo-hello-backend-pipeline" in world.stacks()

    world.aws.log.clear()
    engine.pipeline_delete("demo", "hello-backend", force=True)
    assert world.stacks() == ["demo-build-bucket", "demo-env"]
    operations = [(c.operation, str(c.params.get("StackName", c.params.get("routeName"))))
                  for c in world.aws.log if c.operation in {"delete_route", "delete_stack"}]
    assert operations[0] == ("delete_route", "r-hello-backend")
    assert [op for op, _ in operations] == ["delete_route", "delete_stack", "delete_stack"]
    # delete_stack is given the stack's id, an ARN holding its name.
    assert "/demo-hello-backend-e9d5f17a/" in operations[1][1]
    assert "/demo-hello-backend-pipeline/" in operations[2][1]


def test_pipeline_create_returns_the_clone_url_and_refuses_without_environment(world: World) -> None:
    info = world.engine.pipeline_create("demo", "hello-web")
    assert info.clone_url.endswith("/v1/repos/hello-web-cfg")
    assert info.virtual_service == "hello-web.demo.local"
    with pytest.raises(NotFoundError, match="environment other does not exist"):
        world.engine.pipeline_create("other", "hello-web")


def test_deleting_one_environment_leaves_one_whose_name_extends_it(world: World) -> None:
    cfn = world.aws.raw("cloudformation")
    for name in ("demo-x-env", "demo-x-hello-backend-pipeline"):
        cfn.create_stack(StackName=name, TemplateBody=json.dumps({"Resources": {"L": {
            "Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": name}}}}))
    world.deploy_version("hello-backend", NEW, env="demo-x")
    world.engine.env_delete("demo")
    assert world.stacks() == ["demo-x-env", "demo-x-hello-backend-0badc0de", "demo-x-hello-backend-pipeline"]


def test_pipeline_create_needs_the_build_bucket(world: World) -> None:
    world.aws.raw("cloudformation").delete_stack(StackName="demo-build-bucket")
    with pytest.raises(NotFoundError, match="no ready build bucket"):
        world.engine.pipeline_create("demo", "hello-web")
    assert world.aws.calls("cloudformation", "create_stack") == []


def test_stack_kinds_tell_versions_pipelines_and_other_environments_apart() -> None:
    kinds = StackKinds.from_stack_names("demo", ["demo-env", "demo-x-env", "demo-build-bucket"])
    assert kinds.version_of("demo-hello-web-0badc0de") == ("hello-web", "0badc0de")
    assert kinds.version_of("demo-x-hello-0badc0de") is None  # belongs to demo-x
    assert kinds.version_of("demo-hello-web-pipeline") is None
    assert kinds.version_of("demo-build-bucket") is None
    assert kinds.pipeline_of("demo-hello-web-pipeline") == "hello-web"
    assert kinds.pipeline_of("demo-x-hello-pipeline") is None
    assert kinds.version_of("demo-hello-web-0BADC0DE") is None


def test_deleting_an_environment_that_does_not_exist_is_not_found(world: World) -> None:
    with pytest.raises(NotFoundError, match="environment nothing does not exist"):
        world.engine.env_delete("nothing")


def test_rollout_promote_and_rollback_move_the_app_mesh_route(world: World) -> None:
    world.deploy_version("hello-backend", NEW)
    canary = (WeightedTarget("e9d5f17a", 90), WeightedTarget("0badc0de", 10))
    world.engine.route_set("demo", "hello-backend", canary)
    back = world.engine.rollout_shift("demo", "hello-backend", Move.ROLLBACK)
    assert {t.version: t.weight for t in back.targets if t.weight} == {"e9d5f17a": 100}
    world.engine.route_set("demo", "hello-backend", canary)
    promoted = world.engine.rollout_shift("demo", "hello-backend", Move.PROMOTE)
    assert {t.version: t.weight for t in promoted.targets if t.weight} == {"0badc0de": 100}
    route = world.engine.route_show("demo", "hello-backend")
    assert route is not None and route.weight_of("0badc0de") == 100
    assert world.engine.mesh_of("demo") == "appmesh"
    # App Mesh environments never ask ECS about service deployments.
    assert [c for c in world.aws.calls("ecs") if "deployment" in c.operation] == []
