"""Pipeline runs and logs from CodePipeline, CodeBuild and CloudWatch Logs.

moto 5.2.5 has no ListActionExecutions, so those three services are Stubber-backed here; the pipeline
stack that names the pipeline is deployed on moto's CloudFormation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from meshpipe.clock import iso_utc
from meshpipe.engines.aws.engine import AwsEngine
from meshpipe.errors import NotFoundError
from support.aws import FakeClock, RecordingFactory, make_engine, stubbed, use_fake_credentials

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
PIPELINE = "demo-hello-backend"  # the stand-in pipeline stack's PipelineName output
COMMIT_1 = "e9d5f17a" + "1" * 32
COMMIT_2 = "0badc0de" + "2" * 32
BUILD_ID = "demo-hello-backend-build:7c1e"

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def pipeline_declaration() -> dict[str, Any]:
    def stage(name: str, provider: str, category: str) -> dict[str, Any]:
        return {"name": name, "actions": [{"name": provider, "actionTypeId": {
            "category": category, "owner": "AWS", "provider": provider, "version": "1"}}]}

    return {"pipeline": {"name": PIPELINE, "roleArn": "arn:aws:iam::123456789012:role/pipeline", "stages": [
        stage("Source", "CodeCommit", "Source"), stage("Build", "CodeBuild", "Build"),
        stage("Deploy", "CloudFormation", "Deploy")]}}


def action(run: str, stage: str, name: str, provider: str, status: str, minute: int,
           result: dict[str, Any] | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "pipelineExecutionId": run, "actionExecutionId": f"{run}-{name}", "stageName": stage, "actionName": name,
        "startTime": at(minute), "lastUpdateTime": at(minute + 1), "status": status,
        "input": {"actionTypeId": {"category": "Build", "owner": "AWS", "provider": provider, "version": "1"}},
    }
    if result:
        detail["output"] = {"executionResult": result}
    return detail


def run_summary(run: str, status: str, commit: str, minute: int) -> dict[str, Any]:
    return {"pipelineExecutionId": run, "status": status, "startTime": at(minute), "lastUpdateTime": at(minute + 5),
            "sourceRevisions": [{"actionName": "Config", "revisionId": commit},
                                {"actionName": "BuildBundle", "revisionId": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"}]}


RUN_1_ACTIONS = [
    action("run-1", "Source", "Config", "CodeCommit", "Succeeded", 0, {"externalExecutionSummary": "first"}),
    action("run-1", "Build", "Synth", "CodeBuild", "Succeeded", 1, {"externalExecutionId": BUILD_ID}),
    action("run-1", "Deploy", "CreateStack", "CloudFormation", "Succeeded", 3),
]
RUN_2_ACTIONS = [
    action("run-2", "Source", "Config", "CodeCommit", "Succeeded", 10),
    action("run-2", "Build", "Synth", "CodeBuild", "Failed", 11, {
        "externalExecutionId": BUILD_ID, "errorDetails": {"code": "JobFailed", "message": "manifest invalid"}}),
]


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AwsEngine, dict[str, Any]]]:
    use_fake_credentials(monkeypatch)
    with mock_aws():
        clients = {name: stubbed(name) for name in ("codepipeline", "codebuild", "logs")}
        factory = RecordingFactory(overrides={name: client for name, (client, _) in clients.items()})
        engine = make_engine(factory, FakeClock())
        engine.env_create("demo")
        engine.pipeline_create("demo", "hello-backend")
        yield engine, {name: stub for name, (_, stub) in clients.items()}
        for stub in clients.values():
            stub[1].assert_no_pending_responses()


def test_runs_are_listed_newest_first_with_their_stages(stubs: tuple[AwsEngine, dict[str, Any]]) -> None:
    engine, stub = stubs
    cp = stub["codepipeline"]
    cp.add_response("get_pipeline", pipeline_declaration(), {"name": PIPELINE})
    cp.add_response("list_pipeline_executions", {"pipelineExecutionSummaries": [
        run_summary("run-2", "Failed", COMMIT_2, 10), run_summary("run-1", "Succeeded", COMMIT_1, 0)]},
        {"pipelineName": PIPELINE, "maxResults": 10})
    for run, actions in (("run-2", RUN_2_ACTIONS), ("run-1", RUN_1_ACTIONS)):
        cp.add_response("list_action_executions", {"actionExecutionDetails": actions},
                        {"pipelineName": PIPELINE, "filter": {"pipelineExecutionId": run}})

    newest, oldest = engine.pipeline_runs("demo", "hello-backend")

    assert (newest.run_id, newest.status, newest.commit, newest.version) == ("run-2", "Failed", COMMIT_2, None)
    assert [(s.name, s.status) for s in newest.stages] == [
        ("Source", "Succeeded"), ("Build", "Failed"), ("Deploy", "Skipped")]
    assert "error: manifest invalid" in newest.stages[1].log
    assert (oldest.run_id, oldest.version) == ("run-1", "e9d5f17a")
    assert [s.status for s in oldest.stages] == ["Succeeded"] * 3
    assert oldest.started_at == iso_utc(at(0)) and oldest.finished_at == iso_utc(at(5))


def test_logs_of_the_latest_run_include_the_codebuild_log(stubs: tuple[AwsEngine, dict[str, Any]]) -> None:
    engine, stub = stubs
    cp = stub["codepipeline"]
    cp.add_response("get_pipeline", pipeline_declaration())
    cp.add_response("list_pipeline_executions", {"pipelineExecutionSummaries": [
        run_summary("run-2", "Failed", COMMIT_2, 10)]}, {"pipelineName": PIPELINE, "maxResults": 1})
    cp.add_response("list_action_executions", {"actionExecutionDetails": RUN_2_ACTIONS})
    stub["codebuild"].add_response("batch_get_builds", {"builds": [{"id": BUILD_ID, "logs": {
        "groupName": "/aws/codebuild/demo-hello-backend", "streamName": "7c1e"}}]}, {"ids": [BUILD_ID]})
    stub["logs"].add_response("get_log_events", {
        "events": [{"timestamp": 1, "message": "meshpipe synth manifest.yaml\n", "ingestionTime": 1},
                   {"timestamp": 2, "message": "manifest.yaml:3: AppContainer.Port: must be 1-65535\n",
                    "ingestionTime": 2}],
        "nextForwardToken": "f/2", "nextBackwardToken": "b/0"},
        {"logGroupName": "/aws/codebuild/demo-hello-backend", "logStreamName": "7c1e", "startFromHead": True})
    stub["logs"].add_response("get_log_events", {"events": [], "nextForwardToken": "f/2",
                                                 "nextBackwardToken": "b/2"})

    run = engine.pipeline_logs("demo", "hello-backend")

    build = next(s for s in run.stages if s.name == "Build")
    assert build.log.splitlines() == [
        "Synth: Failed",
        "  error: manifest invalid",
        "  meshpipe synth manifest.yaml",
        "  manifest.yaml:3: AppContainer.Port: must be 1-65535",
    ]


def test_logs_of_an_unknown_run_are_not_found(stubs: tuple[AwsEngine, dict[str, Any]]) -> None:
    engine, stub = stubs
    stub["codepipeline"].add_response("get_pipeline", pipeline_declaration())
    stub["codepipeline"].add_client_error("get_pipeline_execution", "PipelineExecutionNotFoundException",
                                          "no such execution")
    with pytest.raises(NotFoundError, match="has no run run-9"):
        engine.pipeline_logs("demo", "hello-backend", "run-9")


def test_runs_of_a_service_without_pipeline_are_not_found(stubs: tuple[AwsEngine, dict[str, Any]]) -> None:
    engine, _ = stubs
    with pytest.raises(NotFoundError, match="hello-web has no pipeline"):
        engine.pipeline_runs("demo", "hello-web")
