"""``rollout status`` on ECS Service Connect: the service's latest ECS deployment, as ECS reports it.

ECS runs the rollout there (the plan rendered by ``meshpipe.synth.rollout_deploy``), so the status is read,
not kept: the deployment's state and lifecycle stage, the traffic each revision gets, the alarms that
watch it (and any that fired), and why it was rolled back.
"""

from __future__ import annotations

from typing import Any

from meshpipe.engines.aws.calls import answer_time
from meshpipe.engines.aws.ecs_api import EcsApi, Revision, revision_parts
from meshpipe.errors import NotFoundError

# ECS's deployment states in the words the local engine's rollouts use.
STATUS = {"PENDING": "running", "IN_PROGRESS": "running", "SUCCESSFUL": "promoted", "STOP_REQUESTED": "stopping",
          "STOPPED": "stopped", "ROLLBACK_REQUESTED": "rolling-back", "ROLLBACK_IN_PROGRESS": "rolling-back",
          "ROLLBACK_SUCCESSFUL": "rolled-back", "ROLLBACK_FAILED": "rollback-failed"}




def ecs_rollout_status(ecs: EcsApi, cluster: str, environment: str, service: str,
                       revisions: list[Revision], describe: Any) -> dict[str, Any]:
    """The status document of ``rollout status --engine aws``; ``describe`` words a deployment configuration."""
    deployment = ecs.newest_deployment(cluster, service)
    if deployment is None:
        raise NotFoundError(f"{service} has had no ECS deployment yet",
                            hint=f"push a manifest to {service}-cfg: its pipeline deploys a new revision")
    parts = revision_parts(deployment)
    task_definitions = ecs.revision_task_definitions([p["arn"] for p, _ in parts if p.get("arn")])
    by_arn = {r.arn: r.version for r in revisions}

    def version_of(part: dict[str, Any]) -> str:
        td = task_definitions.get(part.get("arn", ""), "")
        return by_arn.get(td) or td.rsplit("/", 1)[-1] or "?"

    weights = {version_of(p): round(float(p.get("requestedProductionTrafficWeight", 0.0)), 1) for p, _ in parts}
    alarms = deployment.get("alarms") or {}
    rollback = deployment.get("rollback") or {}
    ecs_status = str(deployment.get("status", ""))
    return {
        "engine": "aws", "environment": environment, "service": service,
        "deployment": deployment.get("serviceDeploymentArn"), "ecs_status": ecs_status,
        "status": STATUS.get(ecs_status, ecs_status.lower()), "phase": deployment.get("lifecycleStage"),
        "describe": describe(deployment.get("deploymentConfiguration") or {}),
        "candidate": next((version_of(p) for p, role in parts if role == "target"), None),
        "stable": ", ".join(version_of(p) for p, role in parts if role == "source"),
        "weights": weights,
        "alarms": {"status": alarms.get("status"), "names": list(alarms.get("alarmNames", [])),
                   "triggered": list(alarms.get("triggeredAlarmNames", []))},
        "reason": rollback.get("reason") or deployment.get("statusReason") or "",
        "started_at": answer_time(deployment.get("startedAt") or deployment.get("createdAt")),
        "finished_at": answer_time(deployment.get("finishedAt") or deployment.get("stoppedAt")),
    }
