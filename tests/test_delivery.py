"""The rollout core without a process or a socket: traffic splits, window figures and verdicts, and the
state machine driven through virtual time with made-up counters."""

from __future__ import annotations

from bisect import bisect_left

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshpipe.delivery import machine as m
from meshpipe.delivery.analysis import Counters, Figures, judge, quantile_ms, window_counters
from meshpipe.delivery.policy import Analysis, RolloutSpec, Webhook
from meshpipe.delivery.weights import share, split
from meshpipe.engines.local.dataplane.metrics import BUCKET_BOUNDS_MS
from meshpipe.mesh.headers import HeaderMatch
from meshpipe.mesh.routing import WeightedTarget
from meshpipe.status import RolloutPhase, RolloutStatus

OLD, NEW, OTHER = "01d01d00", "4e34e300", "07e507e5"


# --- weights ------------------------------------------------------------------------------------------

def test_split_keeps_every_other_versions_relative_share() -> None:
    assert split({OLD: 60, OTHER: 40}, NEW, 20) == (WeightedTarget(OLD, 48), WeightedTarget(OTHER, 32),
                                                     WeightedTarget(NEW, 20))
    assert split({OLD: 100}, NEW, 10) == (WeightedTarget(OLD, 90), WeightedTarget(NEW, 10))
    assert split({OLD: 100}, NEW, 100) == (WeightedTarget(NEW, 100),)
    assert split({OLD: 90, OTHER: 10}, NEW, 0) == (WeightedTarget(OLD, 90), WeightedTarget(OTHER, 10))


@given(st.dictionaries(st.sampled_from([f"{i:08x}" for i in range(9)]), st.integers(1, 100), min_size=1),
       st.integers(0, 100))
def test_shares_are_whole_add_up_and_stay_in_proportion(base: dict[str, int], total: int) -> None:
    out = share(base, total)
    assert sum(out.values()) == total
    whole = sum(base.values())
    for v, w in base.items():
        assert abs(out[v] - total * w / whole) < 1  # largest remainder: never a whole weight off


# --- analysis -----------------------------------------------------------------------------------------

def hist(ms: float, n: int) -> dict[int, int]:
    return {bisect_left(BUCKET_BOUNDS_MS, ms): n}


def test_a_window_is_the_difference_and_a_restarted_proxy_counts_whole() -> None:
    before = {"9901": {NEW: Counters(100, 5, hist(2, 100))}, "9902": {NEW: Counters(50, 0, hist(2, 50))}}
    after = {"9901": {NEW: Counters(160, 8, {**hist(2, 150), **hist(300, 10)})},
             "9902": {NEW: Counters(7, 1, hist(2, 7))},  # restarted: its counters went down
             "9903": {NEW: Counters(3, 0, hist(2, 3))}}  # new since the window began
    window = window_counters(before, after)[NEW]
    assert (window.requests, window.errors) == (60 + 7 + 3, 3 + 1)
    assert sum(window.buckets.values()) == 50 + 10 + 7 + 3


def test_p99_is_the_upper_bound_of_its_bucket() -> None:
    buckets = {**hist(2, 980), **hist(250, 20)}
    p99 = quantile_ms(buckets, 0.99, BUCKET_BOUNDS_MS)
    assert p99 is not None and 250 <= p99 < 250 * 1.13
    assert quantile_ms({}, 0.99, BUCKET_BOUNDS_MS) is None


def test_verdicts_name_what_failed() -> None:
    a = Analysis(min_success_rate=99, max_p99_ms=500, max_p99_increase_percent=50, min_requests=20)
    stable = Figures(1000, 0, 4.0)
    assert judge(Figures(200, 1, 5.0), stable, None, a).passed
    few = judge(Figures(5, 0, 5.0), stable, None, a)
    assert not few.passed and "only 5 request(s)" in few.reasons[0]
    bad = judge(Figures(200, 40, 5.0), stable, None, a)
    assert not bad.passed and "success rate 80.0 % (40 of 200 answers 5xx), below the 99 % allowed" in bad.reasons
    slow = judge(Figures(200, 0, 230.0), stable, None, a)
    assert not slow.passed and "above the stable version's 4.0 ms (at most +50 % allowed)" in slow.reasons[0]
    absolute = judge(Figures(200, 0, 600.0), Figures(1000, 0, 590.0), None, a)
    assert not absolute.passed and "above the 500 ms allowed" in absolute.reasons[0]
    # Under the floor a relative increase is noise, not a regression.
    assert judge(Figures(200, 0, 9.0), Figures(1000, 0, 1.0), None, a).passed
    # Without stable traffic the last known stable p99 is the reference.
    assert not judge(Figures(200, 0, 230.0), Figures(0, 0, None), 4.0, a).passed
    hooked = judge(Figures(200, 0, 5.0), stable, None, a, ["smoke (rollout) HTTP 500"])
    assert not hooked.passed and hooked.reasons == ("webhook smoke (rollout) HTTP 500",)
    quiet = judge(Figures(0, 0, None), Figures(0, 0, None), None, Analysis(min_requests=0))
    assert quiet.passed and quiet.reasons == ("no requests: nothing to judge",)


# --- the machine, in virtual time ---------------------------------------------------------------------

class Traffic:
    """Cumulative counters of two proxies, grown by hand between decisions."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, Counters]] = {"p1": {}, "p2": {}}

    def send(self, version: str, n: int, errors: int = 0, ms: float = 2.0, proxy: str = "p1") -> None:
        was = self.counts[proxy].get(version, Counters())
        self.counts[proxy][version] = was.plus(Counters(n, errors, hist(ms, n)))

    def snapshot(self) -> dict[str, dict[str, Counters]]:
        return {p: dict(v) for p, v in self.counts.items()}


def canary(steps: tuple[int, ...] = (10, 50, 100), failed_windows: int = 1, **plan: object) -> RolloutSpec:
    return RolloutSpec(strategy="canary", steps=steps, interval_s=30.0,
                       analysis=Analysis(min_requests=10, failed_windows=failed_windows), **plan)  # type: ignore[arg-type]


def run_window(r: m.Rollout, t: Traffic, now: float, *, new_errors: int = 0, new_ms: float = 2.0,
               hooks: tuple[m.WebhookResult, ...] = ()) -> list[str]:
    assert m.due(r, now) is None
    assert r.next_decision_at is not None
    now = r.next_decision_at
    w = r.weight()
    t.send(OLD, 100 - w)
    t.send(NEW, w, errors=new_errors, ms=new_ms)
    assert m.due(r, now) == "window"
    return m.conclude(r, now, t.snapshot(), BUCKET_BOUNDS_MS, hooks)


def test_a_healthy_candidate_goes_through_every_step_and_is_promoted() -> None:
    t = Traffic()
    r, events = m.start("svc", NEW, {OLD: 100}, canary(), now=1000.0)
    assert m.desired(r) == ((WeightedTarget(OLD, 100),), None) and m.due(r, 1000.0) == "begin"
    events += m.begin(r, 1000.0, t.snapshot())
    assert m.desired(r)[0] == (WeightedTarget(OLD, 90), WeightedTarget(NEW, 10))
    assert r.next_decision_at == 1030.0
    events += run_window(r, t, 1001.0)
    assert m.desired(r)[0] == (WeightedTarget(OLD, 50), WeightedTarget(NEW, 50)) and r.next_decision_at == 1060.0
    events += run_window(r, t, 1031.0)
    assert r.status == RolloutStatus.PROMOTED and m.desired(r) == ((WeightedTarget(NEW, 100),), None)
    assert r.pending_webhooks == ["post-rollout"]
    assert [w.passed for w in r.windows] == [True, True]
    assert r.windows[0].candidate.requests == 10 and r.windows[1].candidate.requests == 50
    assert events[-1] == f"promoted: 100 % to {NEW}"


def test_a_failing_candidate_is_rolled_back_to_every_versions_old_share() -> None:
    t = Traffic()
    r, _ = m.start("svc", NEW, {OLD: 70, OTHER: 30}, canary(steps=(20, 100), failed_windows=2), now=0.0)
    m.begin(r, 0.0, t.snapshot())
    assert m.desired(r)[0] == (WeightedTarget(OLD, 56), WeightedTarget(OTHER, 24), WeightedTarget(NEW, 20))
    events = run_window(r, t, 1.0, new_errors=4)  # 4 of 20: 80 %
    assert r.status == RolloutStatus.RUNNING and r.failed_windows == 1 and r.step == 0 and r.next_decision_at == 60.0
    assert "step 1 repeated" in events[-1]
    events = run_window(r, t, 31.0, new_errors=4)
    assert r.status == RolloutStatus.ROLLED_BACK and r.pending_webhooks == ["rollback"]
    assert m.desired(r)[0] == (WeightedTarget(OLD, 70), WeightedTarget(OTHER, 30))
    assert "success rate 80.0 %" in r.reason and events[-1].startswith("rolled back to ")


def test_a_latency_regression_is_rolled_back() -> None:
    t = Traffic()
    r, _ = m.start("svc", NEW, {OLD: 100}, canary(steps=(50, 100)), now=0.0)
    m.begin(r, 0.0, t.snapshot())
    run_window(r, t, 1.0, new_ms=210.0)
    assert r.status == RolloutStatus.ROLLED_BACK and "p99 latency" in r.reason and "stable version's" in r.reason


def test_a_refused_pre_rollout_hook_halts_before_any_traffic_moves() -> None:
    t = Traffic()
    r, _ = m.start("svc", NEW, {OLD: 100}, canary(), now=0.0)
    events = m.begin(r, 0.0, t.snapshot(), [m.WebhookResult("smoke", "pre-rollout", False, "HTTP 503")])
    assert r.status == RolloutStatus.HALTED and m.desired(r) == ((WeightedTarget(OLD, 100),), None)
    assert r.windows == [] and "smoke (pre-rollout) HTTP 503" in events[0]


def test_confirm_promotion_holds_the_last_step_until_it_answers_2xx() -> None:
    t = Traffic()
    gate = Webhook("gate", "confirm-promotion", "http://127.0.0.1:1/")
    r, _ = m.start("svc", NEW, {OLD: 100}, canary(steps=(50, 100), webhooks=(gate,)), now=0.0)
    m.begin(r, 0.0, t.snapshot())
    events = run_window(r, t, 1.0)
    assert r.phase == RolloutPhase.CONFIRMING and m.due(r, 30.0) == "confirm" and "awaiting confirm-promotion" in events[-1]
    no = (m.WebhookResult("gate", "confirm-promotion", False, "HTTP 403"),)
    assert m.confirm(r, 30.0, t.snapshot(), no) == ["promotion held: gate (confirm-promotion) HTTP 403"]
    assert m.confirm(r, 35.0, t.snapshot(), no) == []  # the same answer again: no new event
    assert r.status == RolloutStatus.RUNNING and m.desired(r)[0] == (WeightedTarget(OLD, 50), WeightedTarget(NEW, 50))
    assert r.next_decision_at == 40.0
    m.confirm(r, 40.0, t.snapshot(), (m.WebhookResult("gate", "confirm-promotion", True, "HTTP 200"),))
    assert r.status == RolloutStatus.PROMOTED


def test_blue_green_previews_on_a_header_then_switches_and_bakes() -> None:
    t = Traffic()
    header = HeaderMatch("x-canary", "always")
    plan = RolloutSpec("blue-green", (100,), 30.0, Analysis(min_requests=5, failed_windows=1), preview=header)
    r, _ = m.start("svc", NEW, {OLD: 100}, plan, now=0.0)
    m.begin(r, 0.0, t.snapshot())
    assert r.phase == RolloutPhase.PREVIEW and m.desired(r) == ((WeightedTarget(OLD, 100),), header)
    t.send(OLD, 100)
    t.send(NEW, 10)  # the preview's requests
    m.conclude(r, 30.0, t.snapshot(), BUCKET_BOUNDS_MS)
    assert r.phase == RolloutPhase.STEP and r.step == 1 and m.desired(r) == ((WeightedTarget(NEW, 100),), None)
    t.send(NEW, 100, ms=230.0)  # slower than the stable p99 seen in the preview window
    m.conclude(r, 60.0, t.snapshot(), BUCKET_BOUNDS_MS)
    assert r.status == RolloutStatus.ROLLED_BACK and m.desired(r) == ((WeightedTarget(OLD, 100),), None)


def test_pause_resume_abort_promote_supersede() -> None:
    t = Traffic()
    r, _ = m.start("svc", NEW, {OLD: 100}, canary(), now=0.0)
    m.begin(r, 0.0, t.snapshot())
    assert m.pause(r, 10.0) and m.due(r, 100.0) is None
    m.resume(r, 100.0, t.snapshot())
    assert r.next_decision_at == 130.0 and r.window_started_at == 100.0  # the cut window starts over
    assert m.abort(r, 101.0)[0].startswith("rolled back") and r.reason == "aborted by hand"
    assert m.abort(r, 102.0) == []  # a finished rollout stays as it ended
    r, _ = m.start("svc", NEW, {OLD: 100}, canary(), now=0.0)
    m.begin(r, 0.0, t.snapshot())
    m.promote(r, 5.0)
    assert r.status == RolloutStatus.PROMOTED and r.pending_webhooks == ["post-rollout"]
    r, _ = m.start("svc", NEW, {OLD: 100}, canary(), now=0.0)
    m.begin(r, 0.0, t.snapshot())
    m.supersede(r, 3.0, "5ec0d000")
    assert r.status == RolloutStatus.SUPERSEDED and m.desired(r)[0] == (WeightedTarget(OLD, 100),)


def test_a_rollout_resumes_from_its_json_where_it_was() -> None:
    t = Traffic()
    r, _ = m.start("svc", NEW, {OLD: 100}, canary(steps=(10, 50, 100), failed_windows=3), now=0.0)
    m.begin(r, 0.0, t.snapshot())
    run_window(r, t, 1.0, new_errors=5)
    run_window(r, t, 31.0)
    back = m.Rollout.from_json(r.to_json(), rollout_id=7)
    assert back.to_json() == r.to_json() and back.id == 7
    assert (back.step, back.failed_windows, len(back.windows), back.next_decision_at) == (1, 1, 2, 90.0)
    assert m.desired(back) == m.desired(r)


@pytest.mark.parametrize("steps", [(10, 100), (25, 50, 75, 100)])
def test_every_step_is_judged_once_when_healthy(steps: tuple[int, ...]) -> None:
    t = Traffic()
    r, _ = m.start("svc", NEW, {OLD: 100}, canary(steps=steps), now=0.0)
    m.begin(r, 0.0, t.snapshot())
    while not r.finished:
        run_window(r, t, (r.next_decision_at or 0) - 1)
    assert r.status == RolloutStatus.PROMOTED and [w.weight for w in r.windows] == list(steps[:-1])


# --- no traffic is not failure ---------------------------------------------------------------------------

def quiet_window(r: m.Rollout, t: Traffic, new_requests: int = 0) -> list[str]:
    """A window in which the candidate gets ``new_requests`` (fewer than the plan's 10) and the old version none."""
    assert r.next_decision_at is not None
    now = r.next_decision_at
    t.send(NEW, new_requests, errors=new_requests)  # even all-5xx: too few to judge
    assert m.due(r, now) == "window"
    return m.conclude(r, now, t.snapshot(), BUCKET_BOUNDS_MS)


def test_a_silent_environment_holds_the_step_and_never_rolls_back() -> None:
    t = Traffic()
    r, _ = m.start("svc", NEW, {OLD: 100}, canary(failed_windows=1), now=1000.0)
    m.begin(r, 1000.0, t.snapshot())
    events: list[str] = []
    for _ in range(20):
        events += quiet_window(r, t, new_requests=3)
    assert (r.status, r.step, r.failed_windows, r.weight()) == (RolloutStatus.RUNNING, 0, 0, 10)
    assert [w.verdict for w in r.windows] == ["inconclusive"] * 20
    assert r.inconclusive_since == 1000.0
    said = m.holding(r)
    assert said is not None and said.startswith("holding step 1/3 (10 %): only 3 request(s)") and "until there is traffic" in said
    assert "inconclusive: step 1/3 (10 %) holds" in events
    assert not any("rolled back" in e for e in events)
    # Traffic comes: the next window is judged, and the rollout goes on.
    events = run_window(r, t, (r.next_decision_at or 0.0) - 1)
    assert r.step == 1 and r.inconclusive_since is None and m.holding(r) is None and r.windows[-1].verdict == "passed"
    # The state survives a store and a reload, inconclusive windows included.
    again = m.Rollout.from_json(r.to_json())
    assert [w.verdict for w in again.windows] == [w.verdict for w in r.windows]


def test_a_judge_with_too_few_requests_says_inconclusive_but_a_failed_webhook_still_fails() -> None:
    a = Analysis(min_requests=20)
    few = judge(Figures(5, 5, 900.0), Figures(1000, 0, 4.0), None, a)
    assert few.inconclusive and not few.passed and few.reasons[0].startswith("only 5 request(s)")
    hooked = judge(Figures(5, 0, 4.0), Figures(1000, 0, 4.0), None, a, ["smoke (rollout) HTTP 500"])
    assert not hooked.inconclusive and not hooked.passed


@pytest.mark.parametrize(("action", "status"), [("rollback", RolloutStatus.ROLLED_BACK), ("promote", RolloutStatus.PROMOTED)])
def test_an_inconclusive_deadline_decides(action: str, status: str) -> None:
    t = Traffic()
    plan = RolloutSpec(strategy="canary", steps=(10, 50, 100), interval_s=30.0,
                       analysis=Analysis(min_requests=10, failed_windows=1, inconclusive_deadline_s=90.0,
                                         on_inconclusive=action))
    r, _ = m.start("svc", NEW, {OLD: 100}, plan, now=1000.0)
    m.begin(r, 1000.0, t.snapshot())
    quiet_window(r, t)
    quiet_window(r, t)
    held = m.holding(r) or ""
    assert r.status == RolloutStatus.RUNNING and f"{action} at 90 s without a verdict" in held, held
    events = quiet_window(r, t)  # 90 s after the first quiet window began
    assert r.status == status and "no verdict within the 90 s deadline" in r.reason, events


# --- what a finished rollout scales down, and when -------------------------------------------------------

def test_a_finished_rollout_names_the_versions_to_scale_down_and_when() -> None:
    t = Traffic()
    plan = RolloutSpec(strategy="canary", steps=(10, 50, 100), interval_s=30.0,
                       analysis=Analysis(min_requests=10, failed_windows=1), scale_down_delay_s=30.0)
    r, _ = m.start("svc", NEW, {OLD: 100}, plan, now=1000.0)
    m.begin(r, 1000.0, t.snapshot())
    assert m.scale_downs(r) == []  # running: nothing yet
    run_window(r, t, 1001.0, new_errors=5)
    assert r.status == RolloutStatus.ROLLED_BACK
    assert m.scale_downs(r) == [(NEW, 1030.0, "at once: its rollout was rolled-back")]
    promoted, _ = m.start("svc", NEW, {OLD: 100}, plan, now=2000.0)
    m.promote(promoted, 2010.0)
    assert m.scale_downs(promoted) == [(OLD, 2040.0, f"30 s after {NEW} was promoted")]
    superseded, _ = m.start("svc", NEW, {OLD: 100}, plan, now=3000.0)
    m.supersede(superseded, 3005.0, "0badf00d")
    assert [(v, at) for v, at, _ in m.scale_downs(superseded)] == [(NEW, 3035.0)]
    # The plan survives the state's JSON with its delay.
    assert RolloutSpec.from_json(plan.to_json()).scale_down_delay_s == 30.0
