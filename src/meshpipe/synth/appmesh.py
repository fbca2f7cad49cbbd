"""The App Mesh flavour of a version stack: what the original sample's build script deploys for one commit.

One stack per version (``<env>-<svc>-<ver>``), immutable: a virtual node, a Fargate task definition with
the app and an Envoy sidecar, an ECS service registered in Cloud Map, and autoscaling. Nothing routes to
the new virtual node yet; routes are changed afterwards, as the original sample leaves them to a separate step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshpipe.synth import ecs_parts as parts
from meshpipe.synth.cfn import Json, get_att, output, ref, resource, template

if TYPE_CHECKING:
    from meshpipe.model import ServiceVersion

# Envoy writes the virtual node's access log to its own stdout, which awslogs ships with the envoy logs.
ACCESS_LOG_PATH = "/dev/stdout"


def virtual_node(version: ServiceVersion) -> Json:
    """The version's node in the mesh: HTTP on the app port, found by its own DNS name, declared backends."""
    spec: Json = {}
    if version.backends:
        spec["Backends"] = [{"VirtualService": {"VirtualServiceName": name}} for name in version.backends]
    spec["Listeners"] = [{"PortMapping": {"Port": version.app.port, "Protocol": "http"}}]
    spec["Logging"] = {"AccessLog": {"File": {"Path": ACCESS_LOG_PATH}}}
    spec["ServiceDiscovery"] = {"DNS": {"Hostname": version.dns_name}}
    return resource("AWS::AppMesh::VirtualNode", {
        "MeshName": version.environment,
        "Spec": spec,
        "VirtualNodeName": version.virtual_node_name,
    })


def envoy_container(version: ServiceVersion) -> Json:
    """The sidecar: the platform's Envoy image, told which virtual node it serves."""
    envoy = version.sidecar
    return {
        "Environment": [{"Name": "APPMESH_RESOURCE_ARN", "Value": ref(parts.VIRTUAL_NODE)}],
        "Essential": True,
        "HealthCheck": parts.health_check(envoy.health_check),
        "Image": envoy.image,
        "LogConfiguration": parts.awslogs(version.platform, envoy.log_stream_prefix),
        "Name": envoy.name,
        "StopTimeout": envoy.stop_timeout,
        "User": envoy.user,
    }


def proxy_configuration(version: ServiceVersion) -> Json:
    """Redirect the task's traffic through Envoy, except Envoy's own and the task metadata endpoints."""
    envoy = version.sidecar
    properties = [
        ("AppPorts", str(version.app.port)),
        ("ProxyEgressPort", str(envoy.egress_port)),
        ("ProxyIngressPort", str(envoy.ingress_port)),
        ("IgnoredUID", str(envoy.ignored_uid)),
        ("EgressIgnoredIPs", ",".join(envoy.egress_ignored_ips)),
    ]
    return {
        "ContainerName": envoy.name,
        "ProxyConfigurationProperties": [{"Name": name, "Value": value} for name, value in properties],
        "Type": "APPMESH",
    }


def task_definition(version: ServiceVersion) -> Json:
    # The app starts only once Envoy is healthy, so its first requests already go through the mesh.
    envoy_healthy = {"Condition": "HEALTHY", "ContainerName": version.sidecar.name}
    app = parts.app_container(version, depends_on=[envoy_healthy])
    return parts.task_definition(version, [app, envoy_container(version)], proxy=proxy_configuration(version))


def cloud_map_service(version: ServiceVersion) -> Json:
    """``<svc>-<ver>.<namespace>``: the DNS name the virtual node's service discovery resolves."""
    platform = version.platform
    return resource("AWS::ServiceDiscovery::Service", {
        "DnsConfig": {
            "DnsRecords": [{"TTL": platform.policy.dns_ttl, "Type": "A"}],
            "NamespaceId": platform.namespace_id,
            "RoutingPolicy": "MULTIVALUE",
        },
        "HealthCheckCustomConfig": {"FailureThreshold": 1},
        "Name": version.discovery_name,
        "NamespaceId": platform.namespace_id,
    })


def ecs_service(version: ServiceVersion) -> Json:
    platform = version.platform
    policy = platform.policy
    return resource("AWS::ECS::Service", {
        "Cluster": platform.cluster_name,
        "DeploymentConfiguration": {
            "MaximumPercent": policy.deployment_maximum_percent,
            "MinimumHealthyPercent": policy.deployment_minimum_healthy_percent,
        },
        "EnableECSManagedTags": False,
        "LaunchType": policy.launch_type,
        "NetworkConfiguration": parts.network_configuration(platform),
        "ServiceName": version.ecs_service_name,
        "ServiceRegistries": [{"RegistryArn": get_att(parts.CLOUD_MAP_SERVICE, "Arn")}],
        "TaskDefinition": ref(parts.TASK_DEFINITION),
    }, DependsOn=[parts.EXECUTION_ROLE_POLICY])  # tasks need the logs permission from their first second


def outputs(version: ServiceVersion) -> Json:
    return {
        "VirtualNodeName": output(get_att(parts.VIRTUAL_NODE, "VirtualNodeName"),
                                  "Virtual node of this version: the target a route gives weight to"),
        "VirtualNodeArn": output(ref(parts.VIRTUAL_NODE)),
        "ServiceName": output(get_att(parts.SERVICE, "Name"), "ECS service running this version"),
        "ServiceArn": output(ref(parts.SERVICE)),
        "TaskDefinitionArn": output(ref(parts.TASK_DEFINITION)),
        "DnsName": output(version.dns_name, "Cloud Map name of this version's tasks"),
        "VirtualServiceName": output(version.virtual_service_name,
                                     "Virtual service whose router routes to versions"),
        **parts.version_outputs(version),
    }


def synth_appmesh(version: ServiceVersion) -> Json:
    """The version stack's template (App Mesh flavour). Pure: same version, same template."""
    resources = {
        parts.VIRTUAL_NODE: virtual_node(version),
        parts.EXECUTION_ROLE_POLICY: parts.execution_role_logs_policy(version, f"{version.stack_name}-logs"),
        parts.TASK_DEFINITION: task_definition(version),
        parts.SERVICE: ecs_service(version),
        parts.CLOUD_MAP_SERVICE: cloud_map_service(version),
        parts.SCALABLE_TARGET: parts.scalable_target(version),
        parts.SCALING_POLICY: parts.scaling_policy(version, f"{version.ecs_service_name}-cpu-tracking"),
    }
    description = (f"meshpipe: version {version.version} of service {version.service} in environment "
                   f"{version.environment} on App Mesh (commit {version.commit})")
    return template(resources, description=description, outputs=outputs(version))
