"""Pieces both version-stack flavours share: logs permission, app container, ECS networking, autoscaling.

Each function is pure: it reads a resolved :class:`~meshpipe.model.ServiceVersion` (and its platform) and
returns template data. Logical ids are named here once, so both flavours and their tests agree on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshpipe.synth.cfn import Json, get_att, join, output, ref, resource

if TYPE_CHECKING:
    from meshpipe.model import HealthCheck, ServiceVersion
    from meshpipe.platform import PlatformSettings

# Logical ids: readable and stable, so a later step (or a person) can find a resource by name.
VIRTUAL_NODE = "VirtualNode"
EXECUTION_ROLE_POLICY = "ExecutionRolePolicy"
TASK_DEFINITION = "TaskDefinition"
SERVICE = "Service"
CLOUD_MAP_SERVICE = "CloudMapService"
SCALABLE_TARGET = "ScalableTarget"
SCALING_POLICY = "ScalingPolicy"

# The service-linked role Application Auto Scaling uses for ECS services (it exists once per account).
AUTOSCALING_ROLE_PATH = (
    "role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService"
)


def role_name(role_arn: str) -> str:
    """A role's name from its ARN (``arn:aws:iam::1:role/path/name`` -> ``name``), as IAM policies want."""
    return role_arn.rsplit("/", 1)[1]


def execution_role_logs_policy(version: ServiceVersion, policy_name: str) -> Json:
    """Let the service's execution role write this stack's container logs to the environment's log group.

    The App Mesh flavour keeps this policy for parity with the original sample (the execution role, the
    service's own, already writes the service's log streams). ``policy_name`` must be unique per stack:
    every version stack of the service attaches an inline policy to the *same* role, and a shared name
    would let one stack's deletion remove another stack's permission.
    """
    platform = version.platform
    log_group_arn = join([
        "arn:", ref("AWS::Partition"),
        f":logs:{platform.aws_region}:{platform.aws_account_id}:log-group:{platform.log_group_name}:*",
    ])
    return resource("AWS::IAM::Policy", {
        "PolicyDocument": {
            "Statement": [{
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Effect": "Allow",
                "Resource": log_group_arn,
            }],
            "Version": "2012-10-17",
        },
        "PolicyName": policy_name,
        "Roles": [role_name(platform.task_exec_role_arn)],
    })


def awslogs(platform: PlatformSettings, stream_prefix: str) -> Json:
    """The awslogs driver writing to the environment's log group."""
    return {
        "LogDriver": "awslogs",
        "Options": {
            "awslogs-group": platform.log_group_name,
            "awslogs-stream-prefix": stream_prefix,
            "awslogs-region": platform.aws_region,
        },
    }


def health_check(check: HealthCheck) -> Json:
    return {
        "Command": list(check.command),
        "Interval": check.interval,
        "Retries": check.retries,
        "StartPeriod": check.start_period,
        "Timeout": check.timeout,
    }


def app_container(version: ServiceVersion, *, depends_on: list[Json] | None = None,
                  port_mapping_extra: Json | None = None) -> Json:
    """The app container: image, command and environment from the manifest, conventions from the policy.

    Optional properties are left out when the manifest leaves them out (no ``Command`` means the image's
    default; no ``Environment`` when there are no variables), so the original sample's manifests give the original sample's output.
    """
    app = version.app
    container: Json = {}
    if app.command is not None:
        container["Command"] = list(app.command)
    if depends_on:
        container["DependsOn"] = depends_on
    if app.environment:
        container["Environment"] = [{"Name": name, "Value": value} for name, value in app.environment]
    container["Essential"] = True
    container["HealthCheck"] = health_check(app.health_check)
    container["Image"] = app.image
    container["LogConfiguration"] = awslogs(version.platform, app.log_stream_prefix)
    container["Name"] = app.name
    container["PortMappings"] = [{"ContainerPort": app.port, "Protocol": "tcp", **(port_mapping_extra or {})}]
    container["StopTimeout"] = app.stop_timeout
    return container


def task_definition(version: ServiceVersion, containers: list[Json], *, proxy: Json | None = None,
                    tags: list[Json] | None = None) -> Json:
    """A Fargate task definition in awsvpc mode with the platform's execution and task roles."""
    platform = version.platform
    props: Json = {
        "ContainerDefinitions": containers,
        "Cpu": str(version.cpu),
        "ExecutionRoleArn": platform.task_exec_role_arn,
        "Family": version.family,
        "Memory": str(version.memory),
        "NetworkMode": "awsvpc",
    }
    if proxy is not None:
        props["ProxyConfiguration"] = proxy
    props["RequiresCompatibilities"] = [platform.policy.launch_type]
    if tags:
        props["Tags"] = tags
    props["TaskRoleArn"] = platform.task_role_arn
    return resource("AWS::ECS::TaskDefinition", props)


def network_configuration(platform: PlatformSettings) -> Json:
    """Private subnets and the container security group; tasks get no public address."""
    return {
        "AwsvpcConfiguration": {
            "AssignPublicIp": "DISABLED",
            "SecurityGroups": [platform.security_group_id],
            "Subnets": list(platform.subnets),
        },
    }


def scalable_target(version: ServiceVersion, *, names_role: bool = True) -> Json:
    """Task count between the policy's bounds.

    The resource id names the service through its ``Name`` attribute rather than a literal, so the target
    is created only after the service exists. ``names_role``: ``RoleARN`` names Application Auto Scaling's
    service-linked role, as the original sample's template does (its handler then passes that role);
    without it Application Auto Scaling uses that same role for an ECS service, and nothing is passed.
    """
    platform = version.platform
    scaling = platform.policy.autoscaling
    role = {"RoleARN": join(["arn:", ref("AWS::Partition"),
                             f":iam::{platform.aws_account_id}:{AUTOSCALING_ROLE_PATH}"])} if names_role else {}
    return resource("AWS::ApplicationAutoScaling::ScalableTarget", {
        "MaxCapacity": scaling.max_tasks,
        "MinCapacity": scaling.min_tasks,
        "ResourceId": join([f"service/{platform.cluster_name}/", get_att(SERVICE, "Name")]),
        **role,
        "ScalableDimension": "ecs:service:DesiredCount",
        "ServiceNamespace": "ecs",
    })


def scaling_policy(version: ServiceVersion, policy_name: str) -> Json:
    """Target tracking on the service's average CPU, at the policy's target."""
    return resource("AWS::ApplicationAutoScaling::ScalingPolicy", {
        "PolicyName": policy_name,
        "PolicyType": "TargetTrackingScaling",
        "ScalingTargetId": ref(SCALABLE_TARGET),
        "TargetTrackingScalingPolicyConfiguration": {
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
            "TargetValue": version.platform.policy.autoscaling.cpu_target_percent,
        },
    })


def version_outputs(version: ServiceVersion) -> dict[str, Any]:
    """Outputs every flavour has: which version and commit the stack holds."""
    return {
        "VersionId": output(version.version, "Version id: the first 8 characters of the commit"),
        "CommitId": output(version.commit, "Commit of the service's config repo this version deploys"),
    }
