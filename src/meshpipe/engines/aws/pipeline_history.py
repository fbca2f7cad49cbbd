"""Runs of a service pipeline, read from CodePipeline, with the CodeBuild log of the Build stage."""

from __future__ import annotations

import re
from typing import Any

from meshpipe.engines.aws.calls import AwsCalls, answer_time
from meshpipe.engines.aws.errors import is_not_found
from meshpipe.errors import NotFoundError
from meshpipe.model import version_id
from meshpipe.pipeline.runs import PipelineRun, StageResult
from meshpipe.status import RunStatus

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
MAX_LOG_LINES = 2000
MAX_LOG_PAGES = 20


class PipelineHistory:
    def __init__(self, calls: AwsCalls) -> None:
        self.calls = calls

    def runs(self, pipeline: str, service: str, limit: int = 10) -> list[PipelineRun]:
        """The latest ``limit`` runs, newest first, each with its stages (without logs)."""
        stages = self._stage_names(pipeline)
        page = self.calls("codepipeline", "list_pipeline_executions", pipelineName=pipeline, maxResults=limit)
        return [self._run(pipeline, service, summary, stages, with_logs=False)
                for summary in page.get("pipelineExecutionSummaries", [])[:limit]]

    def run(self, pipeline: str, service: str, run_id: str | None = None) -> PipelineRun:
        """One run (the latest when ``run_id`` is None) with every stage's log."""
        stages = self._stage_names(pipeline)
        if run_id is None:
            page = self.calls("codepipeline", "list_pipeline_executions", pipelineName=pipeline, maxResults=1)
            summaries = page.get("pipelineExecutionSummaries", [])
            if not summaries:
                raise NotFoundError(f"pipeline {pipeline} has not run yet",
                                    hint="push a manifest.yaml to the service's config repo to start it")
            summary = summaries[0]
        else:
            found = self.calls.call_or_none("codepipeline", "get_pipeline_execution", when=is_not_found,
                                            pipelineName=pipeline, pipelineExecutionId=run_id)
            if found is None:
                raise NotFoundError(f"pipeline {pipeline} has no run {run_id}",
                                    hint="list runs with `meshpipe pipeline runs SERVICE --env ENV --engine aws`")
            execution = found["pipelineExecution"]
            summary = {"pipelineExecutionId": execution["pipelineExecutionId"], "status": execution["status"],
                       "sourceRevisions": [{"actionName": a.get("name"), "revisionId": a.get("revisionId")}
                                           for a in execution.get("artifactRevisions", [])]}
        return self._run(pipeline, service, summary, stages, with_logs=True)

    def _stage_names(self, pipeline: str) -> list[str]:
        found = self.calls.call_or_none("codepipeline", "get_pipeline", when=is_not_found, name=pipeline)
        if found is None:
            raise NotFoundError(f"there is no pipeline {pipeline}",
                                hint="create it with `meshpipe pipeline create SERVICE --env ENV --engine aws`")
        return [s["name"] for s in found["pipeline"].get("stages", [])]

    def _run(self, pipeline: str, service: str, summary: dict[str, Any], stage_names: list[str],
             *, with_logs: bool) -> PipelineRun:
        run_id = summary["pipelineExecutionId"]
        actions = list(self.calls.pages("codepipeline", "list_action_executions", "actionExecutionDetails",
                                        token_key="nextToken", pipelineName=pipeline,
                                        filter={"pipelineExecutionId": run_id}))
        commit = next((r["revisionId"] for r in summary.get("sourceRevisions", [])
                       if COMMIT_RE.match(str(r.get("revisionId", "")))), None)
        status = RunStatus(summary.get("status", RunStatus.IN_PROGRESS))
        finished = status.finished
        names = stage_names + sorted({a["stageName"] for a in actions} - set(stage_names))
        stages = tuple(self._stage(name, [a for a in actions if a["stageName"] == name], with_logs)
                       for name in names)
        deployed = any(s.name == "Deploy" and s.status is RunStatus.SUCCEEDED for s in stages)
        # get_pipeline_execution carries no times; the run's actions do.
        started = summary.get("startTime") or min((a["startTime"] for a in actions if a.get("startTime")),
                                                   default=None)
        updated = summary.get("lastUpdateTime") or max(
            (a["lastUpdateTime"] for a in actions if a.get("lastUpdateTime")), default=None)
        return PipelineRun(
            run_id=run_id,
            service=service,
            commit=commit,
            status=status,
            started_at=answer_time(started) or "",
            finished_at=answer_time(updated) if finished else None,
            stages=stages,
            version=version_id(commit) if commit and deployed else None,
        )

    def _stage(self, name: str, actions: list[dict[str, Any]], with_logs: bool) -> StageResult:
        statuses = {a.get("status") for a in actions}
        if not actions or statuses == {RunStatus.ABANDONED}:
            status = RunStatus.SKIPPED
        elif RunStatus.FAILED in statuses:
            status = RunStatus.FAILED
        elif RunStatus.IN_PROGRESS in statuses:
            status = RunStatus.IN_PROGRESS
        else:
            status = RunStatus.SUCCEEDED
        lines: list[str] = []
        for a in sorted(actions, key=lambda a: str(a.get("startTime", ""))):
            result = a.get("output", {}).get("executionResult", {})
            lines.append(f"{a.get('actionName')}: {a.get('status')}")
            for key in ("externalExecutionSummary", "externalExecutionUrl"):
                if result.get(key):
                    lines.append(f"  {result[key]}")
            error = result.get("errorDetails") or a.get("output", {}).get("errorDetails")
            if error:
                lines.append(f"  error: {error.get('message', error)}")
            provider = a.get("input", {}).get("actionTypeId", {}).get("provider")
            if with_logs and provider == "CodeBuild" and result.get("externalExecutionId"):
                lines.extend(self._build_log(result["externalExecutionId"]))
        return StageResult(name=name, status=status, log="\n".join(lines))

    def _build_log(self, build_id: str) -> list[str]:
        builds = self.calls("codebuild", "batch_get_builds", ids=[build_id]).get("builds", [])
        logs = builds[0].get("logs", {}) if builds else {}
        group, stream = logs.get("groupName"), logs.get("streamName")
        if not group or not stream:
            return ["  (CodeBuild has no CloudWatch log for this build)"]
        lines: list[str] = []
        params: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        for _ in range(MAX_LOG_PAGES):
            page = self.calls.call_or_none("logs", "get_log_events", when=is_not_found, **params)
            if page is None:
                return ["  (the build's log stream no longer exists)"]
            lines.extend("  " + e["message"].rstrip("\n") for e in page.get("events", []))
            token = page.get("nextForwardToken")
            if not token or token == params.get("nextToken"):  # the same token again means the end
                break
            params["nextToken"] = token
        return lines[-MAX_LOG_LINES:]


