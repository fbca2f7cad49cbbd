"""Faults a reliability engineer would try on the local engine, with real daemons, proxies, apps and git:
each ends in a clear state and a clear message, with nothing lost and nothing left running (the fixture
kills, by pid, whatever a test started, even when it fails)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from meshpipe import git
from meshpipe.engines.local.engine import LocalEngine
from meshpipe.engines.local.tasks import processes as procs
from meshpipe.errors import ConflictError
from meshpipe.validation.yamlsafe import MAX_BYTES
from test_local_engine_e2e import (  # the same environment fixture and helpers as the end-to-end tests
    BACKEND_MANIFEST,
    ENV,
    Load,
    backend_manifest,
    get,
    make_env,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
__all__ = ["make_env"]


def test_a_stopped_app_times_out_its_checks_and_its_task_is_replaced(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(tasks=2)
    env.serve_backend()
    victim, victim_task = env.processes("app")[0]
    with Load(env.ingress_port, "/backend/data") as load:
        wait_until(lambda: load.count() > 50, 10, "load running")
        os.kill(victim, signal.SIGSTOP)  # alive, holding its port, answering nothing
        wait_until(lambda: any(p != victim and t == victim_task for p, t in env.processes("app"))
                   and env.engine.versions(ENV, "hello-backend")[0].healthy_tasks == 2, 40, "task replaced")
        served = load.count()
        wait_until(lambda: load.count() > served + 50, 10, "serving after the replacement")
    env.note_pids()
    # The stopped process was woken to take its SIGTERM: nothing waits for the stop timeout, nothing is left.
    wait_until(lambda: not procs.is_running(victim), 30, "stopped app gone")
    task = next(t for t in env.engine.status(ENV)["tasks"] if t["task_id"] == victim_task)
    assert task["restarts"] == 1 and "did not answer within" in task["last_error"], task
    assert any(f"task {victim_task} stopped: health check failed" in e.message for e in env.engine.events(ENV))
    # Requests that met the stopped app timed out per try and were retried on the other task.
    assert len(load.failures()) <= 2, load.failures()[:5]


def test_a_manifest_over_the_size_limit_fails_its_build_naming_the_limit(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    good = env.serve_backend()
    padding = "#" + "x" * 199 + "\n"
    huge = BACKEND_MANIFEST + padding * (300 * 1024 // len(padding))
    assert len(huge.encode()) > MAX_BYTES
    commit = env.push("hello-backend", huge)
    run = env.engine.pipeline_wait(ENV, "hello-backend", commit=commit, timeout=30)
    assert [(s.name, s.status) for s in run.stages] == [("Source", "Succeeded"), ("Build", "Failed"),
                                                        ("Deploy", "Skipped")]
    assert str(MAX_BYTES) in run.stages[1].log or f"{MAX_BYTES // 1024} KiB" in run.stages[1].log, run.stages[1].log
    assert [v.version for v in env.engine.versions(ENV, "hello-backend")] == [good]
    assert get(env.ingress_port, "/backend/data")[0] == 200


def test_two_env_creates_of_one_name_at_once_one_wins_one_is_told(make_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = make_env()  # only for its clean-up of whatever runs in the home folder
    env.engine.env_delete(ENV)
    engines = [LocalEngine(home=env.engine.home, options=env.engine.options) for _ in range(2)]
    start = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def create(i: int) -> None:
        start.wait()
        try:
            outcomes[i] = engines[i].env_create(ENV)
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=create, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    env.note_pids()
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], ConflictError), outcomes
    assert "is being created by another command" in errors[0].message
    [info] = [o for o in outcomes if not isinstance(o, Exception)]
    assert info.status == "RUNNING"  # type: ignore[attr-defined]
    assert env.engine.env_status(ENV).status == "RUNNING"
    # One daemon, one watchdog and one gateway: the loser started nothing.
    assert len(env.engine.running_pids(ENV)) == 3


def test_env_delete_while_a_pipeline_run_is_in_flight_leaves_nothing(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(tasks=2)
    env.pipeline("hello-backend")
    env.push("hello-backend", backend_manifest("-g Deleted"))
    env.note_pids()
    wait_until(lambda: env.engine.pipeline_runs(ENV, "hello-backend"), 10, "run recorded")
    assert env.engine.pipeline_runs(ENV, "hello-backend")[0].status == "InProgress"
    env.engine.env_delete(ENV)
    assert not env.paths.root.exists()
    assert not [pid for pid in env.seen_pids if procs.is_running(pid)]
    assert not procs.owned_processes(env.paths.root)


def test_twenty_pushes_in_a_second_run_one_at_a_time_and_the_last_one_wins(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    workdir = env.pipeline("hello-backend")
    commits = []
    for i in range(20):
        (workdir / "manifest.yaml").write_text(backend_manifest(f"-g Push{i}"))
        commits.append(git.commit_all(workdir, f"push {i}"))
    # Into the repo without a run (another branch), then reported as the hook reports pushes: 20 at once.
    git.run_git(["push", "-q", "origin", "HEAD:refs/heads/staging"], cwd=workdir)
    # A start only queues its run (it does not wait for it): were it to wait, no run could be skipped below.
    run_ids = [env.engine.pipeline_start(ENV, "hello-backend", c).run_id for c in commits]
    for run_id in run_ids:
        env.engine.pipeline_wait(ENV, "hello-backend", run_id, timeout=90)
    env.note_pids()
    runs = {r.run_id: r for r in env.engine.pipeline_runs(ENV, "hello-backend")}
    assert set(runs) == set(run_ids)  # every push recorded
    statuses = [runs[r].status for r in run_ids]
    # The first started at once; every one queued behind a newer one was skipped; the newest ran.
    assert statuses[0] == "Succeeded" and statuses[-1] == "Succeeded", statuses
    assert set(statuses[1:-1]) <= {"Superseded", "Succeeded"} and statuses.count("Superseded") >= 15, statuses
    superseded = next(runs[r] for r in run_ids if runs[r].status == "Superseded")
    assert [s.status for s in superseded.stages] == ["Skipped"] * 3 and "superseded" in superseded.stages[0].log
    versions = {v.version: v.status for v in env.engine.versions(ENV, "hello-backend")}
    assert versions[commits[-1][:8]] == "CREATE_COMPLETE"
    assert len(versions) == statuses.count("Succeeded")
