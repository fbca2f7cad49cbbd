"""The pipeline's and the build's roles cover what the providers, modes and build inputs they use need.

What each CodePipeline action provider, CloudFormation action mode and CodeBuild input needs is kept
in meshpipe.synth.iam_needs (from AWS's action reference pages); what the template uses is read from
the rendered template itself: its stages' action types and modes, the build's buildspec and variables.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.synth.iam_needs import (
    ARTIFACT_STORE_ACTIONS,
    BUILD_ARTIFACT_ACTIONS,
    BUILD_LOG_ACTIONS,
    CLOUDFORMATION_MODE_ACTIONS,
    PARAMETER_STORE_ACTIONS,
    PIPELINE_PROVIDER_ACTIONS,
    SECRETS_MANAGER_ACTIONS,
)
from support import iam
from support.iam_lint import in_newer_catalogue


def pipeline_needs(template: dict[str, Any]) -> set[str]:
    """Every action the PipelineRole needs for the stages the template declares."""
    [pipeline] = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    needs = set(ARTIFACT_STORE_ACTIONS)
    for stage in pipeline["Properties"]["Stages"]:
        for action in stage["Actions"]:
            kind = action["ActionTypeId"]
            key = (kind["Category"], kind["Provider"])
            assert key in PIPELINE_PROVIDER_ACTIONS, f"no table entry for {key}"
            needs |= set(PIPELINE_PROVIDER_ACTIONS[key])
            if kind["Provider"] == "CloudFormation":
                needs |= set(CLOUDFORMATION_MODE_ACTIONS[action["Configuration"]["ActionMode"]])
    return needs


def build_needs(template: dict[str, Any]) -> set[str]:
    """Every action the BuildRole needs: logs, artifacts, and the parameters and secrets the build reads
    (the buildspec's env sections and the project's variables)."""
    [project] = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodeBuild::Project"]
    props = project["Properties"]
    needs = set(BUILD_LOG_ACTIONS) | set(BUILD_ARTIFACT_ACTIONS)
    env = yaml.safe_load(props["Source"]["BuildSpec"]).get("env", {})
    types = {v.get("Type", "PLAINTEXT") for v in props["Environment"].get("EnvironmentVariables", [])}
    if env.get("parameter-store") or "PARAMETER_STORE" in types:
        needs |= set(PARAMETER_STORE_ACTIONS)
    if env.get("secrets-manager") or "SECRETS_MANAGER" in types:
        needs |= set(SECRETS_MANAGER_ACTIONS)
    return needs


def pipeline_template(mesh: str) -> dict[str, Any]:
    return copy.deepcopy(iam.platform(mesh)["pipeline"])


@pytest.mark.parametrize("mesh", MeshFlavour)
def test_the_pipeline_role_covers_every_provider_and_mode_the_pipeline_uses(mesh: str) -> None:
    tpl = pipeline_template(mesh)
    needs = pipeline_needs(tpl)
    assert {"codebuild:StartBuild", "cloudformation:CreateStack", "iam:PassRole"} <= needs
    assert iam.missing_actions(iam.role_statements(tpl, "PipelineRole"), needs) == set()


@pytest.mark.parametrize("mesh", MeshFlavour)
def test_the_build_role_covers_logs_artifacts_and_what_the_build_reads(mesh: str) -> None:
    tpl = pipeline_template(mesh)
    assert iam.missing_actions(iam.role_statements(tpl, "BuildRole"), build_needs(tpl)) == set()


def without(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [{**s, "Action": [a for a in iam.as_list(s["Action"]) if a != action]} for s in statements]


def test_a_mode_the_role_does_not_cover_is_found() -> None:
    tpl = pipeline_template("service-connect")
    [pipeline] = [r for r in tpl["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    pipeline["Properties"]["Stages"][-1]["Actions"][0]["Configuration"]["ActionMode"] = "REPLACE_ON_FAILURE"
    statements = without(iam.role_statements(tpl, "PipelineRole"), "cloudformation:DeleteStack")
    assert iam.missing_actions(statements, pipeline_needs(tpl)) == {"cloudformation:DeleteStack"}


def test_a_provider_without_a_table_entry_is_refused() -> None:
    tpl = pipeline_template("appmesh")
    [pipeline] = [r for r in tpl["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    pipeline["Properties"]["Stages"][0]["Actions"][0]["ActionTypeId"]["Provider"] = "ECR"
    with pytest.raises(AssertionError, match="no table entry"):
        pipeline_needs(tpl)


def test_a_parameter_the_build_reads_needs_the_build_role_to_read_it() -> None:
    tpl = pipeline_template("service-connect")
    [project] = [r for r in tpl["Resources"].values() if r["Type"] == "AWS::CodeBuild::Project"]
    spec = yaml.safe_load(project["Properties"]["Source"]["BuildSpec"])
    spec["env"]["parameter-store"] = {"PLATFORM_POLICY": "/meshpipe/demo/platform-policy"}
    project["Properties"]["Source"]["BuildSpec"] = yaml.safe_dump(spec)
    statements = without(iam.role_statements(tpl, "BuildRole"), "ssm:GetParameters")
    assert iam.missing_actions(statements, build_needs(tpl)) == {"ssm:GetParameters"}


def test_every_action_in_the_tables_is_an_iam_action() -> None:
    tables = [*PIPELINE_PROVIDER_ACTIONS.values(), *CLOUDFORMATION_MODE_ACTIONS.values(), ARTIFACT_STORE_ACTIONS,
              BUILD_LOG_ACTIONS, BUILD_ARTIFACT_ACTIONS, PARAMETER_STORE_ACTIONS, SECRETS_MANAGER_ACTIONS]
    assert [a for actions in tables for a in actions if not in_newer_catalogue(a)] == []
