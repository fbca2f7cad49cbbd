"""The AWS engine's recorded calls (support.aws_calls), and the runbook's ``aws`` commands, as IAM requests:
action, the concrete ARNs the call's parameters name, and the condition context.

The parameters name resources by name, id or ARN; each becomes the ARN of every resource type it can be
(a cluster name, a stack name, a bucket and key), and IAM's catalogue (support.iam_calls.resource_types)
picks those of the types the action is authorized on. An action without resource types is a request on
``*``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from support.iam_calls import resource_types
from support.iam_eval import Request
from support.iam_lint import ACCOUNT, PARTITION, REGION

STACK_ID = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"


def _arn(service: str, resource: str) -> str:
    return f"arn:{PARTITION}:{service}:{REGION}:{ACCOUNT}:{resource}"


def _values(value: Any) -> list[str]:
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str) and v]


def _name(value: str) -> str:
    """A resource's name from its name or ARN (the last ``/`` part)."""
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def candidate_arns(prefix: str, params: Mapping[str, Any]) -> set[str]:
    """Every ARN the call's parameters can name."""
    p = {k.lower(): v for k, v in params.items()}
    found = {v for value in params.values() for v in _values(value) if v.startswith("arn:")}

    def each(*keys: str) -> Iterator[str]:
        for key in keys:
            yield from _values(p.get(key.lower()))

    if prefix == "cloudformation":
        for stack in each("StackName"):
            if not stack.startswith("arn:"):
                found.add(_arn("cloudformation", f"stack/{stack}/{STACK_ID}"))
    elif prefix == "s3":
        for bucket in each("Bucket"):
            found.add(f"arn:{PARTITION}:s3:::{bucket}")
            for key in each("Key", "Prefix") or ["an-object"]:
                found.add(f"arn:{PARTITION}:s3:::{bucket}/{key}")
    elif prefix == "ecs":
        clusters = [_name(c) for c in each("cluster")] or ["default"]
        for cluster in clusters:
            found.add(_arn("ecs", f"cluster/{cluster}"))
            for service in each("service", "services"):
                found.add(_arn("ecs", f"service/{cluster}/{_name(service)}"))
        for td in each("taskDefinition"):
            if not td.startswith("arn:"):
                found.add(_arn("ecs", f"task-definition/{td if ':' in td else td + ':1'}"))
    elif prefix == "appmesh":
        for mesh in each("meshName"):
            found.add(_arn("appmesh", f"mesh/{mesh}"))
            for kind, key in (("virtualRouter", "virtualRouterName"), ("virtualGateway", "virtualGatewayName"),
                              ("virtualNode", "virtualNodeName"), ("virtualService", "virtualServiceName")):
                for name in each(key):
                    found.add(_arn("appmesh", f"mesh/{mesh}/{kind}/{name}"))
                    for route in each("routeName"):
                        found.add(_arn("appmesh", f"mesh/{mesh}/{kind}/{name}/route/{route}"))
                    for route in each("gatewayRouteName"):
                        found.add(_arn("appmesh", f"mesh/{mesh}/{kind}/{name}/gatewayRoute/{route}"))
    elif prefix == "codepipeline":
        for name in each("name", "pipelineName"):
            found.add(_arn("codepipeline", name))
    elif prefix == "codebuild":
        for build in each("ids"):
            found.add(_arn("codebuild", f"build/{build}"))
            found.add(_arn("codebuild", f"project/{build.split(':', 1)[0]}"))
    elif prefix == "logs":
        for group in each("logGroupName", "logGroupIdentifier"):
            found.add(_arn("logs", f"log-group:{group}"))
            for stream in each("logStreamName", "logStreamNames") or []:
                found.add(_arn("logs", f"log-group:{group}:log-stream:{stream}"))
    elif prefix == "servicediscovery":
        for ident in each("Id", "ServiceId", "NamespaceId"):
            kind = "namespace" if ident.startswith("ns-") else "service"
            found.add(_arn("servicediscovery", f"{kind}/{ident}"))
    elif prefix == "cloudwatch":
        for name in each("DashboardName"):
            found.add(f"arn:{PARTITION}:cloudwatch::{ACCOUNT}:dashboard/{name}")
        for name in each("AlarmNames"):
            found.add(_arn("cloudwatch", f"alarm:{name}"))
    elif prefix == "ecr":
        for repository in each("repositoryName"):
            found.add(_arn("ecr", f"repository/{repository}"))
    elif prefix in ("codeconnections", "codestar-connections"):
        pass  # connections are named by ARN
    elif prefix == "iam":
        # A role's ARN holds its path: service-linked roles live under aws-service-role/<service>/.
        paths = {name: f"aws-service-role/{service}/" for service, name in _LINKED_ROLE_NAMES.items()}
        for role in each("RoleName"):
            found.add(f"arn:{PARTITION}:iam::{ACCOUNT}:role/{paths.get(role, '')}{role}")
        for service in each("AWSServiceName"):
            found.add(f"arn:{PARTITION}:iam::{ACCOUNT}:role/aws-service-role/{service}/{_LINKED_ROLE_NAMES.get(service, '')}")
    return found


_LINKED_ROLE_NAMES = {"ecs.amazonaws.com": "AWSServiceRoleForECS",
                      "elasticloadbalancing.amazonaws.com": "AWSServiceRoleForElasticLoadBalancing"}


# Calls whose parameters name no resource of the types the catalogue lists, so IAM has only "*" to
# authorize them on: action -> why.
ON_ANY_RESOURCE = {"servicediscovery:GetOperation": "an operation id names neither a namespace nor a service"}


@dataclass(frozen=True)
class Resolved:
    requests: list[Request]
    unresolved: bool  # the action takes resource types, and the parameters name none of them


def requests_for(action: str, params: Mapping[str, Any]) -> Resolved:
    prefix = action.split(":", 1)[0].lower()
    types = resource_types(action)
    context: dict[str, Any] = {}
    if action.lower() == "iam:createservicelinkedrole":
        context["iam:AWSServiceName"] = params.get("AWSServiceName", "")
    if types is None or not types or action in ON_ANY_RESOURCE:
        return Resolved([Request(action, "*", context)], unresolved=types is None)
    candidates = candidate_arns(prefix, params)
    arns = sorted({a for rt in types for a in candidates if rt.pattern.match(a)})
    if not arns:
        # Optional resource types only (an operation id names none): authorized on "*".
        if any(rt.required for rt in types):
            return Resolved([], unresolved=True)
        return Resolved([Request(action, "*", context)], unresolved=False)
    return Resolved([Request(action, arn, context) for arn in arns], unresolved=False)
