"""CloudFormation stacks: create or update, delete, and wait for the end while reporting each new event.

A wait ends in a clear state: the goal status (``CREATE_COMPLETE``, ``UPDATE_COMPLETE``,
``DELETE_COMPLETE``) returns; any other settled status raises an OperationError naming the first resource
that failed and CloudFormation's reason, with advice for that status; a wait that outlives its timeout
says where the stack stands and that it can be waited for again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from meshpipe.clock import Clock
from meshpipe.engines.aws.calls import AwsCalls, answer_time
from meshpipe.engines.aws.errors import is_not_found, stack_state_advice
from meshpipe.engines.base import Reporter
from meshpipe.errors import Defect, OperationError

Action = Literal["create", "update", "delete"]
GOAL = {"create": "CREATE_COMPLETE", "update": "UPDATE_COMPLETE", "delete": "DELETE_COMPLETE"}
# Statuses in which a stack's resources exist and are in a known good state.
USABLE = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
                    "IMPORT_ROLLBACK_COMPLETE"})
# Statuses from which only deletion (or a manual repair) helps.
STUCK = frozenset({"CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED",
                   "UPDATE_ROLLBACK_FAILED", "IMPORT_ROLLBACK_FAILED"})
# What a failed first creation leaves: an empty stack (the rollback deleted everything it had made) that
# CloudFormation will only delete. Deploying such a stack deletes it and creates it anew, as the pipeline's
# REPLACE_ON_FAILURE Deploy action does; the other stuck statuses may still hold resources, so they are
# left to a person.
ROLLED_BACK_CREATE = "ROLLBACK_COMPLETE"
ACTIVE_STATUSES = [
    "CREATE_IN_PROGRESS", "CREATE_FAILED", "CREATE_COMPLETE", "ROLLBACK_IN_PROGRESS", "ROLLBACK_FAILED",
    "ROLLBACK_COMPLETE", "DELETE_IN_PROGRESS", "DELETE_FAILED", "UPDATE_IN_PROGRESS",
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_COMPLETE", "UPDATE_FAILED", "UPDATE_ROLLBACK_IN_PROGRESS",
    "UPDATE_ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE",
    "REVIEW_IN_PROGRESS", "IMPORT_IN_PROGRESS", "IMPORT_COMPLETE", "IMPORT_ROLLBACK_IN_PROGRESS",
    "IMPORT_ROLLBACK_FAILED", "IMPORT_ROLLBACK_COMPLETE",
]
STACK_TYPE = "AWS::CloudFormation::Stack"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
# CloudFormation takes a template body up to this size; larger ones must be given as an S3 URL.
MAX_TEMPLATE_BODY = 51_200
# Stack-level statuses that open a new operation; failures before them belong to an older run.
RUN_STARTS = frozenset({"CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS",
                        "IMPORT_IN_PROGRESS"})
CANCELLED_REASONS = ("Resource creation cancelled", "Resource update cancelled",
                     "Resource deletion cancelled")

TemplateUploader = Callable[[str, bytes], str]  # (stack name, template bytes) -> https URL of the object


@dataclass(frozen=True)
class StackState:
    name: str
    stack_id: str
    status: str
    reason: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    created_at: str | None = None

    @property
    def usable(self) -> bool:
        return self.status in USABLE

    @classmethod
    def from_description(cls, d: dict[str, Any]) -> StackState:
        return cls(
            name=d["StackName"],
            stack_id=d["StackId"],
            status=d["StackStatus"],
            reason=d.get("StackStatusReason"),
            outputs={o["OutputKey"]: o.get("OutputValue", "") for o in d.get("Outputs", [])},
            parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in d.get("Parameters", [])},
            tags={t["Key"]: t["Value"] for t in d.get("Tags", [])},
            created_at=answer_time(d.get("CreationTime")),
        )


@dataclass(frozen=True)
class StackSummary:
    name: str
    stack_id: str
    status: str
    created_at: str | None = None


def template_parameters(template: dict[str, Any], values: dict[str, str]) -> list[dict[str, str]]:
    """The ``values`` the template declares as parameters, in CloudFormation's request shape.

    Values for parameters the template does not declare are left out: CloudFormation rejects them.
    """
    declared = template.get("Parameters", {})
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items() if k in declared]


def template_bytes(template: dict[str, Any]) -> bytes:
    """Compact JSON: the smallest body, so most templates fit CloudFormation's inline limit."""
    return json.dumps(template, separators=(",", ":"), ensure_ascii=False).encode()


class Stacks:
    def __init__(self, calls: AwsCalls, reporter: Reporter, *, clock: Clock,
                 poll_interval: float = 10.0, timeout: float = 3600.0) -> None:
        self.calls = calls
        self.reporter = reporter
        self.clock = clock
        self.poll_interval = poll_interval
        self.timeout = timeout

    # -- reading ----------------------------------------------------------------------------------------

    def describe(self, name_or_id: str) -> StackState | None:
        """The stack, or None when there is none by that name (deleted stacks are found only by id)."""
        found = self.calls.call_or_none("cloudformation", "describe_stacks", when=is_not_found,
                                        StackName=name_or_id)
        stacks = (found or {}).get("Stacks", [])
        return StackState.from_description(stacks[0]) if stacks else None

    def list_stacks(self, prefix: str = "") -> list[StackSummary]:
        """Every stack not yet deleted whose name starts with ``prefix``."""
        return [StackSummary(s["StackName"], s["StackId"], s["StackStatus"], answer_time(s.get("CreationTime")))
                for s in self.calls.pages("cloudformation", "list_stacks", "StackSummaries",
                                          StackStatusFilter=ACTIVE_STATUSES)
                if s["StackName"].startswith(prefix)]

    def resources(self, name: str, resource_type: str) -> list[str]:
        """Physical ids of the stack's resources of one type (e.g. its buckets)."""
        return [r["PhysicalResourceId"]
                for r in self.calls.pages("cloudformation", "list_stack_resources", "StackResourceSummaries",
                                          StackName=name)
                if r.get("ResourceType") == resource_type and r.get("PhysicalResourceId")
                and not r.get("ResourceStatus", "").startswith("DELETE_COMPLETE")]

    def physical_ids(self, name: str) -> dict[str, str]:
        """Logical id -> physical id of every resource the stack has now."""
        return {str(r["LogicalResourceId"]): str(r["PhysicalResourceId"])
                for r in self.calls.pages("cloudformation", "list_stack_resources", "StackResourceSummaries",
                                          StackName=name)
                if r.get("PhysicalResourceId") and not r.get("ResourceStatus", "").startswith("DELETE_COMPLETE")}

    def _event_ids(self, stack_id: str) -> set[str]:
        page = self.calls.call_or_none("cloudformation", "describe_stack_events", when=is_not_found,
                                       StackName=stack_id)
        return {e["EventId"] for e in (page or {}).get("StackEvents", [])}

    def _new_events(self, stack_id: str, seen: set[str]) -> list[dict[str, Any]]:
        """Events not seen yet, oldest first (CloudFormation lists newest first)."""
        page = self.calls.call_or_none("cloudformation", "describe_stack_events", when=is_not_found,
                                       StackName=stack_id)
        fresh = [e for e in (page or {}).get("StackEvents", []) if e["EventId"] not in seen]
        seen.update(e["EventId"] for e in fresh)
        return list(reversed(fresh))

    # -- changing ---------------------------------------------------------------------------------------

    def deploy(self, name: str, template: dict[str, Any], values: dict[str, str] | None = None, *,
               uploader: TemplateUploader | None = None, delete_hint: str | None = None,
               check_existing: Callable[[StackState], None] | None = None) -> StackState:
        """Create the stack, or update it when it exists; wait for the end either way.

        A stack whose first creation rolled back (``ROLLBACK_COMPLETE``) holds nothing and cannot be
        updated: it is deleted and created again. ``check_existing`` sees any other existing stack before
        anything changes, and may refuse the update.
        """
        existing = self.describe(name)
        if existing is not None and existing.status == ROLLED_BACK_CREATE:
            self.reporter.step(f"{name} is {ROLLED_BACK_CREATE}: its first creation failed and was rolled back, "
                               "so nothing of it remains; deleting it to create it again")
            self._delete(existing, wait=True)
            existing = None
        if existing is not None and check_existing is not None:
            check_existing(existing)
        if existing is not None and existing.status.endswith("_IN_PROGRESS"):
            self.reporter.step(f"{name} is {existing.status}; waiting for that to finish first")
            existing = self.settle(existing)
            if existing.status == "DELETE_COMPLETE":
                existing = None
        if existing is not None and existing.status in STUCK:
            raise OperationError(f"stack {name} is {existing.status} and cannot be updated"
                                 + (f" ({existing.reason})" if existing.reason else ""),
                                 hint=delete_hint or stack_state_advice(name, existing.status))
        body = template_bytes(template)
        source = self._template_source(name, body, uploader)
        request: dict[str, Any] = {"StackName": name, "Capabilities": CAPABILITIES, **source,
                                   "Parameters": template_parameters(template, values or {})}
        if existing is None:
            self.reporter.step(f"creating stack {name}")
            created = self.calls("cloudformation", "create_stack", **request)
            return self.wait(created["StackId"], name, "create", seen=set(), delete_hint=delete_hint)
        self.reporter.step(f"updating stack {name}")
        seen = self._event_ids(existing.stack_id)
        updated = self.calls.call_or_none("cloudformation", "update_stack", when=_no_updates, **request)
        if updated is None:
            self.reporter.done(f"{name} is up to date ({existing.status})")
            return existing
        return self.wait(existing.stack_id, name, "update", seen=seen, delete_hint=delete_hint)

    def update_parameters(self, name: str, values: dict[str, str], *, hint: str | None = None) -> StackState:
        """Update the stack's parameters, keeping its template and every other parameter; wait for the end.

        CloudFormation uses the role associated with the stack, so the caller needs no role to pass.
        """
        existing = self.describe(name)
        if existing is None:
            raise OperationError(f"stack {name} disappeared", hint="someone deleted it meanwhile; run the command again")
        if existing.status.endswith("_IN_PROGRESS"):
            self.reporter.step(f"{name} is {existing.status}; waiting for that to finish first")
            existing = self.settle(existing)
        if existing.status in STUCK or existing.status == "DELETE_COMPLETE":
            raise OperationError(f"stack {name} is {existing.status} and cannot be updated",
                                 hint=hint or stack_state_advice(name, existing.status))
        parameters = [{"ParameterKey": key, "ParameterValue": values[key]} if key in values
                      else {"ParameterKey": key, "UsePreviousValue": True} for key in existing.parameters]
        self.reporter.step(f"updating the parameters of stack {name}")
        seen = self._event_ids(existing.stack_id)
        updated = self.calls.call_or_none("cloudformation", "update_stack", when=_no_updates, StackName=name,
                                          UsePreviousTemplate=True, Capabilities=CAPABILITIES, Parameters=parameters)
        if updated is None:
            self.reporter.done(f"{name} is up to date ({existing.status})")
            return existing
        return self.wait(existing.stack_id, name, "update", seen=seen)

    def _template_source(self, name: str, body: bytes, uploader: TemplateUploader | None) -> dict[str, str]:
        if len(body) <= MAX_TEMPLATE_BODY:
            return {"TemplateBody": body.decode()}
        if uploader is None:
            raise Defect(f"the template of {name} is {len(body)} bytes, more than CloudFormation takes inline "
                         f"({MAX_TEMPLATE_BODY}), and nothing was given to stage it")
        return {"TemplateURL": uploader(name, body)}

    def delete(self, name: str, *, wait: bool = True) -> StackState | None:
        """Delete the stack if it exists; with ``wait``, return once it is gone."""
        existing = self.describe(name)
        if existing is None:
            return None
        return self._delete(existing, wait=wait)

    def _delete(self, existing: StackState, *, wait: bool) -> StackState | None:
        name = existing.name
        if existing.status == "DELETE_IN_PROGRESS":
            return self.wait(existing.stack_id, name, "delete", seen=set()) if wait else existing
        self.reporter.step(f"deleting stack {name}")
        seen = self._event_ids(existing.stack_id)
        self.calls("cloudformation", "delete_stack", StackName=existing.stack_id)
        if not wait:
            return existing
        return self.wait(existing.stack_id, name, "delete", seen=seen)

    def delete_all(self, names: Iterable[str]) -> None:
        """Start every deletion, then wait for each: stacks are deleted side by side, not one by one."""
        started = [s for s in (self.delete(n, wait=False) for n in names) if s is not None]
        for stack in started:
            self.wait(stack.stack_id, stack.name, "delete", seen=set())

    # -- waiting ----------------------------------------------------------------------------------------

    def settle(self, stack: StackState) -> StackState:
        """Wait until no operation runs on the stack, whatever its outcome."""
        deadline = self.clock.now() + self.timeout
        seen = self._event_ids(stack.stack_id)
        while stack.status.endswith("_IN_PROGRESS"):
            self._check_deadline(deadline, stack)
            self.clock.sleep(self.poll_interval)
            self._report_events(stack, seen)
            stack = self.describe(stack.stack_id) or stack
        return stack

    def wait(self, stack_id: str, name: str, action: Action, *, seen: set[str],
             delete_hint: str | None = None) -> StackState:
        """Poll until the stack settles; return it at the goal of ``action``, raise otherwise."""
        goal = GOAL[action]
        deadline = self.clock.now() + self.timeout
        while True:
            state = self.describe(stack_id)
            if state is None:  # only happens by name; by id a deleted stack stays visible
                if action == "delete":
                    self.reporter.done(f"{name} deleted")
                    return StackState(name, stack_id, "DELETE_COMPLETE")
                raise OperationError(f"stack {name} disappeared while waiting for {goal}",
                                     hint="someone deleted it meanwhile; run the command again")
            self._report_events(state, seen)
            if not state.status.endswith("_IN_PROGRESS"):
                if state.status == goal:
                    self.reporter.done(f"{name} {goal}")
                    return state
                raise self._failure(state, action, delete_hint)
            self._check_deadline(deadline, state)
            self.clock.sleep(self.poll_interval)

    def _report_events(self, state: StackState, seen: set[str]) -> None:
        for e in self._new_events(state.stack_id, seen):
            reason = e.get("ResourceStatusReason")
            line = f"{state.name}: {e.get('LogicalResourceId', '?')} {e.get('ResourceStatus', '?')}"
            self.reporter.step(f"{line} ({reason})" if reason else line)

    def _check_deadline(self, deadline: float, state: StackState) -> None:
        if self.clock.now() >= deadline:
            raise OperationError(
                f"gave up waiting for stack {state.name} after {self.timeout:.0f} s; "
                f"it is still {state.status}",
                hint="CloudFormation carries on by itself: watch the stack in the console and run the "
                     "command again once it has settled")

    def _failure(self, state: StackState, action: Action, delete_hint: str | None) -> OperationError:
        cause = self.first_failure(state.stack_id)
        what = f"{action} of stack {state.name} failed: it ended {state.status}"
        detail = f"; first failure: {cause}" if cause else (f" ({state.reason})" if state.reason else "")
        message = what + detail
        if state.status == "UPDATE_ROLLBACK_COMPLETE":
            hint = "the stack is back in its previous state and still works; fix the cause above and retry"
        elif state.status == ROLLED_BACK_CREATE and action == "create":
            hint = ("fix the cause above and run the same command again: the rolled-back stack is then "
                    "deleted and created anew")
        elif delete_hint and state.status in {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED"}:
            hint = delete_hint
        else:
            hint = stack_state_advice(state.name, state.status)
        return OperationError(message, hint=hint)

    def first_failure(self, stack_id: str) -> str | None:
        """'<resource> (<type>) <status>: <reason>' of the first resource that failed in the latest run."""
        latest_run: list[dict[str, Any]] = []  # newest first, back to the event that started the run
        for e in self.calls.pages("cloudformation", "describe_stack_events", "StackEvents",
                                  StackName=stack_id):
            latest_run.append(e)
            if e.get("ResourceType") == STACK_TYPE and e.get("ResourceStatus") in RUN_STARTS:
                break
        oldest_first = list(reversed(latest_run))
        failed = [e for e in oldest_first if e.get("ResourceStatus", "").endswith("_FAILED")
                  and e.get("ResourceType") != STACK_TYPE
                  and not str(e.get("ResourceStatusReason", "")).startswith(CANCELLED_REASONS)]
        if not failed:  # nothing but the stack itself (or cancelled siblings) failed
            failed = [e for e in oldest_first if e.get("ResourceStatus", "").endswith("_FAILED")]
        if not failed:
            return None
        e = failed[0]
        return (f"{e.get('LogicalResourceId')} ({e.get('ResourceType')}) {e.get('ResourceStatus')}: "
                f"{e.get('ResourceStatusReason', 'no reason given')}")


def _no_updates(exc: BaseException) -> bool:
    return "No updates are to be performed" in str(exc)


