"""The ECS Service Connect flavour: the same manifest, on App Mesh's live successor.

Service Connect shifts traffic *inside one ECS service*, from the running task-definition revision to a
new one, so this flavour has one stack per service (``<env>-<svc>``) that each commit updates:

* every commit gives a new task-definition revision, tagged with its version and commit (its log stream
  prefixes carry the version too, so a revision always differs from the one before);
* ECS moves traffic to it with the platform's strategy (canary or linear by default), keeps the old
  revision for the bake time, and can roll back to it;
* there is no Envoy container and no virtual node: ECS injects its own proxy, registers the service in
  the Cloud Map namespace and gives every client in the namespace the alias ``<svc>.<namespace>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshpipe.synth import ecs_parts as parts
from meshpipe.synth.cfn import Json, get_att, output, ref, resource, template

if TYPE_CHECKING:
    from meshpipe.model import ServiceVersion
    from meshpipe.platform import TrafficShift

# The app container's named port mapping: Service Connect refers to ports by name.
PORT_NAME = "http"
TAG_PREFIX = "meshpipe:"


def stack_name(version: ServiceVersion) -> str:
    """One stack per service, updated by each commit."""
    return f"{version.environment}-{version.service}"


def client_dns_name(version: ServiceVersion) -> str:
    """What clients call: the same name the App Mesh flavour gives the virtual service."""
    return version.virtual_service_name


def deployment_configuration(shift: TrafficShift, maximum_percent: int, minimum_healthy_percent: int) -> Json:
    """The ECS-native deployment strategy that moves traffic from the running revision to the new one."""
    if shift.strategy == "ROLLING":
        return {
            "MaximumPercent": maximum_percent,
            "MinimumHealthyPercent": minimum_healthy_percent,
            "Strategy": "ROLLING",
        }
    config: Json = {"BakeTimeInMinutes": shift.bake_minutes}
    if shift.strategy == "CANARY":
        config["CanaryConfiguration"] = {
            "CanaryBakeTimeInMinutes": shift.canary_bake_minutes,
            "CanaryPercent": shift.canary_percent,
        }
    elif shift.strategy == "LINEAR":
        config["LinearConfiguration"] = {
            "StepBakeTimeInMinutes": shift.linear_step_bake_minutes,
            "StepPercent": shift.linear_step_percent,
        }
    config["Strategy"] = shift.strategy
    return config


def version_tags(version: ServiceVersion) -> list[Json]:
    """Tags naming the version a task-definition revision (and, propagated, each task) belongs to."""
    return [
        {"Key": f"{TAG_PREFIX}service", "Value": version.service},
        {"Key": f"{TAG_PREFIX}version", "Value": version.version},
        {"Key": f"{TAG_PREFIX}commit", "Value": version.commit},
    ]


def task_definition(version: ServiceVersion) -> Json:
    app = parts.app_container(version, port_mapping_extra={"Name": PORT_NAME, "AppProtocol": "http"})
    return parts.task_definition(version, [app], tags=version_tags(version))


def service_connect_configuration(version: ServiceVersion) -> Json:
    """Publish the app port as ``<svc>.<namespace>`` and log the proxy's access log to the environment."""
    platform = version.platform
    return {
        "AccessLogConfiguration": {
            "Format": platform.policy.traffic_shift.access_log_format,
            # Query strings may carry tokens; they stay out of the logs.
            "IncludeQueryParameters": "DISABLED",
        },
        "Enabled": True,
        "LogConfiguration": parts.awslogs(platform, version.sidecar.log_stream_prefix),
        "Namespace": platform.namespace_arn,
        "Services": [{
            "ClientAliases": [{"DnsName": client_dns_name(version), "Port": version.app.port}],
            "DiscoveryName": version.service,
            "PortName": PORT_NAME,
        }],
    }


def ecs_service(version: ServiceVersion) -> Json:
    platform = version.platform
    policy = platform.policy
    return resource("AWS::ECS::Service", {
        "Cluster": platform.cluster_name,
        "DeploymentConfiguration": deployment_configuration(policy.traffic_shift,
                                                            policy.deployment_maximum_percent,
                                                            policy.deployment_minimum_healthy_percent),
        "DeploymentController": {"Type": "ECS"},
        "EnableECSManagedTags": False,
        "LaunchType": policy.launch_type,
        "NetworkConfiguration": parts.network_configuration(platform),
        "PropagateTags": "TASK_DEFINITION",
        "ServiceConnectConfiguration": service_connect_configuration(version),
        "ServiceName": version.service,
        "TaskDefinition": ref(parts.TASK_DEFINITION),
    }, DependsOn=[parts.EXECUTION_ROLE_POLICY])  # tasks need the logs permission from their first second


def outputs(version: ServiceVersion) -> Json:
    return {
        "ServiceName": output(get_att(parts.SERVICE, "Name"), "ECS service; each commit updates it"),
        "ServiceArn": output(ref(parts.SERVICE)),
        "TaskDefinitionArn": output(ref(parts.TASK_DEFINITION), "Task-definition revision of this version"),
        "DnsName": output(client_dns_name(version), "Service Connect client alias"),
        "DeploymentStrategy": output(version.platform.policy.traffic_shift.strategy),
        **parts.version_outputs(version),
    }


def synth_service_connect(version: ServiceVersion) -> Json:
    """The service stack's template at this version (Service Connect flavour). Pure."""
    name = stack_name(version)
    resources = {
        parts.EXECUTION_ROLE_POLICY: parts.execution_role_logs_policy(version, f"{name}-logs"),
        parts.TASK_DEFINITION: task_definition(version),
        parts.SERVICE: ecs_service(version),
        parts.SCALABLE_TARGET: parts.scalable_target(version),
        parts.SCALING_POLICY: parts.scaling_policy(version, f"{version.service}-cpu-tracking"),
    }
    description = (f"meshpipe: service {version.service} in environment {version.environment} on ECS Service "
                   f"Connect, at version {version.version} (commit {version.commit})")
    return template(resources, description=description, outputs=outputs(version))
