"""Every status meshpipe records or reports, one ``str`` enum per kind of thing.

Each member is spelt as it is stored (state.db, a rollout's JSON) and shown (``--format json``, text), so a
member compares equal to its word and reads back from it: ``VersionStatus("CREATE_COMPLETE")``.
"""

from __future__ import annotations

from enum import StrEnum


class VersionStatus(StrEnum):
    """A version's deployment on the local engine, in CloudFormation's words for a stack (as on AWS)."""

    CREATE_IN_PROGRESS = "CREATE_IN_PROGRESS"
    CREATE_COMPLETE = "CREATE_COMPLETE"
    CREATE_FAILED = "CREATE_FAILED"
    DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"


class TaskGoal(StrEnum):
    """What a task slot should be: running, or stopped (its version is being deleted)."""

    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class TaskState(StrEnum):
    """What a task is, as its supervisor last saw it."""

    PENDING = "PENDING"  # not started yet
    STARTING = "STARTING"  # started, not healthy yet (within its start period)
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    STOPPED = "STOPPED"


class RunStatus(StrEnum):
    """The status of a pipeline run or of one of its stages, in CodePipeline's words (both engines)."""

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


class RolloutStatus(StrEnum):
    """Where a progressive rollout ended, or that it still runs."""

    RUNNING = "running"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    HALTED = "halted"  # a pre-rollout webhook refused: no traffic ever moved
    SUPERSEDED = "superseded"  # a newer version of the service started its own rollout

    @property
    def finished(self) -> bool:
        return self is not RolloutStatus.RUNNING


class RolloutPhase(StrEnum):
    """What a running rollout is doing."""

    PRE_ROLLOUT = "pre-rollout"  # its pre-rollout webhooks are asked
    PREVIEW = "preview"  # blue-green, before the switch
    STEP = "step"
    CONFIRMING = "confirming"  # its confirm-promotion webhooks hold the promotion
    DONE = "done"


class ProxyState(StrEnum):
    """A sidecar or gateway proxy's server state, in Envoy's words (its admin page's ``/server_info``)."""

    PRE_INITIALIZING = "PRE_INITIALIZING"
    LIVE = "LIVE"  # every listener bound: the sidecar's health check passes
    DRAINING = "DRAINING"
    STOPPED = "STOPPED"
