"""Service pipelines: Source -> Build -> Deploy, shared by the local and the AWS engine."""

from meshpipe.pipeline.sources import MANIFEST_FILE, git_source
from meshpipe.pipeline.stages import (
    BUILD,
    DEPLOY,
    FAILED,
    SKIPPED,
    SOURCE,
    STAGES,
    SUCCEEDED,
    BuildOutput,
    DeployFn,
    LogFn,
    PipelineOutcome,
    SourceInput,
    build_stage,
    describe_error,
    run_pipeline,
)

__all__ = ["BUILD", "DEPLOY", "FAILED", "MANIFEST_FILE", "SKIPPED", "SOURCE", "STAGES", "SUCCEEDED", "BuildOutput",
           "DeployFn", "LogFn", "PipelineOutcome", "SourceInput", "build_stage", "describe_error", "git_source",
           "run_pipeline"]
