"""The Service Connect ingress does not fight ECS over the listener rule's forward weights (template level).

ECS rewrites the production listener rule's weights during every canary, linear or blue/green deployment
and leaves them where the deployment ended. A stack update that changes the rule sends the declared
actions, weights included, so the template declares the weights as parameters that hold what ECS last
set; the engine fills them from the live rule (tests/test_aws_ingress_weights.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.session
import cfnlint

from meshpipe.synth import service_connect as sc
from meshpipe.synth.environment import render_environment_for
from meshpipe.synth.service_pipeline import render_service_pipeline
from support import synth_cases as cases
from test_synth_service_connect import deployed, web

SCHEMAS = Path(cfnlint.__file__).parent / "data" / "schemas"


def registry_schema(resource_type: str) -> dict[str, Any]:
    """CloudFormation's registry schema of a resource type, as cfn-lint ships it."""
    files = json.loads((SCHEMAS / "providers" / "us-east-1.json").read_text())
    return dict(json.loads((SCHEMAS / "resources" / f"{files[resource_type]}.json").read_text()))


def forward_weights(resources: dict[str, Any]) -> list[tuple[str, str]]:
    [action] = resources["IngressRule"]["Properties"]["Actions"]
    return [(t["TargetGroupArn"]["Ref"], t["Weight"]) for t in action["ForwardConfig"]["TargetGroups"]]


def test_the_rule_declares_the_weights_it_is_given_not_fixed_ones() -> None:
    assert forward_weights(deployed(web(), IngressPathPrefix="/hello-service")) == [
        ("IngressTargetGroup", "100"), ("IngressAlternateTargetGroup", "0")]
    # After a completed deployment ECS may have left 0/100: an update declaring that keeps it.
    after = deployed(web(), IngressPathPrefix="/hello-service", IngressPrimaryWeight="0",
                     IngressAlternateWeight="100")
    assert forward_weights(after) == [("IngressTargetGroup", "0"), ("IngressAlternateTargetGroup", "100")]


def test_weight_parameters_allow_exactly_the_load_balancers_range() -> None:
    tuple_schema = registry_schema("AWS::ElasticLoadBalancingV2::ListenerRule")["definitions"]["TargetGroupTuple"]
    assert tuple_schema["properties"]["Weight"]["type"] == "integer"
    assert "range is 0 to 999" in tuple_schema["properties"]["Weight"]["description"]
    params = web()["Parameters"]
    for name, default in ((sc.INGRESS_PRIMARY_WEIGHT, 100), (sc.INGRESS_ALTERNATE_WEIGHT, 0)):
        assert (params[name]["Type"], params[name]["MinValue"], params[name]["MaxValue"]) == ("Number", 0, 999)
        assert params[name]["Default"] == default


def test_every_commit_passes_the_recorded_weights_on() -> None:
    """The pipeline's Deploy stage updates the service stack with the weights recorded on the pipeline stack
    (which route gateway sets together with the service stack's), so a commit never changes them."""
    pipeline = render_service_pipeline("demo", mesh="service-connect")
    [deploy] = [a for stage in pipeline["Resources"]["Pipeline"]["Properties"]["Stages"] for a in stage["Actions"]
                if a["ActionTypeId"]["Provider"] == "CloudFormation"]
    overrides = json.loads(deploy["Configuration"]["ParameterOverrides"]["Fn::Sub"])
    for name in sc.INGRESS_WEIGHTS:
        assert overrides[name] == "${" + name + "}"
        assert pipeline["Parameters"][name] == web()["Parameters"][name]


def test_the_production_rule_has_one_forward_action_and_the_listener_default_is_another_rule() -> None:
    """ECS's load-balancer deployments do not support production rules that mix forward with other actions
    (redirect, fixed-response, authenticate). The service's production rule has exactly one action,
    forward; the listener's fixed-response answer is the listener's default rule, a separate object ECS
    does not modify once the production listener rule is named."""
    res = deployed(web(), IngressPathPrefix="/hello-service")
    assert [a["Type"] for a in res["IngressRule"]["Properties"]["Actions"]] == ["forward"]
    [balancer] = res["Service"]["Properties"]["LoadBalancers"]
    production = balancer["AdvancedConfiguration"]["ProductionListenerRule"]
    assert production == {"Ref": "IngressRule"}
    ecs = botocore.session.get_session().get_service_model("ecs")
    assert "production listener rule (in the case of an Application Load Balancer)" in ecs.shape_for(
        "AdvancedConfiguration").members["productionListenerRule"].documentation
    assert web()["Resources"]["IngressRule"]["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule"
    env = render_environment_for("demo", mesh="service-connect", policy=cases.platform().policy)
    listener = env["Resources"]["IngressListener"]
    assert listener["Type"] == "AWS::ElasticLoadBalancingV2::Listener"
    assert [a["Type"] for a in listener["Properties"]["DefaultActions"]] == ["fixed-response"]
    # In the load balancer's API a rule's actions and a listener's default actions are separate objects:
    # ModifyRule (what ECS calls on a named production rule) cannot change the listener's default action.
    elbv2 = botocore.session.get_session().get_service_model("elbv2")
    modify_rule = set(elbv2.operation_model("ModifyRule").input_shape.members)
    assert {"RuleArn", "Actions"} <= modify_rule and "DefaultActions" not in modify_rule
    assert "DefaultActions" in elbv2.operation_model("ModifyListener").input_shape.members
    # ECS rewriting only the actions leaves the prefix rewrite in place: transforms are their own member.
    assert {"Transforms", "ResetTransforms"} <= modify_rule
