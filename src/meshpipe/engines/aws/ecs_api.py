"""ECS, for environments on Service Connect: a service's versions are its task-definition revisions, and
its traffic moves by ECS deployments (canary, linear, blue/green), which this module reads and acts on.

A revision belongs to a version when it carries the tags the Service Connect synth puts on it
(``meshpipe:environment``, ``meshpipe:service``, ``meshpipe:version``, ``meshpipe:commit``). ECS reports a
running deployment's traffic split as each service revision's requested production traffic weight.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshpipe.engines.aws.calls import AwsCalls, answer_time
from meshpipe.engines.aws.errors import error_code, is_not_found

TAG_PREFIX = "meshpipe:"
# Deployments that still run: their traffic may be split and ECS can still roll them back.
RUNNING_DEPLOYMENT_STATUSES = ["PENDING", "IN_PROGRESS", "STOP_REQUESTED", "ROLLBACK_REQUESTED",
                               "ROLLBACK_IN_PROGRESS"]
ROLLING_BACK = frozenset({"ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"})
DESCRIBE_BATCH = 20  # DescribeServiceDeployments / DescribeServiceRevisions take at most 20 ARNs


@dataclass(frozen=True)
class Revision:
    """One task-definition revision of a service, with the version it deploys."""

    arn: str
    family: str
    number: int
    version: str
    commit: str
    registered_at: str | None = None

    @property
    def name(self) -> str:
        return f"{self.family}:{self.number}"


@dataclass(frozen=True)
class TrafficShare:
    """A task-definition revision's part of a running deployment."""

    task_definition: str
    weight: float
    role: str  # "source" (being replaced) or "target" (being deployed)


@dataclass(frozen=True)
class Deployment:
    """A running ECS service deployment."""

    arn: str
    status: str
    stage: str | None
    shares: tuple[TrafficShare, ...]
    paused_lifecycle_hook: str | None = None  # id of a PAUSE lifecycle hook waiting for an action

    @property
    def rolling_back(self) -> bool:
        return self.status in ROLLING_BACK

    def share_of(self, task_definition: str) -> TrafficShare | None:
        return next((s for s in self.shares if s.task_definition == task_definition), None)

    @property
    def target(self) -> str | None:
        return next((s.task_definition for s in self.shares if s.role == "target"), None)

    @property
    def sources(self) -> list[str]:
        return [s.task_definition for s in self.shares if s.role == "source"]


@dataclass(frozen=True)
class ServiceState:
    """What ECS says about a service now: its task definition and the tasks of each of its deployments."""

    name: str
    arn: str
    task_definition: str
    # task definition -> (deployment status PRIMARY/ACTIVE, rollout state, running tasks, desired tasks)
    deployments: dict[str, tuple[str, str, int, int]] = field(default_factory=dict)
    strategy: dict[str, Any] = field(default_factory=dict)


def family_of(task_definition_arn: str) -> tuple[str, int]:
    """``arn:...:task-definition/hello-web:7`` -> ``("hello-web", 7)``."""
    name = task_definition_arn.rsplit("/", 1)[-1]
    family, _, number = name.rpartition(":")
    return family, int(number) if number.isdigit() else 0


class EcsApi:
    def __init__(self, calls: AwsCalls) -> None:
        self.calls = calls

    # -- the service ------------------------------------------------------------------------------------

    def service(self, cluster: str, name: str) -> ServiceState | None:
        """The service, or None when there is none (or only a deleted one) by that name."""
        page = self.calls.call_or_none("ecs", "describe_services", when=_missing, cluster=cluster,
                                       services=[name])
        found = [s for s in (page or {}).get("services", []) if s.get("status") != "INACTIVE"]
        if not found:
            return None
        svc = found[0]
        deployments = {
            d["taskDefinition"]: (str(d.get("status", "")), str(d.get("rolloutState", "")),
                                  int(d.get("runningCount", 0)), int(d.get("desiredCount", 0)))
            for d in svc.get("deployments", []) if d.get("taskDefinition")
        }
        return ServiceState(name=svc["serviceName"], arn=svc["serviceArn"], task_definition=svc["taskDefinition"],
                            deployments=deployments, strategy=dict(svc.get("deploymentConfiguration", {})))

    def newest_deployment(self, cluster: str, service: str, statuses: Sequence[str] = ()) -> dict[str, Any] | None:
        """The service's newest deployment (of those in ``statuses``, when given), as DescribeServiceDeployments
        gives it, or None."""
        only = {"status": statuses} if statuses else {}
        page = self.calls.call_or_none("ecs", "list_service_deployments", when=_missing, cluster=cluster,
                                       service=service, **only)
        briefs = sorted((page or {}).get("serviceDeployments", []), key=lambda b: str(b.get("createdAt", "")))
        if not briefs:
            return None
        found = self.calls("ecs", "describe_service_deployments",
                           serviceDeploymentArns=[briefs[-1]["serviceDeploymentArn"]])
        deployments = found.get("serviceDeployments", [])
        return dict(deployments[0]) if deployments else None

    def running_deployment(self, cluster: str, service: str) -> Deployment | None:
        """The deployment that still runs (the newest one, should there be several), or None."""
        deployment = self.newest_deployment(cluster, service, RUNNING_DEPLOYMENT_STATUSES)
        if deployment is None:
            return None
        parts = revision_parts(deployment)
        task_definitions = self.revision_task_definitions([p["arn"] for p, _ in parts if p.get("arn")])
        shares = tuple(TrafficShare(task_definitions[p["arn"]], float(p.get("requestedProductionTrafficWeight", 0.0)),
                                    role)
                       for p, role in parts if p.get("arn") in task_definitions)
        paused = next((h.get("hookId") for h in deployment.get("lifecycleHookDetails", [])
                       if h.get("targetType") == "PAUSE" and h.get("status") == "AWAITING_ACTION"), None)
        return Deployment(arn=deployment["serviceDeploymentArn"], status=str(deployment.get("status", "")),
                          stage=deployment.get("lifecycleStage"), shares=shares, paused_lifecycle_hook=paused)

    def revision_task_definitions(self, arns: list[str]) -> dict[str, str]:
        """Service revision ARN -> its task definition ARN."""
        out: dict[str, str] = {}
        for i in range(0, len(arns), DESCRIBE_BATCH):
            page = self.calls("ecs", "describe_service_revisions", serviceRevisionArns=arns[i:i + DESCRIBE_BATCH])
            out.update({r["serviceRevisionArn"]: r["taskDefinition"] for r in page.get("serviceRevisions", [])
                        if r.get("taskDefinition")})
        return out

    def roll_back(self, deployment_arn: str) -> None:
        self.calls("ecs", "stop_service_deployment", serviceDeploymentArn=deployment_arn, stopType="ROLLBACK")

    def continue_paused(self, deployment_arn: str, lifecycle_hook_id: str) -> None:
        self.calls("ecs", "continue_service_deployment", serviceDeploymentArn=deployment_arn, hookId=lifecycle_hook_id,
                   action="CONTINUE")

    # -- revisions --------------------------------------------------------------------------------------

    def revisions(self, family: str, env: str, service: str) -> list[Revision]:
        """The registered revisions of ``family`` that deploy a version of ``service`` in ``env``, oldest
        first."""
        found = []
        for arn in self._family_arns(family):
            described = self.calls.call_or_none("ecs", "describe_task_definition", when=is_not_found,
                                                taskDefinition=arn, include=["TAGS"])
            if described is None:
                continue
            tags = {t["key"]: t["value"] for t in described.get("tags", [])}
            if tags.get(f"{TAG_PREFIX}environment") != env or tags.get(f"{TAG_PREFIX}service") != service:
                continue
            version = tags.get(f"{TAG_PREFIX}version")
            if not version:
                continue
            td = described["taskDefinition"]
            found.append(Revision(arn=td["taskDefinitionArn"], family=td["family"], number=int(td["revision"]),
                                  version=version, commit=tags.get(f"{TAG_PREFIX}commit", version),
                                  registered_at=answer_time(td.get("registeredAt"))))
        return sorted(found, key=lambda r: r.number)

    def _family_arns(self, family: str) -> Iterator[str]:
        for arn in self.calls.pages("ecs", "list_task_definitions", "taskDefinitionArns", token_key="nextToken",
                                    familyPrefix=family, status="ACTIVE"):
            if family_of(str(arn))[0] == family:  # the prefix also matches hello-web-x
                yield str(arn)

    def deregister(self, task_definition_arn: str) -> None:
        self.calls.call_or_none("ecs", "deregister_task_definition", when=is_not_found,
                                taskDefinition=task_definition_arn)


def _missing(exc: BaseException) -> bool:
    return error_code(exc) in {"ClusterNotFoundException", "ServiceNotFoundException"} or is_not_found(exc)


def revision_parts(deployment: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """A deployment's service revisions, each with its role: the sources it moves traffic from, the target."""
    parts: list[tuple[dict[str, Any], str]] = [(s, "source") for s in deployment.get("sourceServiceRevisions", [])]
    if deployment.get("targetServiceRevision"):
        parts.append((deployment["targetServiceRevision"], "target"))
    return parts
