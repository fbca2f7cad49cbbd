"""Every identity that deploys a template meshpipe emits may call what CloudFormation's handlers call.

For each template (both flavours: environment, build bucket, service pipeline, and each sample manifest's
version or service stack) the actions come from the registry schemas of its resource types; the version
and service stacks are deployed by the pipeline template's DeployRole, the platform templates with the
operator's credentials under the deployer policy published in docs/aws.md. An action may be missing only
when meshpipe.synth.iam_exclusions says which unset property alone would trigger it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from meshpipe.synth.iam_exclusions import EXCLUDED_HANDLER_ACTIONS, NOT_AN_IAM_ACTION
from meshpipe.synth.iam_needs import UNREGISTERED_TYPE_ACTIONS
from support import iam
from support.iam_lint import in_newer_catalogue

DOCS = Path(__file__).resolve().parents[1] / "docs"
TEMPLATES = {t.name: t for t in iam.emitted_templates()}


def deployer_policy(mesh: str = "service-connect") -> dict[str, Any]:
    """The deployer policy of aws.md, with its App Mesh additions for an App Mesh template."""
    text = (DOCS / "aws.md").read_text()
    [policy] = iam.json_blocks(text, "<!-- policy: deployer -->")
    if mesh == "appmesh":
        [extra] = iam.json_blocks(text, "<!-- policy: deployer-appmesh -->")
        policy = {**policy, "Statement": [*policy["Statement"], *extra["Statement"]]}
    return policy


def deploying_statements(emitted: iam.EmittedTemplate) -> list[dict[str, Any]]:
    if emitted.deployed_by == "DeployRole":
        return iam.deploy_role_statements(emitted.mesh)
    return list(deployer_policy(emitted.mesh)["Statement"])


def unexplained_missing(emitted: iam.EmittedTemplate, statements: list[dict[str, Any]]) -> dict[str, list[str]]:
    needs = iam.required_actions(emitted.template)
    return {action: sorted(types) for action, types in sorted(needs.items())
            if not iam.allows(statements, action)
            and not all((t, action) in EXCLUDED_HANDLER_ACTIONS for t in types)}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_the_deploying_identity_allows_every_handler_action(name: str) -> None:
    emitted = TEMPLATES[name]
    needs = iam.required_actions(emitted.template)
    assert len(needs) > 20  # the schemas were really read
    assert unexplained_missing(emitted, deploying_statements(emitted)) == {}


def test_the_check_fails_when_the_deploy_role_lacks_a_handler_action() -> None:
    emitted = TEMPLATES["service-connect/service stack hello-web"]
    statements = copy.deepcopy(iam.deploy_role_statements("service-connect"))
    for s in statements:
        s["Action"] = [a for a in iam.as_list(s["Action"]) if a != "ecs:ListServiceDeployments"]
    assert unexplained_missing(emitted, statements) == {"ecs:ListServiceDeployments": ["AWS::ECS::Service"]}


def test_the_check_fails_when_the_deployer_policy_lacks_a_handler_action() -> None:
    emitted = TEMPLATES["service-connect/env"]
    statements = copy.deepcopy(deployer_policy()["Statement"])
    for s in statements:
        s["Action"] = [a for a in s["Action"] if a != "ec2:CreateVpc"]
    assert unexplained_missing(emitted, statements) == {"ec2:CreateVpc": ["AWS::EC2::VPC"]}


def test_no_exclusion_is_stale() -> None:
    """An entry applies while some emitted template has the type, its handlers call the action, and the
    identity deploying that template does not allow it anyway."""
    applies: set[tuple[str, str]] = set()
    for emitted in TEMPLATES.values():
        statements = deploying_statements(emitted)
        for action, types in iam.required_actions(emitted.template).items():
            if not iam.allows(statements, action):
                applies |= {(t, action) for t in types}
    assert set(EXCLUDED_HANDLER_ACTIONS) - applies == set()
    assert all(reason.strip() for reason in EXCLUDED_HANDLER_ACTIONS.values())


def test_actions_excluded_as_no_iam_action_are_not_in_iams_catalogue() -> None:
    named = [action for (_, action), reason in EXCLUDED_HANDLER_ACTIONS.items() if reason.startswith(NOT_AN_IAM_ACTION)]
    assert named and not [a for a in named if in_newer_catalogue(a)]
    # Every other excluded action is a real one.
    assert not [a for (_, a), reason in EXCLUDED_HANDLER_ACTIONS.items()
                if not reason.startswith(NOT_AN_IAM_ACTION) and not in_newer_catalogue(a)]


def test_resource_types_without_handlers_are_the_ones_meshpipe_tables() -> None:
    types = {res["Type"] for t in TEMPLATES.values() for res in t.template["Resources"].values()}
    without = {t for t in types if not iam.has_handlers(t)}
    assert without == set(UNREGISTERED_TYPE_ACTIONS)
    assert UNREGISTERED_TYPE_ACTIONS
    for actions in UNREGISTERED_TYPE_ACTIONS.values():
        assert [a for a in actions if not in_newer_catalogue(a)] == []


def test_a_retained_task_definition_needs_no_deregistration() -> None:
    # Service Connect keeps every revision (DeletionPolicy and UpdateReplacePolicy Retain): its delete
    # handler never runs, so the deploy role cannot deregister; the App Mesh version stack's can.
    service_stack = TEMPLATES["service-connect/service stack hello-web"].template
    version_stack = TEMPLATES["appmesh/version stack hello-web"].template
    assert "ecs:DeregisterTaskDefinition" not in iam.required_actions(service_stack)
    assert "AWS::ECS::TaskDefinition" in iam.required_actions(version_stack)["ecs:DeregisterTaskDefinition"]
    assert not iam.allows(iam.deploy_role_statements("service-connect"), "ecs:DeregisterTaskDefinition")
    assert iam.allows(iam.deploy_role_statements("appmesh"), "ecs:DeregisterTaskDefinition")


@pytest.mark.parametrize(("pattern", "action", "allowed"), [
    ("ecs:ListServiceDeployments", "ecs:listservicedeployments", True),
    ("ecs:List*", "ecs:ListServiceDeployments", True),
    ("ecs:Describe?ervices", "ecs:DescribeServices", True),
    ("ecs:Describe?", "ecs:DescribeServices", False),
    ("ecs:*Service", "ecs:ListServiceDeployments", False),
    ("ecs:*", "ecr:GetAuthorizationToken", False),
])
def test_action_matching_is_iams(pattern: str, action: str, allowed: bool) -> None:
    assert iam.allows([{"Effect": "Allow", "Action": pattern, "Resource": "*"}], action) is allowed


def test_an_unconditional_deny_on_everything_wins() -> None:
    allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    assert not iam.allows([allow, {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*"}], "s3:PutObject")
    # A deny on one resource leaves the action allowed elsewhere.
    assert iam.allows([allow, {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::x/*"}],
                      "s3:PutObject")


def test_the_service_connect_deployer_has_no_app_mesh_and_no_dns_zone_rights() -> None:
    """Service Connect never uses them: they are the App Mesh additions' alone."""
    actions = {a for s in deployer_policy()["Statement"] for a in iam.as_list(s["Action"])}
    assert not [a for a in actions if a.startswith(("appmesh:", "route53:"))]
    appmesh = {a for s in deployer_policy("appmesh")["Statement"] for a in iam.as_list(s["Action"])}
    assert "route53:ChangeResourceRecordSets" in appmesh and "appmesh:CreateMesh" in appmesh
