"""A service pipeline run: Source -> Build -> Deploy, the same for every engine.

As in the original sample's CodePipeline: Source fetches ``manifest.yaml`` at the pushed commit; Build validates it
against the platform's policy, resolves the version and synthesizes its stack (the CDK build script's
job); Deploy creates the stack. Build is pure. Source and Deploy are the edges and are passed in (a git
repo read and a local deploy here; CodeCommit and CloudFormation on AWS), as is ``log``, which receives
every log line as it is written so a caller can store or stream it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from meshpipe.errors import MeshpipeError, ValidationError
from meshpipe.manifest import load_manifest_text
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.model import ServiceVersion, resolve
from meshpipe.pipeline.runs import PipelineRun, StageResult
from meshpipe.platform import PlatformSettings
from meshpipe.status import RunStatus
from meshpipe.synth import SynthResult, synthesize

SOURCE, BUILD, DEPLOY = "Source", "Build", "Deploy"
STAGES = (SOURCE, BUILD, DEPLOY)
SUCCEEDED, FAILED, SKIPPED = RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED

LogFn = Callable[[str, str], None]  # (stage, line)
DeployFn = Callable[[ServiceVersion, SynthResult], str]  # returns what was done, for the Deploy log
SynthFn = Callable[[ServiceVersion, MeshFlavour], SynthResult]


@dataclass(frozen=True)
class SourceInput:
    """What the Source stage fetches from: a service's config repo at one commit."""

    service: str
    commit: str
    read_manifest: Callable[[], bytes]
    file_label: str = "manifest.yaml"  # how Build names the file in its messages


@dataclass(frozen=True)
class BuildOutput:
    version: ServiceVersion
    stack: SynthResult


@dataclass(frozen=True)
class PipelineOutcome:
    """How a run went: status, each stage with its log and duration, and what it built."""

    service: str
    commit: str
    status: RunStatus  # Succeeded | Failed
    stages: tuple[StageResult, ...]
    seconds: dict[str, float] = field(default_factory=dict)  # stage name -> duration
    version: str | None = None  # version id, once Build resolved it
    stack_name: str | None = None
    failed_stage: str | None = None
    error: str | None = None  # the failed stage's message
    built: BuildOutput | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    def stage(self, name: str) -> StageResult:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def to_run(self, run_id: str, started_at: str, finished_at: str | None) -> PipelineRun:
        return PipelineRun(run_id=run_id, service=self.service, commit=self.commit, status=self.status,
                           started_at=started_at, finished_at=finished_at, stages=self.stages,
                           version=self.version)


class _StageFailed(Exception):
    """Ends a stage: its message is already in the stage's log."""


class _StageLog:
    """Collects a stage's lines and hands each one to the caller's ``log`` as it is written."""

    def __init__(self, stage: str, sink: LogFn) -> None:
        self.stage = stage
        self.sink = sink
        self.lines: list[str] = []

    def __call__(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.lines.append(line)
            # A broken log sink must not change the run's outcome.
            with contextlib.suppress(Exception):
                self.sink(self.stage, line)

    def fail(self, exc: BaseException) -> _StageFailed:
        message = describe_error(exc)
        self(message)
        return _StageFailed(message)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def describe_error(exc: BaseException) -> str:
    """An error as a pipeline log shows it: a validation error's problems one per line, a hint after."""
    if isinstance(exc, ValidationError):
        text = "\n".join(str(p) for p in exc.problems)
    elif isinstance(exc, MeshpipeError):
        text = exc.message
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    hint = getattr(exc, "hint", None)
    return f"{text}\nhint: {hint}" if hint else text


def source_stage(source: SourceInput, log: _StageLog) -> bytes:
    log(f"Fetching {source.file_label} of {source.service} at commit {source.commit}")
    try:
        raw = source.read_manifest()
    except Exception as exc:
        raise log.fail(exc) from None
    log(f"Fetched {source.file_label} ({len(raw)} bytes)")
    return raw


def build_stage(source: SourceInput, raw: bytes, settings: PlatformSettings, mesh: MeshFlavour, synth: SynthFn,
                log: _StageLog, mesh_note: str | None = None) -> BuildOutput:
    """Validate, resolve, synthesize: manifest bytes + settings + commit -> version + template. Pure."""
    log(f"Validating {source.file_label} against the platform policy of environment {settings.environment_name}")
    try:
        loaded = load_manifest_text(raw, source.file_label, settings.policy)
        version = resolve(loaded, settings, source.service, source.commit)
    except Exception as exc:
        raise log.fail(exc) from None
    log(f"Manifest valid: image {version.app.image}, port {version.app.port}, "
        f"backends: {', '.join(version.backends) or 'none'}")
    log(f"Version {version.version}: virtual node {version.virtual_node_name}, ECS service "
        f"{version.ecs_service_name}, DNS {version.dns_name}")
    try:
        stack = synth(version, mesh)
    except Exception as exc:
        raise log.fail(exc) from None
    resources = stack.template.get("Resources", {})
    log(f"Synthesized stack {stack.stack_name} ({mesh_note or mesh}): {len(resources)} resources, "
        f"{len(stack.json_text)} bytes of template")
    return BuildOutput(version, stack)


def deploy_stage(built: BuildOutput, deploy: DeployFn, log: _StageLog) -> None:
    log(f"Deploying stack {built.stack.stack_name}")
    try:
        said = deploy(built.version, built.stack)
    except Exception as exc:
        raise log.fail(exc) from None
    if said:
        log(said)
    log(f"Stack {built.stack.stack_name} deployed")


def run_pipeline(source: SourceInput, settings: PlatformSettings, deploy: DeployFn, log: LogFn,
                 mesh: MeshFlavour = MeshFlavour.APPMESH, synth: SynthFn = synthesize,
                 mesh_note: str | None = None) -> PipelineOutcome:
    """Run Source, Build and Deploy in order; a failed stage ends the run and skips the ones after it.

    ``mesh_note``: how the build log names what the template is for, when not the flavour itself (the
    local engine records the original sample's template but runs it on its own mesh)."""
    results: list[StageResult] = []
    seconds: dict[str, float] = {}
    raw = b""
    built: BuildOutput | None = None
    failed_stage: str | None = None
    error: str | None = None

    for name in STAGES:
        if failed_stage is not None:
            results.append(StageResult(name, SKIPPED, ""))
            continue
        stage_log = _StageLog(name, log)
        started = time.monotonic()
        try:
            if name == SOURCE:
                raw = source_stage(source, stage_log)
            elif name == BUILD:
                built = build_stage(source, raw, settings, mesh, synth, stage_log, mesh_note)
            else:
                assert built is not None
                deploy_stage(built, deploy, stage_log)
            status = SUCCEEDED
        except _StageFailed as exc:
            status, failed_stage, error = FAILED, name, str(exc)
        seconds[name] = time.monotonic() - started
        stage_log(f"{name} {status.lower()} in {seconds[name]:.2f} s")
        results.append(StageResult(name, status, stage_log.text))

    return PipelineOutcome(
        service=source.service,
        commit=source.commit,
        status=FAILED if failed_stage else SUCCEEDED,
        stages=tuple(results),
        seconds=seconds,
        version=built.version.version if built else None,
        stack_name=built.stack.stack_name if built else None,
        failed_stage=failed_stage,
        error=error,
        built=built,
    )
