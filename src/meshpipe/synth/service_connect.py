"""The ECS Service Connect flavour: the same manifest, on App Mesh's live successor.

Service Connect shifts traffic *inside one ECS service*, from the running task-definition revision to a
new one, so this flavour has one stack per service (``<env>-<svc>``) that each commit updates:

* every commit gives a new task-definition revision, tagged with its version and commit (its log stream
  prefixes carry the version too, so a revision always differs from the one before);
* ECS moves traffic to it with the platform's strategy (canary or linear by default), keeps the old
  revision for the bake time, and can roll back to it;
* there is no Envoy container and no virtual node: ECS injects its own proxy, registers the service in
  the Cloud Map namespace and gives every client in the namespace the alias ``<svc>.<namespace>``;
* the environment's load balancer reaches the service only when its pipeline gives the stack a path
  prefix (the stack parameters :data:`INGRESS_PARAMETERS`, a gateway route): then the stack adds a
  listener rule on the environment's listener that rewrites the prefix away, and two target groups ECS
  shifts production traffic between, in step with the Service Connect shift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshpipe.synth import ecs_parts as parts
from meshpipe.synth import rollout_deploy
from meshpipe.synth.cfn import Json, get_att, import_value, output, ref, resource, sub, template

if TYPE_CHECKING:
    from meshpipe.model import ServiceVersion
    from meshpipe.platform import TrafficShift

# The app container's named port mapping: Service Connect refers to ports by name.
PORT_NAME = "http"
TAG_PREFIX = "meshpipe:"

# Ingress: the gateway route of the service, as stack parameters the pipeline's Deploy stage passes on.
INGRESS_PATH_PREFIX = "IngressPathPrefix"
INGRESS_RULE_PRIORITY = "IngressRulePriority"
INGRESS_REWRITE_PREFIX = "IngressRewritePrefix"
# The listener rule's forward weights on (primary, alternate) target group. ECS rewrites them on the live
# rule during every canary, linear or blue/green deployment, so they are parameters: ``route gateway``
# sets them to what ECS last left on the rule before it changes anything else of the rule, and every later
# update passes the same values on. CloudFormation then never sees a change to them it would write back
# over ECS's (see ingress_rule).
INGRESS_PRIMARY_WEIGHT = "IngressPrimaryWeight"
INGRESS_ALTERNATE_WEIGHT = "IngressAlternateWeight"
INGRESS_WEIGHTS = (INGRESS_PRIMARY_WEIGHT, INGRESS_ALTERNATE_WEIGHT)
DEFAULT_WEIGHTS = {INGRESS_PRIMARY_WEIGHT: 100, INGRESS_ALTERNATE_WEIGHT: 0}
MAX_WEIGHT = 999  # a target group's weight in a forward action is 0-999
INGRESS_PARAMETERS = (INGRESS_PATH_PREFIX, INGRESS_RULE_PRIORITY, INGRESS_REWRITE_PREFIX, *INGRESS_WEIGHTS)
# Whether the listener rule matches its prefix. ``route gateway`` attaches a running service with "false":
# the rule exists (ECS's deployment needs it) but matches only requests with HOLD_HEADER, so the prefix keeps
# the listener's default answer instead of 503s from target groups whose tasks are not yet registered and
# healthy; once the deployment has finished it sets "true". Every commit passes "true".
INGRESS_OPEN = "IngressOpen"
HOLD_HEADER = "X-Meshpipe-Attaching"
HOLD_HEADER_VALUE = "preview"
# A path prefix the load balancer can match literally and the rewrite can strip: '/'-separated segments
# of unreserved URL characters, no trailing '/', no wildcards.
INGRESS_PREFIX_PATTERN = r"^$|^(/[A-Za-z0-9._~-]+)+$"
INGRESS_PREFIX_MAX = 100
MAX_RULE_PRIORITY = 50000
# Logical ids of the ingress resources and the conditions that create them.
HAS_INGRESS = "HasIngress"
INGRESS_HELD = "IngressHeld"
REWRITES_PREFIX = "RewritesPrefix"
INGRESS_TARGET_GROUP = "IngressTargetGroup"
INGRESS_ALTERNATE_TARGET_GROUP = "IngressAlternateTargetGroup"
INGRESS_RULE = "IngressRule"
# Environment exports the ingress resources use (see meshpipe.synth.environment).
LISTENER_EXPORT = "IngressListenerArn"
INFRASTRUCTURE_ROLE_EXPORT = "EcsInfrastructureRoleArn"
LOAD_BALANCER_EXPORT = "IngressLoadBalancerFullName"


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
        {"Key": f"{TAG_PREFIX}environment", "Value": version.environment},
        {"Key": f"{TAG_PREFIX}service", "Value": version.service},
        {"Key": f"{TAG_PREFIX}version", "Value": version.version},
        {"Key": f"{TAG_PREFIX}commit", "Value": version.commit},
    ]


def task_definition(version: ServiceVersion) -> Json:
    """The version's revision. CloudFormation leaves every revision registered (Retain), the one a commit
    replaces and the last one when the stack goes, so earlier versions stay listable and ECS can roll back
    to them; ``meshpipe version delete`` and the environment's teardown deregister them."""
    app = parts.app_container(version, port_mapping_extra={"Name": PORT_NAME, "AppProtocol": "http"})
    td = parts.task_definition(version, [app], tags=version_tags(version))
    td["DeletionPolicy"] = "Retain"
    td["UpdateReplacePolicy"] = "Retain"
    return td


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
            "ClientAliases": [{"DnsName": client_dns_name(version), "Port": version.app.port, **test_traffic(version)}],
            "DiscoveryName": rollout_deploy.discovery_name(version),
            "PortName": PORT_NAME,
        }],
    }


def test_traffic(version: ServiceVersion) -> Json:
    """A blue-green plan's preview: during the deployment, callers' requests with the preview header reach the
    new revision before any other traffic does (ECS's test traffic rules of a client alias)."""
    plan = version.rollout
    if plan is None or plan.strategy != "blue-green" or plan.preview is None:
        return {}
    return {"TestTrafficRules": {"Header": {"Name": plan.preview.name, "Value": {"Exact": plan.preview.value}}}}


def ingress_parameters() -> Json:
    """The service's gateway route: empty prefix (the default) means the load balancer does not reach it."""
    return {
        INGRESS_PATH_PREFIX: {
            "Type": "String",
            "Default": "",
            "AllowedPattern": INGRESS_PREFIX_PATTERN,
            "MaxLength": INGRESS_PREFIX_MAX,
            "Description": "Path prefix on the environment's load balancer that reaches this service, e.g. "
                           "/hello-service; empty: not reachable from outside.",
        },
        INGRESS_RULE_PRIORITY: {
            "Type": "Number",
            "Default": 1,
            "MinValue": 1,
            "MaxValue": MAX_RULE_PRIORITY,
            "Description": "Priority of the service's listener rule; unique on the environment's listener.",
        },
        INGRESS_REWRITE_PREFIX: {
            "Type": "String",
            "Default": "true",
            "AllowedValues": ["true", "false"],
            "Description": "Whether the matched prefix is rewritten to / before the request reaches the app.",
        },
        INGRESS_PRIMARY_WEIGHT: _weight_parameter(INGRESS_PRIMARY_WEIGHT, "primary"),
        INGRESS_ALTERNATE_WEIGHT: _weight_parameter(INGRESS_ALTERNATE_WEIGHT, "alternate"),
        INGRESS_OPEN: {
            "Type": "String",
            "Default": "true",
            "AllowedValues": ["true", "false"],
            "Description": f"false while the service is being attached: the rule then matches only requests with "
                           f"the header {HOLD_HEADER}: {HOLD_HEADER_VALUE}.",
        },
    }


def _weight_parameter(name: str, side: str) -> Json:
    return {
        "Type": "Number",
        "Default": DEFAULT_WEIGHTS[name],
        "MinValue": 0,
        "MaxValue": MAX_WEIGHT,
        "Description": f"Forward weight of the {side} target group on the service's listener rule: what ECS last set "
                       "there (meshpipe route gateway reads it from the live rule), so an update never resets ECS's "
                       "traffic shift.",
    }


def ingress_conditions() -> Json:
    has_ingress = {"Fn::Not": [{"Fn::Equals": [ref(INGRESS_PATH_PREFIX), ""]}]}
    return {
        HAS_INGRESS: has_ingress,
        REWRITES_PREFIX: {"Fn::And": [{"Condition": HAS_INGRESS},
                                      {"Fn::Equals": [ref(INGRESS_REWRITE_PREFIX), "true"]}]},
        INGRESS_HELD: {"Fn::Equals": [ref(INGRESS_OPEN), "false"]},
    }


def _target_group(version: ServiceVersion) -> Json:
    """Tasks of one side of a deployment, checked on the app's own health-check path."""
    platform = version.platform
    hc = platform.policy.health_check
    interval = max(hc.interval, 5)
    return resource("AWS::ElasticLoadBalancingV2::TargetGroup", {
        "HealthCheckIntervalSeconds": interval,
        "HealthCheckPath": version.app.health_check_path,
        "HealthCheckProtocol": "HTTP",
        "HealthCheckTimeoutSeconds": min(hc.timeout, interval - 1),
        "HealthyThresholdCount": 2,
        "Port": version.app.port,
        "Protocol": "HTTP",
        "TargetGroupAttributes": [{"Key": "deregistration_delay.timeout_seconds",
                                   "Value": str(platform.policy.stop_timeout)}],
        "TargetType": "ip",
        "UnhealthyThresholdCount": max(hc.retries, 2),
        "VpcId": platform.vpc_id,
    }, Condition=HAS_INGRESS)


def ingress_rule(version: ServiceVersion) -> Json:
    """The gateway route as a listener rule: the prefix (and everything under it) goes to the service, the
    prefix rewritten to ``/`` (``/hello-service/hello/Bob`` arrives as ``/hello/Bob``).

    The rule forwards to both target groups, and it is the production listener rule of the service's ECS
    deployments: ECS moves the weights between the two groups during each one, and leaves them where the
    deployment ended (after a completed one often 0 on the primary group, whose tasks are gone). A stack
    update that changes the rule sends CloudFormation's declared actions, weights included, so a fixed
    100/0 would send all traffic to a group without tasks. The weights are therefore the parameters
    ``IngressPrimaryWeight``/``IngressAlternateWeight``, which hold what ECS last set (see
    INGRESS_WEIGHTS). The rule has exactly one action, ``forward``: ECS's load-balancer deployments do not
    support production rules that mix forward with other actions; the listener's fixed-response default
    is a different rule, which ECS never touches since the production rule is named. While
    ``IngressOpen`` is false the rule also asks for a header no ordinary request carries (see INGRESS_OPEN).
    """
    path = {"Field": "path-pattern", "PathPatternConfig": {
        "Values": [ref(INGRESS_PATH_PREFIX), sub("${" + INGRESS_PATH_PREFIX + "}/*")]}}
    held = {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": HOLD_HEADER, "Values": [HOLD_HEADER_VALUE]}}
    rewrite = [{"Type": "url-rewrite", "UrlRewriteConfig": {"Rewrites": [{
        "Regex": sub("^${" + INGRESS_PATH_PREFIX + "}/?(.*)$"),
        "Replace": "/$1",
    }]}}]
    return resource("AWS::ElasticLoadBalancingV2::ListenerRule", {
        "Actions": [{"ForwardConfig": {"TargetGroups": [
            {"TargetGroupArn": ref(INGRESS_TARGET_GROUP), "Weight": ref(INGRESS_PRIMARY_WEIGHT)},
            {"TargetGroupArn": ref(INGRESS_ALTERNATE_TARGET_GROUP), "Weight": ref(INGRESS_ALTERNATE_WEIGHT)},
        ]}, "Type": "forward"}],
        "Conditions": {"Fn::If": [INGRESS_HELD, [path, held], [path]]},
        "ListenerArn": import_value(f"{version.environment}:{LISTENER_EXPORT}"),
        "Priority": ref(INGRESS_RULE_PRIORITY),
        "Transforms": {"Fn::If": [REWRITES_PREFIX, rewrite, ref("AWS::NoValue")]},
    }, Condition=HAS_INGRESS)


def ingress_resources(version: ServiceVersion) -> Json:
    return {
        INGRESS_TARGET_GROUP: _target_group(version),
        INGRESS_ALTERNATE_TARGET_GROUP: _target_group(version),
        INGRESS_RULE: ingress_rule(version),
    }


def load_balancers(version: ServiceVersion) -> Json:
    """The service's registration with the ingress, when it has one.

    With a traffic-shifting strategy ECS needs the alternate target group, the production rule and the
    environment's infrastructure role to move the load balancer's traffic in step with Service Connect's.
    """
    balancer: Json = {
        "ContainerName": version.app.name,
        "ContainerPort": version.app.port,
        "TargetGroupArn": ref(INGRESS_TARGET_GROUP),
    }
    if rollout_deploy.strategy_of(version) != "ROLLING":
        balancer["AdvancedConfiguration"] = {
            "AlternateTargetGroupArn": ref(INGRESS_ALTERNATE_TARGET_GROUP),
            "ProductionListenerRule": ref(INGRESS_RULE),
            "RoleArn": import_value(f"{version.environment}:{INFRASTRUCTURE_ROLE_EXPORT}"),
        }
    return {"Fn::If": [HAS_INGRESS, [balancer], ref("AWS::NoValue")]}


def ecs_service(version: ServiceVersion) -> Json:
    platform = version.platform
    policy = platform.policy
    grace = max(policy.health_check.start_period, 1)
    extra: Json = {}
    if rollout_deploy.strategy_of(version) == "ROLLING":
        # ECS registers tasks only in a target group a listener uses: without the alternate target group's
        # configuration nothing else makes the service wait for the listener rule.
        extra["Tags"] = {"Fn::If": [HAS_INGRESS, [{"Key": f"{TAG_PREFIX}ingress-rule", "Value": ref(INGRESS_RULE)}],
                                    ref("AWS::NoValue")]}
    return resource("AWS::ECS::Service", {
        "Cluster": platform.cluster_name,
        # The version's rollout plan when it has one (with alarms that roll back), else the platform's shift.
        "DeploymentConfiguration": rollout_deploy.deployment_configuration(version, deployment_configuration(
            policy.traffic_shift, policy.deployment_maximum_percent, policy.deployment_minimum_healthy_percent)),
        "DeploymentController": {"Type": "ECS"},
        "EnableECSManagedTags": False,
        "HealthCheckGracePeriodSeconds": {"Fn::If": [HAS_INGRESS, grace, ref("AWS::NoValue")]},
        "LaunchType": policy.launch_type,
        "LoadBalancers": load_balancers(version),
        "NetworkConfiguration": parts.network_configuration(platform),
        "PropagateTags": "TASK_DEFINITION",
        "ServiceConnectConfiguration": service_connect_configuration(version),
        "ServiceName": version.service,
        **extra,
        "TaskDefinition": ref(parts.TASK_DEFINITION),
    })


def outputs(version: ServiceVersion) -> Json:
    return {
        "ServiceName": output(get_att(parts.SERVICE, "Name"), "ECS service; each commit updates it"),
        "ServiceArn": output(ref(parts.SERVICE)),
        "TaskDefinitionArn": output(ref(parts.TASK_DEFINITION), "Task-definition revision of this version"),
        "DnsName": output(client_dns_name(version), "Service Connect client alias"),
        "DeploymentStrategy": output(rollout_deploy.strategy_of(version)),
        "IngressRuleArn": {**output(ref(INGRESS_RULE), "Listener rule of the service's gateway route"),
                           "Condition": HAS_INGRESS},
        **parts.version_outputs(version),
    }


def synth_service_connect(version: ServiceVersion) -> Json:
    """The service stack's template at this version (Service Connect flavour). Pure."""
    # No policy on the execution role: the service's own execution role (its pipeline stack's) already
    # writes this service's log streams, so the stack changes no role.
    resources = {
        parts.TASK_DEFINITION: task_definition(version),
        parts.SERVICE: ecs_service(version),
        parts.SCALABLE_TARGET: parts.scalable_target(version, names_role=False),
        parts.SCALING_POLICY: parts.scaling_policy(version, f"{version.service}-cpu-tracking"),
        **ingress_resources(version),
        **rollout_deploy.alarms(version, rollout_deploy.Ingress(
            HAS_INGRESS, (INGRESS_TARGET_GROUP, INGRESS_ALTERNATE_TARGET_GROUP),
            import_value(f"{version.environment}:{LOAD_BALANCER_EXPORT}"))),
    }
    description = (f"meshpipe: service {version.service} in environment {version.environment} on ECS Service "
                   f"Connect, at version {version.version} (commit {version.commit})")
    return template(resources, description=description, parameters=ingress_parameters(),
                    conditions=ingress_conditions(), outputs=outputs(version))
