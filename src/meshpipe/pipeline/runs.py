"""A pipeline run as every engine reports it: its status, and each stage's.

The statuses are CodePipeline's words (the local engine uses the same ones): :class:`meshpipe.status.RunStatus`.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshpipe.status import RunStatus


@dataclass(frozen=True)
class StageResult:
    name: str  # Source | Build | Deploy
    status: RunStatus
    log: str = ""


@dataclass(frozen=True)
class PipelineRun:
    run_id: str
    service: str
    commit: str | None
    status: RunStatus
    started_at: str
    finished_at: str | None
    stages: tuple[StageResult, ...] = ()
    version: str | None = None


@dataclass(frozen=True)
class StartedRun:
    """A run started for a commit already pushed (``pipeline start``)."""

    run_id: str
    service: str
    commit: str
