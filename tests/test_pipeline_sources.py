"""A service pipeline's source: CodeCommit (the original's) or a repository behind a CodeConnections connection.

Checked offline: the parsing of --source/--connection, the rendered template (cfn-lint, the source action's
configuration, the push trigger, least-privilege IAM against IAM's catalogue as cfn-lint ships it), and
`pipeline create` of a GitHub-sourced pipeline against moto (stand-in templates carrying the real template's
source parameters and outputs) and against a Stubber (the real template as CloudFormation receives it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from meshpipe.cli import main
from meshpipe.errors import ConflictError, UserError
from meshpipe.mesh.routing import make_gateway_route
from meshpipe.synth.cfn import template_json
from meshpipe.synth.lint import lint_template
from meshpipe.synth.pipeline_source import ConnectionSource, parse_source
from meshpipe.synth.service_pipeline import render_service_pipeline
from test_aws_support import (
    ANY,
    FakeClock,
    RecordingFactory,
    StubFactory,
    make_engine,
    stubbed,
    use_fake_credentials,
)
from test_platform_templates import actions_of, params_of, resolve, resources_of, statements

ARN = "arn:aws:codeconnections:us-east-1:123456789012:connection/39e4c34d-e13a-4e94-a886-ea67651bf042"
OLD_ARN = ARN.replace("codeconnections", "codestar-connections")
GITHUB = "github:acme/hello-web-cfg"
MESHES = ["appmesh", "service-connect"]


# ---- parsing ----

@pytest.mark.parametrize(("spec", "provider", "repository"), [
    ("github:acme/hello-web-cfg", "github", "acme/hello-web-cfg"),
    ("github:a-b/c.d_e", "github", "a-b/c.d_e"),
    ("gitlab:platform/configs/hello-web", "gitlab", "platform/configs/hello-web"),
    ("bitbucket:acme-team/hello-web-cfg", "bitbucket", "acme-team/hello-web-cfg"),
])
def test_connection_sources_parse(spec: str, provider: str, repository: str) -> None:
    source = parse_source(spec, ARN)
    assert source == ConnectionSource(provider, repository, ARN)
    assert source.spec == spec and source.iam_prefix == "codeconnections"
    assert parse_source(spec, OLD_ARN).iam_prefix == "codestar-connections"  # type: ignore[union-attr]


def test_codecommit_is_the_default_and_takes_no_connection() -> None:
    assert parse_source(None) is None and parse_source("codecommit") is None
    with pytest.raises(UserError, match="--connection applies to a github:, gitlab: or bitbucket: source"):
        parse_source("codecommit", ARN)
    with pytest.raises(UserError, match="--connection applies"):
        parse_source(None, ARN)


@pytest.mark.parametrize(("spec", "connection", "message"), [
    ("svn:acme/cfg", ARN, "'svn:acme/cfg' is not a pipeline source"),
    ("acme/cfg", ARN, "is not a pipeline source"),
    ("github:acme", ARN, "'acme' is not a github repository"),
    ("github:-acme/cfg", ARN, "is not a github repository"),
    ("github:ac--me/cfg", ARN, "is not a github repository"),
    ("github:acme/cfg/extra", ARN, "is not a github repository"),
    ("github:acme/cfg.git", ARN, "name the repository without .git"),
    ("gitlab:project", ARN, "is not a gitlab repository"),
    ("bitbucket:team/re po", ARN, "is not a bitbucket repository"),
    ("github:acme/cfg", None, "a github source needs --connection ARN"),
    ("github:acme/cfg", "arn:aws:codecommit:us-east-1:123456789012:hello-web-cfg", "is not a CodeConnections connection ARN"),
    ("github:acme/cfg", ARN.replace("connection/", "host/"), "names a host, not a connection"),
    ("github:acme/cfg", ARN[:-4], "is not a CodeConnections connection ARN"),
    ("github:acme/cfg", ARN.replace("123456789012", "1234"), "is not a CodeConnections connection ARN"),
    ("github:acme/cfg", ARN.replace("us-east-1", "useast1"), "is not a CodeConnections connection ARN"),
])
def test_bad_sources_and_connections_are_refused_with_what_is_expected(spec: str, connection: str | None,
                                                                       message: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_source(spec, connection)
    assert message in caught.value.message
    assert caught.value.hint


def test_the_cli_refuses_a_bad_source_before_any_aws_call(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # No moto: an AWS call would fail on this unreachable endpoint with another message.
    use_fake_credentials(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MESHPIPE_HOME", str(tmp_path))
    cases = [
        (["--source", "github:acme"], "'acme' is not a github repository"),
        (["--source", GITHUB], "a github source needs --connection ARN"),
        (["--source", GITHUB, "--connection", "arn:aws:iam::123456789012:role/x"], "is not a CodeConnections"),
        (["--connection", ARN], "--connection applies to a github:"),
        (["--branch", "a..b"], "is not a branch name"),
    ]
    for extra, message in cases:
        assert main(["pipeline", "create", "hello-web", "--engine", "aws", *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["pipeline", "create", "hello-web", "--engine", "local", "--source", GITHUB, "--connection", ARN]) == 2
    assert "apply to --engine aws" in capsys.readouterr().err
    assert main(["platform", "render", "--env", "demo", "--source", "github:acme", "-o", str(tmp_path / "t")]) == 2
    assert not (tmp_path / "t").exists()


# ---- the template ----

def connection_template(mesh: str, arn: str = ARN, branch: str = "main") -> dict[str, Any]:
    return render_service_pipeline("demo", mesh=mesh, branch=branch, source=parse_source(GITHUB, arn))


def source_stage(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]["Pipeline"]["Properties"]["Stages"][0]


@pytest.mark.parametrize("mesh", MESHES)
def test_a_github_pipeline_lints_clean(mesh: str) -> None:
    findings = lint_template(template_json(connection_template(mesh)))
    # App Mesh's own resources warn that App Mesh is shut down; nothing else may.
    assert [str(f) for f in findings if f.rule != "W3696"] == []


@pytest.mark.parametrize("mesh", MESHES)
def test_the_source_action_reads_the_repository_through_the_connection(mesh: str) -> None:
    template = connection_template(mesh, branch="release/2")
    config, bundle = source_stage(template)["Actions"]
    assert config["ActionTypeId"] == {"Category": "Source", "Owner": "AWS", "Provider": "CodeStarSourceConnection",
                                      "Version": "1"}
    assert config["Configuration"] == {
        "BranchName": {"Ref": "BranchName"}, "ConnectionArn": {"Ref": "ConnectionArn"},
        "DetectChanges": False, "FullRepositoryId": {"Ref": "FullRepositoryId"}, "OutputArtifactFormat": "CODE_ZIP",
    }
    params = params_of(template)
    assert (params["ConnectionArn"], params["FullRepositoryId"], params["BranchName"]) == (
        ARN, "acme/hello-web-cfg", "release/2")
    # The build still gets the commit from the source action's CommitId variable, and the bundle as before.
    [synth] = template["Resources"]["Pipeline"]["Properties"]["Stages"][1]["Actions"]
    assert "#{" + config["Namespace"] + ".CommitId}" in synth["Configuration"]["EnvironmentVariables"]
    assert bundle["ActionTypeId"]["Provider"] == "S3"


@pytest.mark.parametrize("mesh", MESHES)
def test_a_push_to_the_branch_triggers_the_v2_pipeline_and_nothing_else_does(mesh: str) -> None:
    template = connection_template(mesh)
    pipeline = template["Resources"]["Pipeline"]["Properties"]
    config = source_stage(template)["Actions"][0]
    assert pipeline["PipelineType"] == "V2"
    assert pipeline["Triggers"] == [{
        "GitConfiguration": {"Push": [{"Branches": {"Includes": [{"Ref": "BranchName"}]}}],
                             "SourceActionName": config["Name"]},
        "ProviderType": "CodeStarSourceConnection",
    }]
    # A push filter already starts each run; the action's own change detection would start a second one.
    assert config["Configuration"]["DetectChanges"] is False
    kinds = {r["Type"] for r in template["Resources"].values()}
    assert "AWS::CodeCommit::Repository" not in kinds and "AWS::Events::Rule" not in kinds
    assert "PipelineTriggerRole" not in template["Resources"]
    outputs = template["Outputs"]
    assert "SourceRepoCloneUrlHttp" not in outputs
    assert resolve(outputs["SourceRepository"]["Value"], params_of(template)) == GITHUB
    assert outputs["SourceConnectionArn"]["Value"] == {"Ref": "ConnectionArn"}


def cfn_lint_iam_catalogue() -> dict[str, Any]:
    import cfnlint.data.AdditionalSpecs as specs

    return json.loads((Path(specs.__file__).parent / "Policies.json").read_text())


def arn_format_regex(form: str) -> re.Pattern[str]:
    """IAM's ARN format for a resource type, as a regex over a concrete ARN."""
    text = re.escape(form).replace(r"\.\*", ".*")
    for variable in (r"\$\{Partition\}", r"\$\{Region\}", r"\$\{Account\}"):
        text = text.replace(variable, "[^:]+")
    return re.compile(f"^{text}$")


@pytest.mark.parametrize("mesh", MESHES)
@pytest.mark.parametrize("arn", [ARN, OLD_ARN])
def test_the_pipeline_role_may_use_exactly_that_connection_under_its_own_prefix(mesh: str, arn: str) -> None:
    template = connection_template(mesh, arn)
    prefix = arn.split(":")[2]
    by_sid = {s.get("Sid"): s for role, s in statements(template) if role == "PipelineRole"}
    grant = by_sid["ConfigSource"]
    assert actions_of(grant) == [f"{prefix}:UseConnection"] and resources_of(grant) == [{"Ref": "ConnectionArn"}]
    every = [a for _, s in statements(template) for a in actions_of(s)]
    assert not [a for a in every if a.startswith("codecommit:")]
    assert not [a for _, s in statements(template) if _ == "BuildRole" for a in actions_of(s)
                if "connection" in a.lower()]  # CODE_ZIP: the build never clones through the connection
    # IAM's catalogue: the action exists and is scoped by a connection ARN of that prefix, which this one is.
    service = cfn_lint_iam_catalogue()[prefix]
    assert service["Actions"]["useconnection"]["Resources"] == ["Connection"]
    [form] = service["Resources"]["connection"]["ARNFormats"]
    assert arn_format_regex(form).match(arn)
    other = OLD_ARN if arn == ARN else ARN
    assert not arn_format_regex(form).match(other)
    # The template's parameter takes another connection only under the same prefix.
    pattern = re.compile(template["Parameters"]["ConnectionArn"]["AllowedPattern"])
    assert pattern.match(arn) and not pattern.match(other)


def test_codecommit_pipelines_are_unchanged_by_the_source_option() -> None:
    for mesh in MESHES:
        assert render_service_pipeline("demo", mesh=mesh, source=None) == render_service_pipeline("demo", mesh=mesh)
        assert "ConnectionArn" not in render_service_pipeline("demo", mesh=mesh)["Parameters"]


# ---- pipeline create on AWS ----

@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingFactory]:
    use_fake_credentials(monkeypatch)
    with mock_aws():
        yield RecordingFactory()


def stack_parameters(factory: RecordingFactory, name: str) -> dict[str, str]:
    [stack] = factory.raw("cloudformation").describe_stacks(StackName=name)["Stacks"]
    return {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}


@pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")
def test_a_github_sourced_pipeline_on_moto(aws: RecordingFactory) -> None:
    engine = make_engine(aws, FakeClock(), mesh="service-connect")
    engine.env_create("demo")

    info = engine.pipeline_create("demo", "hello-web", source=GITHUB, connection=ARN, branch="release")
    assert (info.repository, info.branch) == (GITHUB, "release")
    assert info.clone_url == "https://github.com/acme/hello-web-cfg.git"
    params = stack_parameters(aws, "demo-hello-web-pipeline")
    assert (params["ConnectionArn"], params["FullRepositoryId"], params["BranchName"]) == (
        ARN, "acme/hello-web-cfg", "release")

    # Deployed again without options, and through a gateway route: the pipeline keeps its source and branch.
    again = engine.pipeline_create("demo", "hello-web")
    assert (again.repository, again.branch) == (GITHUB, "release")
    engine.gateway_route_set("demo", make_gateway_route("r-web", "/web", "hello-web", "demo.local"))
    assert stack_parameters(aws, "demo-hello-web-pipeline")["BranchName"] == "release"
    assert engine.pipeline_create("demo", "hello-web").repository == GITHUB

    # Switching the source's kind in place is refused, before any change.
    updates = len(aws.calls("cloudformation", "update_stack"))
    with pytest.raises(ConflictError, match="reads github:acme/hello-web-cfg; it cannot switch"):
        engine.pipeline_create("demo", "hello-web", source="codecommit")
    assert len(aws.calls("cloudformation", "update_stack")) == updates


@pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")
def test_a_codecommit_pipeline_is_not_switched_to_a_connection_in_place(aws: RecordingFactory) -> None:
    engine = make_engine(aws, FakeClock(), mesh="service-connect")
    engine.env_create("demo")
    assert engine.pipeline_create("demo", "hello-web").repository is None
    with pytest.raises(ConflictError, match="would be deleted with its history"):
        engine.pipeline_create("demo", "hello-web", source=GITHUB, connection=ARN)


def test_the_cli_prints_the_repository_of_a_github_pipeline_and_the_clone_url_of_codecommit(
        capsys: pytest.CaptureFixture[str]) -> None:
    from meshpipe.cli.ops_cmds import print_pipeline
    from meshpipe.engines.base import PipelineInfo

    print_pipeline(PipelineInfo("hello-web", "demo", "https://github.com/acme/hello-web-cfg.git",
                                "hello-web.demo.local", "CREATE_COMPLETE", repository=GITHUB, branch="release"))
    printed = capsys.readouterr().out
    assert "repository: github:acme/hello-web-cfg (push manifest.yaml to branch release" in printed
    assert "clone URL" not in printed
    codecommit = "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/hello-web-cfg"
    print_pipeline(PipelineInfo("hello-web", "demo", codecommit, "hello-web.demo.local", "CREATE_COMPLETE"))
    assert f"clone URL: {codecommit}" in capsys.readouterr().out


class Captured:
    """A Stubber parameter matcher that keeps what it was compared with."""

    value: Any = None

    def __eq__(self, other: object) -> bool:
        self.value = other
        return True


def test_the_real_template_reaches_cloudformation_with_the_source_parameters() -> None:
    # Stubber: the exact calls of `pipeline create --source github:...`, with the real pipeline template.
    cfn, stub = stubbed("cloudformation")
    env_id = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo-env/1"
    env_stack = {"StackName": "demo-env", "StackId": env_id, "StackStatus": "CREATE_COMPLETE",
                 "CreationTime": "2026-10-01T12:00:00Z",
                 "Outputs": [{"OutputKey": "MeshFlavour", "OutputValue": "service-connect"},
                             {"OutputKey": "ClusterName", "OutputValue": "demo"}]}
    bucket_stack = {**env_stack, "StackName": "demo-build-bucket", "Outputs": []}
    missing = "Stack with id demo-hello-web-pipeline does not exist"
    pipeline_id = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo-hello-web-pipeline/1"
    stub.add_response("describe_stacks", {"Stacks": [env_stack]}, {"StackName": "demo-env"})
    stub.add_response("describe_stacks", {"Stacks": [bucket_stack]}, {"StackName": "demo-build-bucket"})
    stub.add_client_error("describe_stacks", "ValidationError", missing, expected_params={"StackName": "demo-hello-web-pipeline"})
    stub.add_client_error("describe_stacks", "ValidationError", missing, expected_params={"StackName": "demo-hello-web-pipeline"})
    body, parameters = Captured(), Captured()
    stub.add_response("create_stack", {"StackId": pipeline_id},
                      {"StackName": "demo-hello-web-pipeline", "TemplateBody": body, "Parameters": parameters,
                       "Capabilities": ANY})
    created = {"StackName": "demo-hello-web-pipeline", "StackId": pipeline_id, "StackStatus": "CREATE_COMPLETE",
               "CreationTime": "2026-10-01T12:00:00Z",
               "Parameters": [{"ParameterKey": "BranchName", "ParameterValue": "main"},
                              {"ParameterKey": "ConnectionArn", "ParameterValue": ARN},
                              {"ParameterKey": "FullRepositoryId", "ParameterValue": "acme/hello-web-cfg"}],
               "Outputs": [{"OutputKey": "SourceRepository", "OutputValue": GITHUB},
                           {"OutputKey": "SourceConnectionArn", "OutputValue": ARN}]}
    stub.add_response("describe_stacks", {"Stacks": [created]}, {"StackName": pipeline_id})
    stub.add_response("describe_stack_events", {"StackEvents": []}, {"StackName": pipeline_id})
    engine = make_engine(StubFactory(cloudformation=cfn), FakeClock(), templates=None)

    info = engine.pipeline_create("demo", "hello-web", source=GITHUB, connection=ARN)

    stub.assert_no_pending_responses()
    assert info.repository == GITHUB and info.clone_url == "https://github.com/acme/hello-web-cfg.git"
    template = json.loads(body.value)
    assert template == connection_template("service-connect")  # the real template, nothing else
    # The repository, connection and branch are the template's defaults; only the names are passed.
    assert {p["ParameterKey"]: p["ParameterValue"] for p in parameters.value} == {
        "EnvironmentName": "demo", "ServiceName": "hello-web"}
    assert params_of(template)["ConnectionArn"] == ARN
