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
FAST_CANARY = ("  Strategy: canary\n  Steps: [20, 50, 100]\n  Interval: 2\n"
               "  Analysis:\n    MinRequests: 10\n    FailedWindows: 1\n")
# A decision lands within the interval plus this (the bound).
DECISION_SLACK_S = 1.0


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
    status = env.finished(first, 30)
    assert status["status"] == "promoted" and "first version" in status["reason"]
    assert env.weights() == {first: 100}
    return first


def assert_decisions_on_time(status: dict) -> None:  # type: ignore[type-arg]
    interval = status["plan"]["interval_s"]
    for w in status["windows"]:
        assert 0 <= w["decision_lag_s"] <= DECISION_SLACK_S, w
        assert w["decided_at"] and w["due_at"]
    assert interval > 0


def test_a_healthy_version_is_promoted_through_every_step_with_no_command_after_the_push(env: RolloutEnv) -> None:
    old = serve_first_version(env)
    with Load(env.ingress_port) as load:
        wait_until(lambda: len(load.results) > 20, 10, "load running")
        new = env.push(backend_manifest("-g Yo", rollout=FAST_CANARY), "new greeting")
        env.deployed(new)
        started = time.time()
        status = env.finished(new, 60)
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
    status = env.finished(new, 60)
    assert status["status"] == "rolled-back", status
    assert env.weights() == {old: 100}
    # Once every proxy applied the rollback (the config the daemon last pushed to all of them says so), the
    # candidate gets nothing more.
    wait_until(lambda: pushed_targets(env) == [{"version": old, "weight": 100}], 10, "the rollback pushed")
    counted = candidate_requests(env, new)
    after = time.time() + 0.2  # answers still in flight when the rollback applied may end just after it
    wait_until(lambda: len(load.since(after)) > 100, 10, "load after the rollback")
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
        status = env.finished(new, 30)
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
        wait_until(lambda: (env.rollout_of(new) or {}).get("phase") == "confirming", 30, "awaiting confirmation")
        # Held: the gate is asked again and again, the traffic stays at the last step.
        wait_until(lambda: len(server.called("/gate")) >= 3, 20, "the gate asked three times")
        status = env.status()
        assert status["status"] == "running" and env.weights() == {old: 50, new: 50}
        assert status["confirmations"][0]["detail"].startswith("HTTP 403")
        server.answers["/gate"] = 200
        approved = time.time()
        status = env.finished(new, 30)
    assert status["status"] == "promoted" and env.weights() == {new: 100}
    # Asked again within min(interval, 5 s) = 2 s, decided at once.
    assert time.time() - approved < 2 + DECISION_SLACK_S + 1
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
        wait_until(lambda: (env.rollout_of(new) or {}).get("step") == 2, 30, "second step")
        before = env.status()
        daemon = read_daemon_file(env.paths.daemon_json)
        assert daemon is not None
        os.kill(daemon["pid"], signal.SIGKILL)
        wait_until(lambda: not procs.is_running(daemon["pid"]), 5, "daemon gone")
        after = env.status()  # any command starts the daemon again
        env.note_pids()
        assert (after["status"], after["step"], after["weights"]) == ("running", 2, before["weights"])
        assert after["windows"] == before["windows"] and after["id"] == before["id"]
        assert env.weights() == before["weights"]
        status = env.finished(new, 60)
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
        wait_until(lambda: c in env.weights(), 20, "the candidate routed")
        assert env.weights() == {a: 45, b: 30, c: 25}
        mid = time.time()
        wait_until(lambda: len(load.since(mid)) > 400, 20, "traffic at the step")
        split = load.versions_since(mid)
        status = env.finished(c, 30)
    assert status["base"] == {a: 60, b: 40} and status["status"] == "promoted"
    # The observed split follows the weights: a to b stays 60:40 (3:2) while c takes its share.
    assert 1.05 < split[a] / split[b] < 2.3, split  # 1.5 expected; equal shares (1.0) would fail
    assert env.weights() == {c: 100}


def test_a_newer_push_supersedes_the_running_rollout(env: RolloutEnv) -> None:
    slow = "  Steps: [30, 100]\n  Interval: 60\n"
    old = serve_first_version(env, slow)
    first = env.push(backend_manifest("-g First", rollout=slow), "first try")
    env.deployed(first)
    wait_until(lambda: env.weights().get(first) == 30, 20, "first candidate at 30 %")
    second = env.push(backend_manifest("-g Second", rollout=slow), "second try")
    env.deployed(second)
    wait_until(lambda: env.weights() == {old: 70, second: 30}, 20, "the newer candidate from the old base")
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
    wait_until(lambda: (env.rollout_of(new) or {}).get("phase") == "preview", 20, "preview")
    with Load(env.ingress_port, clients=1, headers={"x-canary": "always"}) as previewing:
        wait_until(lambda: sum(1 for r in previewing.results if r[1]) >= 200, 20, "200 preview requests")
    with Load(env.ingress_port, clients=1) as plain:
        wait_until(lambda: sum(1 for r in plain.results if r[1]) >= 200, 20, "200 plain requests")
    preview_answers = [v for _, status, v in previewing.results if status == 200][:200]
    plain_answers = [v for _, status, v in plain.results if status == 200][:200]
    assert preview_answers.count(new) == 200 and plain_answers.count(new) == 0
    assert env.weights() == {old: 100}  # the weighted route never changed during the preview
    with Load(env.ingress_port):
        status = env.finished(new, 40)
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
    # Again, then promoted by hand with the one-step command of before.
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
        wait_until(lambda: len(load.results) >= 50, 10, "requests with the header")
    assert {v for _, s, v in load.results if s == 200} == {old}
    code, text, _ = cli("route", "show", SERVICE)
    assert "x-canary=always" in text and f"{old}=100" in text
    assert cli("route", "delete", SERVICE, "--header", "x-canary")[0] == 0
    assert env.engine.header_routes(ENV, SERVICE) == []
    kinds = [e.message for e in env.events()]
    assert any(m.startswith("paused by hand") for m in kinds) and any(m.startswith("resumed by hand") for m in kinds)
