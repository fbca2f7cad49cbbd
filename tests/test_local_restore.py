"""What a starting daemon takes over from its predecessor (``restore.find_adoptable``), with real processes
standing in for the recorded ones (``sleep``), each killed by pid at the end."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshpipe.engines.local.state import store as st
from meshpipe.engines.local.state.store import StateStore
from meshpipe.engines.local.tasks import processes as procs
from meshpipe.engines.local.tasks.restore import find_adoptable, flag_value
from meshpipe.status import TaskState, VersionStatus


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "state.db")
    s.init_environment("demo", "demo.local")
    s.add_service("hello-backend", "hello-backend.demo.local", "vr-hello-backend", "/r")
    yield s
    s.close()


@pytest.fixture
def sleeper() -> Iterator:  # type: ignore[type-arg]
    started: list[subprocess.Popen[bytes]] = []

    def start() -> int:
        proc = subprocess.Popen(["sleep", "60"])
        started.append(proc)
        return proc.pid

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def record_task(store: StateStore, sleeper, slot: int, *, actual: str = TaskState.HEALTHY,  # type: ignore[no-untyped-def]
                sidecar_admin: int | None = None) -> tuple[int, int]:
    task_id = st.task_id_of("hello-backend", "e9d5f17a", slot)
    base = 31000 + 10 * slot
    store.update_task(task_id, actual=actual, app_port=base, ingress_port=base + 1, egress_port=base + 2,
                      admin_port=base + 3)
    sidecar, app = sleeper(), sleeper()
    argv = ["py", "-m", "meshpipe.engines.local.dataplane", "--mode", "sidecar",
            "--admin-port", str(sidecar_admin or base + 3), "--ingress-port", str(base + 1),
            "--egress-port", str(base + 2), "--app-port", str(base)]
    store.record_process(sidecar, procs.start_time(sidecar) or "", "sidecar", task_id, argv)
    store.record_process(app, procs.start_time(app) or "", "app", task_id, ["py", "-m", "app"])
    return sidecar, app


def test_flag_value_reads_ports_from_a_recorded_command_line() -> None:
    argv = ["py", "-m", "x", "--admin-port", "123", "--listen-port", "oops", "--last"]
    assert flag_value(argv, "--admin-port") == 123
    assert flag_value(argv, "--listen-port") is None
    assert flag_value(argv, "--last") is None and flag_value(argv, "--nope") is None


def test_only_live_healthy_tasks_of_running_versions_are_taken_over(store: StateStore, sleeper,  # type: ignore[no-untyped-def]
                                                                    tmp_path: Path) -> None:
    store.create_version("hello-backend", "e9d5f17a", "e9d5f17a" + "0" * 32, "demo-hello-backend-e9d5f17a", 4,
                         {}, {"service": "hello-backend"}, None)
    store.set_version_status("hello-backend", "e9d5f17a", VersionStatus.CREATE_COMPLETE)
    good = record_task(store, sleeper, 1)
    starting = record_task(store, sleeper, 2, actual=TaskState.STARTING)
    old_incarnation = record_task(store, sleeper, 3, sidecar_admin=1)
    half_dead = record_task(store, sleeper, 4)
    procs.kill_all([(half_dead[1], None)], timeout=2.0)
    gateway = sleeper()
    store.record_process(gateway, procs.start_time(gateway) or "", "gateway", None,
                         ["py", "--mode", "gateway", "--admin-port", "1", "--listen-port", "2"])
    reused = sleeper()  # a recorded pid whose start time no longer matches: someone else's process now
    store.record_process(reused, "1", "app", "hello-backend-e9d5f17a-9", ["py"])

    plan = find_adoptable(store, tmp_path)

    assert plan.gateway is not None and plan.gateway.pid == gateway
    assert list(plan.tasks) == ["hello-backend-e9d5f17a-1"]
    candidate = plan.tasks["hello-backend-e9d5f17a-1"]
    assert (candidate.sidecar.pid, candidate.app.pid) == good
    assert (candidate.ports.app, candidate.ports.ingress, candidate.ports.egress, candidate.ports.admin) == (
        31010, 31011, 31012, 31013)
    stale = {pid for pid, _ in plan.stale}
    assert stale == {*starting, *old_incarnation, half_dead[0]}
    assert reused not in stale and gateway not in stale


def test_nothing_is_taken_over_from_a_version_that_no_longer_runs(store: StateStore, sleeper,  # type: ignore[no-untyped-def]
                                                                  tmp_path: Path) -> None:
    store.create_version("hello-backend", "e9d5f17a", "e9d5f17a" + "0" * 32, "demo-hello-backend-e9d5f17a", 1,
                         {}, {"service": "hello-backend"}, None)
    left = record_task(store, sleeper, 1)
    store.set_version_status("hello-backend", "e9d5f17a", VersionStatus.CREATE_FAILED, "boom")
    plan = find_adoptable(store, tmp_path)
    assert plan.tasks == {} and plan.gateway is None
    assert {pid for pid, _ in plan.stale} == set(left)
