"""``route gateway`` on Service Connect reads the weights ECS left on the listener rule, against moto.

moto's CloudFormation creates and updates real (moto) target groups and listener rules, and, like
CloudFormation, writes a rule's declared actions back whenever an update changes the rule. So these tests
run the service stack's real ingress resources (only the imported listener ARN and VPC id made literal), let
"ECS" move the weights with ModifyRule as a deployment does, and check what each later update leaves.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from moto import mock_aws

from meshpipe.errors import ConflictError
from meshpipe.mesh.routing import make_gateway_route
from meshpipe.synth import service_connect as sc
from support import synth_cases as cases
from support.aws import (
    FakeClock,
    RecordingFactory,
    RecordingReporter,
    make_engine,
    stand_in_templates,
    use_fake_credentials,
)
from test_aws_service_connect import ACCOUNT, DeploymentsEcs, Rollout

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")
WEIGHTS = ("IngressPrimaryWeight", "IngressAlternateWeight")


@dataclass
class Ingress:
    aws: RecordingFactory
    ecs: DeploymentsEcs
    engine: Any
    listener: str
    vpc: str

    def service_template(self, weights_as_parameters: bool = True) -> dict[str, Any]:
        """The service stack's ingress part as synthesized (listener and VPC literal: moto has no such
        exports), with a resource that is always there."""
        version = cases.sample_version("hello-web", settings=cases.platform())
        resources = json.loads(json.dumps(sc.ingress_resources(version)))
        resources[sc.INGRESS_RULE]["Properties"]["ListenerArn"] = self.listener
        for group in (sc.INGRESS_TARGET_GROUP, sc.INGRESS_ALTERNATE_TARGET_GROUP):
            resources[group]["Properties"]["VpcId"] = self.vpc
        parameters = sc.ingress_parameters()
        if not weights_as_parameters:  # what an earlier meshpipe deployed: fixed 100/0, always open
            for name in (*WEIGHTS, sc.INGRESS_OPEN):
                del parameters[name]
            resources[sc.INGRESS_RULE]["Properties"]["Conditions"] = \
                resources[sc.INGRESS_RULE]["Properties"]["Conditions"]["Fn::If"][2]
            groups = resources[sc.INGRESS_RULE]["Properties"]["Actions"][0]["ForwardConfig"]["TargetGroups"]
            groups[0]["Weight"], groups[1]["Weight"] = 100, 0
        conditions = {k: v for k, v in sc.ingress_conditions().items()
                      if weights_as_parameters or k != sc.INGRESS_HELD}
        return {"Parameters": parameters, "Conditions": conditions,
                "Resources": {"Always": {"Type": "AWS::Logs::LogGroup", "Properties": {}}, **resources}}

    def commit_deploys(self, weights_as_parameters: bool = True) -> None:
        """The pipeline's Deploy stage: the service stack with the route the pipeline stack records."""
        cfn = self.aws.raw("cloudformation")
        recorded = self.parameters("demo-hello-web-pipeline")
        template = self.service_template(weights_as_parameters)
        params = [{"ParameterKey": k, "ParameterValue": recorded[k]} for k in sc.INGRESS_PARAMETERS
                  if k in template["Parameters"]]
        if sc.INGRESS_OPEN in template["Parameters"]:  # every commit opens the rule
            params.append({"ParameterKey": sc.INGRESS_OPEN, "ParameterValue": "true"})
        if "demo-hello-web" in self.stacks():
            cfn.update_stack(StackName="demo-hello-web", TemplateBody=json.dumps(template), Parameters=params)
        else:
            cfn.create_stack(StackName="demo-hello-web", TemplateBody=json.dumps(template), Parameters=params)

    def stacks(self) -> list[str]:
        return [s["StackName"] for s in self.aws.raw("cloudformation").list_stacks()["StackSummaries"]
                if s["StackStatus"] != "DELETE_COMPLETE"]

    def parameters(self, stack: str) -> dict[str, str]:
        found = self.aws.raw("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
        return {p["ParameterKey"]: p["ParameterValue"] for p in found.get("Parameters", [])}

    def resource(self, logical_id: str) -> str:
        return next(r["PhysicalResourceId"] for r in self.aws.raw("cloudformation").list_stack_resources(
            StackName="demo-hello-web")["StackResourceSummaries"] if r["LogicalResourceId"] == logical_id)

    def live_rule(self) -> dict[str, Any]:
        [rule] = self.aws.raw("elbv2").describe_rules(RuleArns=[self.resource(sc.INGRESS_RULE)])["Rules"]
        return dict(rule)

    def live_weights(self) -> tuple[int, int]:
        groups = {g["TargetGroupArn"]: g["Weight"]
                  for g in self.live_rule()["Actions"][0]["ForwardConfig"]["TargetGroups"]}
        return groups[self.resource(sc.INGRESS_TARGET_GROUP)], groups[self.resource(sc.INGRESS_ALTERNATE_TARGET_GROUP)]

    def ecs_shifts(self, primary: int, alternate: int) -> None:
        """What ECS does to the production listener rule during a deployment."""
        self.aws.raw("elbv2").modify_rule(RuleArn=self.resource(sc.INGRESS_RULE), Actions=[{
            "Type": "forward", "ForwardConfig": {"TargetGroups": [
                {"TargetGroupArn": self.resource(sc.INGRESS_TARGET_GROUP), "Weight": primary},
                {"TargetGroupArn": self.resource(sc.INGRESS_ALTERNATE_TARGET_GROUP), "Weight": alternate}]}}])

    def prefixes(self) -> list[str]:
        return [v for c in self.live_rule()["Conditions"] for v in c.get("PathPatternConfig", {}).get("Values", [])]


@pytest.fixture
def ingress(monkeypatch: pytest.MonkeyPatch) -> Iterator[Ingress]:
    use_fake_credentials(monkeypatch)
    with mock_aws():
        base = RecordingFactory()
        ec2, elbv2 = base.raw("ec2"), base.raw("elbv2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=f"us-east-1{z}")
                   ["Subnet"]["SubnetId"] for n, z in ((1, "a"), (2, "b"))]
        balancer = elbv2.create_load_balancer(Name="demo-ingress", Subnets=subnets, Type="application")
        listener = elbv2.create_listener(
            LoadBalancerArn=balancer["LoadBalancers"][0]["LoadBalancerArn"], Protocol="HTTP", Port=80,
            DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])
        ecs = DeploymentsEcs(base.base.client("ecs"))
        aws = RecordingFactory(overrides={"ecs": ecs})
        engine = make_engine(aws, FakeClock(), RecordingReporter(), templates=stand_in_templates)
        engine.env_create("demo")
        engine.pipeline_create("demo", "hello-web")
        yield Ingress(aws, ecs, engine, listener["Listeners"][0]["ListenerArn"], vpc)


def route(prefix: str) -> Any:
    return make_gateway_route("r-web", prefix, "hello-web", "demo.local")


def test_moto_writes_declared_weights_back_over_ecs_like_cloudformation(ingress: Ingress) -> None:
    """The failure this guards against, shown on moto: an update that changes the rule while declaring the
    weights of the first deployment puts all traffic back on the target group ECS has emptied."""
    ingress.engine.gateway_route_set("demo", route("/hello-service"))
    ingress.commit_deploys()
    ingress.ecs_shifts(0, 100)  # a completed blue/green deployment: the new tasks are in the alternate group
    cfn = ingress.aws.raw("cloudformation")
    cfn.update_stack(StackName="demo-hello-web", UsePreviousTemplate=True, Parameters=[
        {"ParameterKey": "IngressPathPrefix", "ParameterValue": "/hello"},
        *[{"ParameterKey": k, "UsePreviousValue": True} for k in sc.INGRESS_PARAMETERS if k != "IngressPathPrefix"]])
    assert ingress.live_weights() == (100, 0)


def test_route_gateway_declares_the_weights_ecs_left_before_changing_the_rule(ingress: Ingress) -> None:
    engine, aws = ingress.engine, ingress.aws
    engine.gateway_route_set("demo", route("/hello-service"))  # before the first deployment: recorded only
    ingress.commit_deploys()
    assert ingress.live_weights() == (100, 0) and ingress.prefixes() == ["/hello-service", "/hello-service/*"]
    ingress.ecs_shifts(0, 100)

    aws.log.clear()
    engine.gateway_route_set("demo", route("/hello"))
    # The prefix moved, the traffic did not.
    assert ingress.prefixes() == ["/hello", "/hello/*"]
    assert ingress.live_weights() == (0, 100)
    for stack in ("demo-hello-web", "demo-hello-web-pipeline"):
        assert {k: ingress.parameters(stack)[k] for k in WEIGHTS} == {
            "IngressPrimaryWeight": "0", "IngressAlternateWeight": "100"}
    # Read from the live rule, then declared on their own first (so a failed route update rolls back to
    # them, not to 100/0), then the route.
    [read] = aws.calls("elbv2", "describe_rules")
    assert read.params == {"RuleArns": [ingress.resource(sc.INGRESS_RULE)]}
    updates = [c.params for c in aws.calls("cloudformation", "update_stack") if c.params["StackName"] == "demo-hello-web"]
    assert len(updates) == 2
    given = [{p["ParameterKey"]: p.get("ParameterValue") for p in u["Parameters"] if "ParameterValue" in p}
             for u in updates]
    assert given[0] == {"IngressPrimaryWeight": "0", "IngressAlternateWeight": "100"}
    assert given[1]["IngressPathPrefix"] == "/hello"
    assert aws.log.index(read) < min(i for i, c in enumerate(aws.log) if c.operation == "update_stack")

    # Later commits pass the recorded weights on: ECS's later shifts are never written over.
    ingress.ecs_shifts(100, 0)
    ingress.commit_deploys()
    assert ingress.live_weights() == (100, 0)
    # And with weights that already match, route gateway changes only the route.
    aws.log.clear()
    engine.gateway_route_set("demo", route("/hello-service"))
    assert ingress.live_weights() == (100, 0) and ingress.prefixes()[0] == "/hello-service"
    assert len([c for c in aws.calls("cloudformation", "update_stack")
                if c.params["StackName"] == "demo-hello-web"]) == 2  # 0/100 recorded, 100/0 live: declared first


def test_no_gateway_route_change_while_ecs_moves_the_weights(ingress: Ingress) -> None:
    ingress.engine.gateway_route_set("demo", route("/hello-service"))
    ingress.commit_deploys()
    ingress.ecs.rollouts["hello-web"] = Rollout(
        arn=f"arn:aws:ecs:us-east-1:{ACCOUNT}:service-deployment/demo/hello-web/d-1",
        service_arn=f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/demo/hello-web", source="td:1", target="td:2")
    ingress.aws.log.clear()
    with pytest.raises(ConflictError, match="a deployment of hello-web is running"):
        ingress.engine.gateway_route_set("demo", route("/hello"))
    assert ingress.aws.calls("cloudformation", "update_stack") == []
    assert ingress.prefixes()[0] == "/hello-service"


def test_a_stack_from_an_earlier_meshpipe_is_not_changed_while_ecs_routes_otherwise(ingress: Ingress) -> None:
    ingress.engine.gateway_route_set("demo", route("/hello-service"))
    ingress.commit_deploys(weights_as_parameters=False)
    # ECS routes as the old template declares: changing the rule is safe.
    ingress.engine.gateway_route_set("demo", route("/hello"))
    assert ingress.prefixes()[0] == "/hello"
    # ECS has moved the traffic: the old template would reset it, so the change is refused.
    ingress.ecs_shifts(0, 100)
    ingress.aws.log.clear()
    with pytest.raises(ConflictError, match="earlier meshpipe") as refused:
        ingress.engine.gateway_route_set("demo", route("/hello-service"))
    assert "start-pipeline-execution --name demo-hello-web" in (refused.value.hint or "")
    assert ingress.aws.calls("cloudformation", "update_stack") == []
    assert ingress.live_weights() == (0, 100)


def test_deleting_the_gateway_route_forgets_the_weights(ingress: Ingress) -> None:
    ingress.engine.gateway_route_set("demo", route("/hello-service"))
    ingress.commit_deploys()
    ingress.ecs_shifts(0, 100)
    ingress.engine.gateway_route_set("demo", route("/hello"))
    ingress.engine.gateway_route_delete("demo", "r-web")
    # The rule goes with the route; the next rule starts at 100/0 on the target groups created with it.
    for stack in ("demo-hello-web", "demo-hello-web-pipeline"):
        assert ingress.parameters(stack)["IngressPathPrefix"] == ""
    assert {k: ingress.parameters("demo-hello-web-pipeline")[k] for k in WEIGHTS} == {
        "IngressPrimaryWeight": "100", "IngressAlternateWeight": "0"}


def test_route_gateway_says_it_waits_for_an_ecs_deployment_and_how_to_follow_it(ingress: Ingress) -> None:
    engine = ingress.engine
    engine.gateway_route_set("demo", route("/hello-service"))  # before the first deployment: nothing to wait for
    assert "ECS attaches" not in engine.reporter.text
    ingress.commit_deploys()
    engine.gateway_route_set("demo", route("/hello"))
    [said] = [s for s in engine.reporter.steps if "ECS attaches" in s]
    # That a deployment comes, and how to follow it without waiting (the stand-in stack has no ECS
    # service to read the strategy from: with one, describe_strategy's words stand in the parentheses).
    assert "with a new deployment (" in said
    assert "meshpipe rollout status hello-web --env demo --engine aws" in said
    updates = [i for i, s in enumerate(engine.reporter.steps) if s.startswith("updating the parameters of stack demo-hello-web")]
    assert engine.reporter.steps.index(said) < updates[-1]


class EcsDeploysWhenTheRuleIsRead:
    """The load balancer's API, where ECS's deployment happens between the update that creates the listener
    rule and the engine's next look at the rule: ECS registers the tasks in the alternate target group and
    shifts all traffic there. Records what the rule matched while the deployment ran."""

    def __init__(self, ingress: Ingress) -> None:
        self.ingress = ingress
        self.client = ingress.aws.raw("elbv2")
        self.conditions_during_deployment: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def describe_rules(self, **kwargs: Any) -> Any:
        if not self.conditions_during_deployment:
            # ECS acts on its own, not through the engine: on a thread of its own, so the call ledger (which
            # records calls with meshpipe on the stack) does not count it as the operator's.
            ecs = threading.Thread(target=self._deploy)
            ecs.start()
            ecs.join()
        return self.client.describe_rules(**kwargs)

    def _deploy(self) -> None:
        self.conditions_during_deployment = self.ingress.live_rule()["Conditions"]
        self.ingress.ecs_shifts(0, 100)


def test_attaching_a_running_service_keeps_the_prefix_closed_until_its_deployment_has_finished(
        ingress: Ingress) -> None:
    engine, aws = ingress.engine, ingress.aws
    ingress.commit_deploys()  # the service runs, reached only inside the namespace: no rule yet
    assert sc.INGRESS_RULE not in {r["LogicalResourceId"] for r in aws.raw("cloudformation").list_stack_resources(
        StackName="demo-hello-web")["StackResourceSummaries"]}
    balancer = EcsDeploysWhenTheRuleIsRead(ingress)
    aws.overrides["elbv2"] = balancer

    engine.gateway_route_set("demo", route("/hello-service"))
    # While ECS registered the tasks, the rule matched only requests carrying the attach header: a plain
    # request to the prefix got the listener's default answer, not a 503 from a target group without
    # healthy targets.
    during = balancer.conditions_during_deployment
    assert {c["Field"] for c in during} == {"path-pattern", "http-header"}
    [header] = [c["HttpHeaderConfig"] for c in during if c["Field"] == "http-header"]
    assert header == {"HttpHeaderName": sc.HOLD_HEADER, "Values": [sc.HOLD_HEADER_VALUE]}
    # Afterwards the prefix is open, with the weights ECS left (not 100/0 on the group without tasks).
    assert [c["Field"] for c in ingress.live_rule()["Conditions"]] == ["path-pattern"]
    assert ingress.prefixes() == ["/hello-service", "/hello-service/*"]
    assert ingress.live_weights() == (0, 100)
    assert ingress.parameters("demo-hello-web")[sc.INGRESS_OPEN] == "true"
    # A later commit keeps it open and keeps ECS's weights.
    ingress.commit_deploys()
    assert [c["Field"] for c in ingress.live_rule()["Conditions"]] == ["path-pattern"]
    assert ingress.live_weights() == (0, 100)


def test_changing_the_route_of_an_attached_service_does_not_close_it(ingress: Ingress) -> None:
    engine = ingress.engine
    engine.gateway_route_set("demo", route("/hello-service"))
    ingress.commit_deploys()
    ingress.aws.log.clear()
    engine.gateway_route_set("demo", route("/hello"))
    updates = [c.params for c in ingress.aws.calls("cloudformation", "update_stack")
               if c.params["StackName"] == "demo-hello-web"]
    assert all({"ParameterKey": sc.INGRESS_OPEN, "ParameterValue": "false"} not in u["Parameters"] for u in updates)
    assert [c["Field"] for c in ingress.live_rule()["Conditions"]] == ["path-pattern"]
