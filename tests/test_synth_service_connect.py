"""Service Connect flavour: one stack per service, ECS shifting traffic between task-definition revisions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshpipe.errors import ValidationError
from meshpipe.platform import TrafficShift, settings_from_mapping
from meshpipe.synth.service_connect import stack_name, synth_service_connect
from support import synth_cases as cases


def web(commit: str = cases.REFERENCE_COMMIT, **policy: Any) -> dict[str, Any]:
    return synth_service_connect(cases.sample_version("hello-web", commit, settings=cases.platform(**policy)))


def props(tpl: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return tpl["Resources"][logical_id]["Properties"]


def test_no_app_mesh_no_envoy_no_own_cloud_map_service() -> None:
    tpl = web()
    # No IAM resource either: the service's execution role (its pipeline stack's) already writes its logs.
    assert {k: v["Type"] for k, v in tpl["Resources"].items()} == {
        "TaskDefinition": "AWS::ECS::TaskDefinition",
        "Service": "AWS::ECS::Service",
        "ScalableTarget": "AWS::ApplicationAutoScaling::ScalableTarget",
        "ScalingPolicy": "AWS::ApplicationAutoScaling::ScalingPolicy",
        # Created only with a gateway route (condition HasIngress), see the ingress tests below.
        "IngressTargetGroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
        "IngressAlternateTargetGroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
        "IngressRule": "AWS::ElasticLoadBalancingV2::ListenerRule",
        # Every deployment is judged (see tests/test_rollout_alarms.py).
        "RolloutErrorsAlarm": "AWS::CloudWatch::Alarm",
    }
    conditional = {k for k, v in tpl["Resources"].items() if "Condition" in v}
    assert conditional == {"IngressTargetGroup", "IngressAlternateTargetGroup", "IngressRule"}
    assert {tpl["Resources"][k]["Condition"] for k in conditional} == {"HasIngress"}
    td = props(tpl, "TaskDefinition")
    assert [c["Name"] for c in td["ContainerDefinitions"]] == ["app"]
    assert "ProxyConfiguration" not in td
    app = td["ContainerDefinitions"][0]
    assert "DependsOn" not in app
    assert "ServiceRegistries" not in props(tpl, "Service")


def test_one_stack_per_service_named_without_the_version() -> None:
    version = cases.sample_version("hello-backend", "0badc0de" * 5)
    assert stack_name(version) == "demo-hello-backend"
    assert props(synth_service_connect(version), "Service")["ServiceName"] == "hello-backend"
    assert "DependsOn" not in synth_service_connect(version)["Resources"]["Service"]


def test_app_port_is_published_under_the_service_name_in_the_namespace() -> None:
    settings = cases.platform().model_copy(update={
        "namespace_name": "prod.internal",
        "namespace_arn": "arn:aws:servicediscovery:us-east-1:123456789012:namespace/ns-0000000000000001",
    })
    version = cases.version_from_text(cases.EVERY_EXTENSION_MANIFEST, service="orders-api", settings=settings)
    tpl = synth_service_connect(version)
    app = props(tpl, "TaskDefinition")["ContainerDefinitions"][0]
    assert app["PortMappings"] == [{"ContainerPort": 8080, "Protocol": "tcp", "Name": "http", "AppProtocol": "http"}]
    sc = props(tpl, "Service")["ServiceConnectConfiguration"]
    assert sc["Enabled"] is True
    assert sc["Namespace"] == "arn:aws:servicediscovery:us-east-1:123456789012:namespace/ns-0000000000000001"
    assert sc["Services"] == [{
        "ClientAliases": [{"DnsName": "orders-api.prod.internal", "Port": 8080}],
        "DiscoveryName": "demo_orders-api",
        "PortName": "http",
    }]
    assert tpl["Outputs"]["DnsName"]["Value"] == "orders-api.prod.internal"


def test_proxy_access_log_goes_to_the_environment_log_group() -> None:
    sc = props(web(traffic_shift={"access_log_format": "JSON"}), "Service")["ServiceConnectConfiguration"]
    assert sc["AccessLogConfiguration"] == {"Format": "JSON", "IncludeQueryParameters": "DISABLED"}
    assert sc["LogConfiguration"] == {"LogDriver": "awslogs", "Options": {
        "awslogs-group": "demo-cluster", "awslogs-stream-prefix": "envoy-hello-web-e9d5f17a",
        "awslogs-region": "us-east-1"}}


# The rollback alarm every deployment carries, plan or not.
JUDGED = {"AlarmNames": [{"Ref": "RolloutErrorsAlarm"}], "Enable": True, "Rollback": True}


def test_default_strategy_is_the_seeds_ten_percent_canary() -> None:
    service = props(web(), "Service")
    assert service["DeploymentController"] == {"Type": "ECS"}
    assert service["DeploymentConfiguration"] == {
        "BakeTimeInMinutes": 15,
        "CanaryConfiguration": {"CanaryBakeTimeInMinutes": 10, "CanaryPercent": 10},
        "Strategy": "CANARY",
        "Alarms": JUDGED,
    }


@pytest.mark.parametrize(("shift", "expected"), [
    ({"strategy": "CANARY", "canary_percent": 25, "canary_bake_minutes": 30, "bake_minutes": 60},
     {"BakeTimeInMinutes": 60, "CanaryConfiguration": {"CanaryBakeTimeInMinutes": 30, "CanaryPercent": 25},
      "Strategy": "CANARY"}),
    ({"strategy": "LINEAR", "linear_step_percent": 20, "linear_step_bake_minutes": 3, "bake_minutes": 5},
     {"BakeTimeInMinutes": 5, "LinearConfiguration": {"StepBakeTimeInMinutes": 3, "StepPercent": 20},
      "Strategy": "LINEAR"}),
    ({"strategy": "BLUE_GREEN", "bake_minutes": 0}, {"BakeTimeInMinutes": 0, "Strategy": "BLUE_GREEN"}),
    ({"strategy": "ROLLING"}, {"MaximumPercent": 200, "MinimumHealthyPercent": 50, "Strategy": "ROLLING"}),
])
def test_deployment_strategy_follows_the_policy(shift: dict[str, Any], expected: dict[str, Any]) -> None:
    assert props(web(traffic_shift=shift), "Service")["DeploymentConfiguration"] == {**expected, "Alarms": JUDGED}


def test_rolling_uses_the_policy_deployment_percents() -> None:
    tpl = web(traffic_shift={"strategy": "ROLLING"}, deployment_maximum_percent=120,
              deployment_minimum_healthy_percent=100)
    config = props(tpl, "Service")["DeploymentConfiguration"]
    assert (config["MaximumPercent"], config["MinimumHealthyPercent"]) == (120, 100)


def test_each_commit_makes_a_new_task_definition_revision_tagged_with_its_version() -> None:
    first, second = web(), web("0badc0de" * 5)
    td1, td2 = props(first, "TaskDefinition"), props(second, "TaskDefinition")
    assert td1 != td2  # CloudFormation replaces the task definition: ECS deploys the new revision
    assert {t["Key"]: t["Value"] for t in td2["Tags"]} == {
        "meshpipe:environment": "demo", "meshpipe:service": "hello-web", "meshpipe:version": "0badc0de",
        "meshpipe:commit": "0badc0de" * 5}
    # A replaced revision stays registered: earlier versions can be listed, rolled back to and retired.
    resource = second["Resources"]["TaskDefinition"]
    assert (resource["UpdateReplacePolicy"], resource["DeletionPolicy"]) == ("Retain", "Retain")
    assert props(second, "Service")["PropagateTags"] == "TASK_DEFINITION"
    assert td2["ContainerDefinitions"][0]["LogConfiguration"]["Options"]["awslogs-stream-prefix"] == "app-hello-web-0badc0de"
    # Same stack, same logical ids: the update shifts traffic inside one ECS service.
    assert first["Resources"].keys() == second["Resources"].keys()
    assert props(first, "Service")["ServiceName"] == props(second, "Service")["ServiceName"]


def test_shared_pieces_match_the_app_mesh_flavour() -> None:
    from meshpipe.synth.appmesh import synth_appmesh

    version = cases.sample_version("hello-web", settings=cases.platform(autoscaling={"min_tasks": 4, "max_tasks": 8}))
    mesh, sc = synth_appmesh(version), synth_service_connect(version)
    # The same target, except that only the App Mesh one names (and so passes) the service-linked role,
    # as the original sample's does; Application Auto Scaling uses that role for ECS either way.
    assert props(sc, "ScalableTarget") == {k: v for k, v in props(mesh, "ScalableTarget").items() if k != "RoleARN"}
    mesh_app = {k: v for k, v in props(mesh, "TaskDefinition")["ContainerDefinitions"][0].items() if k != "DependsOn"}
    sc_app = dict(props(sc, "TaskDefinition")["ContainerDefinitions"][0])
    sc_app["PortMappings"] = [{"ContainerPort": 80, "Protocol": "tcp"}]
    assert sc_app == mesh_app


def test_outputs() -> None:
    outputs = web(traffic_shift={"strategy": "LINEAR"})["Outputs"]
    assert outputs["DeploymentStrategy"]["Value"] == "LINEAR"
    assert outputs["VersionId"]["Value"] == "e9d5f17a"
    assert outputs["TaskDefinitionArn"]["Value"] == {"Ref": "TaskDefinition"}


def test_linear_steps_count_bake_periods_as_cloudformation_does() -> None:
    assert TrafficShift(linear_step_percent=50).linear_steps == 1
    assert TrafficShift(linear_step_percent=10).linear_steps == 9
    assert TrafficShift(linear_step_percent=11).linear_steps == 9


@pytest.mark.parametrize(("shift", "message"), [
    ({"strategy": "CANARY", "canary_bake_minutes": 1440, "bake_minutes": 1000}, "2440 minutes"),
    ({"strategy": "LINEAR", "linear_step_percent": 3, "linear_step_bake_minutes": 100}, "CloudFormation allows"),
    ({"canary_percent": 10.5}, "canary_percent"),
    ({"strategy": "BLUE-GREEN"}, "strategy"),
])
def test_policy_refuses_shifts_cloudformation_or_ecs_would_refuse(shift: dict[str, Any], message: str) -> None:
    data = cases.platform().model_dump()
    data["policy"]["traffic_shift"] = shift
    with pytest.raises(ValidationError) as err:
        settings_from_mapping(data, "platform.yaml")
    assert message in str(err.value)


# ---- ingress: the gateway route as stack parameters ----

def evaluate(value: Any, params: dict[str, str], conditions: dict[str, bool]) -> Any:
    """Resolve Ref (to parameters), Fn::Sub, Fn::If and AWS::NoValue the way CloudFormation would."""
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in params:
            return params[value["Ref"]]
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            text = value["Fn::Sub"]
            for key, val in params.items():
                text = text.replace("${" + key + "}", val)
            return text
        if set(value) == {"Fn::If"}:
            name, yes, no = value["Fn::If"]
            return evaluate(yes if conditions[name] else no, params, conditions)
        out = {k: evaluate(v, params, conditions) for k, v in value.items()}
        return {k: v for k, v in out.items() if v != {"Ref": "AWS::NoValue"}}
    if isinstance(value, list):
        return [evaluate(v, params, conditions) for v in value]
    return value


def deployed(tpl: dict[str, Any], **values: str) -> dict[str, Any]:
    """The resources CloudFormation would create for these parameter values."""
    params = {k: str(spec.get("Default", "")) for k, spec in tpl["Parameters"].items()}
    params.update(values)
    has_ingress = params["IngressPathPrefix"] != ""
    conditions = {"HasIngress": has_ingress, "RewritesPrefix": has_ingress and params["IngressRewritePrefix"] == "true",
                  "IngressHeld": params["IngressOpen"] == "false"}
    return {k: evaluate(v, params, conditions) for k, v in tpl["Resources"].items()
            if conditions.get(v.get("Condition", ""), True)}


def test_without_a_gateway_route_the_load_balancer_does_not_reach_the_service() -> None:
    res = deployed(web())
    assert not {"IngressTargetGroup", "IngressAlternateTargetGroup", "IngressRule"} & set(res)
    assert "LoadBalancers" not in res["Service"]["Properties"]
    assert "HealthCheckGracePeriodSeconds" not in res["Service"]["Properties"]


def test_a_gateway_route_is_a_listener_rule_that_rewrites_the_prefix_away() -> None:
    import re

    res = deployed(web(), IngressPathPrefix="/hello-service", IngressRulePriority="7")
    rule = res["IngressRule"]["Properties"]
    assert rule["ListenerArn"] == {"Fn::ImportValue": "demo:IngressListenerArn"}
    assert rule["Priority"] == "7"
    assert rule["Conditions"] == [{"Field": "path-pattern",
                                   "PathPatternConfig": {"Values": ["/hello-service", "/hello-service/*"]}}]
    [transform] = rule["Transforms"]
    assert transform["Type"] == "url-rewrite"
    [rewrite] = transform["UrlRewriteConfig"]["Rewrites"]
    # The load balancer's rewrite, applied as it would be (its $1 is Python's \1).
    def rewritten(path: str) -> str:
        return re.sub(rewrite["Regex"], rewrite["Replace"].replace("$1", "\\1"), path)
    assert rewritten("/hello-service/hello/Bob") == "/hello/Bob"
    assert rewritten("/hello-service") == "/"
    assert rewritten("/hello-service/") == "/"
    # Held while route gateway attaches the running service: only requests with the header match.
    held = deployed(web(), IngressPathPrefix="/hello-service", IngressOpen="false")["IngressRule"]["Properties"]
    assert held["Conditions"] == [*rule["Conditions"], {"Field": "http-header", "HttpHeaderConfig": {
        "HttpHeaderName": "X-Meshpipe-Attaching", "Values": ["preview"]}}]
    forward = rule["Actions"][0]["ForwardConfig"]["TargetGroups"]
    # The weights are what ECS last set (parameters, see tests/test_ingress_weights.py): 100/0 at first.
    assert forward == [{"TargetGroupArn": {"Ref": "IngressTargetGroup"}, "Weight": "100"},
                       {"TargetGroupArn": {"Ref": "IngressAlternateTargetGroup"}, "Weight": "0"}]


def test_without_rewrite_the_path_reaches_the_app_unchanged() -> None:
    res = deployed(web(), IngressPathPrefix="/api", IngressRewritePrefix="false")
    assert "Transforms" not in res["IngressRule"]["Properties"]


def test_with_a_gateway_route_ecs_shifts_the_load_balancers_traffic_too() -> None:
    res = deployed(web(), IngressPathPrefix="/hello-service")
    [balancer] = res["Service"]["Properties"]["LoadBalancers"]
    assert balancer == {
        "ContainerName": "app", "ContainerPort": 80, "TargetGroupArn": {"Ref": "IngressTargetGroup"},
        "AdvancedConfiguration": {
            "AlternateTargetGroupArn": {"Ref": "IngressAlternateTargetGroup"},
            "ProductionListenerRule": {"Ref": "IngressRule"},
            "RoleArn": {"Fn::ImportValue": "demo:EcsInfrastructureRoleArn"},
        },
    }
    assert res["Service"]["Properties"]["HealthCheckGracePeriodSeconds"] == 10
    group = res["IngressTargetGroup"]["Properties"]
    assert (group["TargetType"], group["Protocol"], group["Port"], group["HealthCheckPath"]) == ("ip", "HTTP", 80, "/ping")
    assert group["HealthCheckTimeoutSeconds"] < group["HealthCheckIntervalSeconds"]
    assert res["IngressAlternateTargetGroup"]["Properties"] == group


def test_rolling_services_behind_the_ingress_need_no_alternate_target_group() -> None:
    res = deployed(web(traffic_shift={"strategy": "ROLLING"}), IngressPathPrefix="/hello-service")
    [balancer] = res["Service"]["Properties"]["LoadBalancers"]
    assert "AdvancedConfiguration" not in balancer
    # The service still waits for the rule: its target group must be in use by a listener first.
    assert res["Service"]["Properties"]["Tags"] == [{"Key": "meshpipe:ingress-rule", "Value": {"Ref": "IngressRule"}}]
    assert "Tags" not in deployed(web(traffic_shift={"strategy": "ROLLING"}))["Service"]["Properties"]


def test_every_strategy_makes_the_service_wait_for_the_listener_rule() -> None:
    for strategy in ("CANARY", "LINEAR", "BLUE_GREEN", "ROLLING"):
        service = deployed(web(traffic_shift={"strategy": strategy}), IngressPathPrefix="/x")["Service"]
        assert '{"Ref": "IngressRule"}' in json.dumps(service), strategy


@pytest.mark.parametrize("prefix", ["", "/hello-service", "/a/b.c_d~e-f"])
def test_prefix_parameter_accepts_literal_paths(prefix: str) -> None:
    import re

    assert re.match(web()["Parameters"]["IngressPathPrefix"]["AllowedPattern"], prefix)


@pytest.mark.parametrize("prefix", ["/", "hello", "/hello/", "/he*lo", "/a b", "//x"])
def test_prefix_parameter_refuses_what_the_rule_cannot_match_literally(prefix: str) -> None:
    import re

    assert not re.match(web()["Parameters"]["IngressPathPrefix"]["AllowedPattern"], prefix)
