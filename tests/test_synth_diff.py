"""``meshpipe synth --diff``: what a new version's template changes, resource by resource, against a
template file or a deployed stack's template. Golden outputs in tests/golden/diff (tests/golden/regen.py)."""

from __future__ import annotations

import json

import pytest
from moto import mock_aws

from meshpipe.cli import main
from meshpipe.engines.aws.clients import SessionClientFactory
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.synth.diff import diff_lines, diff_templates
from support.aws import REGION, use_fake_credentials
from support.synth_cases import REPO, diff_argv, diff_golden_path


@pytest.mark.parametrize("mesh", MeshFlavour)
def test_the_diff_of_a_new_version_matches_its_golden(mesh, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(REPO)
    before = sorted(p.name for p in REPO.iterdir())
    assert main([*diff_argv(mesh), "-o", str(tmp_path)]) == 0
    assert capsys.readouterr().out == diff_golden_path(mesh).read_text(encoding="utf-8")
    assert list(tmp_path.iterdir()) == [] and sorted(p.name for p in REPO.iterdir()) == before  # writes nothing


def test_added_removed_and_modified_resources_are_told_apart() -> None:
    old = {"Resources": {"Gone": {"Type": "AWS::S3::Bucket"},
                         "Kept": {"Type": "AWS::ECS::Service", "Properties": {"DesiredCount": 2, "Old": "x"}}},
           "Outputs": {"Name": {"Value": "a"}}}
    new = {"Resources": {"Kept": {"Type": "AWS::ECS::Service", "Properties": {"DesiredCount": 3, "New": [1]}},
                         "Fresh": {"Type": "AWS::SQS::Queue"}},
           "Outputs": {"Name": {"Value": "a"}}}
    assert diff_lines(diff_templates(old, new), "old.json", "new") == [
        "--- old.json",
        "+++ new",
        "+ Resources.Fresh (AWS::SQS::Queue)",
        "- Resources.Gone (AWS::S3::Bucket)",
        "~ Resources.Kept (AWS::ECS::Service)",
        "    ~ Properties.DesiredCount: 2 -> 3",
        "    + Properties.New: [1]",
        "    - Properties.Old: \"x\"",
        "1 added, 1 removed, 1 modified",
    ]
    assert diff_lines(diff_templates(new, new), "a", "b")[-1] == "no changes"


def test_a_long_value_is_cut_and_its_length_told() -> None:
    lines = diff_lines(diff_templates({"Outputs": {"X": {"Value": "a" * 200}}},
                                      {"Outputs": {"X": {"Value": "b"}}}), "a", "b")
    assert lines[3].endswith("… (202 characters) -> \"b\"") and len(lines[3]) < 130


@pytest.mark.parametrize("content, problem", [("{not json", "not a JSON template"), ("[1, 2]", "a JSON object")])
def test_a_previous_file_that_is_not_a_template_is_refused(content, problem, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    previous = tmp_path / "old.template.json"
    previous.write_text(content, encoding="utf-8")
    argv = diff_argv("appmesh")
    argv[argv.index("--diff") + 1] = str(previous)
    assert main(argv) == 2
    assert problem in capsys.readouterr().err


def test_a_stack_name_needs_an_engine_that_keeps_templates(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MESHPIPE_HOME", str(tmp_path))
    argv = diff_argv("appmesh")
    argv[argv.index("--diff") + 1] = "demo-hello-backend-e9d5f17a"
    assert main(argv) == 2
    assert "there is no file demo-hello-backend-e9d5f17a" in capsys.readouterr().err
    assert main([*argv, "--engine", "local"]) == 2
    assert "--diff STACK applies to --engine aws" in capsys.readouterr().err


def test_against_a_deployed_stack_the_template_comes_from_get_template(capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    use_fake_credentials(monkeypatch)
    argv = diff_argv("appmesh")
    golden = argv[argv.index("--diff") + 1]
    argv[argv.index("--diff") + 1] = "demo-hello-backend-e9d5f17a"
    with mock_aws():
        SessionClientFactory(region=REGION).client("cloudformation").create_stack(
            StackName="demo-hello-backend-e9d5f17a", TemplateBody=json.dumps({
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}))
        assert main([*argv, "--engine", "aws"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert main([*argv[:-1], "demo-missing", "--engine", "aws"]) == 2
        assert "there is no stack demo-missing" in capsys.readouterr().err
    assert out[0] == "--- demo-hello-backend-e9d5f17a"
    assert "- Resources.Topic (AWS::SNS::Topic)" in out
    # Every resource of the new template is added to a stack that held only the topic.
    added = [line for line in out if line.startswith("+ Resources.")]
    assert len(added) == len(json.loads((REPO / golden).read_text())["Resources"])
