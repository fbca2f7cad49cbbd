"""The service-pipeline template: one service's place in the mesh, its config repo and its pipeline.

One stack per service and environment, ``<env>-<svc>-pipeline``, from a single template file
(``service-pipeline.template.json``) with the parameters ``EnvironmentName`` and ``ServiceName``. It holds:

* the virtual router ``vr-<svc>`` and the virtual service ``<svc>.<env>.local`` it provides; routes are
  left to ``meshpipe route`` (a new version never receives traffic by itself);
* a Cloud Map name ``<svc>`` with one placeholder instance, so that ``<svc>.<env>.local`` resolves: apps
  resolve the name before they connect, and only then does Envoy intercept the connection and route it;
* the CodeCommit repo ``<svc>-cfg`` holding ``manifest.yaml``, and an EventBridge rule starting the
  pipeline on each push to the configured branch; or, for a connection source (GitHub, GitLab,
  Bitbucket; see :mod:`meshpipe.synth.pipeline_source`), no repo and no rule: the source action reads the
  repository through the connection and the pipeline's own push trigger starts runs;
* the pipeline: Source (config repo + the build bucket's bundle) -> Build (``meshpipe synth``, with the
  environment's platform policy) -> Deploy (CloudFormation creates ``<env>-<svc>-<version>``, replacing
  a stack whose creation failed), with one narrowly scoped role per actor.

That is the App Mesh flavour. The Service Connect flavour (``mesh="service-connect"``, same file name,
same stack name) has no virtual router, virtual service or placeholder name (ECS's proxies publish
``<svc>.<env>.local``); its Build stage runs ``meshpipe synth --mesh service-connect`` and its Deploy stage
updates the one service stack ``<env>-<svc>``, passing on the service's gateway route (its ``Ingress*``
parameters, which ``meshpipe route gateway`` sets) as that stack's parameters.
"""

from __future__ import annotations

import json
import re
from typing import Any

from meshpipe.errors import UserError
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.model import VERSION_LEN
from meshpipe.platform import ENV_VARS, SUBNET_VARS, PlatformPolicy
from meshpipe.synth import buildspec, rollout_deploy
from meshpipe.synth import permissions_boundary as pb
from meshpipe.synth import policy_parameter as pp
from meshpipe.synth import service_connect as sc
from meshpipe.synth import suppressions as skip
from meshpipe.synth.build_bucket import BUNDLE_KEY, private_bucket_properties, tls_only_bucket_policy
from meshpipe.synth.cfn import Json, checkov_skips, get_att, output, ref, resource, sub, template
from meshpipe.synth.environment import (
    PLACEHOLDER_IPV4,
    SERVICE_CONNECT_SETTING_EXPORTS,
    SETTING_EXPORTS,
    check_env_name,
    environment_name_parameter,
    iam_allow,
    iam_statement,
    import_export,
    inline_policy,
    log_stream_arns,
    same_account_condition,
    task_execution_role,
    trust_policy,
)
from meshpipe.synth.pipeline_source import (
    REPOSITORY_MAX,
    REPOSITORY_PATTERN,
    ConnectionSource,
    PipelineSource,
    connection_arn_pattern,
)
from meshpipe.validation.rules import SERVICE_NAME_RE

SERVICE_PIPELINE_TEMPLATE_FILE = "service-pipeline.template.json"
DEFAULT_SERVICE_PORT = 80
# Git branch names meshpipe accepts for the config repo: plain names, optionally with '/' sections.
BRANCH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")
BRANCH_MAX = 100

# Action namespaces: the Build stage reads the commit from the Source stage, Deploy the version from Build.
SOURCE_NAMESPACE = "SourceVariables"
BUILD_NAMESPACE = "BuildVariables"
# Stage and action names, in pipeline order.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Source", ("Config", "Bundle")),
    ("Build", ("Synth",)),
    ("Deploy", ("CreateVersionStack",)),
)
SERVICE_CONNECT_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Source", ("Config", "Bundle")),
    ("Build", ("Synth",)),
    ("Deploy", ("UpdateServiceStack",)),
)
# The gateway route's name is kept with its prefix, so `meshpipe route gateways` can list it.
INGRESS_ROUTE_NAME = "IngressRouteName"
INGRESS_ROUTE_NAME_PATTERN = r"^$|^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
# The Deploy action's mode. CREATE_UPDATE fails for good once a first creation has rolled back (CloudFormation
# only deletes a ROLLBACK_COMPLETE stack). REPLACE_ON_FAILURE creates a missing stack, updates a healthy one
# (a failed update rolls back as usual and the stack keeps running), and deletes and recreates a stack in a
# failed state (ROLLBACK_COMPLETE, ROLLBACK_FAILED, CREATE_FAILED, DELETE_FAILED, UPDATE_ROLLBACK_FAILED), so
# the next push recovers by itself. The pipeline role then also needs cloudformation:DeleteStack.
DEPLOY_ACTION_MODE = "REPLACE_ON_FAILURE"
ARTIFACT_DAYS = 30
BUILD_LOG_DAYS = 30
BUILD_TIMEOUT_MINUTES = 15

# The service's own task roles (this stack's), as the variables the platform settings read them from.
TASK_ROLE_VARS: dict[str, str] = {"TaskExecutionRole": "TASK_EXEC_ROLE_ARN", "TaskRole": "TASK_ROLE_ARN"}

# IAM wildcard for exactly one version id: `?` matches one character, so `<env>-<svc>-????????` is the
# version stacks of this service and not those of a service whose name merely starts the same way.
VERSION_WILDCARD = "?" * VERSION_LEN


def pipeline_stack_name(env: str, service: str) -> str:
    return f"{env}-{service}-pipeline"


def check_branch(branch: str) -> None:
    if (not isinstance(branch, str) or len(branch) > BRANCH_MAX or not BRANCH_RE.match(branch)
            or ".." in branch or branch.endswith((".lock", "."))):
        raise UserError(f"{branch!r} is not a branch name meshpipe accepts",
                        hint="use letters, digits, '.', '_', '-' and '/' sections, e.g. main or release/1")


def service_stack_name(env: str, service: str) -> str:
    """The Service Connect flavour's one stack per service."""
    return f"{env}-{service}"


def _arn(service_and_rest: str) -> Json:
    """``arn:<partition>:<service_and_rest>`` in this stack's region and account where the text says so."""
    return sub("arn:${AWS::Partition}:" + service_and_rest)


def _with_imports(text: str, **imports: str) -> Json:
    """``Fn::Sub`` whose ``${Name}`` variables are environment exports (name -> export key)."""
    return sub(text, {name: import_export(key) for name, key in imports.items()})


def _parameters(env: str, branch: str, service_port: int) -> Json:
    return {
        "EnvironmentName": environment_name_parameter(env),
        "ServiceName": {
            "Type": "String",
            "AllowedPattern": SERVICE_NAME_RE.pattern,
            "MaxLength": 40,
            "Description": "Service name: names the config repo <name>-cfg, the virtual service "
                           "<name>.<environment>.local and the version stacks <environment>-<name>-<version>.",
        },
        "ServicePort": {
            "Type": "Number",
            "Default": service_port,
            "MinValue": 1,
            "MaxValue": 65535,
            "Description": "Port clients call the virtual service on (the virtual router's listener).",
        },
        "BranchName": {
            "Type": "String",
            "Default": branch,
            "AllowedPattern": BRANCH_RE.pattern,
            "MaxLength": BRANCH_MAX,
            "Description": "Config repo branch whose pushes start the pipeline.",
        },
    }


def _source_parameters(source: PipelineSource) -> Json:
    """A connection source's repository and connection; CodeCommit needs none (the stack makes the repo)."""
    if source is None:
        return {}
    return {
        "ConnectionArn": {
            "Type": "String",
            "Default": source.connection_arn,
            # The pipeline role is granted UseConnection under this ARN's service prefix, so another
            # connection must have the same prefix.
            "AllowedPattern": connection_arn_pattern(source.iam_prefix),
            "Description": f"CodeConnections connection to {source.provider} ({source.iam_prefix} ARN).",
        },
        "FullRepositoryId": {
            "Type": "String",
            "Default": source.repository,
            "AllowedPattern": REPOSITORY_PATTERN,
            "MaxLength": REPOSITORY_MAX,
            "Description": f"The {source.provider} repository holding manifest.yaml (owner/name).",
        },
    }


def _mesh_entry(policy: PlatformPolicy) -> Json:
    return {
        "VirtualRouter": resource("AWS::AppMesh::VirtualRouter", {
            "MeshName": import_export("MeshName"),
            "Spec": {"Listeners": [{"PortMapping": {"Port": ref("ServicePort"), "Protocol": "http"}}]},
            "VirtualRouterName": sub("vr-${ServiceName}"),
        }),
        "VirtualService": resource("AWS::AppMesh::VirtualService", {
            "MeshName": import_export("MeshName"),
            "Spec": {"Provider": {"VirtualRouter": {"VirtualRouterName": get_att("VirtualRouter", "VirtualRouterName")}}},
            "VirtualServiceName": _with_imports("${ServiceName}.${Namespace}", Namespace="NamespaceName"),
        }),
        "ServiceNameRecord": resource("AWS::ServiceDiscovery::Service", {
            "Description": "Makes the virtual service's name resolvable; Envoy routes the connections.",
            "DnsConfig": {"DnsRecords": [{"TTL": policy.dns_ttl, "Type": "A"}], "RoutingPolicy": "MULTIVALUE"},
            "Name": ref("ServiceName"),
            "NamespaceId": import_export("NamespaceId"),
        }),
        "ServiceNamePlaceholder": resource("AWS::ServiceDiscovery::Instance", {
            "InstanceAttributes": {"AWS_INSTANCE_IPV4": PLACEHOLDER_IPV4},
            "InstanceId": "placeholder",
            "ServiceId": ref("ServiceNameRecord"),
        }),
    }


def _source(source: PipelineSource = None) -> Json:
    repository: Json = {} if source is not None else {
        "ConfigRepository": resource("AWS::CodeCommit::Repository", {
            "RepositoryDescription": sub("manifest.yaml of ${ServiceName} in ${EnvironmentName}"),
            "RepositoryName": sub("${ServiceName}-cfg"),
        }),
    }
    return {
        **repository,
        "ArtifactBucket": resource("AWS::S3::Bucket", private_bucket_properties({
            "LifecycleConfiguration": {"Rules": [{
                "ExpirationInDays": ARTIFACT_DAYS,
                "Id": "expire-pipeline-artifacts",
                "Status": "Enabled",
            }]},
        }), DeletionPolicy="Retain", UpdateReplacePolicy="Retain",
            Metadata=checkov_skips(skip.BUCKET_ACCESS_LOGS, skip.ARTIFACT_BUCKET_VERSIONING)),
        "ArtifactBucketPolicy": tls_only_bucket_policy("ArtifactBucket"),
    }


def _trigger(source: PipelineSource = None) -> Json:
    """CodeCommit's push trigger: an EventBridge rule. A connection source's trigger is the pipeline's own
    (see :func:`_connection_trigger`)."""
    if source is not None:
        return {}
    pipeline_arn = _arn("codepipeline:${AWS::Region}:${AWS::AccountId}:${Pipeline}")
    return {
        "PipelineTriggerRole": resource("AWS::IAM::Role", {
            "AssumeRolePolicyDocument": trust_policy("events.amazonaws.com"),
            "Path": "/",
            "Policies": [inline_policy("start-pipeline", [
                iam_allow(["codepipeline:StartPipelineExecution"], pipeline_arn),
            ])],
        }),
        # A push creating the branch (the first one) or moving it starts the pipeline.
        "PipelineTriggerRule": resource("AWS::Events::Rule", {
            "Description": sub("Start ${Pipeline} on a push to ${BranchName} of ${ServiceName}-cfg"),
            "EventPattern": {
                "source": ["aws.codecommit"],
                "detail-type": ["CodeCommit Repository State Change"],
                "resources": [get_att("ConfigRepository", "Arn")],
                "detail": {
                    "event": ["referenceCreated", "referenceUpdated"],
                    "referenceType": ["branch"],
                    "referenceName": [ref("BranchName")],
                },
            },
            "State": "ENABLED",
            "Targets": [{"Arn": pipeline_arn, "Id": "service-pipeline", "RoleArn": get_att("PipelineTriggerRole", "Arn")}],
        }),
    }


def build_environment_variables(mesh: MeshFlavour = MeshFlavour.APPMESH) -> list[Json]:
    """The platform settings as the variables ``meshpipe synth`` reads (see meshpipe.platform.ENV_VARS).

    The Service Connect environment exports no Envoy image: its variable is optional and left unset.
    """
    by_var: dict[str, Any] = {
        "ENVIRONMENT_NAME": ref("EnvironmentName"),
        "AWS_ACCOUNT_ID": ref("AWS::AccountId"),
        "AWS_REGION": ref("AWS::Region"),
    }
    exports = SERVICE_CONNECT_SETTING_EXPORTS if mesh is MeshFlavour.SERVICE_CONNECT else SETTING_EXPORTS
    by_var.update({var: import_export(key) for key, var in exports.items()})
    by_var.update({var: get_att(role, "Arn") for role, var in TASK_ROLE_VARS.items()})
    names = [n for n in (*ENV_VARS, *SUBNET_VARS) if mesh is not MeshFlavour.SERVICE_CONNECT or n != "ENVOY_IMAGE_URI"]
    missing = [n for n in names if n not in by_var]
    assert not missing, f"environment exports do not cover {missing}"
    variables = [{"Name": n, "Type": "PLAINTEXT", "Value": by_var[n]} for n in names]
    variables.append({"Name": "SERVICE_NAME", "Type": "PLAINTEXT", "Value": ref("ServiceName")})
    # The environment's platform policy: CodeBuild reads the SSM parameter and meshpipe synth applies it.
    variables.append(pp.build_policy_variable())
    return variables


def _build(mesh: MeshFlavour = MeshFlavour.APPMESH) -> Json:
    return {
        "BuildLogGroup": resource("AWS::Logs::LogGroup", {
            "LogGroupName": sub("/aws/codebuild/${EnvironmentName}-${ServiceName}"),
            "RetentionInDays": BUILD_LOG_DAYS,
        }, DeletionPolicy="Delete", UpdateReplacePolicy="Delete", Metadata=checkov_skips(skip.LOG_GROUP_KMS)),
        # The build only reads its inputs and the environment's policy and writes its artifact and logs;
        # synth itself needs no AWS access.
        "BuildRole": resource("AWS::IAM::Role", {
            "AssumeRolePolicyDocument": trust_policy("codebuild.amazonaws.com"),
            "Path": "/",
            "Policies": [inline_policy("build", [
                iam_allow(["logs:CreateLogStream", "logs:PutLogEvents"], get_att("BuildLogGroup", "Arn")),
                iam_allow(["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"], sub("${ArtifactBucket.Arn}/*")),
                iam_allow(["s3:GetBucketAcl", "s3:GetBucketLocation"], get_att("ArtifactBucket", "Arn")),
                # CodeBuild fetches PARAMETER_STORE variables with GetParameters, as the build role.
                iam_allow(["ssm:GetParameters"], pp.policy_parameter_arn(), sid="PlatformPolicy"),
            ])],
        }),
        "BuildProject": resource("AWS::CodeBuild::Project", {
            "Artifacts": {"Type": "CODEPIPELINE"},
            "Description": sub("meshpipe synth for ${ServiceName} in ${EnvironmentName}"
                               + (" (Service Connect)" if mesh is MeshFlavour.SERVICE_CONNECT else "")),
            "Environment": {
                "ComputeType": "BUILD_GENERAL1_SMALL",
                "EnvironmentVariables": build_environment_variables(mesh),
                "Image": buildspec.BUILD_IMAGE,
                "Type": "LINUX_CONTAINER",
            },
            "LogsConfig": {"CloudWatchLogs": {"GroupName": ref("BuildLogGroup"), "Status": "ENABLED"}},
            "Name": sub("${EnvironmentName}-${ServiceName}"),
            "ServiceRole": get_att("BuildRole", "Arn"),
            "Source": {"BuildSpec": buildspec.render_buildspec(mesh=mesh), "Type": "CODEPIPELINE"},
            "TimeoutInMinutes": BUILD_TIMEOUT_MINUTES,
        }),
    }


def _task_roles(mesh: MeshFlavour, policy: PlatformPolicy) -> Json:
    """The service's own task role and task execution role: no service acts as another.

    The execution role writes only this service's log streams (``<prefix>-<svc>-<version>/...``, the
    prefixes of the platform policy). The task role is the app's identity: in the App Mesh flavour its
    Envoy may read its own virtual nodes' configuration and nothing else; in the Service Connect flavour
    it has no permission (ECS's proxy needs none), a platform adds what its apps call.
    """
    streams = log_stream_arns([f"{prefix}-${{ServiceName}}-{VERSION_WILDCARD}"
                               for prefix in (policy.app_log_prefix, policy.envoy_log_prefix)],
                              {"LogGroup": import_export("LogGroupName")})
    task_role: Json = {
        "AssumeRolePolicyDocument": trust_policy("ecs-tasks.amazonaws.com", same_account_condition()),
        "Description": sub("Task role of ${ServiceName} in ${EnvironmentName}"),
        "Path": "/",
    }
    if mesh is not MeshFlavour.SERVICE_CONNECT:
        nodes = _with_imports("arn:${AWS::Partition}:appmesh:${AWS::Region}:${AWS::AccountId}:mesh/${Mesh}/"
                              f"virtualNode/vn-${{ServiceName}}-{VERSION_WILDCARD}", Mesh="MeshName")
        task_role["Policies"] = [inline_policy("envoy-virtual-nodes", [
            iam_allow(["appmesh:StreamAggregatedResources"], nodes, sid="OwnVirtualNodes"),
        ])]
    return {
        "TaskExecutionRole": task_execution_role(streams, "Task execution role of one service"),
        "TaskRole": resource("AWS::IAM::Role", task_role),
    }


def _task_role_arns() -> list[Json]:
    return [get_att(role, "Arn") for role in TASK_ROLE_VARS]


def _pass_task_roles() -> list[Json]:
    """A deploy role hands this service's two task roles to ECS tasks, and to nothing else; a task
    definition's handler reads them first."""
    return [
        iam_allow(["iam:PassRole"], _task_role_arns(),
                  condition={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
                  sid="PassTaskRoles"),
        iam_allow(["iam:GetRole"], _task_role_arns(), sid="ReadTaskRoles"),
    ]


def _task_definition_statements(*, deregisters: bool) -> list[Json]:
    account = "${AWS::Region}:${AWS::AccountId}"
    unscoped = ["ecs:DescribeTaskDefinition", *(["ecs:DeregisterTaskDefinition"] if deregisters else [])]
    return [
        iam_allow(["ecs:ListTagsForResource", "ecs:RegisterTaskDefinition", "ecs:TagResource", "ecs:UntagResource"],
                  _arn(f"ecs:{account}:task-definition/*"), sid="RegisterTaskDefinitions"),
        # Neither action can be scoped to a resource.
        iam_allow(unscoped, "*", sid="TaskDefinitionsUnscoped"),
    ]


def _ecs_service_statements(service: str, sid: str) -> list[Json]:
    """The ECS service (``service``, a name pattern after the cluster) and its deployments, which
    CloudFormation follows on create and update and stops when an update is cancelled or rolled back."""
    prefix = "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}"
    service_arn = _with_imports(f"{prefix}:service/${{Cluster}}/{service}", Cluster="ClusterName")
    deployments = _with_imports(f"{prefix}:service-deployment/${{Cluster}}/{service}/*", Cluster="ClusterName")
    return [
        iam_allow(["ecs:CreateService", "ecs:DeleteService", "ecs:DescribeServices", "ecs:ListServiceDeployments",
                   "ecs:ListTagsForResource", "ecs:TagResource", "ecs:UntagResource", "ecs:UpdateService"],
                  service_arn, sid=sid),
        iam_allow(["ecs:DescribeServiceDeployments", "ecs:StopServiceDeployment"], [service_arn, deployments],
                  sid=f"{sid}Deployments"),
    ]


def _autoscaling_statements(*, passes_role: bool = False) -> list[Json]:
    """What a deploy role needs for the autoscaling a stack gives its ECS service (either flavour).

    ``passes_role``: the scalable target names Application Auto Scaling's service-linked role in
    ``RoleARN`` (the App Mesh version stack, as the original sample's does), which its handler passes.
    """
    account = "${AWS::Region}:${AWS::AccountId}"
    linked_role = _arn("iam::${AWS::AccountId}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/"
                       "AWSServiceRoleForApplicationAutoScaling_ECSService")
    passing = [iam_allow(["iam:PassRole"], linked_role,
                         condition={"StringEquals": {"iam:PassedToService": "application-autoscaling.amazonaws.com"}},
                         sid="PassAutoscalingServiceLinkedRole")] if passes_role else []
    return [*passing,
        iam_allow(["application-autoscaling:DeleteScalingPolicy",
                   "application-autoscaling:DeregisterScalableTarget",
                   "application-autoscaling:ListTagsForResource",
                   "application-autoscaling:PutScalingPolicy",
                   "application-autoscaling:RegisterScalableTarget",
                   "application-autoscaling:TagResource",
                   "application-autoscaling:UntagResource"],
                  _arn(f"application-autoscaling:{account}:scalable-target/*"), sid="Autoscaling"),
        # None of these can be scoped to a resource; the scaling policy's handler reads the metric it tracks.
        iam_allow(["application-autoscaling:DescribeScalableTargets",
                   "application-autoscaling:DescribeScalingPolicies",
                   "application-autoscaling:DescribeScheduledActions",
                   "cloudwatch:GetMetricData"], "*", sid="AutoscalingUnscoped"),
        # Target tracking keeps its alarms named after the scaled resource.
        iam_allow(["cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm"],
                  _with_imports("arn:${AWS::Partition}:cloudwatch:" + account
                                + ":alarm:TargetTracking-service/${Cluster}/${ServiceName}-*",
                                Cluster="ClusterName"),
                  sid="ScalingAlarms"),
        iam_allow(["iam:CreateServiceLinkedRole"], linked_role,
                  condition={"StringEquals": {"iam:AWSServiceName": "ecs.application-autoscaling.amazonaws.com"}},
                  sid="AutoscalingServiceLinkedRole"),
    ]


def _deploy_role() -> Json:
    """The role CloudFormation uses for version stacks: exactly the resources a version stack holds.

    A version stack has a virtual node, a task definition, an ECS service registered in Cloud Map, its
    autoscaling, and an inline policy on this service's execution role (see meshpipe.synth.appmesh).
    """
    node = f"vn-${{ServiceName}}-{VERSION_WILDCARD}"
    account = "${AWS::Region}:${AWS::AccountId}"
    discovery = f"arn:${{AWS::Partition}}:servicediscovery:{account}"
    return {
        "DeployRole": resource("AWS::IAM::Role", {
            "AssumeRolePolicyDocument": trust_policy("cloudformation.amazonaws.com"),
            "Path": "/",
            "Policies": [inline_policy("version-stacks", [
                iam_allow(["appmesh:CreateVirtualNode", "appmesh:DeleteVirtualNode", "appmesh:DescribeVirtualNode",
                           "appmesh:TagResource", "appmesh:UntagResource", "appmesh:UpdateVirtualNode"],
                          _with_imports(f"arn:${{AWS::Partition}}:appmesh:{account}:mesh/${{Mesh}}/virtualNode/{node}",
                                        Mesh="MeshName"),
                          sid="VirtualNodes"),
                # A virtual node names its backends; App Mesh checks them as virtual-service resources.
                iam_allow(["appmesh:CreateVirtualNode", "appmesh:UpdateVirtualNode"],
                          _with_imports(f"arn:${{AWS::Partition}}:appmesh:{account}:mesh/${{Mesh}}/virtualService/*",
                                        Mesh="MeshName"),
                          sid="VirtualNodeBackends"),
                *_task_definition_statements(deregisters=True),
                *_pass_task_roles(),
                # The version stack's own log policy, on this service's execution role and no other role.
                iam_allow(["iam:DeleteRolePolicy", "iam:GetRolePolicy", "iam:PutRolePolicy"],
                          get_att("TaskExecutionRole", "Arn"), sid="ExecutionRoleLogPolicy"),
                *_ecs_service_statements(f"${{ServiceName}}-{VERSION_WILDCARD}", "EcsServices"),
                # Creating a Cloud Map service is authorized on the namespace and on the new service; a
                # service's ids are random, so services are this account's and region's.
                iam_allow(["servicediscovery:CreateService", "servicediscovery:GetNamespace"],
                          [import_export("NamespaceArn"), sub(f"{discovery}:service/*")], sid="DiscoveryNamespace"),
                iam_allow(["servicediscovery:DeleteService", "servicediscovery:GetService",
                           "servicediscovery:GetServiceAttributes", "servicediscovery:UpdateService"],
                          sub(f"{discovery}:service/*"), sid="DiscoveryServices"),
                # Cloud Map's tagging and listing have no resource type to scope them to; GetOperation gained
                # one only recently (IAM's catalogues disagree), and "*" is right for either.
                iam_allow(["servicediscovery:GetOperation", "servicediscovery:ListServices",
                           "servicediscovery:ListTagsForResource", "servicediscovery:TagResource",
                           "servicediscovery:UntagResource"], "*",
                          sid="DiscoveryUnscoped"),
                *_autoscaling_statements(passes_role=True),
            ])],
        }),
    }


def _source_statement(source: PipelineSource) -> Json:
    if source is None:
        return iam_allow(["codecommit:CancelUploadArchive", "codecommit:GetBranch", "codecommit:GetCommit",
                          "codecommit:GetRepository", "codecommit:GetUploadArchiveStatus",
                          "codecommit:UploadArchive"],
                         get_att("ConfigRepository", "Arn"), sid="ConfigSource")
    # The source action fetches the repository through the connection; IAM matches the action's prefix
    # with the resource's, so the one matching the ARN is granted, on that connection only.
    return iam_allow([f"{source.iam_prefix}:UseConnection"], ref("ConnectionArn"), sid="ConfigSource")


def _pipeline_role(mesh: MeshFlavour = MeshFlavour.APPMESH, source: PipelineSource = None) -> Json:
    if mesh is MeshFlavour.SERVICE_CONNECT:  # exactly the one service stack
        deployed = _arn("cloudformation:${AWS::Region}:${AWS::AccountId}:stack/${EnvironmentName}-${ServiceName}/*")
        deployed_sid = "ServiceStack"
    else:
        deployed = _arn(f"cloudformation:${{AWS::Region}}:${{AWS::AccountId}}:stack/"
                        f"${{EnvironmentName}}-${{ServiceName}}-{VERSION_WILDCARD}/*")
        deployed_sid = "VersionStacks"
    own_stack = _arn("cloudformation:${AWS::Region}:${AWS::AccountId}:stack/${AWS::StackName}/*")
    build_bucket = _with_imports("arn:${AWS::Partition}:s3:::${Bucket}", Bucket="BuildBucketName")
    bundle = _with_imports("arn:${AWS::Partition}:s3:::${Bucket}/" + BUNDLE_KEY, Bucket="BuildBucketName")
    # DeleteStack: the Deploy action's REPLACE_ON_FAILURE mode deletes a stack left in a failed state.
    stack_actions = ["cloudformation:CreateStack", "cloudformation:DeleteStack",
                     "cloudformation:DescribeStackEvents", "cloudformation:DescribeStacks",
                     "cloudformation:UpdateStack"]
    return {
        "PipelineRole": resource("AWS::IAM::Role", {
            "AssumeRolePolicyDocument": trust_policy("codepipeline.amazonaws.com"),
            "Path": "/",
            "Policies": [inline_policy("pipeline", [
                _source_statement(source),
                iam_allow(["s3:GetObject", "s3:GetObjectVersion"], bundle, sid="BundleSource"),
                iam_allow(["s3:GetBucketLocation", "s3:GetBucketVersioning"], build_bucket, sid="BundleBucket"),
                iam_allow(["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:PutObjectAcl"],
                          sub("${ArtifactBucket.Arn}/*"), sid="Artifacts"),
                iam_allow(["s3:GetBucketAcl", "s3:GetBucketLocation", "s3:GetBucketVersioning"],
                          get_att("ArtifactBucket", "Arn"), sid="ArtifactBucket"),
                iam_allow(["codebuild:BatchGetBuilds", "codebuild:StartBuild"], get_att("BuildProject", "Arn"),
                          sid="Build"),
                iam_allow(stack_actions, deployed, sid=deployed_sid),
                # Validation is not tied to a stack.
                iam_allow(["cloudformation:ValidateTemplate"], "*", sid="ValidateTemplates"),
                iam_allow(["iam:PassRole"], get_att("DeployRole", "Arn"),
                          condition={"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}},
                          sid="PassDeployRole"),
                # `<env>-<svc>-pipeline` has as many characters after the service as a version id: whatever
                # this stack is called, the pipeline must never change it.
                iam_statement("Deny", stack_actions, own_stack, sid="NeverThisStack"),
            ])],
        }),
    }


def _action(name: str, category: str, provider: str, configuration: Json, *, inputs: tuple[str, ...] = (),
            outputs: tuple[str, ...] = (), namespace: str | None = None) -> Json:
    action: Json = {
        "Name": name,
        "ActionTypeId": {"Category": category, "Owner": "AWS", "Provider": provider, "Version": "1"},
        "Configuration": configuration,
        "RunOrder": 1,
    }
    if inputs:
        action["InputArtifacts"] = [{"Name": n} for n in inputs]
    if outputs:
        action["OutputArtifacts"] = [{"Name": n} for n in outputs]
    if namespace:
        action["Namespace"] = namespace
    return action


def _deploy_action(mesh: MeshFlavour, name: str) -> Json:
    configuration: Json = {
        "ActionMode": DEPLOY_ACTION_MODE,
        # The stack holds an inline IAM policy (unnamed resources only).
        "Capabilities": "CAPABILITY_IAM",
        "RoleArn": get_att("DeployRole", "Arn"),
    }
    if mesh is MeshFlavour.SERVICE_CONNECT:
        # Every commit updates the same stack; the gateway route goes with it, from this stack's parameters.
        configuration["ParameterOverrides"] = sub(json.dumps(
            {**{key: "${" + key + "}" for key in sc.INGRESS_PARAMETERS}, sc.INGRESS_OPEN: "true"},
            separators=(",", ":")))
        configuration["StackName"] = sub("${EnvironmentName}-${ServiceName}")
    else:
        # The prefix comes from this template, so a build can only ever name this service's stacks.
        configuration["StackName"] = sub("${EnvironmentName}-${ServiceName}-" + f"#{{{BUILD_NAMESPACE}.VERSION_ID}}")
    configuration["TemplatePath"] = f"{buildspec.BUILD_ARTIFACT}::{buildspec.TEMPLATE_FILE}"
    return _action(name, "Deploy", "CloudFormation", configuration, inputs=(buildspec.BUILD_ARTIFACT,))


def _config_action(name: str, source: PipelineSource) -> Json:
    """The Source stage's config-repo action; both providers output CommitId in its namespace."""
    if source is None:
        return _action(name, "Source", "CodeCommit", {
            "BranchName": ref("BranchName"),
            "OutputArtifactFormat": "CODE_ZIP",
            # The EventBridge rule starts runs; polling would start them twice.
            "PollForSourceChanges": False,
            "RepositoryName": get_att("ConfigRepository", "Name"),
        }, outputs=(buildspec.CONFIG_ARTIFACT,), namespace=SOURCE_NAMESPACE)
    return _action(name, "Source", "CodeStarSourceConnection", {
        "BranchName": ref("BranchName"),
        "ConnectionArn": ref("ConnectionArn"),
        # The pipeline's push trigger starts runs; the action's own change detection would start them twice.
        "DetectChanges": False,
        "FullRepositoryId": ref("FullRepositoryId"),
        # A zip of the commit, as from CodeCommit: the build reads manifest.yaml and needs no git clone (and
        # so the build role needs no use of the connection, as CODEBUILD_CLONE_REF would require).
        "OutputArtifactFormat": "CODE_ZIP",
    }, outputs=(buildspec.CONFIG_ARTIFACT,), namespace=SOURCE_NAMESPACE)


def _connection_trigger(action_name: str) -> list[Json]:
    """A V2 pipeline's trigger: a push to the branch starts a run of exactly the pushed commit."""
    return [{
        "GitConfiguration": {
            "Push": [{"Branches": {"Includes": [ref("BranchName")]}}],
            "SourceActionName": action_name,
        },
        "ProviderType": "CodeStarSourceConnection",
    }]


def _pipeline(mesh: MeshFlavour = MeshFlavour.APPMESH, source: PipelineSource = None) -> Json:
    commit_variable = [{"name": "CONFIG_COMMIT_ID", "type": "PLAINTEXT", "value": f"#{{{SOURCE_NAMESPACE}.CommitId}}"}]
    layout = SERVICE_CONNECT_STAGES if mesh is MeshFlavour.SERVICE_CONNECT else STAGES
    (source_stage, (config, bundle)), (build, (synth,)), (deploy, (create,)) = layout
    stages = [
        {"Name": source_stage, "Actions": [
            _config_action(config, source),
            _action(bundle, "Source", "S3", {
                "PollForSourceChanges": False,
                "S3Bucket": import_export("BuildBucketName"),
                "S3ObjectKey": BUNDLE_KEY,
            }, outputs=(buildspec.BUNDLE_ARTIFACT,)),
        ]},
        {"Name": build, "Actions": [
            _action(synth, "Build", "CodeBuild", {
                "EnvironmentVariables": json.dumps(commit_variable, separators=(",", ":")),
                "PrimarySource": buildspec.BUNDLE_ARTIFACT,
                "ProjectName": ref("BuildProject"),
            }, inputs=(buildspec.BUNDLE_ARTIFACT, buildspec.CONFIG_ARTIFACT), outputs=(buildspec.BUILD_ARTIFACT,),
                namespace=BUILD_NAMESPACE),
        ]},
        {"Name": deploy, "Actions": [_deploy_action(mesh, create)]},
    ]
    properties: Json = {
        "ArtifactStore": {"Location": ref("ArtifactBucket"), "Type": "S3"},
        # Every commit is a version: queue runs rather than let a newer one supersede an older one.
        "ExecutionMode": "QUEUED",
        "Name": sub("${EnvironmentName}-${ServiceName}"),
        "PipelineType": "V2",
        "RestartExecutionOnUpdate": False,
        "RoleArn": get_att("PipelineRole", "Arn"),
        "Stages": stages,
    }
    if source is not None:
        properties["Triggers"] = _connection_trigger(config)
    return {"Pipeline": resource("AWS::CodePipeline::Pipeline", properties)}


def _source_outputs(source: PipelineSource) -> Json:
    """Where people push manifest.yaml: the CodeCommit clone URL, or the repository and its connection."""
    if source is None:
        return {"SourceRepoCloneUrlHttp": output(get_att("ConfigRepository", "CloneUrlHttp"),
                                                 "Clone URL of the config repo")}
    return {
        "SourceRepository": output(sub(f"{source.provider}:${{FullRepositoryId}}"),
                                   "Repository holding manifest.yaml (provider:owner/name)"),
        "SourceConnectionArn": output(ref("ConnectionArn"), "CodeConnections connection the pipeline reads it through"),
    }


def _service_connect_parameters(env: str, branch: str) -> Json:
    params = _parameters(env, branch, DEFAULT_SERVICE_PORT)
    del params["ServicePort"]  # the manifest's port is the client alias's port
    params["ServiceName"]["Description"] = ("Service name: names the config repo <name>-cfg, the name clients "
                                            "call <name>.<environment>.local and the stack <environment>-<name>.")
    # The route's parameters; whether the rule is open is no part of the route (a commit always opens it).
    ingress = {k: v for k, v in sc.ingress_parameters().items() if k in sc.INGRESS_PARAMETERS}
    params[INGRESS_ROUTE_NAME] = {
        "Type": "String",
        "Default": "",
        "AllowedPattern": INGRESS_ROUTE_NAME_PATTERN,
        "Description": "Name of the service's gateway route (empty when it has none); set by meshpipe route gateway.",
    }
    params.update(ingress)
    return params


def _service_connect_deploy_role() -> Json:
    """The role CloudFormation uses for the service stack: exactly what that stack holds.

    The service stack has a task definition (kept registered when replaced), an ECS service with Service
    Connect, its autoscaling and, with a gateway route, two target groups and a listener rule on the
    environment's listener (see meshpipe.synth.service_connect). ECS creates the Service Connect entry in
    Cloud Map itself. The role changes no role: the service's execution role already writes its logs.
    """
    account = "${AWS::Region}:${AWS::AccountId}"
    elb = f"arn:${{AWS::Partition}}:elasticloadbalancing:{account}"
    return {
        "DeployRole": resource("AWS::IAM::Role", {
            "AssumeRolePolicyDocument": trust_policy("cloudformation.amazonaws.com"),
            "Path": "/",
            "Policies": [inline_policy("service-stack", [
                # No deregistration: revisions are retained (meshpipe retires them).
                *_task_definition_statements(deregisters=False),
                *_pass_task_roles(),
                # A service the ingress reaches names the role ECS shifts its load-balancer traffic with.
                iam_allow(["iam:PassRole"], import_export("EcsInfrastructureRoleArn"),
                          condition={"StringEquals": {"iam:PassedToService": "ecs.amazonaws.com"}},
                          sid="PassInfrastructureRole"),
                *_ecs_service_statements("${ServiceName}", "EcsService"),
                # Target group names are generated by CloudFormation: scoped to this account and region.
                iam_allow(["elasticloadbalancing:AddTags", "elasticloadbalancing:CreateTargetGroup",
                           "elasticloadbalancing:DeleteTargetGroup", "elasticloadbalancing:ModifyTargetGroup",
                           "elasticloadbalancing:ModifyTargetGroupAttributes", "elasticloadbalancing:RemoveTags"],
                          sub(f"{elb}:targetgroup/*/*"), sid="IngressTargetGroups"),
                iam_allow(["elasticloadbalancing:CreateRule"], import_export("IngressListenerArn"),
                          sid="IngressListener"),
                iam_allow(["elasticloadbalancing:AddTags", "elasticloadbalancing:DeleteRule",
                           "elasticloadbalancing:ModifyRule", "elasticloadbalancing:RemoveTags",
                           "elasticloadbalancing:SetRulePriorities"],
                          _with_imports(f"{elb}:listener-rule/${{LoadBalancer}}/*",
                                        LoadBalancer="IngressLoadBalancerFullName"),
                          sid="IngressRules"),
                # Describe calls cannot be scoped to a resource; a target group's handler checks its VPC.
                iam_allow(["ec2:DescribeVpcs", "elasticloadbalancing:DescribeListeners",
                           "elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTags",
                           "elasticloadbalancing:DescribeTargetGroupAttributes",
                           "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth"],
                          "*", sid="IngressUnscoped"),
                *_autoscaling_statements(),
                # A version with a rollout plan has alarms that roll its ECS deployment back (rollout_deploy).
                # The alarm's handler tags it (and reads and removes tags on update), even with no Tags.
                iam_allow(["cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource",
                           "cloudwatch:PutMetricAlarm", "cloudwatch:TagResource", "cloudwatch:UntagResource"],
                          # Each alarm by its whole name: a pattern would also reach the alarms of a
                          # service whose name extends this one's (api and api-v2).
                          [sub("arn:${AWS::Partition}:cloudwatch:" + account + ":alarm:"
                               + rollout_deploy.alarm_name("${EnvironmentName}", "${ServiceName}", kind))
                           for kind in ("errors", "latency")],
                          sid="RolloutAlarms"),
            ])],
        }),
    }


def render_service_connect_pipeline(env: str, policy: PlatformPolicy | None = None, *,
                                    branch: str = "main", source: PipelineSource = None) -> Json:
    """The Service Connect flavour's service-pipeline template. Pure."""
    check_env_name(env)
    check_branch(branch)
    resources: Json = {
        **_source(source),
        **_trigger(source),
        **_build(MeshFlavour.SERVICE_CONNECT),
        **_task_roles(MeshFlavour.SERVICE_CONNECT, policy or PlatformPolicy()),
        **_service_connect_deploy_role(),
        **_pipeline_role(MeshFlavour.SERVICE_CONNECT, source),
        **_pipeline(MeshFlavour.SERVICE_CONNECT, source),
    }
    return template(
        pb.bounded(resources, pb.boundary_arn()),
        description="meshpipe service pipeline (ECS Service Connect): one service's config repo, and the pipeline "
                    "that deploys each pushed commit as a new task-definition revision of its service stack.",
        parameters={**_service_connect_parameters(env, branch), **_source_parameters(source)},
        conditions={sc.HAS_INGRESS: sc.ingress_conditions()[sc.HAS_INGRESS]},
        outputs={
            **_source_outputs(source),
            "PipelineName": output(ref("Pipeline"), "Pipeline deploying the service's versions"),
            "ServiceStackName": output(sub("${EnvironmentName}-${ServiceName}"), "Stack the pipeline updates"),
            "VirtualServiceName": output(sub("${ServiceName}.${EnvironmentName}.local"),
                                         "Name clients call (the Service Connect client alias)"),
            "IngressRouteName": {**output(ref(INGRESS_ROUTE_NAME), "The service's gateway route"),
                                 "Condition": sc.HAS_INGRESS},
            "IngressPathPrefix": {**output(ref(sc.INGRESS_PATH_PREFIX), "Its path prefix on the ingress"),
                                  "Condition": sc.HAS_INGRESS},
            "ArtifactBucketName": output(ref("ArtifactBucket"), "Pipeline artifacts (retained on stack deletion)"),
        },
    )


def render_service_pipeline(env: str, policy: PlatformPolicy | None = None, *, branch: str = "main",
                            service_port: int = DEFAULT_SERVICE_PORT, mesh: MeshFlavour = MeshFlavour.APPMESH,
                            source: PipelineSource = None) -> Json:
    """The service-pipeline template, its ``EnvironmentName`` defaulting to ``env``. Pure.

    ``source`` is the config repo: None for a CodeCommit repo the stack creates, or a
    :class:`~meshpipe.synth.pipeline_source.ConnectionSource` (see :func:`~meshpipe.synth.pipeline_source.parse_source`).
    """
    if source is not None and not isinstance(source, ConnectionSource):
        raise TypeError(f"source must be a ConnectionSource or None, not {type(source).__name__}")
    if MeshFlavour.parse(mesh) is MeshFlavour.SERVICE_CONNECT:
        return render_service_connect_pipeline(env, policy, branch=branch, source=source)
    check_env_name(env)
    check_branch(branch)
    if not isinstance(service_port, int) or not 1 <= service_port <= 65535:
        raise UserError(f"{service_port!r} is not a port", hint="use 1-65535; clients call port 80 by default")
    policy = policy or PlatformPolicy()
    resources: Json = {
        **_mesh_entry(policy),
        **_source(source),
        **_trigger(source),
        **_build(),
        **_task_roles(MeshFlavour.APPMESH, policy),
        **_deploy_role(),
        **_pipeline_role(MeshFlavour.APPMESH, source),
        **_pipeline(MeshFlavour.APPMESH, source),
    }
    return template(
        pb.bounded(resources, pb.boundary_arn()),
        description="meshpipe service pipeline: virtual router and virtual service of one service, its config "
                    "repo, and the pipeline that deploys each pushed commit as a version stack.",
        parameters={**_parameters(env, branch, service_port), **_source_parameters(source)},
        outputs={
            **_source_outputs(source),
            "PipelineName": output(ref("Pipeline"), "Pipeline deploying the service's versions"),
            "VirtualServiceName": output(get_att("VirtualService", "VirtualServiceName"), "Name clients call"),
            "VirtualRouterName": output(get_att("VirtualRouter", "VirtualRouterName"), "Router holding the route"),
            "ArtifactBucketName": output(ref("ArtifactBucket"), "Pipeline artifacts (retained on stack deletion)"),
        },
    )
