"""Rollouts on the local engine, end to end: a real daemon, proxies and sample apps, real git pushes and real
HTTP on 127.0.0.1. After the push nothing but the daemon moves traffic; the tests only watch (and, where a
test is about a control or a restart, use it). Each test kills, by pid, whatever it started."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshpipe.engines.local.control.daemon import read_daemon_file
from meshpipe.engines.local.tasks import processes as procs
from support.rollout_env import ENV, SERVICE, Load, RolloutEnv, backend_manifest, rollout_env, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

# Two-second windows judged on at least 10 requests; one failed window rolls back.
# Every wait below is for a condition, with a deadline generous enough for a loaded 2-core machine: a
# passing run waits only as long as the condition takes.
FAST_CANARY = ("  Strategy: canary\n  Steps: [20, 50, 100]\n  Interval: 2\n"
               "  Analysis:\n    MinRequests: 10\n    FailedWindows: 1\n")
# A decision is never taken before its window is due, and lands before the next window would be: the
# tight bound (1 s) is a latency figure, measured by bench/bench_rollout.py, not a test's pass mark.


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RolloutEnv]:
    monkeypatch.setenv("MESHPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with rollout_env(tmp_path) as made:
        yield made


def serve_first_version(env: RolloutEnv, rollout: str = FAST_CANARY) -> str:
    """The first version of a service with a rollout policy takes all traffic at once."""
    first = env.push(backend_manifest("-g Hello", rollout=rollout), "first")
    env.deployed(first)
    status = env.finished(first, 120)
    assert status["status"] == "promoted" and "first version" in status["reason"]
    assert env.weights() == {first: 100}
    return first


def assert_decisions_on_time(status: dict) -> None:  # type: ignore[type-arg]
    interval = status["plan"]["interval_s"]
    for w in status["windows"]:
        assert 0 <= w["decision_lag_s"] < interval, w
        assert w["decided_at"] and w["due_at"]
    assert interval > 0


def test_a_healthy_version_is_promoted_through_every_step_with_no_command_after_the_push(env: RolloutEnv) -> None:
    old = serve_first_version(env)
    with Load(env.ingress_port) as load:
        wait_until(lambda: len(load.results) > 20, 60, "load running")
        new = env.push(backend_manifest("-g Yo", rollout=FAST_CANARY), "new greeting")
        env.deployed(new)
        started = time.time()
        status = env.finished(new, 240)
        served = load.versions_since(started)
    assert status["status"] == "promoted", status
    assert [(w["weight"], w["verdict"]) for w in status["windows"]] == [(20, "passed"), (50, "passed")]
    assert all(w["candidate"]["requests"] >= 10 and w["candidate"]["errors"] == 0 for w in status["windows"])
    assert_decisions_on_time(status)
    assert env.weights() == {new: 100}
    assert served[old] > 0 and served[new] > 0  # both answered while the traffic moved
    messages = [e.message for e in env.events()]
    assert any("rollout of" in m and "started by a push (run " in m for m in messages)
    assert any(m.startswith("step 1/3: 20 %") for m in messages)
    assert any(m.startswith("step 2/3: 50 %") for m in messages)
    assert sum(m.startswith("window ") and "passed" in m for m in messages) == 2
    assert messages[-1] == f"promoted: 100 % to {new}"


def candidate_requests(env: RolloutEnv, version: str) -> int:
    return env.engine.stats(ENV, SERVICE).of(version).requests


def pushed_targets(env: RolloutEnv) -> list[dict]:  # type: ignore[type-arg]
    config = env.engine.mesh_config(ENV) or {}
    route = config.get("services", {}).get(f"{SERVICE}.demo.local", {}).get("route") or {}
    return list(route.get("targets", []))


def rolled_back_with_no_traffic_after(env: RolloutEnv, load: Load, old: str, new: str) -> dict:  # type: ignore[type-arg]
    status = env.finished(new, 240)
    assert status["status"] == "rolled-back", status
    assert env.weights() == {old: 100}
    # Once every proxy applied the rollback (the config the daemon last pushed to all of them says so), the
    # candidate gets nothing more.
    wait_until(lambda: pushed_targets(env) == [{"version": old, "weight": 100}], 60, "the rollback pushed")
    counted = candidate_requests(env, new)
    after = time.time() + 0.2  # answers still in flight when the rollback applied may end just after it
    wait_until(lambda: len(load.since(after)) > 100, 60, "load after the rollback")
    assert candidate_requests(env, new) == counted
    assert set(load.versions_since(after)) == {old}
    return status


def test_a_version_failing_20_percent_is_rolled_back_within_one_window_and_gets_no_traffic_after(
        env: RolloutEnv) -> None:
    old = serve_first_version(env)
    with Load(env.ingress_port) as load:
        new = env.push(backend_manifest("-g Bad", "--fail-rate 0.2", rollout=FAST_CANARY), "a bad version")
        env.deployed(new)
        status = rolled_back_with_no_traffic_after(env, load, old, new)
    # FailedWindows: 1, so the first window's verdict is the rollback, at the window's end.
    [window] = status["windows"]
    assert window["verdict"] == "failed" and window["weight"] == 20
    assert 60 < window["candidate"]["success_rate"] < 95
    assert "below the 99 % allowed" in status["reason"]
    assert_decisions_on_time(status)
    assert any(e.message.startswith("rolled back to ") and "success rate" in e.message for e in env.events())


def test_a_200_ms_latency_regression_is_rolled_back(env: RolloutEnv) -> None:
    old = serve_first_version(env)
    with Load(env.ingress_port, clients=4) as load:
        new = env.push(backend_manifest("-g Slow", "--delay-ms 200", rollout=FAST_CANARY), "a slow version")
        env.deployed(new)
        status = rolled_back_with_no_traffic_after(env, load, old, new)
    [window] = status["windows"]
    assert window["candidate"]["p99_ms"] >= 200 and window["stable"]["p99_ms"] < 100
    assert "p99 latency" in status["reason"] and "above the stable version's" in status["reason"]
    assert window["candidate"]["errors"] == 0  # judged on latency alone


class HookServer:
    """Webhook endpoints on 127.0.0.1: each path answers its configured status and keeps what it got."""

    def __init__(self) -> None:
        import json
        import threading

        from support.http_server import QuietHandler

        self.answers: dict[str, int] = {}
        self.calls: list[tuple[str, dict]] = []  # type: ignore[type-arg]
        lock = threading.Lock()
        hooks = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with lock:
                    hooks.calls.append((self.path, body))
                    status = hooks.answers.get(self.path, 200)
                self.send_response(status)
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"ok\n" if status < 300 else b"no\n")

        self.handler = Handler

    def called(self, path: str) -> list[dict]:  # type: ignore[type-arg]
        return [body for p, body in list(self.calls) if p == path]


@pytest.fixture
def hooks() -> Iterator[tuple[HookServer, str]]:
    from support.http_server import serving

    server = HookServer()
    with serving(server.handler) as port:
        yield server, f"http://127.0.0.1:{port}"


def with_hooks(url: str, *hooks: tuple[str, str]) -> str:
    listed = "".join(f"    - {{Name: {name}, Type: {kind}, Url: '{url}/{name}', Timeout: 2, Metadata: {{team: core}}}}\n"
                     for name, kind in hooks)
    return FAST_CANARY + "  Webhooks:\n" + listed


def test_a_refused_pre_rollout_hook_halts_the_rollout(env: RolloutEnv, hooks: tuple[HookServer, str]) -> None:
    server, url = hooks
    old = serve_first_version(env)
    server.answers["/smoke"] = 503
    with Load(env.ingress_port):
        new = env.push(backend_manifest("-g Yo", rollout=with_hooks(url, ("smoke", "pre-rollout"))), "gated")
        env.deployed(new)
        status = env.finished(new, 120)
    assert status["status"] == "halted" and status["windows"] == []
    assert "smoke (pre-rollout) HTTP 503" in status["reason"]
    assert env.weights() == {old: 100} and candidate_requests(env, new) == 0
    [payload] = server.called("/smoke")
    assert (payload["type"], payload["service"], payload["candidate"], payload["stable"]) == (
        "pre-rollout", SERVICE, new, old)
    assert payload["metadata"] == {"team": "core"}


def test_confirm_promotion_holds_until_approved_and_rollout_hooks_see_every_window(
        env: RolloutEnv, hooks: tuple[HookServer, str]) -> None:
    server, url = hooks
    old = serve_first_version(env)
    server.answers["/gate"] = 403
    rollout = with_hooks(url, ("gate", "confirm-promotion"), ("watch", "rollout"), ("done", "post-rollout"))
    with Load(env.ingress_port):
        new = env.push(backend_manifest("-g Yo", rollout=rollout), "gated promotion")
        env.deployed(new)
        wait_until(lambda: (env.rollout_of(new) or {}).get("phase") == "confirming", 120, "awaiting confirmation")
        # Held: the gate is asked again and again, the traffic stays at the last step.
        wait_until(lambda: len(server.called("/gate")) >= 3, 80, "the gate asked three times")
        status = env.status()
        assert status["status"] == "running" and env.weights() == {old: 50, new: 50}
        assert status["confirmations"][0]["detail"].startswith("HTTP 403")
        server.answers["/gate"] = 200
        # Asked again within min(interval, 5 s) = 2 s and decided at once.
        status = env.finished(new, 120)
    assert status["status"] == "promoted" and env.weights() == {new: 100}
    windows = server.called("/watch")
    assert [w["window"]["candidate"]["requests"] > 0 for w in windows] == [True, True]
    assert [w["weights"][new] for w in windows] == [20, 50]
    assert len(server.called("/done")) == 1 and server.called("/done")[0]["status"] == "promoted"
    assert any(e.message.startswith("promotion held: gate") for e in env.events())
    assert any(e.message.startswith("promotion confirmed: gate HTTP 200") for e in env.events())


def test_kill_9_of_the_daemon_mid_rollout_resumes_at_the_same_step(env: RolloutEnv) -> None:
    policy = ("  Steps: [20, 50, 100]\n  Interval: 4\n  Analysis:\n    MinRequests: 5\n    FailedWindows: 3\n")
    serve_first_version(env, policy)
    with Load(env.ingress_port) as load:
        new = env.push(backend_manifest("-g Yo", rollout=policy), "new")
        env.deployed(new)
        wait_until(lambda: (env.rollout_of(new) or {}).get("step") == 2, 120, "second step")
        before = env.status()
        daemon = read_daemon_file(env.paths.daemon_json)
        assert daemon is not None
        os.kill(daemon["pid"], signal.SIGKILL)
        wait_until(lambda: not procs.is_running(daemon["pid"]), 120, "daemon gone")
        after = env.status()  # any command starts the daemon again
        env.note_pids()
        assert (after["status"], after["step"], after["weights"]) == ("running", 2, before["weights"])
        assert after["windows"] == before["windows"] and after["id"] == before["id"]
        assert env.weights() == before["weights"]
        status = env.finished(new, 240)
        assert len(load.results) > 0
    assert status["status"] == "promoted", status
    assert [w["weight"] for w in status["windows"] if w["verdict"] == "passed"] == [20, 50]
    assert any("resumed after a daemon start at step 2/3" in e.message for e in env.events())


def test_three_versions_keep_their_relative_shares(env: RolloutEnv) -> None:
    no_rollout = "  Enabled: false\n"
    a = env.push(backend_manifest("-g A", rollout=no_rollout), "a")
    env.deployed(a)
    b = env.push(backend_manifest("-g B", rollout=no_rollout), "b")
    env.deployed(b)
    from meshpipe.mesh.routing import WeightedTarget

    env.engine.route_set(ENV, SERVICE, (WeightedTarget(a, 60), WeightedTarget(b, 40)))
    policy = "  Steps: [25, 100]\n  Interval: 3\n  Analysis:\n    MinRequests: 10\n    FailedWindows: 1\n"
    with Load(env.ingress_port, clients=4) as load:
        c = env.push(backend_manifest("-g C", rollout=policy), "c")
        env.deployed(c)
        wait_until(lambda: c in env.weights(), 80, "the candidate routed")
        assert env.weights() == {a: 45, b: 30, c: 25}
        mid = time.time()
        wait_until(lambda: len(load.since(mid)) > 400, 80, "traffic at the step")
        split = load.versions_since(mid)
        status = env.finished(c, 120)
    assert status["base"] == {a: 60, b: 40} and status["status"] == "promoted"
    # The observed split follows the weights: a to b stays 60:40 (3:2) while c takes its share.
    assert 1.05 < split[a] / split[b] < 2.3, split  # 1.5 expected; equal shares (1.0) would fail
    assert env.weights() == {c: 100}


def test_a_newer_push_supersedes_the_running_rollout(env: RolloutEnv) -> None:
    slow = "  Steps: [30, 100]\n  Interval: 60\n"
    old = serve_first_version(env, slow)
    first = env.push(backend_manifest("-g First", rollout=slow), "first try")
    env.deployed(first)
    wait_until(lambda: env.weights().get(first) == 30, 80, "first candidate at 30 %")
    second = env.push(backend_manifest("-g Second", rollout=slow), "second try")
    env.deployed(second)
    wait_until(lambda: env.weights() == {old: 70, second: 30}, 80, "the newer candidate from the old base")
    assert env.status()["candidate"] == second and env.status()["base"] == {old: 100}
    assert any(e.message.startswith(f"superseded by {second}") for e in env.events())
    env.engine.rollout_control(ENV, SERVICE, "abort")
    assert env.weights() == {old: 100}


def test_blue_green_preview_sends_every_matching_request_to_the_new_version_and_no_other(env: RolloutEnv) -> None:
    policy = ("  Strategy: blue-green\n  Interval: 6\n  PreviewHeader: {Name: x-canary, Value: always}\n"
              "  Analysis:\n    MinRequests: 10\n    FailedWindows: 1\n")
    old = serve_first_version(env, policy)
    new = env.push(backend_manifest("-g Yo", rollout=policy), "blue-green")
    env.deployed(new)
    wait_until(lambda: (env.rollout_of(new) or {}).get("phase") == "preview", 80, "preview")
    with Load(env.ingress_port, clients=1, headers={"x-canary": "always"}) as previewing:
        wait_until(lambda: sum(1 for r in previewing.results if r[1]) >= 200, 80, "200 preview requests")
    with Load(env.ingress_port, clients=1) as plain:
        wait_until(lambda: sum(1 for r in plain.results if r[1]) >= 200, 80, "200 plain requests")
    preview_answers = [v for _, status, v in previewing.results if status == 200][:200]
    plain_answers = [v for _, status, v in plain.results if status == 200][:200]
    assert preview_answers.count(new) == 200 and plain_answers.count(new) == 0
    assert env.weights() == {old: 100}  # the weighted route never changed during the preview
    with Load(env.ingress_port):
        status = env.finished(new, 160)
    assert status["status"] == "promoted", status
    assert [w["phase"] for w in status["windows"]] == ["preview", "step"]
    assert env.engine.header_routes(ENV, SERVICE) == []  # the preview route is gone with the rollout


def cli(*args: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from meshpipe.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        from meshpipe.cli import output

        output.out.file, output.err.file = out, err
        try:
            code = main([*args, "--env", ENV])
        finally:
            output.out.file, output.err.file = None, None  # type: ignore[assignment]
    return code, out.getvalue(), err.getvalue()


def test_the_rollout_commands(env: RolloutEnv) -> None:
    no_rollout = "  Enabled: false\n"
    old = env.push(backend_manifest("-g Hello", rollout=no_rollout), "first")
    env.deployed(old)
    assert cli("route", "set", SERVICE, f"{old}=100")[0] == 0
    new = env.push(backend_manifest("-g Yo", rollout=no_rollout), "second")
    env.deployed(new)
    code, _, err = cli("rollout", "status", SERVICE)
    assert code == 2 and "has had no rollout yet" in err
    # Started by hand, the version has no plan of its own: the platform's default (canary, 60 s steps).
    code, text, _ = cli("rollout", "start", SERVICE, new)
    assert code == 0 and "step 1/4 (10 %)" in text and "next decision: in" in text
    assert env.weights() == {old: 90, new: 10}
    code, _, err = cli("route", "set", SERVICE, f"{old}=100")
    assert code == 2 and "a rollout of hello-backend is running" in err
    code, text, _ = cli("rollout", "pause", SERVICE)
    assert code == 0 and "(paused)" in text
    code, text, _ = cli("rollout", "status", SERVICE, "--format", "json")
    status = json.loads(text)
    assert status["paused"] and status["next_decision_at"] is None and status["weights"] == {old: 90, new: 10}
    assert cli("rollout", "resume", SERVICE)[0] == 0
    code, text, _ = cli("rollout", "abort", SERVICE)
    assert code == 0 and "rolled-back" in text and "aborted by hand" in text
    assert env.weights() == {old: 100}
    code, _, err = cli("rollout", "pause", SERVICE)
    assert code == 2 and "no rollout of hello-backend is running" in err
    # Again (the aborted candidate, scaled down at once, comes back first), then promoted by hand with the
    # one-step command of before.
    assert cli("rollout", "start", SERVICE, new)[0] == 0
    code, text, _ = cli("rollout", "promote", SERVICE)
    assert code == 0 and env.weights() == {new: 100}
    assert json.loads(cli("rollout", "status", SERVICE, "--format", "json")[1])["reason"] == "promoted by hand"
    code, text, _ = cli("rollout", "watch", SERVICE, "--every", "0.2")  # an ended rollout: shown once, then done
    assert code == 0 and "promoted" in text and "by hand" in text
    # A header route by hand: every request with the header to the old version.
    code, text, _ = cli("route", "set", SERVICE, f"{old}=100", "--header", "x-canary=always")
    assert code == 0 and "r-hello-backend-h-x-canary" in text
    with Load(env.ingress_port, clients=1, headers={"x-canary": "always"}) as load:
        wait_until(lambda: len(load.results) >= 50, 60, "requests with the header")
    assert {v for _, s, v in load.results if s == 200} == {old}
    code, text, _ = cli("route", "show", SERVICE)
    assert "x-canary=always" in text and f"{old}=100" in text
    assert cli("route", "delete", SERVICE, "--header", "x-canary")[0] == 0
    assert env.engine.header_routes(ENV, SERVICE) == []
    kinds = [e.message for e in env.events()]
    assert any(m.startswith("paused by hand") for m in kinds) and any(m.startswith("resumed by hand") for m in kinds)


def test_a_rollout_on_a_silent_environment_holds_and_scripts_can_tell_a_rollback(env: RolloutEnv) -> None:
    """No request reaches the new version: every window is inconclusive, the first step holds and nothing
    rolls back. Once the rollout is rolled back (here aborted), status, watch and pipeline wait exit 1."""
    old = serve_first_version(env)
    new = env.push(backend_manifest("-g Yo", rollout=FAST_CANARY), "quiet")
    env.deployed(new)
    wait_until(lambda: len((env.rollout_of(new) or {}).get("windows") or []) >= 3, 30, "three quiet windows")
    status = env.status()
    assert (status["status"], status["step"], status["failed_windows"]) == ("running", 1, 0), status
    assert {w["verdict"] for w in status["windows"]} == {"inconclusive"}
    assert status["holding"].startswith("holding step 1/3 (20 %): only 0 request(s)"), status["holding"]
    assert env.weights() == {old: 80, new: 20}
    code, text, _ = cli("rollout", "status", SERVICE)
    assert code == 0 and "holding step 1/3" in text and "inconclusive" in text
    code, text, _ = cli("pipeline", "wait", SERVICE, "--format", "json")
    assert code == 0 and json.loads(text)["rollout"]["status"] == "running"
    assert cli("rollout", "abort", SERVICE)[0] == 0  # the abort itself succeeded
    code, text, _ = cli("rollout", "status", SERVICE)
    assert code == 1 and "rolled-back" in text
    code, text, _ = cli("rollout", "watch", SERVICE, "--format", "json")
    assert code == 1 and json.loads(text.splitlines()[-1])["status"] == "rolled-back"
    code, text, _ = cli("pipeline", "wait", SERVICE)
    assert code == 1 and f"version {new} was deployed, but its rollout was rolled-back" in text


def test_every_control_plane_series_agrees_with_the_events_of_the_same_run(env: RolloutEnv) -> None:
    """A first version, a promoted rollout and a rolled-back one: each meshpipe_* series on /metrics is what
    the environment's events (and its state) say happened, route changes made by rollouts included."""
    from collections import Counter

    from prometheus_client.parser import text_string_to_metric_families

    # Judged on 5xx only: a shared machine's latency spikes are not what this test is about.
    canary = FAST_CANARY + "    MaxP99IncreasePercent: 10000\n"
    old = serve_first_version(env, canary)
    with Load(env.ingress_port) as load:
        good = env.push(backend_manifest("-g Yo", rollout=canary), "good")
        env.deployed(good)
        done = env.finished(good, 60)
        assert done["status"] == "promoted", done["reason"]
        bad = env.push(backend_manifest("-g Bad", "--fail-rate 0.5", rollout=canary), "bad")
        env.deployed(bad)
        assert env.finished(bad, 60)["status"] == "rolled-back"
        assert load.results
    samples = [s for f in text_string_to_metric_families(env.engine.metrics(ENV)) for s in f.samples]
    series = {s.name for s in samples if s.name.startswith("meshpipe_")}
    events = env.engine.events(ENV, None, limit=5000)

    def value(name: str, **labels: str) -> float:
        return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())

    # Route changes: one per route or gateway-route event, the rollouts' steps and rollback included.
    routes = Counter(e.service or "" for e in events if e.kind == "route")
    assert routes[SERVICE] >= 6  # first version, 2 steps and the promotion, a step and the rollback
    assert value("meshpipe_route_changes_total", service=SERVICE) == routes[SERVICE]
    assert value("meshpipe_route_changes_total", service="") == sum(e.kind == "gateway-route" for e in events) == 1
    # Rollout decisions: each judged window by its verdict, each ending by its outcome.
    said = [e.message for e in events if e.kind == "rollout"]
    verdicts = Counter(m.split(": ", 2)[1] for m in said if m.startswith("window "))
    for verdict, label in (("passed", "passed"), ("FAILED", "failed"), ("inconclusive", "inconclusive")):
        assert value("meshpipe_rollout_decisions_total", service=SERVICE, decision=label) == verdicts[verdict]
    assert verdicts["passed"] >= 2 and verdicts["FAILED"] >= 1
    promoted = sum(m.startswith("promoted") or " takes all traffic" in m for m in said)
    assert value("meshpipe_rollout_decisions_total", decision="promoted") == promoted == 2
    assert value("meshpipe_rollout_decisions_total", decision="rolled-back") == \
        sum(m.startswith("rolled back to ") for m in said) == 1
    # Pipeline runs, weights, tasks: as the runs, the route and the versions say.
    runs = Counter(r.status for r in env.engine.pipeline_runs(ENV, SERVICE))
    for outcome, n in runs.items():
        assert value("meshpipe_pipeline_runs_total", service=SERVICE, outcome=str(outcome)) == n
    assert {t: value("meshpipe_route_weight", service=SERVICE, version=t) for t in (old, good, bad)} == \
        {old: 0, good: 100, bad: 0} | {v: w for v, w in env.weights().items()}
    # Versions a rollout left without weight scale down while this runs: compare the healthy-task gauge with
    # the versions read just before and just after a fresh scrape, for every version that held still between.
    before = {v.version: v.healthy_tasks or 0 for v in env.engine.versions(ENV, SERVICE)}
    gauges = [s for f in text_string_to_metric_families(env.engine.metrics(ENV)) for s in f.samples
              if s.name == "meshpipe_healthy_tasks" and s.labels.get("service") == SERVICE]
    after = {v.version: v.healthy_tasks or 0 for v in env.engine.versions(ENV, SERVICE)}
    steady = [v for v in after if before.get(v) == after[v]]
    assert steady, (before, after)
    for v in steady:
        assert sum(s.value for s in gauges if s.labels.get("version") == v) == after[v], v
    restarts = sum(e.kind == "task" and " stopped: " in e.message and "; restart in " in e.message for e in events)
    assert value("meshpipe_task_restarts_total", service=SERVICE) == restarts == 0
    assert value("meshpipe_proxies_scraped") >= 1 and value("meshpipe_config_generation") >= 1
    assert series == {"meshpipe_route_changes_total", "meshpipe_rollout_decisions_total", "meshpipe_pipeline_runs_total",
                      "meshpipe_route_weight", "meshpipe_healthy_tasks", "meshpipe_task_restarts_total",
                      "meshpipe_proxies_scraped", "meshpipe_config_generation"}, series


def test_the_versions_a_rollout_leaves_without_weight_are_scaled_down_and_can_come_back(env: RolloutEnv) -> None:
    """After a promoted rollout and a rolled-back one: the promoted-from version goes to zero tasks after the
    plan's delay, the rolled-back candidate at once; versions says so; weight brings one back."""
    canary = FAST_CANARY + "    MaxP99IncreasePercent: 10000\n  ScaleDownDelay: 3\n"
    old = serve_first_version(env, canary)
    with Load(env.ingress_port) as load:
        good = env.push(backend_manifest("-g Yo", rollout=canary), "good")
        env.deployed(good)
        promoted = env.finished(good, 60)
        assert promoted["status"] == "promoted", promoted["reason"]
        # Kept up for the delay (an instant rollback stays possible), then scaled to zero.
        assert not by_version(env)[old]["scaled_down"]
        wait_until(lambda: by_version(env)[old]["scaled_down"], 15, "the old version scaled down")
        promoted_at = promoted["finished_at"]
        bad = env.push(backend_manifest("-g Bad", "--fail-rate 0.5", rollout=canary), "bad")
        env.deployed(bad)
        rolled_back = env.finished(bad, 60)
        assert rolled_back["status"] == "rolled-back"
        wait_until(lambda: by_version(env)[bad]["scaled_down"], 5, "the rolled-back version scaled down at once")
        after = time.time() + 0.2
        wait_until(lambda: len(load.since(after)) > 50, 10, "load after the scale-down")
        assert {(status, v) for _, status, v in load.since(after)} == {(200, good)}  # nothing lost to it
    shown = by_version(env)
    assert {v: (s["scaled_down"], s["desired_tasks"], s["healthy_tasks"]) for v, s in shown.items()} == {
        old: (True, 0, 0), good: (False, 1, 1), bad: (True, 0, 0)}
    wait_until(lambda: not [pid for pid, task in processes_of(env) if old in task or bad in task], 20,
               "the scaled-down versions' processes gone")
    code, text, _ = cli("versions", SERVICE)
    assert code == 0 and text.count("scaled down") == 2
    assert cli("rollout", "status", SERVICE)[0] == 1  # the latest rollout was rolled back
    scale_events = [e for e in env.events("scale")]
    assert any(f"{old} scaled down to 0 tasks" in e.message for e in scale_events)
    assert any(f"{old} to be scaled to 0 tasks 3 s after {good} was promoted" in e.message for e in scale_events)
    assert promoted_at
    # Brought back by hand, or by weight.
    code, text, err = cli("version", "scale", SERVICE, old, "--tasks", "1")
    assert code == 0 and "1/1 tasks healthy" in text, text + err
    assert cli("route", "set", SERVICE, f"{good}=50", f"{bad}=50")[0] == 0  # brings the bad one back first
    assert not by_version(env)[bad]["scaled_down"] and by_version(env)[bad]["healthy_tasks"] == 1
    assert cli("route", "set", SERVICE, f"{good}=100")[0] == 0
    code, _, err = cli("version", "scale", SERVICE, good, "--tasks", "0")
    assert code == 2 and "takes traffic" in err
    assert cli("version", "scale", SERVICE, old, "--tasks", "0")[0] == 0
    assert cli("version", "delete", SERVICE, old)[0] == 0  # a scaled-down version can be deleted


def by_version(env: RolloutEnv) -> dict[str, dict]:  # type: ignore[type-arg]
    return {v["version"]: v for v in json.loads(cli("versions", SERVICE, "--format", "json")[1])}


def processes_of(env: RolloutEnv) -> list[tuple[int, str]]:
    from meshpipe.engines.local.state.store import StateStore

    store = StateStore(env.paths.state_db)
    try:
        return [(p.pid, p.task_id or "") for p in store.processes() if p.task_id and procs.is_running(p.pid)]
    finally:
        store.close()
