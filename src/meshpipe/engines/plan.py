"""Plans before actions: what an operation will do, as data, before anything is done.

An engine computes a :class:`Plan` for an operation with read calls only: the ordered steps, each an API
call or a stack operation on a target, with the reason for it. :func:`execute` then runs the steps in
order; ``--dry-run`` prints the plan instead (``--format json`` for scripts) and runs nothing. A step's
``run`` is what carries it out; it is left out of the plan's data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Step:
    call: str  # e.g. cloudformation:CreateStack, appmesh:DeleteRoute, or local:build-bundle (no API call)
    target: str  # what it acts on: a stack, a route, a bucket
    reason: str
    run: Callable[[], Any] | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict[str, str]:
        return {"call": self.call, "target": self.target, "reason": self.reason}


@dataclass
class Plan:
    operation: str  # the command it plans, e.g. "env delete demo"
    steps: list[Step] = field(default_factory=list)
    # What the operation returns once every step ran (e.g. the environment's info).
    outcome: Callable[[], Any] | None = field(default=None, compare=False, repr=False)

    def add(self, call: str, target: str, reason: str, run: Callable[[], Any] | None = None) -> None:
        self.steps.append(Step(call, target, reason, run))

    def as_dict(self) -> dict[str, Any]:
        return {"operation": self.operation, "steps": [s.as_dict() for s in self.steps]}

    def lines(self) -> list[str]:
        """The plan for people: one numbered line per step, its reason below it."""
        if not self.steps:
            return [f"{self.operation}: nothing to do"]
        found = [f"{self.operation}: {len(self.steps)} step(s)"]
        for number, step in enumerate(self.steps, 1):
            found.append(f"{number:>3}. {step.call} {step.target}")
            found.append(f"     {step.reason}")
        return found


def execute(plan: Plan) -> Any:
    """Run the plan's steps in order and return its outcome (None without one)."""
    for step in plan.steps:
        if step.run is not None:
            step.run()
    return plan.outcome() if plan.outcome is not None else None
