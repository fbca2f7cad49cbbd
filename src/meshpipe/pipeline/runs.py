"""A pipeline run as every engine reports it: its status, and each stage's.

The statuses are CodePipeline's words (the local engine uses the same ones), as a ``str`` enum so JSON
output and text read exactly as the words themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RunStatus(StrEnum):
    """The status of a run or of one of its stages."""

    PENDING = "Pending"  # a stage not started yet
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"  # a stage that did not run (an earlier one failed)
    SUPERSEDED = "Superseded"  # a newer push of the service was waiting: this run gave way to it
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    CANCELLED = "Cancelled"
    ABANDONED = "Abandoned"

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.PENDING, RunStatus.IN_PROGRESS, RunStatus.STOPPING)


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
