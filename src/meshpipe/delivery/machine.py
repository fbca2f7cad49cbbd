"""One rollout as a state machine. Pure: every transition is a function of the rollout, the time and what
was observed (counter snapshots, webhook answers); the driver does the I/O and stores the result.

Life of a rollout::

    pre-rollout ──(pre-rollout webhooks pass)──> step 0 ──(window passes)──> step 1 ... ──> confirming ──> promoted
         │                                        │                                        │
         └─(a webhook fails)─> halted             └─(FailedWindows failed)─> rolled-back    └─(no 2xx)─> holds

* canary and linear: step ``i`` gives the candidate ``spec.steps[i]`` %; the step that would reach 100 %
  is the promotion, behind the ``confirm-promotion`` webhooks when there are any.
* blue-green: step 0 is the *preview* (the candidate answers only requests carrying the preview header;
  the route's weights do not change), then, after ``confirm-promotion``, step 1 sends 100 % to the
  candidate at once and bakes for one window: a failed bake rolls back to the stable version, which
  stayed up; a passed one promotes.

Each step holds for ``spec.interval_s``; at its end its *window* is judged (``analysis.judge``) together
with the ``rollout`` webhooks. A window with fewer requests than ``min_requests`` is *inconclusive*: the step
holds with a fresh window, never rolls back for it, and only an ``inconclusive_deadline_s`` (when the spec
has one) ends the wait, as ``on_inconclusive`` says. A failed window that does not reach ``failed_windows`` repeats the step with
a fresh window. Every version that had traffic before the rollout keeps its relative share of what the
candidate leaves (``weights.split``); a rollback gives every one of them its old weight back.

The route a rollout wants is a function of its state (:func:`desired`), so a driver that crashed between
storing a transition and applying its route applies it when it comes back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshpipe.delivery import analysis as an
from meshpipe.delivery import weights
from meshpipe.delivery.policy import RolloutSpec
from meshpipe.mesh.headers import HeaderMatch
from meshpipe.mesh.routing import MAX_WEIGHT, WeightedTarget
from meshpipe.status import RolloutPhase, RolloutStatus

# How often a held promotion asks its confirm-promotion webhooks again, at most.
CONFIRM_EVERY_MAX_S = 5.0


@dataclass(frozen=True)
class WebhookResult:
    name: str
    type: str
    ok: bool
    detail: str  # "HTTP 200", "HTTP 503: not yet", "timed out after 5 s", ...

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "ok": self.ok, "detail": self.detail}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookResult:
        return cls(str(data["name"]), str(data["type"]), bool(data["ok"]), str(data["detail"]))


@dataclass(frozen=True)
class Window:
    """A judged window: when, at which weight, what was seen, and the verdict."""

    number: int
    step: int
    weight: int  # the candidate's weight (a blue-green preview: 0, it answers the header only)
    phase: RolloutPhase
    started_at: float
    due_at: float
    decided_at: float
    candidate: an.Figures
    stable: an.Figures
    passed: bool
    reasons: tuple[str, ...]
    webhooks: tuple[WebhookResult, ...] = ()
    inconclusive: bool = False  # too few requests to judge: neither passed nor failed

    @property
    def verdict(self) -> str:
        return "passed" if self.passed else "inconclusive" if self.inconclusive else "failed"

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "step": self.step, "weight": self.weight, "phase": self.phase,
                "started_at": self.started_at, "due_at": self.due_at, "decided_at": self.decided_at,
                "candidate": self.candidate.to_json(), "stable": self.stable.to_json(),
                "verdict": self.verdict, "reasons": list(self.reasons),
                "hooks": [h.to_json() for h in self.webhooks]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Window:
        return cls(int(d["number"]), int(d["step"]), int(d["weight"]), RolloutPhase(d["phase"]), float(d["started_at"]),
                   float(d["due_at"]), float(d["decided_at"]), an.Figures.from_json(d["candidate"]),
                   an.Figures.from_json(d["stable"]), d["verdict"] == "passed", tuple(d["reasons"]),
                   tuple(WebhookResult.from_json(h) for h in d.get("hooks", ())), d["verdict"] == "inconclusive")


@dataclass
class Rollout:
    service: str
    candidate: str
    spec: RolloutSpec
    base: dict[str, int]  # every other version's weight before the rollout
    started_at: float
    status: RolloutStatus = RolloutStatus.RUNNING
    phase: RolloutPhase = RolloutPhase.PRE_ROLLOUT
    step: int = 0
    paused: bool = False
    window_started_at: float | None = None
    next_decision_at: float | None = None
    failed_windows: int = 0
    windows: list[Window] = field(default_factory=list)
    reference_p99: float | None = None  # the stable versions' p99 in the latest window that had one
    baseline: dict[str, Any] = field(default_factory=dict)  # counters snapshot when the window began
    reason: str = ""
    finished_at: float | None = None
    pending_webhooks: list[str] = field(default_factory=list)  # webhook types to call once the state is stored
    confirmations: tuple[WebhookResult, ...] = ()  # the last confirm-promotion answers
    started_by: str = "by a push"
    # When the current run of inconclusive windows began (None: the last window was judged).
    inconclusive_since: float | None = None
    id: int | None = None

    # -- derived --

    @property
    def stable(self) -> str:
        return weights.stable_of(self.base) if self.base else ""

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def blue_green(self) -> bool:
        return self.spec.strategy == "blue-green"

    def weight(self) -> int:
        """The candidate's weight in the route the rollout wants now."""
        if self.status == RolloutStatus.PROMOTED:
            return MAX_WEIGHT
        if self.status != RolloutStatus.RUNNING or self.phase == RolloutPhase.PRE_ROLLOUT:
            return 0
        if self.blue_green:
            return MAX_WEIGHT if self.step >= 1 else 0
        return self.spec.steps[self.step]

    def steps_total(self) -> int:
        return 2 if self.blue_green else len(self.spec.steps)

    # -- JSON (what state.db keeps) --

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service, "candidate": self.candidate, "plan": self.spec.to_json(), "base": self.base,
            "started_at": self.started_at, "status": self.status, "phase": self.phase, "step": self.step,
            "paused": self.paused, "window_started_at": self.window_started_at,
            "next_decision_at": self.next_decision_at, "failed_windows": self.failed_windows,
            "windows": [w.to_json() for w in self.windows], "reference_p99": self.reference_p99,
            "baseline": self.baseline, "reason": self.reason, "finished_at": self.finished_at,
            "pending_hooks": list(self.pending_webhooks), "confirmations": [h.to_json() for h in self.confirmations],
            "started_by": self.started_by, "inconclusive_since": self.inconclusive_since,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], rollout_id: int | None = None) -> Rollout:
        return cls(
            service=d["service"], candidate=d["candidate"], spec=RolloutSpec.from_json(d["plan"]),
            base={str(k): int(v) for k, v in d["base"].items()}, started_at=float(d["started_at"]),
            status=RolloutStatus(d["status"]), phase=RolloutPhase(d["phase"]), step=int(d["step"]), paused=bool(d["paused"]),
            window_started_at=d.get("window_started_at"), next_decision_at=d.get("next_decision_at"),
            failed_windows=int(d["failed_windows"]), windows=[Window.from_json(w) for w in d.get("windows", ())],
            reference_p99=d.get("reference_p99"), baseline=dict(d.get("baseline") or {}), reason=d.get("reason", ""),
            finished_at=d.get("finished_at"), pending_webhooks=list(d.get("pending_hooks", ())),
            confirmations=tuple(WebhookResult.from_json(h) for h in d.get("confirmations", ())),
            started_by=d.get("started_by", "by a push"), inconclusive_since=d.get("inconclusive_since"),
            id=rollout_id)


# --- what a rollout wants the mesh to look like -------------------------------------------------------

def desired(r: Rollout) -> tuple[tuple[WeightedTarget, ...], HeaderMatch | None]:
    """The service's route targets, and the preview header route to the candidate (or None)."""
    percent = r.weight()
    if percent == MAX_WEIGHT:
        targets: tuple[WeightedTarget, ...] = (WeightedTarget(r.candidate, MAX_WEIGHT),)
    elif percent == 0:
        targets = weights.base_targets(r.base)
    else:
        targets = weights.split(r.base, r.candidate, percent)
    preview = None
    if r.status == RolloutStatus.RUNNING and r.blue_green and r.phase in (RolloutPhase.PREVIEW, RolloutPhase.CONFIRMING) and r.step == 0:
        preview = r.spec.preview
    return targets, preview


def due(r: Rollout, now: float) -> str | None:
    """What the driver must do now: ``begin``, ``window``, ``confirm`` or nothing (None)."""
    if r.finished or r.paused:
        return None
    if r.phase == RolloutPhase.PRE_ROLLOUT:
        return "begin"
    if r.next_decision_at is not None and now >= r.next_decision_at:
        return "confirm" if r.phase == RolloutPhase.CONFIRMING else "window"
    return None


def scale_downs(r: Rollout) -> list[tuple[str, float, str]]:
    """(version, when, why) for each version a finished rollout leaves without weight, to be scaled to zero
    tasks then: a rolled-back or halted candidate at once (as Flagger does), the versions a promotion (or a
    newer rollout, for a superseded candidate) took the traffic from after the plan's scale-down delay (as
    Argo Rollouts' scaleDownDelaySeconds). Whoever scales them checks that they still have no weight."""
    if not r.finished or r.finished_at is None:
        return []
    if r.status in (RolloutStatus.ROLLED_BACK, RolloutStatus.HALTED):
        return [(r.candidate, r.finished_at, f"at once: its rollout was {r.status}")]
    later = r.finished_at + r.spec.scale_down_delay_s
    delay = f"{r.spec.scale_down_delay_s:g} s after"
    if r.status == RolloutStatus.PROMOTED:
        return [(v, later, f"{delay} {r.candidate} was promoted") for v in r.base]
    if r.status == RolloutStatus.SUPERSEDED:
        return [(r.candidate, later, f"{delay} its rollout was superseded")]
    return []


# --- transitions: each returns the events to record --------------------------------------------------

def start(service: str, candidate: str, base: Mapping[str, int], spec: RolloutSpec, now: float,
          started_by: str = "by a push") -> tuple[Rollout, list[str]]:
    r = Rollout(service=service, candidate=candidate, spec=spec, base=dict(base), started_at=now,
                started_by=started_by)
    others = ", ".join(f"{v} {w}" for v, w in r.base.items())
    return r, [f"rollout of {candidate} started {started_by}: {spec.describe()}; from {others}"]


def _open_window(r: Rollout, now: float, counters: an.Snapshot) -> None:
    r.window_started_at = now
    r.next_decision_at = now + r.spec.interval_s
    r.baseline = an.snapshot_to_json(counters)


def _finish(r: Rollout, now: float, status: RolloutStatus, reason: str, webhooks: str | None) -> None:
    r.status, r.phase, r.reason, r.finished_at = status, RolloutPhase.DONE, reason, now
    r.next_decision_at = None
    r.paused = False
    if webhooks:
        r.pending_webhooks.append(webhooks)


def _webhook_failures(results: Sequence[WebhookResult]) -> list[str]:
    return [f"{h.name} ({h.type}) {h.detail}" for h in results if not h.ok]


def begin(r: Rollout, now: float, counters: an.Snapshot, results: Sequence[WebhookResult] = ()) -> list[str]:
    """The pre-rollout webhooks answered: the first step, or a halt when one of them refused."""
    failed = _webhook_failures(results)
    if failed:
        reason = "pre-rollout check failed: " + "; ".join(failed)
        _finish(r, now, RolloutStatus.HALTED, reason, None)
        return [f"rollout of {r.candidate} halted, no traffic moved: {reason}"]
    r.phase, r.step = (RolloutPhase.PREVIEW, 0) if r.blue_green else (RolloutPhase.STEP, 0)
    _open_window(r, now, counters)
    return [_step_event(r)]


def _step_event(r: Rollout) -> str:
    if r.phase == RolloutPhase.PREVIEW:
        assert r.spec.preview is not None
        return (f"preview: requests with {r.spec.preview.describe()} go to {r.candidate}; "
                f"judged in {r.spec.interval_s:g} s")
    targets, _ = desired(r)
    spread = ", ".join(f"{t.version} {t.weight}" for t in targets)
    return (f"step {r.step + 1}/{r.steps_total()}: {r.weight()} % to {r.candidate} ({spread}); "
            f"judged in {r.spec.interval_s:g} s")


def window_figures(r: Rollout, counters: an.Snapshot, bounds: Sequence[float]) -> tuple[an.Figures, an.Figures]:
    """The candidate's and the base versions' figures in the current window."""
    window = an.window_counters(an.snapshot_from_json(r.baseline), counters)
    return an.figures(window.get(r.candidate), bounds), an.combined(window, list(r.base), bounds)


def conclude(r: Rollout, now: float, counters: an.Snapshot, bounds: Sequence[float],
             results: Sequence[WebhookResult] = ()) -> list[str]:
    """Judge the window that just ended, then step on, repeat the step, or roll back."""
    candidate, stable = window_figures(r, counters, bounds)
    verdict = an.judge(candidate, stable, r.reference_p99, r.spec.analysis, _webhook_failures(results))
    if stable.p99_ms is not None:
        r.reference_p99 = stable.p99_ms
    assert r.window_started_at is not None and r.next_decision_at is not None
    window = Window(len(r.windows) + 1, r.step, r.weight(), r.phase, r.window_started_at, r.next_decision_at, now,
                    candidate, stable, verdict.passed, verdict.reasons, tuple(results), verdict.inconclusive)
    r.windows.append(window)
    events = [f"window {len(r.windows)} at {_where(r)}: "
              f"{window.verdict if verdict.passed or verdict.inconclusive else 'FAILED'}: "
              + "; ".join(verdict.reasons)]
    if verdict.inconclusive:
        return events + _inconclusive(r, now, counters)
    r.inconclusive_since = None
    if not verdict.passed:
        r.failed_windows += 1
        limit = r.spec.analysis.failed_windows
        if r.failed_windows >= limit:
            reason = "; ".join(verdict.reasons) + f" (failed window {r.failed_windows} of {limit} allowed)"
            _finish(r, now, RolloutStatus.ROLLED_BACK, reason, "rollback")
            return [*events, f"rolled back to {_back_to(r)}: {reason}"]
        _open_window(r, now, counters)
        return [*events, f"{r.failed_windows} of {limit} failed window(s): step {r.step + 1} repeated"]
    return events + _advance(r, now, counters)


def holding(r: Rollout) -> str | None:
    """Why a running rollout holds its step for lack of traffic, and until when; None when it does not."""
    if r.finished or r.inconclusive_since is None or not r.windows:
        return None
    deadline = r.spec.analysis.inconclusive_deadline_s
    until = (f"{r.spec.analysis.on_inconclusive} at {deadline:g} s without a verdict" if deadline is not None
             else "until there is traffic to judge, or a promote or abort")
    return f"holding {_where(r)}: {r.windows[-1].reasons[0]}; {until}"


def _inconclusive(r: Rollout, now: float, counters: an.Snapshot) -> list[str]:
    """Too few requests to judge: the step holds with a fresh window, until traffic comes or the deadline
    decides. Lack of traffic is never a failure by itself."""
    assert r.window_started_at is not None
    if r.inconclusive_since is None:
        r.inconclusive_since = r.windows[-1].started_at
    deadline = r.spec.analysis.inconclusive_deadline_s
    if deadline is not None and now - r.inconclusive_since >= deadline:
        reason = (f"no verdict within the {deadline:g} s deadline: {r.windows[-1].reasons[0]} "
                  f"(OnInconclusive: {r.spec.analysis.on_inconclusive})")
        if r.spec.analysis.on_inconclusive == "promote":
            _finish(r, now, RolloutStatus.PROMOTED, reason, "post-rollout")
            return [f"promoted: 100 % to {r.candidate}: {reason}"]
        _finish(r, now, RolloutStatus.ROLLED_BACK, reason, "rollback")
        return [f"rolled back to {_back_to(r)}: {reason}"]
    _open_window(r, now, counters)
    return [f"inconclusive: {_where(r)} holds" + (f" (the deadline decides at {deadline:g} s)" if deadline else "")]


def _where(r: Rollout) -> str:
    if r.phase == RolloutPhase.PREVIEW:
        return "the preview"
    return f"step {r.step + 1}/{r.steps_total()} ({r.weight()} %)"


def _back_to(r: Rollout) -> str:
    return ", ".join(f"{v} ({w} %)" for v, w in r.base.items() if w > 0)


def _advance(r: Rollout, now: float, counters: an.Snapshot) -> list[str]:
    if r.blue_green:
        if r.step == 0:
            return _to_promotion(r, now, counters)
        _finish(r, now, RolloutStatus.PROMOTED, "every window passed", "post-rollout")
        return [f"promoted: 100 % to {r.candidate} after its bake window"]
    following = r.step + 1
    if r.spec.steps[following] < MAX_WEIGHT:
        r.step = following
        _open_window(r, now, counters)
        return [_step_event(r)]
    return _to_promotion(r, now, counters)


def _to_promotion(r: Rollout, now: float, counters: an.Snapshot) -> list[str]:
    if r.spec.webhooks_of("confirm-promotion"):
        r.phase = RolloutPhase.CONFIRMING
        r.next_decision_at = now
        r.window_started_at = None
        return [f"awaiting confirm-promotion ({', '.join(h.name for h in r.spec.webhooks_of('confirm-promotion'))})"]
    return _promote_now(r, now, counters)


def _promote_now(r: Rollout, now: float, counters: an.Snapshot) -> list[str]:
    if r.blue_green and r.step == 0:
        r.phase, r.step = RolloutPhase.STEP, 1
        _open_window(r, now, counters)
        return [f"switched: 100 % to {r.candidate}, {r.stable} kept up for a rollback; bake window of "
                f"{r.spec.interval_s:g} s"]
    _finish(r, now, RolloutStatus.PROMOTED, "every window passed", "post-rollout")
    return [f"promoted: 100 % to {r.candidate}"]


def confirm(r: Rollout, now: float, counters: an.Snapshot, results: Sequence[WebhookResult]) -> list[str]:
    """The confirm-promotion webhooks answered: promote when all said 2xx, else ask again later."""
    before = [h.detail for h in r.confirmations]
    r.confirmations = tuple(results)
    failed = _webhook_failures(results)
    if failed:
        r.next_decision_at = now + min(r.spec.interval_s, CONFIRM_EVERY_MAX_S)
        # One event when the hold starts and one whenever the answer changes, not one per question.
        return [f"promotion held: {'; '.join(failed)}"] if before != [h.detail for h in results] else []
    r.confirmations = ()
    return ["promotion confirmed: " + ", ".join(f"{h.name} {h.detail}" for h in results),
            *_promote_now(r, now, counters)]


# --- controls ----------------------------------------------------------------------------------------

def pause(r: Rollout, now: float, who: str = "by hand") -> list[str]:
    if r.finished or r.paused:
        return []
    r.paused = True
    return [f"paused {who} at {_where(r) if r.phase != RolloutPhase.PRE_ROLLOUT else 'the start'}"]


def resume(r: Rollout, now: float, counters: an.Snapshot, who: str = "by hand") -> list[str]:
    """Go on; a window cut by the pause starts over (its traffic was not watched whole)."""
    if r.finished or not r.paused:
        return []
    r.paused = False
    if r.phase in (RolloutPhase.STEP, RolloutPhase.PREVIEW):
        _open_window(r, now, counters)
    elif r.phase == RolloutPhase.CONFIRMING:
        r.next_decision_at = now
    return [f"resumed {who}: {_where(r) if r.phase != RolloutPhase.PRE_ROLLOUT else 'the start'}"]


def restart_window(r: Rollout, now: float, counters: an.Snapshot) -> None:
    """After the controller was down: the window it was watching starts over (its proxies' counters did
    not survive the restart); a held promotion asks again at once. Steps, windows and failures stay."""
    if r.finished or r.paused:
        return
    if r.phase in (RolloutPhase.STEP, RolloutPhase.PREVIEW):
        _open_window(r, now, counters)
    elif r.phase == RolloutPhase.CONFIRMING:
        r.next_decision_at = now


def abort(r: Rollout, now: float, who: str = "by hand") -> list[str]:
    if r.finished:
        return []
    reason = f"aborted {who}"
    _finish(r, now, RolloutStatus.ROLLED_BACK, reason, "rollback")
    return [f"rolled back to {_back_to(r)}: {reason}"]


def promote(r: Rollout, now: float, who: str = "by hand") -> list[str]:
    if r.finished:
        return []
    _finish(r, now, RolloutStatus.PROMOTED, f"promoted {who}", "post-rollout")
    return [f"promoted {who}: 100 % to {r.candidate}"]


def supersede(r: Rollout, now: float, newer: str) -> list[str]:
    if r.finished:
        return []
    _finish(r, now, RolloutStatus.SUPERSEDED, f"superseded by {newer}", None)
    return [f"superseded by {newer}: {r.candidate}'s share goes back to {r.stable}"]


def fail(r: Rollout, now: float, reason: str) -> list[str]:
    """Something outside the rollout made it impossible (a version deleted, the route removed)."""
    if r.finished:
        return []
    _finish(r, now, RolloutStatus.ROLLED_BACK, reason, "rollback")
    return [f"rolled back to {_back_to(r) or 'nothing'}: {reason}"]
