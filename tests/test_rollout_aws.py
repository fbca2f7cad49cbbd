"""Rollout plans on ECS Service Connect: the native strategy and the CloudWatch alarms that roll a deployment
back (checked by cfn-lint and against CloudFormation's registry schemas), and ``rollout status`` read from
the ECS deployment (botocore's Stubber, every response checked against ECS's model)."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import pytest

from meshpipe.errors import UserError
from meshpipe.synth import rollout_deploy as rd
from meshpipe.synth import synthesize
from meshpipe.synth.lint import blocking_findings, lint_template
from support import synth_cases as cases
from support.aws import (
    NOW,
    FakeClock,
    StubFactory,
    ecs_arns,
    make_engine,
    service_connect_env_description,
    stubbed,
)
from support.resource_schemas import resource_schema

lint_once = functools.lru_cache(maxsize=None)(lint_template)

BASE = cases.EVERY_EXTENSION_MANIFEST
PLANS = {
    "canary": "Rollout:\n  Steps: [5, 25, 50, 100]\n  Interval: 90\n  Analysis: {MinSuccessRate: 99.5, MaxP99Ms: 800}\n",
    "linear": "Rollout:\n  Strategy: linear\n  StepPercent: 25\n  Interval: 60\n  Analysis: {FailedWindows: 3}\n",
    "blue-green": "Rollout:\n  Strategy: blue-green\n  Interval: 300\n",
}


def template(rollout: str) -> dict[str, Any]:
    return synthesize(cases.version_from_text(BASE + rollout), "service-connect").template


def deployment(rollout: str) -> dict[str, Any]:
    return dict(template(rollout)["Resources"]["Service"]["Properties"]["DeploymentConfiguration"])


@pytest.mark.parametrize("strategy", list(PLANS))
def test_every_plan_renders_a_template_that_lints_clean(strategy: str) -> None:
    text = synthesize(cases.version_from_text(BASE + PLANS[strategy]), "service-connect").json_text
    assert blocking_findings(lint_once(text)) == []


def test_canary_is_ecs_canary_with_the_first_step_held_for_every_judged_step() -> None:
    config = deployment(PLANS["canary"])
    assert config["Strategy"] == "CANARY"
    # 5 % for three steps of 90 s (270 s: 5 whole minutes), then the rest; the old revision kept 2 minutes.
    assert config["CanaryConfiguration"] == {"CanaryPercent": 5, "CanaryBakeTimeInMinutes": 5}
    assert config["BakeTimeInMinutes"] == 2
    assert config["Alarms"] == {"AlarmNames": [{"Ref": rd.ERRORS_ALARM}, {"Ref": rd.LATENCY_ALARM}],
                                "Enable": True, "Rollback": True}


def test_linear_and_blue_green() -> None:
    linear = deployment(PLANS["linear"])
    assert linear["Strategy"] == "LINEAR"
    assert linear["LinearConfiguration"] == {"StepPercent": 25, "StepBakeTimeInMinutes": 1}
    assert linear["Alarms"]["AlarmNames"] == [{"Ref": rd.ERRORS_ALARM}]  # no MaxP99Ms: no latency alarm
    blue_green = deployment(PLANS["blue-green"])
    assert blue_green["Strategy"] == "BLUE_GREEN" and blue_green["BakeTimeInMinutes"] == 5
    assert "CanaryConfiguration" not in blue_green and "LinearConfiguration" not in blue_green
    # With a plan the ingress gets ECS's traffic-shifting set-up, as with the platform's shifting strategies.
    resources = template(PLANS["blue-green"])["Resources"]
    assert "AdvancedConfiguration" in resources["Service"]["Properties"]["LoadBalancers"]["Fn::If"][1][0]


def test_the_alarms_watch_the_service_connect_metrics_of_the_service() -> None:
    resources = template(PLANS["canary"])["Resources"]
    errors = resources[rd.ERRORS_ALARM]["Properties"]
    assert errors["Threshold"] == 0.5 and errors["ComparisonOperator"] == "GreaterThanThreshold"
    assert (errors["EvaluationPeriods"], errors["DatapointsToAlarm"]) == (2, 2)
    # Without a gateway route (the If's else branch): Service Connect's view of the service's callers.
    condition, _, service_connect = errors["Metrics"]["Fn::If"]
    assert condition == "HasIngress"
    stats = {q["Id"]: q["MetricStat"] for q in service_connect if "MetricStat" in q}
    assert {s["Metric"]["MetricName"] for s in stats.values()} == {
        "HTTPCode_Target_2XX_Count", "HTTPCode_Target_3XX_Count", "HTTPCode_Target_4XX_Count",
        "HTTPCode_Target_5XX_Count"}
    assert all(s["Metric"]["Namespace"] == "AWS/ECS" and s["Stat"] == "Sum" and s["Period"] == 60
               and s["Metric"]["Dimensions"] == [{"Name": "TargetDiscoveryName", "Value": "demo_orders-api"}]
               for s in stats.values())
    [expression] = [q for q in service_connect if "Expression" in q]
    assert expression["ReturnData"] and "100 * FILL(errors, 0)" in expression["Expression"]
    latency = resources[rd.LATENCY_ALARM]["Properties"]
    assert latency["Threshold"] == 800.0
    [ms] = [q for q in latency["Metrics"]["Fn::If"][2] if "Expression" in q]
    assert ms["ReturnData"]
    # The discovery name the alarms use is the one the service publishes under.
    sc = resources["Service"]["Properties"]["ServiceConnectConfiguration"]["Services"][0]
    assert sc["DiscoveryName"] == "demo_orders-api"


def test_what_the_plan_writes_is_what_cloudformation_accepts() -> None:
    service = resource_schema("AWS::ECS::Service")["definitions"]
    config = deployment(PLANS["canary"])
    assert set(config) <= set(service["DeploymentConfiguration"]["properties"])
    assert set(service["DeploymentAlarms"]["required"]) <= set(config["Alarms"])
    canary = service["CanaryConfiguration"]["properties"]
    assert canary["CanaryPercent"]["minimum"] <= config["CanaryConfiguration"]["CanaryPercent"] <= 100
    alarm = resource_schema("AWS::CloudWatch::Alarm")
    errors = template(PLANS["canary"])["Resources"][rd.ERRORS_ALARM]["Properties"]
    assert set(errors) <= set(alarm["properties"])
    assert service["LinearConfiguration"]["properties"]["StepPercent"]["minimum"] == rd.ECS_MIN_LINEAR_STEP


def test_without_a_plan_the_platforms_traffic_shift_is_judged_by_the_default_analysis() -> None:
    tpl = synthesize(cases.version_from_text(BASE), "service-connect").template
    config = tpl["Resources"]["Service"]["Properties"]["DeploymentConfiguration"]
    assert config["Strategy"] == "CANARY"
    assert config["Alarms"] == {"AlarmNames": [{"Ref": rd.ERRORS_ALARM}], "Enable": True, "Rollback": True}
    assert tpl["Resources"][rd.ERRORS_ALARM]["Properties"]["Threshold"] == 1.0


@pytest.mark.parametrize(("rollout", "words"), [
    ("Rollout:\n  Strategy: linear\n  StepPercent: 2\n", "at least 3 %"),
    ("Rollout:\n  Steps: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]\n  Interval: 7200\n",
     "CloudFormation allows at most 1980"),
])
def test_plans_ecs_cannot_run_are_refused_at_synth(rollout: str, words: str) -> None:
    with pytest.raises(UserError, match=words):
        synthesize(cases.version_from_text(BASE + rollout), "service-connect")


# ---- rollout status, read from the ECS deployment -------------------------------------------------



def test_rollout_status_reads_the_latest_ecs_deployment() -> None:
    from meshpipe.cli.rollout_view import render

    cfn, cfn_stub = stubbed("cloudformation")
    ecs, ecs_stub = stubbed("ecs")
    service_arn, deployment_arn, old_td, new_td, old_rev, new_rev = ecs_arns("d-2")
    cfn_stub.add_response("describe_stacks", service_connect_env_description(), {"StackName": "demo-env"})
    ecs_stub.add_response("describe_services", {"services": [{
        "serviceName": "hello-backend", "serviceArn": service_arn, "status": "ACTIVE", "taskDefinition": old_td,
        "deployments": []}]}, {"cluster": "demo", "services": ["hello-backend"]})
    ecs_stub.add_response("list_task_definitions", {"taskDefinitionArns": [old_td, new_td]},
                          {"familyPrefix": "hello-backend", "status": "ACTIVE"})
    for td, version in ((old_td, "e9d5f17a"), (new_td, "0badc0de")):
        ecs_stub.add_response("describe_task_definition", {
            "taskDefinition": {"taskDefinitionArn": td, "family": "hello-backend", "revision": int(td[-1])},
            "tags": [{"key": "meshpipe:environment", "value": "demo"},
                     {"key": "meshpipe:service", "value": "hello-backend"},
                     {"key": "meshpipe:version", "value": version}]}, {"taskDefinition": td, "include": ["TAGS"]})
    older = f"{deployment_arn[:-1]}1"
    ecs_stub.add_response("list_service_deployments", {"serviceDeployments": [
        {"serviceDeploymentArn": deployment_arn, "status": "ROLLBACK_SUCCESSFUL",
         "createdAt": NOW + dt.timedelta(hours=1)},
        {"serviceDeploymentArn": older, "status": "SUCCESSFUL", "createdAt": NOW}]},
        {"cluster": "demo", "service": "hello-backend"})
    ecs_stub.add_response("describe_service_deployments", {"serviceDeployments": [{
        "serviceDeploymentArn": deployment_arn, "status": "ROLLBACK_SUCCESSFUL", "lifecycleStage": "BAKE_TIME",
        "startedAt": NOW, "finishedAt": NOW + dt.timedelta(minutes=7),
        "sourceServiceRevisions": [{"arn": old_rev, "requestedProductionTrafficWeight": 100.0}],
        "targetServiceRevision": {"arn": new_rev, "requestedProductionTrafficWeight": 0.0},
        "deploymentConfiguration": {"strategy": "CANARY", "bakeTimeInMinutes": 2,
                                    "canaryConfiguration": {"canaryPercent": 5.0, "canaryBakeTimeInMinutes": 5}},
        "alarms": {"status": "TRIGGERED", "alarmNames": ["demo-hello-backend-RolloutErrorsAlarm-1"],
                   "triggeredAlarmNames": ["demo-hello-backend-RolloutErrorsAlarm-1"]},
        "rollback": {"reason": "alarm demo-hello-backend-RolloutErrorsAlarm-1 in ALARM", "startedAt": NOW}}]},
        {"serviceDeploymentArns": [deployment_arn]})
    ecs_stub.add_response("describe_service_revisions", {"serviceRevisions": [
        {"serviceRevisionArn": old_rev, "taskDefinition": old_td},
        {"serviceRevisionArn": new_rev, "taskDefinition": new_td}]}, {"serviceRevisionArns": [old_rev, new_rev]})

    engine = make_engine(StubFactory(cloudformation=cfn, ecs=ecs), FakeClock())
    status = engine.rollout_status("demo", "hello-backend")
    assert (status["status"], status["candidate"], status["stable"]) == ("rolled-back", "0badc0de", "e9d5f17a")
    assert status["weights"] == {"e9d5f17a": 100.0, "0badc0de": 0.0}
    assert status["alarms"]["triggered"] == ["demo-hello-backend-RolloutErrorsAlarm-1"]
    assert status["reason"].startswith("alarm ") and status["describe"].startswith("CANARY: 5.0% for 5 min")
    from rich.console import Console

    console = Console(width=200, color_system=None, record=True)
    console.print(render(status))
    text = console.export_text()
    assert "rolled-back (ROLLBACK_SUCCESSFUL, BAKE_TIME)" in text and "fired: demo-hello-backend" in text
    cfn_stub.assert_no_pending_responses()
    ecs_stub.assert_no_pending_responses()


def test_the_service_stacks_deploy_role_may_manage_exactly_the_rollout_alarms() -> None:
    from meshpipe.synth.service_pipeline import render_service_connect_pipeline

    role = render_service_connect_pipeline("demo")["Resources"]["DeployRole"]["Properties"]
    [statement] = [s for s in role["Policies"][0]["PolicyDocument"]["Statement"] if s.get("Sid") == "RolloutAlarms"]
    # The alarm's handler tags it, and reads and removes tags on update.
    assert sorted(statement["Action"]) == ["cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms",
                                           "cloudwatch:ListTagsForResource", "cloudwatch:PutMetricAlarm",
                                           "cloudwatch:TagResource", "cloudwatch:UntagResource"]
    names = [rd.alarm_name("demo", "orders-api", kind) for kind in ("errors", "latency")]
    resources = template(PLANS["canary"])["Resources"]
    assert [resources[a]["Properties"]["AlarmName"] for a in (rd.ERRORS_ALARM, rd.LATENCY_ALARM)] == names
    # Each alarm by its whole name: no pattern that would also reach a longer service's (orders-api-v2).
    granted = [r["Fn::Sub"].split(":alarm:")[1].replace("${EnvironmentName}", "demo")
               .replace("${ServiceName}", "orders-api") for r in statement["Resource"]]
    assert granted == names
