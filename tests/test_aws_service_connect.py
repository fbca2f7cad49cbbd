"""The AWS engine in an environment on ECS Service Connect: the walkthrough without App Mesh.

moto runs CloudFormation, S3 and ECS task definitions and services. moto has no ECS service deployments
(their traffic split, stage and rollback), so :class:`DeploymentsEcs` adds those calls on top of moto's
ECS client, every response checked against botocore's model of the API. A Stubber test checks the exact
requests of a rollback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.validate import validate_parameters
from moto import mock_aws

from meshpipe.engines.aws.engine import AwsEngine
from meshpipe.errors import ConflictError, NotFoundError, UserError
from meshpipe.mesh.routing import WeightedTarget, make_gateway_route
from meshpipe.rollout import Move
from meshpipe.synth import service_connect as sc
from support.aws import (
    ACCOUNT,
    INGRESS,
    NOW,
    FakeClock,
    RecordingFactory,
    RecordingReporter,
    StubFactory,
    ecs_arns,
    make_engine,
    service_connect_env_description,
    stubbed,
    use_fake_credentials,
)

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")

OLD = "e9d5f17a" + "1" * 32
NEW = "0badc0de" + "2" * 32
WEB = "66f2a19c" + "0" * 32
CANARY = {"strategy": "CANARY", "bakeTimeInMinutes": 15,
          "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 10}}


@dataclass
class Rollout:
    """An ECS deployment moving traffic from one task-definition revision to another."""

    arn: str
    service_arn: str
    source: str
    target: str
    weights: tuple[float, float] = (90.0, 10.0)
    status: str = "IN_PROGRESS"
    stage: str = "PRODUCTION_TRAFFIC_SHIFT"

    def revision_arn(self, task_definition: str) -> str:
        return f"{self.service_arn.replace(':service/', ':service-revision/')}/{abs(hash(task_definition))}"


@dataclass
class DeploymentsEcs:
    """moto's ECS client, plus the service-deployment calls moto lacks."""

    moto: Any
    rollouts: dict[str, Rollout] = field(default_factory=dict)
    stopped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def meta(self) -> Any:
        return self.moto.meta

    def __getattr__(self, name: str) -> Any:
        return getattr(self.moto, name)

    def _checked(self, operation: str, response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        model = self.moto.meta.service_model.operation_model(operation)
        # The call botocore would have made: its observers (the recorded IAM actions) hear of it too.
        self.moto.meta.events.emit(f"provide-client-params.ecs.{operation}", params=params, model=model, context={})
        body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
        validate_parameters(body, model.output_shape)
        return response

    def describe_services(self, **params: Any) -> dict[str, Any]:
        response = self.moto.describe_services(**params)
        for svc in response["services"]:
            svc["deploymentConfiguration"] = CANARY
            rollout = self.rollouts.get(svc["serviceName"])
            if rollout is not None:  # both revisions run while the deployment does
                svc["deployments"] = [
                    {**svc["deployments"][0], "status": "PRIMARY", "taskDefinition": rollout.target,
                     "rolloutState": "IN_PROGRESS", "runningCount": 1, "desiredCount": 2},
                    {**svc["deployments"][0], "id": "ecs-svc/old", "status": "ACTIVE",
                     "taskDefinition": rollout.source, "rolloutState": "COMPLETED", "runningCount": 2,
                     "desiredCount": 2},
                ]
        return self._checked("DescribeServices", response, params)

    def list_service_deployments(self, *, cluster: str, service: str, status: list[str]) -> dict[str, Any]:
        found = [r for name, r in self.rollouts.items() if name == service and r.status in status]
        return self._checked("ListServiceDeployments", {"serviceDeployments": [
            {"serviceDeploymentArn": r.arn, "serviceArn": r.service_arn, "status": r.status, "createdAt": NOW,
             "targetServiceRevisionArn": r.revision_arn(r.target)} for r in found]},
            {"cluster": cluster, "service": service, "status": status})

    def describe_service_deployments(self, *, serviceDeploymentArns: list[str]) -> dict[str, Any]:
        found = [r for r in self.rollouts.values() if r.arn in serviceDeploymentArns]
        return self._checked("DescribeServiceDeployments", {"serviceDeployments": [{
            "serviceDeploymentArn": r.arn, "serviceArn": r.service_arn, "status": r.status,
            "lifecycleStage": r.stage,
            "sourceServiceRevisions": [{"arn": r.revision_arn(r.source), "requestedTaskCount": 2,
                                        "runningTaskCount": 2, "requestedProductionTrafficWeight": r.weights[0]}],
            "targetServiceRevision": {"arn": r.revision_arn(r.target), "requestedTaskCount": 2,
                                      "runningTaskCount": 2, "requestedProductionTrafficWeight": r.weights[1]},
        } for r in found], "failures": []}, {"serviceDeploymentArns": serviceDeploymentArns})

    def describe_service_revisions(self, *, serviceRevisionArns: list[str]) -> dict[str, Any]:
        revisions = {r.revision_arn(td): td for r in self.rollouts.values() for td in (r.source, r.target)}
        return self._checked("DescribeServiceRevisions", {"serviceRevisions": [
            {"serviceRevisionArn": arn, "taskDefinition": revisions[arn]}
            for arn in serviceRevisionArns if arn in revisions], "failures": []},
            {"serviceRevisionArns": serviceRevisionArns})

    def stop_service_deployment(self, *, serviceDeploymentArn: str, stopType: str) -> dict[str, Any]:
        self.stopped.append((serviceDeploymentArn, stopType))
        for rollout in self.rollouts.values():
            if rollout.arn == serviceDeploymentArn:
                rollout.status = "ROLLBACK_REQUESTED"
        return self._checked("StopServiceDeployment", {"serviceDeploymentArn": serviceDeploymentArn},
                             {"serviceDeploymentArn": serviceDeploymentArn, "stopType": stopType})


def service_stack_template() -> dict[str, Any]:
    """The service stack's gateway-route parameters and condition, around what moto can deploy: a marker
    resource stands in for the listener rule and target groups the condition creates."""
    return {
        "Parameters": sc.ingress_parameters(),
        "Conditions": {sc.HAS_INGRESS: sc.ingress_conditions()[sc.HAS_INGRESS]},
        "Resources": {
            "Always": {"Type": "AWS::Logs::LogGroup", "Properties": {}},
            "IngressRule": {"Type": "AWS::Logs::LogGroup", "Properties": {}, "Condition": sc.HAS_INGRESS},
        },
    }


@dataclass
class World:
    aws: RecordingFactory
    ecs: DeploymentsEcs
    engine: AwsEngine
    reporter: RecordingReporter

    def deploy(self, service: str, commit: str, family: str | None = None) -> str:
        """What the pipeline's Deploy stage does for one commit: a new tagged revision of the service's one
        task definition family, and its service stack and ECS service (created, or updated by a canary)."""
        family = family or service
        registered = self.ecs.moto.register_task_definition(
            family=family, containerDefinitions=[{"name": "app", "image": f"example/{service}:1", "memory": 512}],
            tags=[{"key": "meshpipe:environment", "value": "demo"}, {"key": "meshpipe:service", "value": service},
                  {"key": "meshpipe:version", "value": commit[:8]}, {"key": "meshpipe:commit", "value": commit}])
        arn = registered["taskDefinition"]["taskDefinitionArn"]
        cfn = self.aws.raw("cloudformation")
        existing = self.ecs.moto.describe_services(cluster="demo", services=[service])["services"]
        if not [s for s in existing if s["status"] == "ACTIVE"]:
            # The Deploy stage always passes IngressOpen (moto, unlike CloudFormation, keeps no default
            # value to reuse).
            cfn.create_stack(StackName=f"demo-{service}", TemplateBody=json.dumps(service_stack_template()),
                             Parameters=[{"ParameterKey": sc.INGRESS_OPEN, "ParameterValue": "true"}])
            self.ecs.moto.create_service(cluster="demo", serviceName=service, taskDefinition=arn, desiredCount=2,
                                         deploymentController={"type": "ECS"})
            return arn
        old = existing[0]["taskDefinition"]
        self.ecs.moto.update_service(cluster="demo", service=service, taskDefinition=arn)
        self.ecs.rollouts[service] = Rollout(
            arn=f"arn:aws:ecs:us-east-1:{ACCOUNT}:service-deployment/demo/{service}/d-{commit[:8]}",
            service_arn=existing[0]["serviceArn"], source=old, target=arn)
        return arn

    def finish_rollback(self, service: str) -> None:
        rollout = self.ecs.rollouts.pop(service)
        self.ecs.moto.update_service(cluster="demo", service=service, taskDefinition=rollout.source)

    def stack_parameters(self, name: str) -> dict[str, str]:
        stack = self.aws.raw("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
        return {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}

    def stack_resources(self, name: str) -> set[str]:
        return {r["LogicalResourceId"] for r in
                self.aws.raw("cloudformation").list_stack_resources(StackName=name)["StackResourceSummaries"]}

    def active_stacks(self) -> list[str]:
        return sorted(s["StackName"] for s in self.aws.raw("cloudformation").list_stacks()["StackSummaries"]
                      if s["StackStatus"] != "DELETE_COMPLETE")

    def registered(self, family: str) -> list[str]:
        return self.ecs.moto.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    use_fake_credentials(monkeypatch)
    with mock_aws():
        base = RecordingFactory()
        ecs = DeploymentsEcs(base.base.client("ecs"))
        aws = RecordingFactory(overrides={"ecs": ecs})
        reporter = RecordingReporter()
        engine = make_engine(aws, FakeClock(), reporter, mesh="service-connect")
        yield World(aws, ecs, engine, reporter)


def test_walkthrough_on_service_connect_without_app_mesh(world: World) -> None:
    engine, aws = world.engine, world.aws

    # Step 1: the environment records its flavour; it cannot be turned into App Mesh (nothing can any more).
    info = engine.env_create("demo")
    assert (info.status, info.ingress_url) == ("CREATE_COMPLETE", INGRESS)
    assert info.details["mesh flavour"] == "service-connect" and "mesh" not in info.details
    aws.log.clear()
    with pytest.raises(UserError, match="cannot be created on App Mesh"):
        engine.env_create("demo", mesh="appmesh")
    assert aws.log == []
    assert engine.mesh_of("demo") == "service-connect"

    # Step 2: pipelines; a name whose stack would clash with meshpipe's own is refused.
    web = engine.pipeline_create("demo", "hello-web")
    backend = engine.pipeline_create("demo", "hello-backend")
    assert web.clone_url.endswith("/hello-web-cfg")
    assert backend.virtual_service == "hello-backend.demo.local"
    for bad in ("build-bucket", "orders-env", "orders-0badc0de"):
        with pytest.raises(UserError, match="cannot be a service on Service Connect"):
            engine.pipeline_create("demo", bad)

    # Step 3: a push deploys one version of each: one revision of each service's task definition.
    world.deploy("hello-web", WEB)
    world.deploy("hello-backend", OLD)
    [first] = engine.versions("demo", "hello-backend")
    assert (first.version, first.commit, first.weight, first.stack_name) == ("e9d5f17a", OLD, 100, "demo-hello-backend")
    assert first.status == "PRIMARY (hello-backend:1)"

    # Step 4: the gateway route becomes the service stack's listener rule (and stays with its pipeline).
    gateway = make_gateway_route("r-ingress-hello-service", "/hello-service", "hello-web", "demo.local")
    assert "IngressRule" not in world.stack_resources("demo-hello-web")
    engine.gateway_route_set("demo", gateway)
    assert world.stack_parameters("demo-hello-web-pipeline")["IngressPathPrefix"] == "/hello-service"
    assert world.stack_parameters("demo-hello-web-pipeline")["IngressRouteName"] == "r-ingress-hello-service"
    assert world.stack_parameters("demo-hello-web") == {
        "IngressPathPrefix": "/hello-service", "IngressRulePriority": "1", "IngressRewritePrefix": "true",
        "IngressPrimaryWeight": "100", "IngressAlternateWeight": "0",  # a new rule: 100/0 to start with
        "IngressOpen": "true"}
    assert "IngressRule" in world.stack_resources("demo-hello-web")
    [listed] = engine.gateway_routes("demo")
    assert (listed.name, listed.prefix, listed.service, listed.rewrite_prefix) == (
        "r-ingress-hello-service", "/hello-service", "hello-web", True)
    with pytest.raises(ConflictError, match="already matches prefix /hello-service"):
        engine.gateway_route_set("demo", make_gateway_route("r-backend", "/hello-service", "hello-backend", "demo.local"))
    with pytest.raises(UserError, match="matches the prefix literally"):
        engine.gateway_route_set("demo", make_gateway_route("r-backend", "/data/", "hello-backend", "demo.local"))
    # Deploying the pipeline again keeps the route.
    engine.pipeline_create("demo", "hello-web")
    assert world.stack_parameters("demo-hello-web-pipeline")["IngressPathPrefix"] == "/hello-service"
    # The route "100 % to the one version" is what ECS already does: accepted, nothing changes.
    aws.log.clear()
    route = engine.route_set("demo", "hello-backend", (WeightedTarget("e9d5f17a", 100),))
    assert [(t.version, t.weight) for t in route.targets] == [("e9d5f17a", 100)]
    assert not [c for c in aws.calls("ecs") if not c.operation.startswith(("describe", "list"))]

    # Steps 6-7: a new commit; ECS's canary sends it 10 %, and the split shows in versions and route show.
    world.deploy("hello-backend", NEW)
    versions = {v.version: v for v in engine.versions("demo", "hello-backend")}
    assert {v: i.weight for v, i in versions.items()} == {"e9d5f17a": 90, "0badc0de": 10}
    assert versions["0badc0de"].status == "PRIMARY PRODUCTION_TRAFFIC_SHIFT (hello-backend:2)"
    assert versions["e9d5f17a"].status == "ACTIVE PRODUCTION_TRAFFIC_SHIFT (hello-backend:1)"
    assert (versions["0badc0de"].healthy_tasks, versions["0badc0de"].desired_tasks) == (1, 2)
    assert (versions["e9d5f17a"].healthy_tasks, versions["e9d5f17a"].desired_tasks) == (2, 2)
    shown = engine.route_show("demo", "hello-backend")
    assert shown is not None and (shown.weight_of("e9d5f17a"), shown.weight_of("0badc0de")) == (90, 10)
    # Weights by hand are refused, with ECS's strategy in the message and the way forward in the hint.
    with pytest.raises(ConflictError) as refused:
        engine.route_set("demo", "hello-backend", (WeightedTarget("0badc0de", 100),))
    assert "CANARY: 10.0% for 10 min, then the rest" in refused.value.message
    assert "rollout rollback hello-backend" in (refused.value.hint or "")
    # The old version serves: it cannot be deleted, not even with --force.
    with pytest.raises(ConflictError, match="in use"):
        engine.version_delete("demo", "hello-backend", "e9d5f17a", force=True)
    assert aws.calls("ecs", "deregister_task_definition") == []

    # Rollback: ECS stops the running deployment and goes back to the revision it replaces.
    engine.rollout_shift("demo", "hello-backend", Move.ROLLBACK)
    assert world.ecs.stopped == [(world.ecs.rollouts["hello-backend"].arn, "ROLLBACK")]
    engine.rollout_shift("demo", "hello-backend", Move.ROLLBACK)  # already rolling back: nothing more asked of ECS
    assert len(world.ecs.stopped) == 1
    world.finish_rollback("hello-backend")
    with pytest.raises(ConflictError, match="no deployment of hello-backend is running"):
        engine.rollout_shift("demo", "hello-backend", Move.ROLLBACK)
    with pytest.raises(ConflictError, match="no deployment of hello-backend is running"):
        engine.rollout_shift("demo", "hello-backend", Move.PROMOTE)

    # Step 9: the rolled-back version serves nothing now: it can go; the serving one is listed alone.
    engine.version_delete("demo", "hello-backend", "0badc0de")
    assert [v.version for v in engine.versions("demo", "hello-backend")] == ["e9d5f17a"]
    with pytest.raises(NotFoundError):
        engine.version_delete("demo", "hello-backend", "0badc0de")

    # Status, then cleanup in the order that works, and never a call to App Mesh.
    status = engine.env_status("demo")
    assert (status.details["mesh flavour"], status.details["service stacks"], status.details["pipelines"]) == (
        "service-connect", "2", "2")
    aws.log.clear()
    engine.env_delete("demo")
    assert world.active_stacks() == []
    deletes = [c.params["StackName"] for c in aws.calls("cloudformation", "delete_stack")]
    names = {s["StackId"]: s["StackName"] for c in aws.calls("cloudformation", "describe_stacks", succeeded=True)
             for s in c.result["Stacks"]}
    assert [names.get(d, d) for d in deletes] == ["demo-hello-backend", "demo-hello-web",
                                                  "demo-hello-backend-pipeline", "demo-hello-web-pipeline",
                                                  "demo-build-bucket", "demo-env"]
    # The revisions the service stacks kept are retired with them.
    assert world.registered("hello-backend") == [] and world.registered("hello-web") == []
    assert aws.calls("appmesh") == []


def test_pipeline_delete_waits_for_the_service_stack_unless_forced(world: World) -> None:
    world.engine.env_create("demo")
    world.engine.pipeline_create("demo", "hello-backend")
    world.deploy("hello-backend", OLD)
    with pytest.raises(ConflictError, match="service stack demo-hello-backend"):
        world.engine.pipeline_delete("demo", "hello-backend")
    assert "demo-hello-backend-pipeline" in world.active_stacks()
    world.engine.pipeline_delete("demo", "hello-backend", force=True)
    assert not {"demo-hello-backend", "demo-hello-backend-pipeline"} & set(world.active_stacks())
    assert world.registered("hello-backend") == []
    assert world.aws.calls("appmesh") == []


def test_gateway_route_before_the_first_deployment_and_its_deletion(world: World) -> None:
    world.engine.env_create("demo")
    world.engine.pipeline_create("demo", "hello-web")
    world.engine.pipeline_create("demo", "hello-backend")
    world.engine.gateway_route_set("demo", make_gateway_route("r-web", "/hello-service", "hello-web", "demo.local"))
    world.engine.gateway_route_set("demo", make_gateway_route("r-api", "/api", "hello-backend", "demo.local",
                                                              rewrite_prefix=False))
    assert "first deployment creates the listener rule" in world.reporter.text
    # Each rule has its own priority on the listener.
    assert world.stack_parameters("demo-hello-web-pipeline")["IngressRulePriority"] == "1"
    assert world.stack_parameters("demo-hello-backend-pipeline")["IngressRulePriority"] == "2"
    assert world.stack_parameters("demo-hello-backend-pipeline")["IngressRewritePrefix"] == "false"
    # One gateway route per service: another name for the same service is refused.
    with pytest.raises(ConflictError, match="already has gateway route r-web"):
        world.engine.gateway_route_set("demo", make_gateway_route("r-other", "/other", "hello-web", "demo.local"))
    world.deploy("hello-web", WEB)
    world.engine.gateway_route_delete("demo", "r-web")
    assert world.stack_parameters("demo-hello-web-pipeline")["IngressPathPrefix"] == ""
    assert world.stack_parameters("demo-hello-web")["IngressPathPrefix"] == ""
    assert "IngressRule" not in world.stack_resources("demo-hello-web")
    assert [r.name for r in world.engine.gateway_routes("demo")] == ["r-api"]
    with pytest.raises(NotFoundError):
        world.engine.gateway_route_delete("demo", "r-web")
    with pytest.raises(UserError, match="no route of its own"):
        world.engine.route_delete("demo", "hello-web")


def test_versions_follow_the_family_the_manifest_names_and_skip_other_environments(world: World) -> None:
    world.engine.env_create("demo")
    world.engine.pipeline_create("demo", "hello-backend")
    world.deploy("hello-backend", OLD, family="backend-task")
    # A revision of the same family from another environment (same account and region) is not a version here.
    world.ecs.moto.register_task_definition(
        family="backend-task", containerDefinitions=[{"name": "app", "image": "x:1", "memory": 512}],
        tags=[{"key": "meshpipe:environment", "value": "prod"}, {"key": "meshpipe:service", "value": "hello-backend"},
              {"key": "meshpipe:version", "value": "feedface"}])
    assert [v.version for v in world.engine.versions("demo", "hello-backend")] == ["e9d5f17a"]
    assert world.engine.versions("demo", "hello-web") == []


def test_an_unknown_flavour_is_refused_before_any_call(world: World) -> None:
    with pytest.raises(UserError, match="unknown mesh flavour 'istio'"):
        world.engine.env_create("demo", mesh="istio")
    assert world.aws.log == []


# ---- a rollback's exact requests, against botocore's Stubber ----

def test_rollback_stops_the_running_deployment_with_ecs_rollback() -> None:
    cfn, cfn_stub = stubbed("cloudformation")
    ecs, ecs_stub = stubbed("ecs")
    service_arn, deployment, old_td, new_td, old_rev, new_rev = ecs_arns("d-1")
    cfn_stub.add_response("describe_stacks", service_connect_env_description(), {"StackName": "demo-env"})
    cfn_stub.add_response("describe_stacks", {"Stacks": [{
        "StackName": "demo-hello-backend-pipeline", "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/p/2",
        "StackStatus": "CREATE_COMPLETE", "CreationTime": NOW}]}, {"StackName": "demo-hello-backend-pipeline"})
    services = {"services": [{"serviceName": "hello-backend", "serviceArn": service_arn, "status": "ACTIVE",
                              "taskDefinition": new_td, "deployments": []}]}
    ecs_stub.add_response("describe_services", services, {"cluster": "demo", "services": ["hello-backend"]})
    running = {"serviceDeployments": [{"serviceDeploymentArn": deployment, "status": "IN_PROGRESS", "createdAt": NOW}]}
    listed = {"cluster": "demo", "service": "hello-backend",
              "status": ["PENDING", "IN_PROGRESS", "STOP_REQUESTED", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"]}
    ecs_stub.add_response("list_service_deployments", running, listed)
    described = {"serviceDeployments": [{
        "serviceDeploymentArn": deployment, "status": "IN_PROGRESS", "lifecycleStage": "BAKE_TIME",
        "sourceServiceRevisions": [{"arn": old_rev, "requestedProductionTrafficWeight": 0.0}],
        "targetServiceRevision": {"arn": new_rev, "requestedProductionTrafficWeight": 100.0}}]}
    ecs_stub.add_response("describe_service_deployments", described, {"serviceDeploymentArns": [deployment]})
    revisions = {"serviceRevisions": [{"serviceRevisionArn": old_rev, "taskDefinition": old_td},
                                      {"serviceRevisionArn": new_rev, "taskDefinition": new_td}]}
    ecs_stub.add_response("describe_service_revisions", revisions, {"serviceRevisionArns": [old_rev, new_rev]})

    def revisions_listed() -> None:
        ecs_stub.add_response("list_task_definitions", {"taskDefinitionArns": [old_td, new_td]},
                              {"familyPrefix": "hello-backend", "status": "ACTIVE"})
        for td, version in ((old_td, "e9d5f17a"), (new_td, "0badc0de")):
            ecs_stub.add_response("describe_task_definition", {
                "taskDefinition": {"taskDefinitionArn": td, "family": "hello-backend", "revision": int(td[-1])},
                "tags": [{"key": "meshpipe:environment", "value": "demo"},
                         {"key": "meshpipe:service", "value": "hello-backend"},
                         {"key": "meshpipe:version", "value": version}]}, {"taskDefinition": td, "include": ["TAGS"]})

    revisions_listed()  # --to names the version the deployment goes back to: checked first
    ecs_stub.add_response("stop_service_deployment", {"serviceDeploymentArn": deployment},
                          {"serviceDeploymentArn": deployment, "stopType": "ROLLBACK"})
    # Afterwards the engine reports the split as it now stands.
    ecs_stub.add_response("describe_services", services, {"cluster": "demo", "services": ["hello-backend"]})
    revisions_listed()
    rolling_back = {"serviceDeployments": [{"serviceDeploymentArn": deployment, "status": "ROLLBACK_IN_PROGRESS",
                                            "createdAt": NOW}]}
    ecs_stub.add_response("list_service_deployments", rolling_back, listed)
    ecs_stub.add_response("describe_service_deployments", {"serviceDeployments": [{
        **described["serviceDeployments"][0], "status": "ROLLBACK_IN_PROGRESS",
        "sourceServiceRevisions": [{"arn": old_rev, "requestedProductionTrafficWeight": 100.0}],
        "targetServiceRevision": {"arn": new_rev, "requestedProductionTrafficWeight": 0.0}}]},
        {"serviceDeploymentArns": [deployment]})
    ecs_stub.add_response("describe_service_revisions", revisions, {"serviceRevisionArns": [old_rev, new_rev]})

    engine = make_engine(StubFactory(cloudformation=cfn, ecs=ecs), FakeClock())
    route = engine.rollout_shift("demo", "hello-backend", Move.ROLLBACK, "e9d5f17a")
    assert (route.weight_of("e9d5f17a"), route.weight_of("0badc0de")) == (100, 0)
    cfn_stub.assert_no_pending_responses()
    ecs_stub.assert_no_pending_responses()
