"""Every call CloudFormation's handlers make while deploying a template meshpipe emits is allowed for its
concrete resource and condition context, by the identity that deploys the template.

The templates are all of them, in every variant (both flavours' environment, build bucket and service
pipeline, with an HTTPS ingress and with a GitHub source; each sample's version or service stack, with
and without a gateway route, with each rollout plan and under each platform traffic shift). The calls
come from support.iam_calls (registry handlers, IAM's catalogue of resource types, the resolved
template); the decision from support.iam_eval (IAM's evaluation logic). The platform templates are
deployed under the deployer policy of docs/aws.md, the service and version stacks by the pipeline
template's DeployRole as resolved for that service.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest

from support import iam, iam_calls
from support.iam_eval import Request, decide

DOCS = Path(__file__).resolve().parents[1] / "docs"
DEPLOYED = {d.name: d for d in iam_calls.deployed_templates()}

# Handler actions for which no resource of the template has the catalogue's resource type, each with why
# the handler never calls it on some other resource. A new entry needs a reason; a stale one fails.
UNRESOLVED_ON_PURPOSE: dict[tuple[str, str], str] = {
    ("AWS::CloudWatch::Dashboard", "cloudwatch:ListTagsForResource"):
        "dashboards carry no tags here, and IAM's catalogue has no dashboard resource type for tagging",
    ("AWS::CloudWatch::Dashboard", "cloudwatch:TagResource"):
        "dashboards carry no tags here, and IAM's catalogue has no dashboard resource type for tagging",
    ("AWS::CloudWatch::Dashboard", "cloudwatch:UntagResource"):
        "dashboards carry no tags here, and IAM's catalogue has no dashboard resource type for tagging",
    ("AWS::CodePipeline::Pipeline", "codestar-connections:PassConnection"):
        "a pipeline reading CodeCommit or S3 passes no connection",
    ("AWS::ECS::Service", "iam:PassRole"):
        "a service without a gateway route (or rolling) names no infrastructure role",
    ("AWS::S3::Bucket", "iam:PassRole"): "no ReplicationConfiguration on a bucket: no role is passed",
    ("AWS::ApplicationAutoScaling::ScalableTarget", "iam:PassRole"):
        "no RoleARN: Application Auto Scaling uses its service-linked role for ECS, which nobody passes",
}


@functools.cache
def deployer_statements(mesh: str = "service-connect") -> list[dict[str, Any]]:
    """The deployer policy of aws.md; for App Mesh templates with its App Mesh additions."""
    text = (DOCS / "aws.md").read_text()
    markers = ["deployer", "deployer-appmesh"] if mesh == "appmesh" else ["deployer"]
    return [s for m in markers for s in iam.json_blocks(text, f"<!-- policy: {m} -->")[0]["Statement"]]


def statements_for(deployed: iam_calls.Deployed, pipeline: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    if deployed.deployed_by == "DeployRole":
        return iam_calls.deploy_role_statements(deployed.mesh, deployed.service, pipeline)
    return deployer_statements(deployed.mesh)


@functools.cache
def calls(name: str) -> iam_calls.HandlerCalls:
    return iam_calls.handler_calls(DEPLOYED[name].deployment)


def refused(name: str, statements: list[dict[str, Any]]) -> list[str]:
    found = set()
    for c in calls(name).calls:
        decision = decide(statements, Request(c.action, c.resource, c.context))
        if decision != "allowed":
            context = {k: v for k, v in c.context.items() if not k.lower().startswith("aws:requesttag")}
            found.add(f"{decision}: {c.action} on {c.resource} {context or ''} ({c.origin})")
    return sorted(found)


@pytest.mark.parametrize("name", sorted(DEPLOYED))
def test_every_handler_call_is_allowed_on_its_resource(name: str) -> None:
    assert len(calls(name).calls) > 20  # the handlers were really read
    assert refused(name, statements_for(DEPLOYED[name])) == []


def test_the_variants_are_there() -> None:
    names = " | ".join(DEPLOYED)
    for variant in ("env with certificate", "pipeline from github", "canary rollout", "linear rollout",
                    "blue-green rollout", "LINEAR shift", "BLUE_GREEN shift", "ROLLING shift", "with gateway route"):
        assert variant in names, variant


def test_unresolved_calls_are_the_ones_explained() -> None:
    found = {(u.resource_type, u.action) for name in DEPLOYED for u in calls(name).unresolved}
    assert found == set(UNRESOLVED_ON_PURPOSE)
    assert all(reason.strip() for reason in UNRESOLVED_ON_PURPOSE.values())


def test_a_fresh_account_can_create_the_load_balancer_and_the_cluster() -> None:
    """Their first creation makes ELB and ECS create their service-linked roles with the caller's rights."""
    env = "service-connect/env"
    slr = [c for c in calls(env).calls if c.action == "iam:CreateServiceLinkedRole"]
    assert {c.context["iam:AWSServiceName"] for c in slr} == {"ecs.amazonaws.com", "elasticloadbalancing.amazonaws.com"}
    assert all(decide(deployer_statements(), Request(c.action, c.resource, c.context)) == "allowed" for c in slr)


def test_a_github_pipeline_passes_a_codeconnections_connection() -> None:
    [passing] = {(c.action, c.resource) for c in calls("service-connect/pipeline from github").calls
                 if c.action.endswith("PassConnection")}
    assert passing == ("codeconnections:PassConnection", iam.CONNECTION_ARN)
    assert decide(deployer_statements(), Request(*passing)) == "allowed"


# ---- the check can fail ----

def _narrowed(statements: list[dict[str, Any]], sid: str, old: str, new: str) -> list[dict[str, Any]]:
    changed = copy.deepcopy(statements)
    [target] = [s for s in changed if s.get("Sid") == sid]
    resources = iam.as_list(target["Resource"])
    assert old in resources, resources
    target["Resource"] = [new if r == old else r for r in resources]
    return changed


def test_narrowing_one_resource_of_the_deploy_role_fails_the_check() -> None:
    name = "service-connect/service stack hello-web"
    statements = statements_for(DEPLOYED[name])
    service = "arn:aws:ecs:us-east-1:123456789012:service/demo/hello-web"
    narrowed = _narrowed(statements, "EcsService", service, service + "x")
    problems = refused(name, narrowed)
    assert problems and all(" on " + service + " " in p for p in problems)
    assert any("ecs:CreateService" in p for p in problems)


def test_narrowing_one_resource_of_the_deployer_policy_fails_the_check() -> None:
    narrowed = _narrowed(deployer_statements(), "EcsClusterAndIngress", "arn:aws:ecs:*:*:cluster/demo",
                         "arn:aws:ecs:*:*:cluster/demo-x")
    problems = refused("service-connect/env", narrowed)
    assert any("ecs:CreateCluster on arn:aws:ecs:us-east-1:123456789012:cluster/demo" in p for p in problems)


def test_a_pass_role_to_another_service_fails_the_check() -> None:
    name = "service-connect/service stack hello-web"
    statements = copy.deepcopy(statements_for(DEPLOYED[name]))
    [passing] = [s for s in statements if s.get("Sid") == "PassTaskRoles"]
    passing["Condition"] = {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}
    assert any("iam:PassRole" in p and "ecs-tasks.amazonaws.com" in p for p in refused(name, statements))


@pytest.mark.parametrize(("action", "arn"), [
    ("ec2:DeleteVpc", "arn:aws:ec2:us-east-1:123456789012:vpc/vpc-0other"),
    ("ec2:AuthorizeSecurityGroupIngress", "arn:aws:ec2:us-east-1:123456789012:security-group/sg-0other"),
    ("ec2:RevokeSecurityGroupEgress", "arn:aws:ec2:us-east-1:123456789012:security-group/sg-0other"),
    ("ec2:DeleteNatGateway", "arn:aws:ec2:us-east-1:123456789012:natgateway/nat-0other"),
    ("elasticloadbalancing:DeleteLoadBalancer",
     "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/other/0123456789abcdef"),
    ("elasticloadbalancing:ModifyListener",
     "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/other/0123456789abcdef/0fedcba987654321"),
])
def test_the_deployer_deletes_and_changes_only_the_environments_network(action: str, arn: str) -> None:
    """Deletes and changes of network and load-balancer resources, and security-group rules, are allowed on
    what carries the environment's owner tag, and on nothing else of the account."""
    statements = deployer_statements()
    assert decide(statements, Request(action, arn, {"aws:ResourceTag/meshpipe:environment": "demo"})) == "allowed"
    assert decide(statements, Request(action, arn, {"aws:ResourceTag/meshpipe:environment": "demo-x"})) != "allowed"
    assert decide(statements, Request(action, arn)) != "allowed"


@pytest.mark.parametrize(("action", "key", "create", "arn"), [
    ("ec2:CreateTags", "ec2:CreateAction", "CreateVpc", "arn:aws:ec2:us-east-1:123456789012:vpc/vpc-0other"),
    ("ec2:CreateTags", "ec2:CreateAction", "CreateSecurityGroup",
     "arn:aws:ec2:us-east-1:123456789012:security-group/sg-0other"),
    ("elasticloadbalancing:AddTags", "elasticloadbalancing:CreateAction", "CreateLoadBalancer",
     "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/other/0123456789abcdef"),
    ("elasticloadbalancing:AddTags", "elasticloadbalancing:CreateAction", "CreateTargetGroup",
     "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/other/0123456789abcdef"),
])
def test_the_deployer_cannot_claim_a_foreign_resource_by_tagging_it(action: str, key: str, create: str,
                                                                    arn: str) -> None:
    """The owner tag is what lets the deployer delete and change network and load-balancer resources, so
    adding it is allowed only in the call that creates the resource, or on what already carries it."""
    statements = deployer_statements()
    claim = {"aws:RequestTag/meshpipe:environment": "demo", "aws:TagKeys": ["meshpipe:environment"]}
    assert decide(statements, Request(action, arn, claim)) != "allowed"
    assert decide(statements, Request(action, arn, {**claim, "aws:ResourceTag/meshpipe:environment": "demo-x"})) \
        != "allowed"
    assert decide(statements, Request(action, arn, {**claim, key: create})) == "allowed"
    assert decide(statements, Request(action, arn, {**claim, "aws:ResourceTag/meshpipe:environment": "demo"})) \
        == "allowed"


def test_the_environments_network_carries_the_owner_tag() -> None:
    tagged = [c for c in calls("service-connect/env").calls
              if c.action in ("ec2:DeleteVpc", "ec2:DeleteSecurityGroup", "elasticloadbalancing:DeleteLoadBalancer",
                              "elasticloadbalancing:DeleteListener", "ec2:ReleaseAddress")]
    assert {c.action for c in tagged} == {"ec2:DeleteVpc", "ec2:DeleteSecurityGroup", "ec2:ReleaseAddress",
                                          "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:DeleteListener"}
    assert all(c.context.get("aws:ResourceTag/meshpipe:environment") == "demo" for c in tagged)


# ---- the permissions boundary --------------------------------------------------------------------------------

BOUNDARY_ARN = "arn:aws:iam::123456789012:policy/meshpipe-demo-boundary"


def boundary_statements(mesh: str) -> list[dict[str, Any]]:
    d = DEPLOYED[f"{mesh}/env"].deployment
    r = iam_calls.DeployedResolver(d.template, d.stack, d.params, d.exports)
    return list(r.value(d.template["Resources"]["PermissionsBoundary"]["Properties"]["PolicyDocument"])["Statement"])


@pytest.mark.parametrize("name", sorted(n for n, d in DEPLOYED.items()
                                        if d.deployed_by == "operator" and "bucket" not in n))  # no role there
def test_every_role_carries_the_boundary_and_stays_inside_it(name: str) -> None:
    """Each role of a platform template names the environment's boundary, and every statement of its own
    policies, on each resource it names, is inside the boundary (else the role would lose it)."""
    d = DEPLOYED[name].deployment
    r = iam_calls.DeployedResolver(d.template, d.stack, d.params, d.exports)
    boundary = boundary_statements(DEPLOYED[name].mesh)
    roles = {lid: res for lid, res in d.template["Resources"].items() if res["Type"] == "AWS::IAM::Role"}
    outside = []
    for lid, res in roles.items():
        props = r.value(res["Properties"])
        assert props["PermissionsBoundary"] == BOUNDARY_ARN, lid
        for policy in props.get("Policies", []):
            for s in iam.as_list(policy["PolicyDocument"]["Statement"]):
                for action in iam.as_list(s["Action"]):
                    for resource in iam.as_list(s["Resource"]):
                        if decide(boundary, Request(action, resource)) != "allowed":
                            outside.append(f"{lid}: {action} on {resource}")
    assert roles and outside == []


def test_the_deployer_creates_roles_only_inside_the_boundary() -> None:
    role = "arn:aws:iam::123456789012:role/demo-hello-web-pipeline-BuildRole-ABCDEF123456"
    statements = deployer_statements()
    for action in ("iam:CreateRole", "iam:PutRolePolicy"):
        assert decide(statements, Request(action, role, {"iam:PermissionsBoundary": BOUNDARY_ARN})) == "allowed"
        assert decide(statements, Request(action, role)) != "allowed"
        other = "arn:aws:iam::123456789012:policy/AdministratorAccess"
        assert decide(statements, Request(action, role, {"iam:PermissionsBoundary": other})) != "allowed"
    assert decide(statements, Request("iam:DeleteRolePermissionsBoundary", role)) != "allowed"


def test_the_boundary_check_fails_for_a_role_granted_more() -> None:
    boundary = boundary_statements("service-connect")
    assert decide(boundary, Request("iam:CreateUser", "arn:aws:iam::123456789012:user/x")) != "allowed"
    assert decide(boundary, Request("iam:PassRole", "arn:aws:iam::123456789012:role/prod-admin")) != "allowed"
    assert decide(boundary, Request("ecs:RegisterTaskDefinition", "*")) == "allowed"
