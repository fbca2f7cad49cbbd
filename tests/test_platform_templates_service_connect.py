"""The Service Connect flavour of the platform templates: environment and service pipeline without App Mesh.

cfn-lint runs on each (cached), and the structure is checked where a mistake would break the flavour's
walkthrough: the recorded flavour, exports vs imports, the Deploy stage's stack and parameters, the build,
the ingress and IAM scope.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import test_platform_templates as platform_templates
from meshpipe.errors import UserError
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.platform import ENV_VARS, OPTIONAL_VARS, SUBNET_VARS
from meshpipe.synth import buildspec, synthesize
from meshpipe.synth import service_connect as sc
from meshpipe.synth.environment import SERVICE_CONNECT_EXPORTS
from meshpipe.synth.platform_render import platform_template_files, render_platform, write_platform
from support import synth_cases as cases
from test_platform_templates import (
    CATALOGUES_DISAGREE,
    ENVS,
    SERVICE,
    actions_of,
    iam_actions_data,
    params_of,
    pipeline_imports_and_platform_exports,
    resolve,
    resources_of,
    run_buildspec_with_fake_meshpipe,
    statements,
)

MESH = MeshFlavour.SERVICE_CONNECT
rendered = functools.partial(platform_templates.rendered, mesh=MESH)
template = functools.partial(platform_templates.template, mesh=MESH)
findings = functools.partial(platform_templates.findings, mesh=MESH)


def by_sid(tpl: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    return {s.get("Sid"): s for logical_id, s in statements(tpl) if logical_id == role}


# ---- cfn-lint and the absence of App Mesh ----

@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("kind", ["env", "bucket", "pipeline"])
def test_templates_lint_without_any_finding(env: str, kind: str) -> None:
    assert [str(f) for f in findings(env, kind) if f.severity in ("error", "warning")] == []


@pytest.mark.parametrize("kind", ["env", "pipeline"])
def test_no_app_mesh_anywhere(kind: str) -> None:
    tpl = template("demo", kind)
    assert not [k for k, r in tpl["Resources"].items() if r["Type"].startswith("AWS::AppMesh::")]
    granted = [a for _, s in statements(tpl) for a in actions_of(s)]
    assert granted and not [a for a in granted if a.startswith("appmesh:")]
    assert "appmesh" not in json.dumps(tpl).lower()


def test_the_app_mesh_templates_are_unchanged_by_the_flavour_argument() -> None:
    assert render_platform("demo", mesh="appmesh") == render_platform("demo")
    assert render_platform("demo", mesh=MESH) != render_platform("demo")


def test_an_unknown_flavour_is_refused() -> None:
    with pytest.raises(UserError, match="unknown mesh flavour 'istio'"):
        render_platform("demo", mesh="istio")


# ---- environment ----

@pytest.mark.parametrize("env", ENVS)
def test_environment_records_its_flavour_and_exports_what_the_flavour_needs(env: str) -> None:
    tpl = template(env, "env")
    params = params_of(tpl)
    assert tpl["Outputs"]["MeshFlavour"] == {"Value": "service-connect", "Description": "Mesh flavour of the environment"}
    exports = {key: resolve(out["Export"]["Name"], params) for key, out in tpl["Outputs"].items() if "Export" in out}
    assert exports == {key: f"{env}:{key}" for key in SERVICE_CONNECT_EXPORTS}
    assert "MeshName" not in exports and "VirtualGatewayName" not in exports and "EnvoyImage" not in exports
    assert resolve(tpl["Outputs"]["NamespaceName"]["Value"], params) == f"{env}.local"


def test_cluster_defaults_to_the_http_namespace_named_after_the_environment() -> None:
    res = template("demo", "env")["Resources"]
    assert res["Namespace"]["Type"] == "AWS::ServiceDiscovery::HttpNamespace"
    assert res["Namespace"]["Properties"]["Name"] == {"Fn::Sub": "${EnvironmentName}.local"}
    assert res["Cluster"]["Properties"]["ServiceConnectDefaults"] == {"Namespace": {"Fn::GetAtt": ["Namespace", "Arn"]}}
    assert res["LogGroup"]["Properties"]["LogGroupName"] == {"Fn::Sub": "${EnvironmentName}-cluster"}


def test_ingress_is_an_internet_facing_application_load_balancer_answering_404_until_routed() -> None:
    res = template("demo", "env")["Resources"]
    lb = res["IngressLoadBalancer"]["Properties"]
    assert (lb["Type"], lb["Scheme"]) == ("application", "internet-facing")
    assert lb["Subnets"] == [{"Ref": "PublicSubnet1"}, {"Ref": "PublicSubnet2"}]
    [opening] = res["IngressSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert (opening["CidrIp"], opening["FromPort"], opening["ToPort"]) == ("0.0.0.0/0", 80, 80)
    listener = res["IngressListener"]["Properties"]
    assert (listener["Port"], listener["Protocol"]) == (80, "HTTP")
    [default] = listener["DefaultActions"]
    assert default["Type"] == "fixed-response" and default["FixedResponseConfig"]["StatusCode"] == "404"
    # Nothing else runs in front of the services: no ingress task, no Envoy.
    assert not [k for k, r in res.items() if r["Type"] in ("AWS::ECS::Service", "AWS::ECS::TaskDefinition")]


def test_roles_without_app_mesh_and_an_infrastructure_role_scoped_to_this_load_balancer() -> None:
    tpl = template("demo", "env")
    # No task roles at all: the environment runs no task; each service pipeline has its own roles.
    assert not {"TaskRole", "TaskExecutionRole"} & set(tpl["Resources"])
    pipeline = template("demo", "pipeline")
    assert "Policies" not in pipeline["Resources"]["TaskRole"]["Properties"]
    infra = tpl["Resources"]["EcsInfrastructureRole"]["Properties"]
    assert infra["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": ["ecs.amazonaws.com"]}
    granted = {a: resources_of(s) for logical_id, s in statements(tpl) if logical_id == "EcsInfrastructureRole"
               for a in actions_of(s)}
    assert granted["elasticloadbalancing:ModifyRule"] == [{"Fn::Sub": (
        "arn:${AWS::Partition}:elasticloadbalancing:${AWS::Region}:${AWS::AccountId}:"
        "listener-rule/${IngressLoadBalancer.LoadBalancerFullName}/*")}]
    assert granted["elasticloadbalancing:ModifyListener"] == [{"Ref": "IngressListener"}]
    assert set(granted) == {"elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeRules",
                            "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
                            "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets",
                            "elasticloadbalancing:ModifyListener", "elasticloadbalancing:ModifyRule"}


# ---- service pipeline ----

@pytest.mark.parametrize("env", ENVS)
def test_pipeline_imports_only_what_the_environment_and_bucket_export(env: str) -> None:
    imported, exported = pipeline_imports_and_platform_exports(env, mesh=MESH)
    assert {f"{env}:IngressListenerArn", f"{env}:EcsInfrastructureRoleArn", f"{env}:BuildBucketName"} <= imported
    assert imported <= exported


def test_service_stack_imports_only_what_the_environment_exports() -> None:
    exported = {resolve(o["Export"]["Name"], params_of(template("demo", "env")))
                for o in template("demo", "env")["Outputs"].values() if "Export" in o}
    text = synthesize(cases.sample_version(SERVICE), MESH).json_text
    imported = set(re.findall(r'"Fn::ImportValue": "([^"]+)"', text))
    # The load balancer's full name: the rollback alarms' dimension while the service has a gateway route.
    assert imported == {"demo:IngressListenerArn", "demo:EcsInfrastructureRoleArn", "demo:IngressLoadBalancerFullName"}
    assert imported <= exported


def test_no_virtual_router_service_or_placeholder_name() -> None:
    res = template("demo", "pipeline")["Resources"]
    assert not {"VirtualRouter", "VirtualService", "ServiceNameRecord", "ServiceNamePlaceholder"} & set(res)
    assert "ServicePort" not in template("demo", "pipeline")["Parameters"]


def test_build_passes_every_required_setting_and_runs_the_service_connect_synth() -> None:
    tpl = template("demo", "pipeline")
    project = tpl["Resources"]["BuildProject"]["Properties"]
    names = [v["Name"] for v in project["Environment"]["EnvironmentVariables"]]
    assert set(names) == ({*ENV_VARS, *SUBNET_VARS} - OPTIONAL_VARS) | {"SERVICE_NAME", "MESHPIPE_POLICY"}
    spec = yaml.safe_load(project["Source"]["BuildSpec"])
    assert project["Source"]["BuildSpec"] == buildspec.render_buildspec(mesh=MESH)
    assert any("meshpipe synth" in c and "--mesh service-connect" in c for c in spec["phases"]["build"]["commands"])
    assert spec["env"]["exported-variables"] == ["STACK_NAME", "VERSION_ID"]


def pipeline_stages(tpl: dict[str, Any]) -> list[dict[str, Any]]:
    return tpl["Resources"]["Pipeline"]["Properties"]["Stages"]


@pytest.mark.parametrize("env", ENVS)
def test_deploy_updates_the_one_service_stack_with_the_gateway_route(env: str) -> None:
    tpl = template(env, "pipeline")
    layout = [(s["Name"], [a["Name"] for a in s["Actions"]]) for s in pipeline_stages(tpl)]
    assert layout == [("Source", ["Config", "Bundle"]), ("Build", ["Synth"]), ("Deploy", ["UpdateServiceStack"])]
    [deploy] = pipeline_stages(tpl)[2]["Actions"]
    conf = deploy["Configuration"]
    params = params_of(tpl, ServiceName=SERVICE, IngressPathPrefix="/hello-service", IngressRulePriority="3")
    assert resolve(conf["StackName"], params) == f"{env}-{SERVICE}"
    assert conf["ActionMode"] == "REPLACE_ON_FAILURE" and conf["RoleArn"] == {"Fn::GetAtt": ["DeployRole", "Arn"]}
    overrides = json.loads(resolve(conf["ParameterOverrides"], params))
    assert overrides == {"IngressPathPrefix": "/hello-service", "IngressRulePriority": "3", "IngressRewritePrefix": "true",
                         "IngressPrimaryWeight": "100", "IngressAlternateWeight": "0", "IngressOpen": "true"}
    # Every override is a parameter of the service stack, the route's with the same default and the same
    # check; a commit always opens the rule (route gateway holds it only while it attaches a service).
    service_params = synthesize(cases.sample_version(SERVICE), MESH).template["Parameters"]
    assert set(overrides) == set(service_params) == {*sc.INGRESS_PARAMETERS, sc.INGRESS_OPEN}
    for key, spec in service_params.items():
        if key == sc.INGRESS_OPEN:
            continue
        assert tpl["Parameters"][key] == spec


def test_pipeline_role_reaches_the_service_stack_and_nothing_else() -> None:
    tpl = template("demo", "pipeline")
    sids = by_sid(tpl, "PipelineRole")
    assert "VersionStacks" not in sids
    [stack] = resolve(resources_of(sids["ServiceStack"]), params_of(tpl, ServiceName=SERVICE))
    assert stack == "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:stack/demo-hello-web/*"
    assert "cloudformation:DeleteStack" in actions_of(sids["ServiceStack"])  # REPLACE_ON_FAILURE
    assert sids["NeverThisStack"]["Effect"] == "Deny"
    assert set(actions_of(sids["NeverThisStack"])) == set(actions_of(sids["ServiceStack"]))


def test_deploy_role_can_create_everything_the_service_stack_holds_and_only_for_this_service() -> None:
    tpl = template("demo", "pipeline")
    sids = by_sid(tpl, "DeployRole")
    granted = {a for s in sids.values() for a in actions_of(s)}
    creates = {
        "AWS::ECS::TaskDefinition": "ecs:RegisterTaskDefinition",
        "AWS::ECS::Service": "ecs:CreateService",
        "AWS::ApplicationAutoScaling::ScalableTarget": "application-autoscaling:RegisterScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy": "application-autoscaling:PutScalingPolicy",
        "AWS::ElasticLoadBalancingV2::TargetGroup": "elasticloadbalancing:CreateTargetGroup",
        "AWS::ElasticLoadBalancingV2::ListenerRule": "elasticloadbalancing:CreateRule",
        "AWS::CloudWatch::Alarm": "cloudwatch:PutMetricAlarm",
    }
    held = {r["Type"] for r in synthesize(cases.sample_version(SERVICE), MESH).template["Resources"].values()}
    assert held == set(creates)
    assert set(creates.values()) <= granted
    # Revisions are retained by the stack and retired by meshpipe: the deploy role never deregisters one.
    assert "ecs:DeregisterTaskDefinition" not in granted
    assert not [a for a in granted if a.startswith(("appmesh:", "servicediscovery:"))]
    # It changes no role's policy: the service stack holds no IAM resource.
    assert not [a for a in granted if a.startswith("iam:") and a not in ("iam:PassRole", "iam:GetRole",
                                                                          "iam:CreateServiceLinkedRole")]
    [service] = resources_of(sids["EcsService"])
    assert service["Fn::Sub"][0].endswith(":service/${Cluster}/${ServiceName}")
    [rules] = resources_of(sids["IngressRules"])
    assert rules["Fn::Sub"][0].endswith(":listener-rule/${LoadBalancer}/*")
    assert resources_of(sids["IngressListener"]) == [{"Fn::ImportValue": {"Fn::Sub": "${EnvironmentName}:IngressListenerArn"}}]


def test_pass_role_only_for_the_task_roles_the_infrastructure_role_and_the_deploy_role() -> None:
    passes = [(logical_id, s) for kind in ("env", "bucket", "pipeline") for logical_id, s in
              statements(template("demo", kind)) if "iam:PassRole" in actions_of(s)]
    found = {(logical_id, s["Condition"]["StringEquals"]["iam:PassedToService"]): resources_of(s)
             for logical_id, s in passes}
    assert found == {
        ("DeployRole", "ecs-tasks.amazonaws.com"): [
            {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}, {"Fn::GetAtt": ["TaskRole", "Arn"]}],
        ("DeployRole", "ecs.amazonaws.com"): [
            {"Fn::ImportValue": {"Fn::Sub": "${EnvironmentName}:EcsInfrastructureRoleArn"}}],
        ("PipelineRole", "cloudformation.amazonaws.com"): [{"Fn::GetAtt": ["DeployRole", "Arn"]}],
    }


def test_no_wildcard_actions_and_unscoped_resources_only_where_nothing_can_scope_them() -> None:
    data = iam_actions_data()
    unscoped = set()
    for kind in ("env", "bucket", "pipeline"):
        for logical_id, s in statements(template("demo", kind)):
            if s["Effect"] != "Allow":
                assert logical_id in {"BuildBucketPolicy", "ArtifactBucketPolicy", "PipelineRole"}
                continue
            for action in actions_of(s):
                assert "*" not in action, (logical_id, action)
                assert not action.startswith("iam:") or action in {
                    "iam:PassRole", "iam:GetRole", "iam:CreateServiceLinkedRole"}, (logical_id, action)
                if "*" in resources_of(s):
                    service, name = action.split(":")
                    assert action in CATALOGUES_DISAGREE or not data[service]["Actions"][name.lower()].get(
                        "Resources"), (logical_id, action)
                    unscoped.add(action)
    assert "elasticloadbalancing:DescribeRules" in unscoped  # the check above really ran


# ---- the build's commands ----

def run_build_commands(tmp_path: Path, printed_stack: str) -> subprocess.CompletedProcess[str]:
    """The Service Connect buildspec's build commands in bash, with a stand-in meshpipe."""
    return run_buildspec_with_fake_meshpipe(
        tmp_path, buildspec.render_buildspec(mesh=MESH),
        "#!/bin/bash\n"
        '[ "$1" = synth ] && [ "$3" = --commit ] && [ "$4" = "$CONFIG_COMMIT_ID" ] '
        '&& [ "$5" = --mesh ] && [ "$6" = service-connect ] || exit 9\n'
        f'mkdir -p "$8" && echo "{{}}" > "$8/{printed_stack}.template.json" && echo {printed_stack}\n')


def test_build_commands_keep_the_service_stack_template_and_export_the_version(tmp_path: Path) -> None:
    result = run_build_commands(tmp_path, "demo-hello-web")
    assert result.returncode == 0, result.stderr
    assert "STACK_NAME=demo-hello-web VERSION_ID=e9d5f17a" in result.stdout
    assert (tmp_path / buildspec.TEMPLATE_FILE).read_text().strip() == "{}"


@pytest.mark.parametrize("printed", ["demo-hello-web-e9d5f17a", "demo-other", "demo-hello-web-pipeline", "demo-env"])
def test_build_commands_refuse_any_other_stack(tmp_path: Path, printed: str) -> None:
    result = run_build_commands(tmp_path, printed)
    assert result.returncode != 0
    assert not (tmp_path / buildspec.TEMPLATE_FILE).exists()


# ---- writing ----

def test_write_platform_writes_the_flavours_templates_under_the_same_names(tmp_path: Path) -> None:
    paths = write_platform("demo", tmp_path, mesh=MESH)
    assert [p.name for p in paths] == list(platform_template_files("demo"))
    for path in paths:
        assert json.loads(path.read_text()) == rendered("demo")[path.name]
