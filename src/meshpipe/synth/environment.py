"""The environment template: the network, cluster, namespace, log group, mesh and ingress every service uses.

One stack per environment (``<env>-env``). Its exports (``<env>:<Name>``) are the platform settings the
service pipelines hand to ``meshpipe synth`` as environment variables, so this template, the pipeline
template and :mod:`meshpipe.platform` must agree on them: :data:`SETTING_EXPORTS` is that agreement.

The template is a pure function of its inputs; :class:`EnvironmentOptions` holds the choices a platform
team may make about the environment itself, with the values the original walkthrough used as defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from meshpipe.errors import UserError
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.platform import DEFAULT_ENVOY_IMAGE, ENV_NAME_RE, PlatformPolicy, check_env_name
from meshpipe.synth import ingress_tls
from meshpipe.synth import permissions_boundary as pb
from meshpipe.synth import policy_parameter as pp
from meshpipe.synth import suppressions as skip
from meshpipe.synth.cfn import Json, checkov_skips, get_att, output, ref, resource, select, sub, template
from meshpipe.synth.cloudwatch_dashboard import dashboard_resources
from meshpipe.synth.network_security import (
    INGRESS_SECURITY_GROUP,
    PLAIN_HTTP_REASON,
    PORT_80_OPEN,
    REDIRECT_ONLY_REASON,
    app_port_ranges,
    load_balancer_security_group,
    task_security_group,
)

# Address plan: a /16 with two public /24s (load balancer, NAT gateways) and two private /20s (tasks).
VPC_CIDR = "10.0.0.0/16"
PUBLIC_SUBNET_CIDRS = ("10.0.0.0/24", "10.0.1.0/24")
PRIVATE_SUBNET_CIDRS = ("10.0.128.0/20", "10.0.144.0/20")
# An address inside the VPC but outside every subnet. Virtual service names resolve to it (see the
# service pipeline): the app only needs *some* address to open a connection that its Envoy intercepts,
# and if interception ever failed, traffic to this address goes nowhere instead of leaving the VPC.
PLACEHOLDER_IPV4 = "10.0.255.254"

VIRTUAL_GATEWAY_NAME = "vg-ingress"
GATEWAY_LISTENER_PORT = 9080
INGRESS_PUBLIC_PORT = ingress_tls.HTTP_PORT

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)

# Exports that carry platform settings: export name suffix -> the environment variable CodeBuild sets.
# The variable names are the ones meshpipe.platform.settings_from_env reads.
SETTING_EXPORTS: dict[str, str] = {
    "ClusterName": "CLUSTER_NAME",
    "VpcId": "VPC_ID",
    "NamespaceId": "NAMESPACE_ID",
    "NamespaceArn": "NAMESPACE_ARN",
    "NamespaceName": "NAMESPACE_NAME",
    "LogGroupName": "LOG_GROUP_NAME",
    "PrivateSubnet1": "VPC_SUBNET_ONE",
    "PrivateSubnet2": "VPC_SUBNET_TWO",
    "ContainerSecurityGroup": "SECURITY_GROUP_ID",
    "EnvoyImage": "ENVOY_IMAGE_URI",
}
# The task role and task execution role are not environment settings: each service pipeline creates its
# own two (see meshpipe.synth.service_pipeline), so no service can act as another.
# Every export of the environment stack, in the order the template lists them.
EXPORTS: tuple[str, ...] = ("MeshName", *SETTING_EXPORTS, "VirtualGatewayName", "IngressEndpoint", pp.POLICY_EXPORT)

_ECS_TASKS = "ecs-tasks.amazonaws.com"


def environment_stack_name(env: str) -> str:
    return f"{env}-env"


def environment_template_file(env: str) -> str:
    return f"{env}-env.template.json"


def import_export(key: str) -> Json:
    """``Fn::ImportValue`` of this environment's export ``key``, the environment named by ``EnvironmentName``."""
    return {"Fn::ImportValue": sub("${EnvironmentName}:" + key)}


def environment_name_parameter(env: str) -> Json:
    """The ``EnvironmentName`` parameter every platform template takes, defaulting to ``env``."""
    return {
        "Type": "String",
        "Default": env,
        "AllowedPattern": ENV_NAME_RE.pattern,
        "Description": "Environment name: names the mesh, the cluster, the namespace <name>.local and the "
                       "exports <name>:*.",
    }


# IAM policy documents as data. Shared by every platform template so their statements read alike.

def iam_statement(effect: str, actions: list[str], resources: list[Any] | Any,
                  condition: Json | None = None, sid: str | None = None) -> Json:
    statement: Json = {}
    if sid:
        statement["Sid"] = sid
    statement["Effect"] = effect
    statement["Action"] = sorted(actions)
    statement["Resource"] = resources
    if condition:
        statement["Condition"] = condition
    return statement


def iam_allow(actions: list[str], resources: list[Any] | Any, condition: Json | None = None,
              sid: str | None = None) -> Json:
    return iam_statement("Allow", actions, resources, condition, sid)


def iam_policy(statements: list[Json]) -> Json:
    return {"Version": "2012-10-17", "Statement": statements}


def inline_policy(name: str, statements: list[Json]) -> Json:
    return {"PolicyName": name, "PolicyDocument": iam_policy(statements)}


def trust_policy(service: str, condition: Json | None = None) -> Json:
    """A role that only ``service`` (e.g. ``codebuild.amazonaws.com``) may assume."""
    statement: Json = {"Effect": "Allow", "Principal": {"Service": [service]}, "Action": ["sts:AssumeRole"]}
    if condition:
        statement["Condition"] = condition
    return iam_policy([statement])


def same_account_condition() -> Json:
    """Confused-deputy guard: only this account's tasks may assume the role."""
    return {
        "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
        "ArnLike": {"aws:SourceArn": sub("arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:*")},
    }


@dataclass(frozen=True)
class EnvironmentOptions:
    """What a platform team may choose about the environment stack itself."""

    envoy_image: str = DEFAULT_ENVOY_IMAGE
    log_retention_days: int = 7
    # One NAT gateway per AZ keeps the private subnets' egress up when an AZ fails; one is cheaper.
    nat_gateways: int = 2
    ingress_tasks: int = 1
    # The gateway Envoy fetches its whole configuration before it reports LIVE, so it gets longer to start
    # than the per-version sidecars.
    ingress_start_period: int = 60
    # An ACM certificate in the environment's region: the ingress then serves HTTPS (see ingress_tls).
    certificate_arn: str | None = None

    def check(self) -> None:
        problems = []
        if self.certificate_arn is not None:
            problem = ingress_tls.certificate_problem(self.certificate_arn)
            if problem:
                problems.append(f"certificate_arn: {problem}")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            problems.append(f"log retention {self.log_retention_days} days is not one CloudWatch Logs accepts "
                            f"({', '.join(str(d) for d in LOG_RETENTION_DAYS)})")
        if self.nat_gateways not in (1, 2):
            problems.append(f"nat_gateways must be 1 or 2, not {self.nat_gateways}")
        if not 1 <= self.ingress_tasks <= 100:
            problems.append(f"ingress_tasks must be 1-100, not {self.ingress_tasks}")
        if not 0 <= self.ingress_start_period <= 300:
            problems.append(f"ingress_start_period must be 0-300 seconds, not {self.ingress_start_period}")
        if not self.envoy_image or re.search(r"\s", self.envoy_image):
            problems.append(f"{self.envoy_image!r} is not an image reference")
        if problems:
            raise UserError("invalid environment options: " + "; ".join(problems))


def _network(options: EnvironmentOptions) -> Json:
    """VPC over two AZs: public subnets reach the internet gateway, private ones go out through NAT."""
    res: Json = {
        "Vpc": resource("AWS::EC2::VPC", {
            "CidrBlock": VPC_CIDR,
            # Both are needed for the Cloud Map private DNS namespace to resolve inside the VPC.
            "EnableDnsHostnames": True,
            "EnableDnsSupport": True,
            "Tags": [{"Key": "Name", "Value": ref("EnvironmentName")}],
        }),
        "InternetGateway": resource("AWS::EC2::InternetGateway", {
            "Tags": [{"Key": "Name", "Value": ref("EnvironmentName")}],
        }),
        "InternetGatewayAttachment": resource("AWS::EC2::VPCGatewayAttachment", {
            "InternetGatewayId": ref("InternetGateway"),
            "VpcId": ref("Vpc"),
        }),
        "PublicRouteTable": resource("AWS::EC2::RouteTable", {"VpcId": ref("Vpc")}),
        "PublicDefaultRoute": resource("AWS::EC2::Route", {
            "DestinationCidrBlock": "0.0.0.0/0",
            "GatewayId": ref("InternetGateway"),
            "RouteTableId": ref("PublicRouteTable"),
        }, DependsOn="InternetGatewayAttachment"),
    }
    for i, cidr in enumerate(PUBLIC_SUBNET_CIDRS, start=1):
        res[f"PublicSubnet{i}"] = resource("AWS::EC2::Subnet", {
            "AvailabilityZone": select(i - 1, {"Fn::GetAZs": ref("AWS::Region")}),
            "CidrBlock": cidr,
            "MapPublicIpOnLaunch": False,
            "Tags": [{"Key": "Name", "Value": sub(f"${{EnvironmentName}}-public-{i}")}],
            "VpcId": ref("Vpc"),
        })
        res[f"PublicSubnet{i}RouteTableAssociation"] = resource("AWS::EC2::SubnetRouteTableAssociation", {
            "RouteTableId": ref("PublicRouteTable"),
            "SubnetId": ref(f"PublicSubnet{i}"),
        })
    for n in range(1, options.nat_gateways + 1):
        res[f"NatGateway{n}Eip"] = resource("AWS::EC2::EIP", {"Domain": "vpc"},
                                            DependsOn="InternetGatewayAttachment")
        res[f"NatGateway{n}"] = resource("AWS::EC2::NatGateway", {
            "AllocationId": get_att(f"NatGateway{n}Eip", "AllocationId"),
            "SubnetId": ref(f"PublicSubnet{n}"),
        })
    for i, cidr in enumerate(PRIVATE_SUBNET_CIDRS, start=1):
        nat = min(i, options.nat_gateways)
        res[f"PrivateSubnet{i}"] = resource("AWS::EC2::Subnet", {
            "AvailabilityZone": select(i - 1, {"Fn::GetAZs": ref("AWS::Region")}),
            "CidrBlock": cidr,
            "MapPublicIpOnLaunch": False,
            "Tags": [{"Key": "Name", "Value": sub(f"${{EnvironmentName}}-private-{i}")}],
            "VpcId": ref("Vpc"),
        })
        res[f"PrivateRouteTable{i}"] = resource("AWS::EC2::RouteTable", {"VpcId": ref("Vpc")})
        res[f"PrivateDefaultRoute{i}"] = resource("AWS::EC2::Route", {
            "DestinationCidrBlock": "0.0.0.0/0",
            "NatGatewayId": ref(f"NatGateway{nat}"),
            "RouteTableId": ref(f"PrivateRouteTable{i}"),
        })
        res[f"PrivateSubnet{i}RouteTableAssociation"] = resource("AWS::EC2::SubnetRouteTableAssociation", {
            "RouteTableId": ref(f"PrivateRouteTable{i}"),
            "SubnetId": ref(f"PrivateSubnet{i}"),
        })
    return res


def _port_80_skips(options: EnvironmentOptions, opens_port_80: bool) -> list[tuple[str, str]]:
    if not opens_port_80:
        return []
    return [(PORT_80_OPEN, REDIRECT_ONLY_REASON if options.certificate_arn else PLAIN_HTTP_REASON)]


def _security_groups(policy: PlatformPolicy, options: EnvironmentOptions, mesh: MeshFlavour) -> Json:
    """The load balancer's and the tasks' groups (see meshpipe.synth.network_security).

    App Mesh: the network load balancer reaches only the gateway Envoy's listener. Its target group
    disables client IP preservation, so connections and health checks come from the load balancer's own
    addresses, which its security group covers; the tasks' group can then name the load balancer's group
    instead of the whole internet. Service Connect: the application load balancer reaches each routed
    service's container port, which may be any port an app may use.
    """
    app_ports = app_port_ranges(policy.reserved_ports)
    redirects = mesh is MeshFlavour.SERVICE_CONNECT
    openings = ingress_tls.public_ports(options.certificate_arn, redirects=redirects)
    skips = _port_80_skips(options, any(port == ingress_tls.HTTP_PORT for port, _ in openings))
    if mesh is MeshFlavour.SERVICE_CONNECT:
        targets, purpose = app_ports, "Ingress load balancer to the services"
    else:
        targets, purpose = [(GATEWAY_LISTENER_PORT, GATEWAY_LISTENER_PORT)], "Ingress load balancer to the gateway Envoy"
    return {
        INGRESS_SECURITY_GROUP: load_balancer_security_group(
            "Ingress load balancer: its public listeners from anywhere, out to the tasks only",
            openings, targets, purpose, skips),
        **task_security_group(targets, purpose, app_ports),
    }


def _log_group() -> Json:
    # The logs go with the environment; the retention period bounds how long they are kept anyway.
    return {
        "LogGroup": resource("AWS::Logs::LogGroup", {
            "LogGroupName": sub("${EnvironmentName}-cluster"),
            "RetentionInDays": ref("LogRetentionInDays"),
        }, DeletionPolicy="Delete", UpdateReplacePolicy="Delete", Metadata=checkov_skips(skip.LOG_GROUP_KMS)),
    }


def _log_retention_parameter(options: EnvironmentOptions) -> Json:
    return {
        "LogRetentionInDays": {
            "Type": "Number",
            "Default": options.log_retention_days,
            "AllowedValues": list(LOG_RETENTION_DAYS),
            "Description": "Days the environment's container logs are kept.",
        },
    }


def task_execution_role(log_streams: list[Any], description: str) -> Json:
    """A task execution role: pulls this account's private images, writes only the given log streams."""
    return resource("AWS::IAM::Role", {
        "AssumeRolePolicyDocument": trust_policy(_ECS_TASKS),
        "Description": description,
        "Path": "/",
        "Policies": [inline_policy("pull-images-write-logs", [
            # GetAuthorizationToken has no resource to scope it to.
            iam_allow(["ecr:GetAuthorizationToken"], "*", sid="RegistryLogin"),
            iam_allow(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                      sub("arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/*"),
                      sid="PullImages"),
            iam_allow(["logs:CreateLogStream", "logs:PutLogEvents"], log_streams, sid="WriteLogs"),
        ])],
    })


def log_stream_arns(prefixes: list[str], variables: Json | None = None) -> list[Json]:
    """ARNs of the awslogs streams ``<prefix>/<container>/<task id>`` in the log group ``${LogGroup}``
    (this template's log group, or whatever ``variables`` makes ``LogGroup``), one per stream prefix."""
    return [sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${LogGroup}"
                f":log-stream:{prefix}/*", variables) for prefix in prefixes]


def _roles(policy: PlatformPolicy) -> Json:
    gateway_resource = get_att("VirtualGateway", "Arn")
    return {
        # Pulls the ingress image and writes the ingress gateway's logs, nothing else.
        "TaskExecutionRole": task_execution_role(
            log_stream_arns([f"{policy.envoy_log_prefix}-ingress"]),
            "Task execution role of the ingress gateway"),
        # The ingress Envoy serves the virtual gateway only.
        "IngressTaskRole": resource("AWS::IAM::Role", {
            "AssumeRolePolicyDocument": trust_policy(_ECS_TASKS, same_account_condition()),
            "Path": "/",
            "Policies": [inline_policy("envoy-virtual-gateway", [
                iam_allow(["appmesh:StreamAggregatedResources"], gateway_resource),
            ])],
        }),
    }


def _mesh() -> Json:
    return {
        "Mesh": resource("AWS::AppMesh::Mesh", {
            "MeshName": ref("EnvironmentName"),
            # Only declared backends are reachable from a meshed task.
            "Spec": {"EgressFilter": {"Type": "DROP_ALL"}},
        }),
        "VirtualGateway": resource("AWS::AppMesh::VirtualGateway", {
            "MeshName": get_att("Mesh", "MeshName"),
            "Spec": {
                "Listeners": [{"PortMapping": {"Port": GATEWAY_LISTENER_PORT, "Protocol": "http"}}],
                "Logging": {"AccessLog": {"File": {"Path": "/dev/stdout"}}},
            },
            "VirtualGatewayName": VIRTUAL_GATEWAY_NAME,
        }),
    }


def _ingress(policy: PlatformPolicy, options: EnvironmentOptions) -> Json:
    """The gateway Envoy on Fargate in the private subnets, behind an internet-facing network load balancer."""
    hc = policy.health_check
    admin = policy.envoy_admin_port
    return {
        "IngressTaskDefinition": resource("AWS::ECS::TaskDefinition", {
            "ContainerDefinitions": [{
                "Environment": [{"Name": "APPMESH_RESOURCE_ARN", "Value": get_att("VirtualGateway", "Arn")}],
                "Essential": True,
                "HealthCheck": {
                    "Command": ["CMD-SHELL", f"curl -s http://localhost:{admin}/server_info | grep state | grep -q LIVE"],
                    "Interval": hc.interval,
                    "Retries": hc.retries,
                    "StartPeriod": options.ingress_start_period,
                    "Timeout": hc.timeout,
                },
                "Image": ref("EnvoyImage"),
                "LogConfiguration": {
                    "LogDriver": "awslogs",
                    "Options": {
                        "awslogs-group": ref("LogGroup"),
                        "awslogs-region": ref("AWS::Region"),
                        "awslogs-stream-prefix": f"{policy.envoy_log_prefix}-ingress",
                    },
                },
                "Name": "envoy",
                "PortMappings": [{"ContainerPort": GATEWAY_LISTENER_PORT, "Protocol": "tcp"}],
                "StopTimeout": policy.stop_timeout,
                # Envoy holds one descriptor per client and upstream connection.
                "Ulimits": [{"HardLimit": 15000, "Name": "nofile", "SoftLimit": 15000}],
            }],
            "Cpu": "256",
            "ExecutionRoleArn": get_att("TaskExecutionRole", "Arn"),
            "Family": sub("${EnvironmentName}-ingress"),
            "Memory": "512",
            "NetworkMode": "awsvpc",
            "RequiresCompatibilities": ["FARGATE"],
            "TaskRoleArn": get_att("IngressTaskRole", "Arn"),
        }),
        "IngressService": resource("AWS::ECS::Service", {
            "Cluster": ref("Cluster"),
            # Never drop below the desired count while a new gateway task starts.
            "DeploymentConfiguration": {"MaximumPercent": 200, "MinimumHealthyPercent": 100},
            "DesiredCount": options.ingress_tasks,
            "HealthCheckGracePeriodSeconds": options.ingress_start_period,
            "LaunchType": "FARGATE",
            "LoadBalancers": [{
                "ContainerName": "envoy",
                "ContainerPort": GATEWAY_LISTENER_PORT,
                "TargetGroupArn": ref("IngressTargetGroup"),
            }],
            "NetworkConfiguration": {"AwsvpcConfiguration": {
                "AssignPublicIp": "DISABLED",
                "SecurityGroups": [get_att("ContainerSecurityGroup", "GroupId")],
                "Subnets": [ref("PrivateSubnet1"), ref("PrivateSubnet2")],
            }},
            "ServiceName": "ingress",
            "TaskDefinition": ref("IngressTaskDefinition"),
        }, DependsOn="IngressListener"),
        "IngressLoadBalancer": resource("AWS::ElasticLoadBalancingV2::LoadBalancer", {
            # With one gateway task in one AZ, the other AZ's load balancer node must still reach it.
            "LoadBalancerAttributes": [{"Key": "load_balancing.cross_zone.enabled", "Value": "true"}],
            "Scheme": "internet-facing",
            # A network load balancer takes security groups only when it is created with them.
            "SecurityGroups": [get_att(INGRESS_SECURITY_GROUP, "GroupId")],
            "Subnets": [ref("PublicSubnet1"), ref("PublicSubnet2")],
            "Type": "network",
        }, DependsOn="InternetGatewayAttachment", Metadata=checkov_skips(skip.LOAD_BALANCER_ACCESS_LOGS)),
        "IngressTargetGroup": resource("AWS::ElasticLoadBalancingV2::TargetGroup", {
            "HealthCheckIntervalSeconds": 10,
            "HealthCheckProtocol": "TCP",
            "HealthyThresholdCount": 2,
            "Port": GATEWAY_LISTENER_PORT,
            "Protocol": "TCP",
            "TargetGroupAttributes": [
                {"Key": "deregistration_delay.timeout_seconds", "Value": "5"},
                # Already the default for IP targets over TCP, and relied on: the gateway tasks' security group
                # admits the load balancer's group, which matches only connections from its own addresses.
                {"Key": "preserve_client_ip.enabled", "Value": "false"},
            ],
            "TargetType": "ip",
            "UnhealthyThresholdCount": 2,
            "VpcId": ref("Vpc"),
        }),
        **ingress_tls.network_listener(options.certificate_arn, "IngressTargetGroup"),
    }


def _outputs(options: EnvironmentOptions) -> Json:
    values: dict[str, tuple[Any, str]] = {
        "MeshName": (get_att("Mesh", "MeshName"), "App Mesh mesh of the environment"),
        "ClusterName": (ref("Cluster"), "ECS cluster"),
        "VpcId": (ref("Vpc"), "VPC"),
        "NamespaceId": (get_att("Namespace", "Id"), "Cloud Map namespace id"),
        "NamespaceArn": (get_att("Namespace", "Arn"), "Cloud Map namespace ARN"),
        "NamespaceName": (sub("${EnvironmentName}.local"), "Cloud Map namespace (private DNS) name"),
        "LogGroupName": (ref("LogGroup"), "Log group of every container"),
        "PrivateSubnet1": (ref("PrivateSubnet1"), "Private subnet in the first AZ"),
        "PrivateSubnet2": (ref("PrivateSubnet2"), "Private subnet in the second AZ"),
        "ContainerSecurityGroup": (get_att("ContainerSecurityGroup", "GroupId"), "Security group of every task"),
        "EnvoyImage": (ref("EnvoyImage"), "Envoy image of sidecars and the ingress"),
        "VirtualGatewayName": (get_att("VirtualGateway", "VirtualGatewayName"), "Ingress virtual gateway"),
        "IngressEndpoint": (ingress_tls.ingress_endpoint(options.certificate_arn), "Public URL of the ingress"),
        pp.POLICY_EXPORT: (ref(pp.POLICY_RESOURCE), "SSM parameter holding the platform policy"),
    }
    assert tuple(values) == EXPORTS
    return {**{key: output(value, description, sub("${EnvironmentName}:" + key))
               for key, (value, description) in values.items()},
            **ingress_tls.certificate_output(options.certificate_arn)}


# The environment's network and load-balancer resources carry this tag (value: the environment's name), so
# the deployer policy can allow deleting and changing them, and their security groups, on it alone.
OWNER_TAG = "meshpipe:environment"
OWNER_TAGGED_TYPES = frozenset({
    "AWS::EC2::VPC", "AWS::EC2::InternetGateway", "AWS::EC2::RouteTable", "AWS::EC2::Subnet", "AWS::EC2::EIP",
    "AWS::EC2::NatGateway", "AWS::EC2::SecurityGroup", "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::ElasticLoadBalancingV2::Listener", "AWS::ElasticLoadBalancingV2::TargetGroup",
})


def _owned(resources: Json) -> Json:
    """``resources`` with the owner tag on every network and load-balancer resource that takes tags."""
    tag = {"Key": OWNER_TAG, "Value": ref("EnvironmentName")}
    for res in resources.values():
        if res["Type"] in OWNER_TAGGED_TYPES:
            props = res.setdefault("Properties", {})
            props["Tags"] = [*props.get("Tags", []), tag]
    return resources


def render_environment(env: str, policy: PlatformPolicy | None = None,
                       options: EnvironmentOptions | None = None) -> Json:
    """The environment stack's template for ``env``. Pure."""
    check_env_name(env)
    policy = policy or PlatformPolicy()
    options = options or EnvironmentOptions()
    options.check()
    resources: Json = {
        **_network(options),
        "Cluster": resource("AWS::ECS::Cluster", {"ClusterName": ref("EnvironmentName")},
                            Metadata=checkov_skips(skip.CONTAINER_INSIGHTS)),
        **_security_groups(policy, options, MeshFlavour.APPMESH),
        **_roles(policy),
        "Namespace": resource("AWS::ServiceDiscovery::PrivateDnsNamespace", {
            "Name": sub("${EnvironmentName}.local"),
            "Vpc": ref("Vpc"),
        }),
        **_log_group(),
        **_mesh(),
        **_ingress(policy, options),
        **pp.policy_resources(),
    }
    parameters: Json = {
        "EnvironmentName": environment_name_parameter(env),
        pp.POLICY_PARAMETER: pp.policy_template_parameter(policy),
        "EnvoyImage": {
            "Type": "String",
            "Default": options.envoy_image,
            "Description": "Envoy image for the ingress gateway and every service version's sidecar.",
        },
        **_log_retention_parameter(options),
    }
    resources[pb.BOUNDARY] = pb.boundary_resource(MeshFlavour.APPMESH)
    return template(
        pb.bounded(_owned(resources), pb.environment_boundary()),
        description="meshpipe environment: VPC over two AZs, ECS cluster, Cloud Map namespace, log group, "
                    "App Mesh mesh and its ingress gateway behind a network load balancer.",
        parameters=parameters,
        outputs=_outputs(options),
    )


# ---- the Service Connect flavour -------------------------------------------------------------------------

# The output that records an environment's flavour; an environment stack without it is App Mesh's.
MESH_FLAVOUR_OUTPUT = "MeshFlavour"

# Exports of the Service Connect environment carrying platform settings: no mesh and no Envoy image (ECS
# brings its own proxy; ENVOY_IMAGE_URI is optional and unused by that flavour's version stacks).
SERVICE_CONNECT_SETTING_EXPORTS: dict[str, str] = {k: v for k, v in SETTING_EXPORTS.items() if k != "EnvoyImage"}
SERVICE_CONNECT_EXPORTS: tuple[str, ...] = (
    *SERVICE_CONNECT_SETTING_EXPORTS, "IngressListenerArn", "IngressLoadBalancerFullName",
    "EcsInfrastructureRoleArn", "IngressEndpoint", pp.POLICY_EXPORT,
)
INGRESS_NOT_ROUTED_STATUS = 404


def _service_connect_roles() -> Json:
    listener_rules = sub("arn:${AWS::Partition}:elasticloadbalancing:${AWS::Region}:${AWS::AccountId}:"
                         "listener-rule/${IngressLoadBalancer.LoadBalancerFullName}/*")
    target_groups = sub("arn:${AWS::Partition}:elasticloadbalancing:${AWS::Region}:${AWS::AccountId}:"
                        "targetgroup/*/*")
    return {
        # No task roles here: the environment runs no task of its own, and each service pipeline creates
        # its service's two roles.
        # What ECS does with the load balancer during a canary, linear or blue/green deployment of a service
        # the ingress reaches: register tasks in the alternate target group, move the production rule's
        # weights. Scoped to this environment's load balancer.
        "EcsInfrastructureRole": resource("AWS::IAM::Role", {
            "AssumeRolePolicyDocument": trust_policy("ecs.amazonaws.com"),
            "Path": "/",
            "Policies": [inline_policy("shift-ingress-traffic", [
                # Describe calls cannot be scoped to a resource.
                iam_allow(["elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeRules",
                           "elasticloadbalancing:DescribeTargetGroups",
                           "elasticloadbalancing:DescribeTargetHealth"], "*"),
                iam_allow(["elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:RegisterTargets"],
                          target_groups),
                iam_allow(["elasticloadbalancing:ModifyListener"], ref("IngressListener")),
                iam_allow(["elasticloadbalancing:ModifyRule"], listener_rules),
            ])],
        }),
    }


def _service_connect_ingress(options: EnvironmentOptions) -> Json:
    """An internet-facing application load balancer; each gateway route is a listener rule a service stack
    adds (see meshpipe.synth.service_connect) to ``IngressListener``, so an unrouted path gets 404. With a
    certificate that listener is HTTPS and port 80 redirects to it (see meshpipe.synth.ingress_tls)."""
    not_routed = [{"FixedResponseConfig": {
        "ContentType": "text/plain",
        "MessageBody": "no gateway route matches this path\n",
        "StatusCode": str(INGRESS_NOT_ROUTED_STATUS),
    }, "Type": "fixed-response"}]
    return {
        "IngressLoadBalancer": resource("AWS::ElasticLoadBalancingV2::LoadBalancer", {
            # Requests with header names that are not valid HTTP never reach a service.
            "LoadBalancerAttributes": [{"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true"}],
            "Scheme": "internet-facing",
            "SecurityGroups": [get_att(INGRESS_SECURITY_GROUP, "GroupId")],
            "Subnets": [ref("PublicSubnet1"), ref("PublicSubnet2")],
            "Type": "application",
        }, DependsOn="InternetGatewayAttachment", Metadata=checkov_skips(skip.LOAD_BALANCER_ACCESS_LOGS)),
        **ingress_tls.application_listeners(options.certificate_arn, not_routed),
    }


def _service_connect_outputs(options: EnvironmentOptions) -> Json:
    values: dict[str, tuple[Any, str]] = {
        "ClusterName": (ref("Cluster"), "ECS cluster (Service Connect defaults to the namespace)"),
        "VpcId": (ref("Vpc"), "VPC"),
        "NamespaceId": (get_att("Namespace", "Id"), "Cloud Map namespace id"),
        "NamespaceArn": (get_att("Namespace", "Arn"), "Cloud Map namespace ARN"),
        "NamespaceName": (sub("${EnvironmentName}.local"), "Cloud Map namespace (HTTP) name"),
        "LogGroupName": (ref("LogGroup"), "Log group of every container"),
        "PrivateSubnet1": (ref("PrivateSubnet1"), "Private subnet in the first AZ"),
        "PrivateSubnet2": (ref("PrivateSubnet2"), "Private subnet in the second AZ"),
        "ContainerSecurityGroup": (get_att("ContainerSecurityGroup", "GroupId"), "Security group of every task"),
        "IngressListenerArn": (ref("IngressListener"), "Listener the gateway routes' rules are added to"),
        "IngressLoadBalancerFullName": (get_att("IngressLoadBalancer", "LoadBalancerFullName"),
                                        "app/<name>/<id> of the ingress load balancer (scopes IAM to its rules)"),
        "EcsInfrastructureRoleArn": (get_att("EcsInfrastructureRole", "Arn"),
                                     "Role ECS uses to shift the load balancer's traffic during deployments"),
        "IngressEndpoint": (ingress_tls.ingress_endpoint(options.certificate_arn), "Public URL of the ingress"),
        pp.POLICY_EXPORT: (ref(pp.POLICY_RESOURCE), "SSM parameter holding the platform policy"),
    }
    assert tuple(values) == SERVICE_CONNECT_EXPORTS
    outputs = {key: output(value, description, sub("${EnvironmentName}:" + key))
               for key, (value, description) in values.items()}
    outputs.update(ingress_tls.certificate_output(options.certificate_arn))
    outputs[MESH_FLAVOUR_OUTPUT] = output(str(MeshFlavour.SERVICE_CONNECT), "Mesh flavour of the environment")
    return outputs


def render_service_connect_environment(env: str, policy: PlatformPolicy | None = None,
                                       options: EnvironmentOptions | None = None) -> Json:
    """The environment stack's template for ``env`` on ECS Service Connect: no App Mesh. Pure.

    The namespace is an HTTP namespace: Service Connect's proxies find services through Cloud Map's API,
    so no private hosted zone is needed. ``policy`` is what the environment's builds apply (see
    meshpipe.synth.policy_parameter); of it only the sidecar's reserved ports matter to this stack: the
    security groups open every other port (the ports an app may use). The traffic shift is each service
    stack's.
    """
    check_env_name(env)
    policy = policy or PlatformPolicy()
    options = options or EnvironmentOptions()
    options.check()
    resources: Json = {
        **_network(options),
        "Cluster": resource("AWS::ECS::Cluster", {
            "ClusterName": ref("EnvironmentName"),
            "ServiceConnectDefaults": {"Namespace": get_att("Namespace", "Arn")},
        }, Metadata=checkov_skips(skip.CONTAINER_INSIGHTS)),
        **_security_groups(policy, options, MeshFlavour.SERVICE_CONNECT),
        **_service_connect_roles(),
        "Namespace": resource("AWS::ServiceDiscovery::HttpNamespace", {
            "Description": sub("Service Connect namespace of ${EnvironmentName}"),
            "Name": sub("${EnvironmentName}.local"),
        }),
        **_log_group(),
        **_service_connect_ingress(options),
        **pp.policy_resources(),
        **dashboard_resources((policy or PlatformPolicy()).app_log_prefix),
    }
    parameters: Json = {
        "EnvironmentName": environment_name_parameter(env),
        pp.POLICY_PARAMETER: pp.policy_template_parameter(policy),
        **_log_retention_parameter(options),
    }
    resources[pb.BOUNDARY] = pb.boundary_resource(MeshFlavour.SERVICE_CONNECT)
    return template(
        pb.bounded(_owned(resources), pb.environment_boundary()),
        description="meshpipe environment (ECS Service Connect): VPC over two AZs, ECS cluster with a Service "
                    "Connect namespace, log group, and an application load balancer as the ingress.",
        parameters=parameters,
        outputs=_service_connect_outputs(options),
    )


def render_environment_for(env: str, mesh: MeshFlavour = MeshFlavour.APPMESH, policy: PlatformPolicy | None = None,
                           options: EnvironmentOptions | None = None) -> Json:
    """The environment template of ``mesh``'s flavour."""
    if MeshFlavour.parse(mesh) is MeshFlavour.SERVICE_CONNECT:
        return render_service_connect_environment(env, policy, options)
    return render_environment(env, policy, options)
