"""Each rollback alarm of a Service Connect service stack reads a metric that sees the service it guards.

For every variant of the service stack (sample services, each rollout plan, each platform traffic shift),
with and without a gateway route, the template is resolved as deployed (support.iam_calls), and each
metric of each alarm is checked against the metric's documented dimension sets (AWS/ECS's Service
Connect metrics, AWS/ApplicationELB's target-group metrics) and against this stack:

* a service with a gateway route is judged on the load balancer's metrics of its own two target groups on
  this environment's load balancer (its callers come through the load balancer, not Service Connect);
* any other on Service Connect's metrics of its own discovery name, a name no other environment's service
  has (ECS publishes them across every cluster of the account and region), or with this environment's
  cluster named.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.synth import rollout_deploy as rd
from meshpipe.synth import synthesize
from support import iam, iam_calls
from support import synth_cases as cases
from support.iam_lint import exports

# The documented dimension sets (Amazon ECS developer guide, "Amazon ECS Service Connect metrics";
# Elastic Load Balancing user guide, "CloudWatch metrics for your Application Load Balancer").
_SC_TARGET = [{"TargetDiscoveryName"}, {"TargetDiscoveryName", "ServiceName", "ClusterName"}]
_ALB_TARGET = [{"LoadBalancer"}, {"TargetGroup", "LoadBalancer"}, {"AvailabilityZone", "LoadBalancer"},
               {"TargetGroup", "AvailabilityZone", "LoadBalancer"}]
DOCUMENTED: dict[tuple[str, str], list[set[str]]] = {
    **{("AWS/ECS", f"HTTPCode_Target_{n}XX_Count"): _SC_TARGET for n in (2, 3, 4, 5)},
    ("AWS/ECS", "TargetResponseTime"): _SC_TARGET,
    ("AWS/ECS", "RequestCount"): [{"DiscoveryName"}, {"DiscoveryName", "ServiceName", "ClusterName"}, *_SC_TARGET],
    **{("AWS/ApplicationELB", m): _ALB_TARGET for m in ("HTTPCode_Target_5XX_Count", "RequestCount",
                                                          "TargetResponseTime")},
}
SERVICE = "hello-web"


def variants() -> dict[str, dict[str, Any]]:
    return {d.name: d for d in iam_calls.deployed_templates()
            if d.deployed_by == "DeployRole" and d.mesh == MeshFlavour.SERVICE_CONNECT}


DEPLOYED = variants()


def resolved(deployed: iam_calls.Deployed) -> tuple[dict[str, Any], iam_calls.DeployedResolver]:
    d = deployed.deployment
    r = iam_calls.DeployedResolver(d.template, d.stack, d.params, d.exports)
    resources = {lid: res for lid, res in d.template["Resources"].items()
                 if "Condition" not in res or r.condition(res["Condition"])}
    return {lid: {"Type": res["Type"], **r.value({"Properties": res.get("Properties", {})})}
            for lid, res in resources.items()}, r


def blindness(deployed: iam_calls.Deployed) -> list[str]:
    """Why each alarm metric cannot see this environment's service (empty: every one can)."""
    resources, r = resolved(deployed)
    service = resources["Service"]["Properties"]
    [sc] = service["ServiceConnectConfiguration"]["Services"]
    has_ingress = "IngressTargetGroup" in resources
    own_groups = {r.get_att(g, "TargetGroupFullName") for g in ("IngressTargetGroup", "IngressAlternateTargetGroup")}
    load_balancer = exports(deployed.mesh)[f"{iam.ENV}:IngressLoadBalancerFullName"]
    alarm_names = [a for a in service["DeploymentConfiguration"]["Alarms"]["AlarmNames"]]
    problems = []
    alarms = {lid: res["Properties"] for lid, res in resources.items() if res["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms, "no alarm guards the deployment"
    assert sorted(alarm_names) == sorted(p["AlarmName"] for p in alarms.values())
    for lid, props in alarms.items():
        metrics = [m["MetricStat"]["Metric"] for m in props["Metrics"] if "MetricStat" in m]
        assert metrics, lid
        for metric in metrics:
            dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            where = f"{lid}: {metric['Namespace']} {metric['MetricName']} {dims}"
            documented = DOCUMENTED.get((metric["Namespace"], metric["MetricName"]))
            if documented is None or set(dims) not in documented:
                problems.append(f"{where}: not a documented dimension set")
                continue
            if metric["Namespace"] == "AWS/ApplicationELB":
                if not has_ingress:
                    problems.append(f"{where}: the service has no target group")
                elif dims.get("LoadBalancer") != load_balancer or dims.get("TargetGroup") not in own_groups:
                    problems.append(f"{where}: not this service's target groups on this environment's load balancer")
            else:
                if has_ingress:
                    problems.append(f"{where}: the load balancer's requests do not go through Service Connect")
                name = dims.get("TargetDiscoveryName", dims.get("DiscoveryName"))
                if name != sc["DiscoveryName"]:
                    problems.append(f"{where}: not the service's discovery name {sc['DiscoveryName']}")
                unique = iam.ENV in str(name) and "_" in str(name)
                if not unique and dims.get("ClusterName") != "demo":
                    problems.append(f"{where}: the name is shared by every environment's {SERVICE}")
    return problems


@pytest.mark.parametrize("name", sorted(DEPLOYED))
def test_every_alarm_sees_the_service_it_guards(name: str) -> None:
    assert blindness(DEPLOYED[name]) == []


def test_the_check_fails_for_an_alarm_summing_every_environment() -> None:
    deployed = DEPLOYED["service-connect/service stack hello-web, canary rollout"]
    template = copy.deepcopy(deployed.deployment.template)
    for res in template["Resources"].values():
        if res["Type"] == "AWS::CloudWatch::Alarm":
            for m in res["Properties"]["Metrics"]["Fn::If"][2]:
                if "MetricStat" in m:
                    m["MetricStat"]["Metric"]["Dimensions"] = [{"Name": "TargetDiscoveryName", "Value": SERVICE}]
    broken = iam_calls.Deployed(deployed.name, deployed.mesh,
                                iam_calls.Deployment(template, deployed.deployment.stack, deployed.deployment.params,
                                                     deployed.deployment.exports), deployed.deployed_by)
    assert any("not the service's discovery name" in p for p in blindness(broken))


def test_the_check_fails_for_an_ingress_service_judged_on_service_connect() -> None:
    deployed = DEPLOYED["service-connect/service stack hello-web with gateway route"]
    template = copy.deepcopy(deployed.deployment.template)
    for res in template["Resources"].values():
        if res["Type"] == "AWS::CloudWatch::Alarm":
            res["Properties"]["Metrics"] = res["Properties"]["Metrics"]["Fn::If"][2]
    broken = iam_calls.Deployed(deployed.name, deployed.mesh,
                                iam_calls.Deployment(template, deployed.deployment.stack, deployed.deployment.params,
                                                     deployed.deployment.exports), deployed.deployed_by)
    assert any("do not go through Service Connect" in p for p in blindness(broken))


def test_a_deployment_without_a_plan_is_judged_too() -> None:
    template = synthesize(cases.sample_version(SERVICE), MeshFlavour.SERVICE_CONNECT).template
    config = template["Resources"]["Service"]["Properties"]["DeploymentConfiguration"]
    assert config["Strategy"] == "CANARY"
    assert config["Alarms"] == {"AlarmNames": [{"Ref": rd.ERRORS_ALARM}], "Enable": True, "Rollback": True}
    # On the platform's default analysis: more than 1 % of 5xx answers for 2 minutes.
    errors = template["Resources"][rd.ERRORS_ALARM]["Properties"]
    assert (errors["Threshold"], errors["EvaluationPeriods"]) == (1.0, 2)


def test_the_discovery_name_is_the_environments_and_fits_cloud_map() -> None:
    version = cases.sample_version("hello-backend")
    assert rd.discovery_name(version) == "demo_hello-backend"
    long_env = cases.platform().model_copy(update={"environment_name": "e" * 32})
    long = cases.sample_version("hello-backend", settings=long_env)
    long = long.__class__(**{**long.__dict__, "service": "s" * 40})  # type: ignore[arg-type]
    name = rd.discovery_name(long)
    assert len(name) == rd.DISCOVERY_NAME_MAX and name.startswith("e" * 32 + "_")


def test_a_blue_green_plan_previews_on_its_header_through_service_connect() -> None:
    text = cases.SAMPLES[SERVICE].read_text() + iam.ROLLOUT_PLANS["blue-green rollout"]
    template = synthesize(cases.version_from_text(text, service=SERVICE), MeshFlavour.SERVICE_CONNECT).template
    [alias] = template["Resources"]["Service"]["Properties"]["ServiceConnectConfiguration"]["Services"][0]["ClientAliases"]
    assert alias["TestTrafficRules"] == {"Header": {"Name": "x-canary", "Value": {"Exact": "always"}}}
    canary = synthesize(cases.sample_version(SERVICE), MeshFlavour.SERVICE_CONNECT).template
    [plain] = canary["Resources"]["Service"]["Properties"]["ServiceConnectConfiguration"]["Services"][0]["ClientAliases"]
    assert "TestTrafficRules" not in plain
