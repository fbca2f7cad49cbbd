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
