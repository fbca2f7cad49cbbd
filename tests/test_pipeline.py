"""Pipeline stages Source -> Build -> Deploy with fakes at the edges, and once with a real bare repo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshpipe.engines.local.delivery.runs import git_source
from meshpipe.engines.local.source.gitrepo import create_bare_repo
from meshpipe.errors import ConflictError, NotFoundError
from meshpipe.git import GitIdentity, clone, commit_all, push
from meshpipe.model import ServiceVersion
from meshpipe.pipeline.stages import (
    FAILED,
    SKIPPED,
    SUCCEEDED,
    SourceInput,
    run_pipeline,
)
from meshpipe.platform import PlatformPolicy, local_settings
from meshpipe.synth import SynthResult

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
COMMIT = "e9d5f17a3c0b8e2f6a1d4c7b9e0f2a3b5c6d7e8f"
WEB_MANIFEST = (EXAMPLES / "hello-web-cfg" / "manifest.yaml").read_bytes()
BROKEN = b"""Task:
  Family: "hello-web"
  Cpu: 300
  Memory: 512

AppContainer:
  Image: "wizriz/hello-web:66f2a19"
  Port: 80
  HealthCheckPath: "/ping; rm -rf /"
"""


class FakeDeploy:
    def __init__(self, fail_with: Exception | None = None) -> None:
        self.calls: list[tuple[ServiceVersion, SynthResult]] = []
        self.fail_with = fail_with

    def __call__(self, version: ServiceVersion, stack: SynthResult) -> str:
        self.calls.append((version, stack))
        if self.fail_with:
            raise self.fail_with
        return f"created {stack.stack_name} with 2 tasks"


class LogSink:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, stage: str, line: str) -> None:
        self.lines.append((stage, line))


def source(raw: bytes = WEB_MANIFEST, service: str = "hello-web", commit: str = COMMIT) -> SourceInput:
    return SourceInput(service, commit, lambda: raw)


def test_a_good_manifest_runs_all_three_stages() -> None:
    deploy, log = FakeDeploy(), LogSink()
    outcome = run_pipeline(source(), local_settings("demo"), deploy, log)
    assert outcome.status == SUCCEEDED and outcome.succeeded
    assert [(s.name, s.status) for s in outcome.stages] == [
        ("Source", SUCCEEDED), ("Build", SUCCEEDED), ("Deploy", SUCCEEDED)]
    assert outcome.version == "e9d5f17a"
    assert outcome.stack_name == "demo-hello-web-e9d5f17a"
    assert set(outcome.seconds) == {"Source", "Build", "Deploy"}
    assert all(s >= 0 for s in outcome.seconds.values())
    assert outcome.failed_stage is None and outcome.error is None

    [(version, stack)] = deploy.calls
    assert version.service == "hello-web" and version.commit == COMMIT
    assert version.backends == ("hello-backend.demo.local",)
    assert version.app.command == ("node", "server", "-b http://hello-backend.demo.local/data")
    assert stack.stack_name == "demo-hello-web-e9d5f17a"
    assert "VirtualNode" in json.dumps(stack.template)

    assert "created demo-hello-web-e9d5f17a with 2 tasks" in outcome.stage("Deploy").log
    assert "Version e9d5f17a: virtual node vn-hello-web-e9d5f17a" in outcome.stage("Build").log
    # Every line reached the caller's log as it was written, tagged with its stage.
    assert [line for stage, line in log.lines if stage == "Build"] == outcome.stage("Build").log.splitlines()


def test_a_broken_manifest_fails_build_with_line_numbered_errors_and_never_deploys() -> None:
    deploy, log = FakeDeploy(), LogSink()
    outcome = run_pipeline(source(BROKEN), local_settings("demo"), deploy, log)
    assert outcome.status == FAILED and not outcome.succeeded
    assert outcome.failed_stage == "Build"
    assert [(s.name, s.status) for s in outcome.stages] == [
        ("Source", SUCCEEDED), ("Build", FAILED), ("Deploy", SKIPPED)]
    assert deploy.calls == []
    build_log = outcome.stage("Build").log
    assert "manifest.yaml:3: Task.Cpu: 300 is not a Fargate CPU size" in build_log
    assert "manifest.yaml:9: AppContainer.HealthCheckPath: " in build_log
    assert outcome.error is not None and "manifest.yaml:3: Task.Cpu" in outcome.error
    assert outcome.stack_name is None and outcome.built is None
    assert outcome.stage("Deploy").log == ""
    assert "Deploy" not in outcome.seconds


def test_the_platform_policy_applies_in_build() -> None:
    policy = PlatformPolicy(allowed_registries=("registry.example.com",))
    settings = local_settings("demo").model_copy(update={"policy": policy})
    outcome = run_pipeline(source(), settings, FakeDeploy(), LogSink())
    assert outcome.failed_stage == "Build"
    error = outcome.error or ""
    assert "manifest.yaml:7: AppContainer.Image: registry 'docker.io'" in error
    assert "registry.example.com" in error


def test_a_source_that_cannot_be_read_fails_source() -> None:
    def missing() -> bytes:
        raise NotFoundError("manifest.yaml is not in commit e9d5f17a of hello-web-cfg.git",
                            hint="add manifest.yaml at the top of the repository")

    deploy = FakeDeploy()
    outcome = run_pipeline(SourceInput("hello-web", COMMIT, missing), local_settings("demo"), deploy, LogSink())
    assert [(s.name, s.status) for s in outcome.stages] == [
        ("Source", FAILED), ("Build", SKIPPED), ("Deploy", SKIPPED)]
    assert "manifest.yaml is not in commit e9d5f17a" in outcome.stage("Source").log
    assert "hint: add manifest.yaml at the top of the repository" in outcome.stage("Source").log
    assert deploy.calls == []


def test_a_failing_deploy_fails_deploy_with_its_message() -> None:
    deploy = FakeDeploy(ConflictError("stack demo-hello-web-e9d5f17a already exists"))
    outcome = run_pipeline(source(), local_settings("demo"), deploy, LogSink())
    assert outcome.failed_stage == "Deploy"
    assert outcome.error == "stack demo-hello-web-e9d5f17a already exists"
    assert outcome.version == "e9d5f17a"  # Build got that far
    assert outcome.stage("Build").status == SUCCEEDED


def test_an_unexpected_deploy_error_is_reported_not_raised() -> None:
    outcome = run_pipeline(source(), local_settings("demo"), FakeDeploy(RuntimeError("port pool exhausted")),
                           LogSink())
    assert outcome.error == "RuntimeError: port pool exhausted"


def test_a_bad_service_name_or_commit_fails_build() -> None:
    outcome = run_pipeline(source(service="Hello_Web"), local_settings("demo"), FakeDeploy(), LogSink())
    assert outcome.failed_stage == "Build" and "is not a service name" in (outcome.error or "")
    outcome = run_pipeline(source(commit="not-a-commit"), local_settings("demo"), FakeDeploy(), LogSink())
    assert outcome.failed_stage == "Build" and "is not a git commit id" in (outcome.error or "")


def test_a_broken_log_sink_does_not_change_the_outcome() -> None:
    def sink(stage: str, line: str) -> None:
        raise OSError("disk full")

    assert run_pipeline(source(), local_settings("demo"), FakeDeploy(), sink).status == SUCCEEDED


def test_service_connect_flavour_and_to_run() -> None:
    deploy = FakeDeploy()
    outcome = run_pipeline(source(), local_settings("demo"), deploy, LogSink(), mesh="service-connect")
    assert outcome.succeeded
    assert deploy.calls[0][1].mesh == "service-connect"
    run = outcome.to_run("r1", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z")
    assert (run.run_id, run.status, run.version, run.commit) == ("r1", SUCCEEDED, "e9d5f17a", COMMIT)
    assert [s.name for s in run.stages] == ["Source", "Build", "Deploy"]


def test_an_unknown_mesh_flavour_fails_build() -> None:
    outcome = run_pipeline(source(), local_settings("demo"), FakeDeploy(), LogSink(), mesh="istio")
    assert outcome.failed_stage == "Build" and "unknown mesh flavour 'istio'" in (outcome.error or "")


def test_source_from_a_real_bare_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MESHPIPE_HOME", str(tmp_path / "mp"))
    bare = tmp_path / "hello-backend-cfg.git"
    create_bare_repo(bare, ["/bin/true"])
    work = clone(str(bare), tmp_path / "work")
    (work / "manifest.yaml").write_bytes((EXAMPLES / "hello-backend-cfg" / "manifest.yaml").read_bytes())
    identity = GitIdentity("Tester", "tester@example.invalid")
    first = commit_all(work, "Baseline service configuration", identity)
    (work / "manifest.yaml").write_bytes((EXAMPLES / "hello-backend-cfg-v2" / "manifest.yaml").read_bytes())
    second = commit_all(work, "Changed greeting", identity)
    push(work)

    outcomes = {}
    for commit in (first, second):
        deploy = FakeDeploy()
        outcomes[commit] = run_pipeline(git_source(bare, "hello-backend", commit), local_settings("demo"),
                                        deploy, LogSink())
        assert outcomes[commit].succeeded, outcomes[commit].error
    assert outcomes[first].stack_name == f"demo-hello-backend-{first[:8]}"
    v1 = outcomes[first].built
    v2 = outcomes[second].built
    assert v1 is not None and v2 is not None
    assert v1.version.app.command == ("node", "server", "-g Hello", "-m Welcome to our world!")
    assert v2.version.app.command == ("node", "server", "-g Yo", "-m Have a great day!")

    (work / "manifest.yaml").unlink()
    third = commit_all(work, "Removed the manifest", identity)
    push(work)
    outcome = run_pipeline(git_source(bare, "hello-backend", third), local_settings("demo"), FakeDeploy(), LogSink())
    assert outcome.failed_stage == "Source"
    assert f"manifest.yaml is not in commit {third[:8]}" in (outcome.error or "")
