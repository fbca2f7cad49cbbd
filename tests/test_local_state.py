"""The local engine's SQLite store: schema, transactions, refusals, crash safety."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from meshpipe.engines.local.state import store as st
from meshpipe.engines.local.state.home import env_paths, env_paths_of_dir, meshpipe_home
from meshpipe.engines.local.state.store import StateStore
from meshpipe.errors import ConflictError, NotFoundError, OperationError, UserError
from meshpipe.mesh.routing import GatewayRoute, Route, WeightedTarget
from meshpipe.status import RunStatus, TaskGoal, TaskState, VersionStatus
from support.clock import FakeClock


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    s = StateStore(tmp_path / "state.db", clock=FakeClock(start=datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp(), tick=1.0))
    s.init_environment("demo", "demo.local")
    yield s
    s.close()


def _service(store: StateStore, name: str = "hello-backend") -> None:
    store.add_service(name, f"{name}.demo.local", f"vr-{name}", f"/repos/{name}-cfg.git")


def _version(store: StateStore, service: str, version: str, status: str = VersionStatus.CREATE_COMPLETE, tasks: int = 2) -> None:
    store.create_version(service, version, version + "0" * 32, f"demo-{service}-{version}", tasks,
                         {"Resources": {}}, {"service": service}, run_id=None)
    if status != VersionStatus.CREATE_IN_PROGRESS:
        store.set_version_status(service, version, status, "" if status == VersionStatus.CREATE_COMPLETE else "boom")


def test_home_defaults_and_override(tmp_path: Path) -> None:
    assert meshpipe_home({"MESHPIPE_HOME": str(tmp_path / "h")}) == tmp_path / "h"
    assert meshpipe_home({"HOME": str(tmp_path)}) == tmp_path / ".meshpipe"
    paths = env_paths(tmp_path, "demo")
    assert paths.state_db == tmp_path / "envs" / "demo" / "state.db"
    assert paths.repo("hello-web") == tmp_path / "envs" / "demo" / "repos" / "hello-web-cfg.git"
    assert paths.version_logs("hello-web", "e9d5f17a") == tmp_path / "envs" / "demo" / "logs" / "hello-web-e9d5f17a"
    assert env_paths_of_dir(paths.root) == paths
    with pytest.raises(UserError):
        env_paths(tmp_path, "../etc")
    with pytest.raises(UserError):
        env_paths(tmp_path, "Demo")


def test_schema_is_versioned_and_wal(store: StateStore, tmp_path: Path) -> None:
    assert store.schema_version() == st.SCHEMA_VERSION
    mode = sqlite3.connect(tmp_path / "state.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    # Opening again migrates nothing and keeps the data.
    again = StateStore(tmp_path / "state.db")
    assert again.environment() is not None and again.environment().name == "demo"
    again.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {st.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(OperationError, match="schema version"):
        StateStore(db)


def test_generation_is_monotonic_across_reopen(store: StateStore, tmp_path: Path) -> None:
    assert [store.next_generation() for _ in range(3)] == [1, 2, 3]
    store.close()
    again = StateStore(tmp_path / "state.db")
    assert again.next_generation() == 4
    again.close()


def test_services_and_pipeline_refusals(store: StateStore) -> None:
    _service(store)
    with pytest.raises(ConflictError):
        _service(store)
    assert [s.name for s in store.services()] == ["hello-backend"]
    _version(store, "hello-backend", "e9d5f17a")
    with pytest.raises(ConflictError, match="still has 1 version"):
        store.delete_service("hello-backend")
    store.delete_version("hello-backend", "e9d5f17a")
    store.delete_service("hello-backend")
    assert store.services() == []
    with pytest.raises(NotFoundError):
        store.delete_service("hello-backend")


def test_gateway_route_blocks_service_delete(store: StateStore) -> None:
    _service(store, "hello-web")
    store.put_gateway_route(GatewayRoute("r-ingress-hello-service", "/hello-service", "hello-web", "demo.local"))
    with pytest.raises(ConflictError, match="gateway route"):
        store.delete_service("hello-web")
    with pytest.raises(ConflictError, match="already matches prefix"):
        store.put_gateway_route(GatewayRoute("other", "/hello-service", "hello-web", "demo.local"))
    with pytest.raises(NotFoundError):
        store.put_gateway_route(GatewayRoute("x", "/x", "nope", "demo.local"))
    store.delete_gateway_route("r-ingress-hello-service")
    store.delete_service("hello-web")


def test_version_records_stack_and_tasks_together(store: StateStore) -> None:
    _service(store)
    _version(store, "hello-backend", "e9d5f17a", status=VersionStatus.CREATE_IN_PROGRESS, tasks=3)
    v = store.version("hello-backend", "e9d5f17a")
    assert v is not None and v.status == VersionStatus.CREATE_IN_PROGRESS and v.template == {"Resources": {}}
    tasks = store.tasks("hello-backend", "e9d5f17a")
    assert [t.task_id for t in tasks] == [f"hello-backend-e9d5f17a-{i}" for i in (1, 2, 3)]
    assert all(t.desired == TaskGoal.RUNNING and t.actual == TaskState.PENDING for t in tasks)
    with pytest.raises(ConflictError):
        _version(store, "hello-backend", "e9d5f17a")
    store.set_version_status("hello-backend", "e9d5f17a", VersionStatus.CREATE_FAILED, "health check never passed")
    assert all(t.desired == TaskGoal.STOPPED for t in store.tasks("hello-backend"))
    assert store.version("hello-backend", "e9d5f17a").reason == "health check never passed"


def test_failed_insert_leaves_nothing_behind(store: StateStore) -> None:
    with pytest.raises(NotFoundError):
        store.create_version("ghost", "e9d5f17a", "e9d5f17a" * 5, "demo-ghost-e9d5f17a", 2, {}, {}, None)
    assert store.versions() == [] and store.tasks() == []


def test_transaction_is_all_or_nothing(store: StateStore) -> None:
    _service(store)
    with pytest.raises(RuntimeError), store.transaction():
        store.add_event("test", "first half")
        _version(store, "hello-backend", "e9d5f17a", status=VersionStatus.CREATE_IN_PROGRESS)
        raise RuntimeError("crash between two writes")
    assert store.versions() == []
    assert not any(e.message == "first half" for e in store.events())


def test_route_requires_deployed_versions(store: StateStore) -> None:
    _service(store)
    _version(store, "hello-backend", "e9d5f17a")
    _version(store, "hello-backend", "0badc0de", status=VersionStatus.CREATE_FAILED)
    with pytest.raises(NotFoundError, match="12345678"):
        store.set_route(Route("hello-backend", (WeightedTarget("12345678", 100),)))
    with pytest.raises(ConflictError, match="CREATE_FAILED"):
        store.set_route(Route("hello-backend", (WeightedTarget("e9d5f17a", 90), WeightedTarget("0badc0de", 10))))
    assert store.route("hello-backend") is None
    route = Route("hello-backend", (WeightedTarget("e9d5f17a", 100),))
    store.set_route(route)
    assert store.route("hello-backend") == route
    assert store.weights("hello-backend") == {"e9d5f17a": 100}


def test_version_delete_refused_while_weighted_unless_forced(store: StateStore) -> None:
    _service(store)
    _version(store, "hello-backend", "e9d5f17a")
    _version(store, "hello-backend", "0badc0de")
    store.set_route(Route("hello-backend", (WeightedTarget("e9d5f17a", 90), WeightedTarget("0badc0de", 10))))
    with pytest.raises(ConflictError, match="carries 10 %"):
        store.delete_version("hello-backend", "0badc0de")
    assert store.version("hello-backend", "0badc0de") is not None
    after = store.delete_version("hello-backend", "0badc0de", force=True)
    assert after == Route("hello-backend", (WeightedTarget("e9d5f17a", 90),))
    assert store.tasks("hello-backend", "0badc0de") == []
    # Forcing away the last weighted version removes the route altogether.
    assert store.delete_version("hello-backend", "e9d5f17a", force=True) is None
    assert store.route("hello-backend") is None


def test_zero_weight_version_can_be_deleted(store: StateStore) -> None:
    _service(store)
    _version(store, "hello-backend", "e9d5f17a")
    _version(store, "hello-backend", "0badc0de")
    store.set_route(Route("hello-backend", (WeightedTarget("e9d5f17a", 0), WeightedTarget("0badc0de", 100))))
    assert store.delete_version("hello-backend", "e9d5f17a") == Route(
        "hello-backend", (WeightedTarget("0badc0de", 100),))


def test_pipeline_runs_and_logs(store: StateStore) -> None:
    _service(store)
    run = store.create_run("run1", "hello-backend", "refs/heads/main", None, "e9d5f17a" * 5)
    assert run.status == RunStatus.IN_PROGRESS and [s.name for s in run.stages] == ["Source", "Build", "Deploy"]
    store.set_stage("run1", "Source", "InProgress")
    store.append_stage_log("run1", "Source", "read manifest.yaml\n")
    store.append_stage_log("run1", "Source", "ok\n")
    store.finish_run("run1", RunStatus.FAILED, None, [("Source", "Succeeded", None), ("Build", "Failed", "bad\n"),
                                                   ("Deploy", "Skipped", None)])
    run = store.run("run1")
    assert run is not None and run.status == RunStatus.FAILED and run.finished_at
    assert [(s.name, s.status, s.log) for s in run.stages] == [
        ("Source", "Succeeded", "read manifest.yaml\nok\n"), ("Build", "Failed", "bad\n"), ("Deploy", "Skipped", "")]
    store.create_run("run2", "hello-backend", "refs/heads/main", None, "0badc0de" * 5)
    assert [r.run_id for r in store.runs("hello-backend")] == ["run2", "run1"]
    assert [r.run_id for r in store.runs(status=RunStatus.IN_PROGRESS)] == ["run2"]
    store.restart_run("run1")
    assert store.run("run1").status == RunStatus.IN_PROGRESS


def test_stage_log_is_bounded(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    _service(store)
    store.create_run("run1", "hello-backend", "refs/heads/main", None, None)
    chunk = "x" * 1000 + "\n"
    for _ in range(300):
        store.append_stage_log("run1", "Build", chunk)
    store.append_stage_log("run1", "Build", "the end\n")
    log = store.run("run1").stages[1].log
    assert len(log) == st.MAX_STAGE_LOG_CHARS and log.endswith("the end\n")


def test_processes_are_tracked(store: StateStore) -> None:
    store.record_process(4242, "12345", "sidecar", "hello-web-e9d5f17a-1", ["python", "-m", "x"])
    assert store.processes() == [st.ProcessRow(4242, "12345", "sidecar", "hello-web-e9d5f17a-1", ["python", "-m", "x"])]
    store.forget_process(4242)
    assert store.processes() == []


def test_concurrent_writers_do_not_lose_updates(store: StateStore) -> None:
    _service(store)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(20):
                store.add_event("load", f"{n}-{i}", "hello-backend")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len([e for e in store.events(limit=1000) if e.kind == "load"]) == 80


def test_a_write_a_full_disk_refuses_is_said_as_such_and_the_store_works_again(store: StateStore) -> None:
    _service(store)
    _version(store, "hello-backend", "v1")
    conn = store._conn()  # this thread's connection: the one the next writes use
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite answers SQLITE_FULL, as on a full disk
    with pytest.raises(OperationError, match=r"state\.db: the disk is full; nothing was changed") as caught:
        for i in range(500):
            store.add_event("test", f"event {i} " + "x" * 4000)
    assert "free space" in (caught.value.hint or "")
    route = Route("hello-backend", (WeightedTarget("v1", 100),))
    with pytest.raises(OperationError, match="the disk is full"):
        store.set_route(route)
    assert store.route("hello-backend") is None  # nothing half-written
    conn.execute("PRAGMA max_page_count = 1073741823")
    store.set_route(route)
    assert store.route("hello-backend") == route


def test_a_write_to_a_read_only_state_db_is_said_as_such(store: StateStore) -> None:
    store._conn().execute("PRAGMA query_only = ON")  # SQLite answers SQLITE_READONLY, as for a read-only file
    with pytest.raises(OperationError, match=r"state\.db: it is read-only; nothing was changed"):
        store.add_event("test", "refused")
    with pytest.raises(OperationError, match="it is read-only"):
        store.check_writable()
    assert store.environment() is not None  # reading still works


def test_a_version_2_file_routes_every_method_after_migration(tmp_path: Path) -> None:
    """Files written before routes matched every method hold GET on every route, as the old default: after
    the migration they hold "any method", and the rest of the route is kept."""
    db = tmp_path / "state.db"
    conn = sqlite3.connect(db)
    for statement in (st.MIGRATIONS[0] + ";" + st.MIGRATIONS[1]).split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO services VALUES ('hello-backend', 'hello-backend.demo.local', 'vr-hello-backend', "
                 "'/r', 't')")
    conn.execute("INSERT INTO routes VALUES ('hello-backend', '/', 'GET', 1, 2, 2000, 15000, 't')")
    conn.commit()
    conn.close()
    store = StateStore(db)
    try:
        assert store.schema_version() == st.SCHEMA_VERSION
        route = store.route("hello-backend")
        assert route is not None and (route.method, route.prefix, route.priority) == (None, "/", 1)
    finally:
        store.close()


def test_a_scale_down_is_scheduled_comes_due_and_is_undone(store: StateStore) -> None:
    _service(store)
    _version(store, "hello-backend", "e9d5f17a", tasks=2)
    store.schedule_scale_down("hello-backend", "e9d5f17a", 1030.0, "30 s after 0badc0de was promoted")
    assert store.due_scale_downs(1029.9) == []
    [due] = store.due_scale_downs(1030.0)
    assert (due.version, due.scale_down_at, due.scaled_down) == ("e9d5f17a", 1030.0, False)
    down = store.scale_version("hello-backend", "e9d5f17a", 0, "(no weight after its rollout ended)")
    assert down.scaled_down and down.scale_down_at is None and store.due_scale_downs(2000.0) == []
    assert {t.desired for t in store.tasks("hello-backend")} == {TaskGoal.STOPPED}
    # Scheduling again does nothing to a version already down; bringing it back makes its slots run.
    store.schedule_scale_down("hello-backend", "e9d5f17a", 1.0, "again")
    assert store.due_scale_downs(2000.0) == []
    up = store.scale_version("hello-backend", "e9d5f17a", 3, "by hand")
    assert not up.scaled_down and up.desired_tasks == 3
    assert sorted((t.slot, t.desired) for t in store.tasks("hello-backend")) == [
        (1, TaskGoal.RUNNING), (2, TaskGoal.RUNNING), (3, TaskGoal.RUNNING)]
    store.schedule_scale_down("hello-backend", "e9d5f17a", 5.0, "x")
    store.cancel_scale_down("hello-backend", "e9d5f17a", "it takes traffic again")
    assert store.due_scale_downs(10.0) == []
    kinds = [e.message for e in store.events(service="hello-backend") if e.kind == "scale"]
    assert kinds[0] == "e9d5f17a to be scaled to 0 tasks 30 s after 0badc0de was promoted"
    assert "e9d5f17a scaled down to 0 tasks (no weight after its rollout ended)" in kinds
    assert kinds[-1] == "e9d5f17a stays up: it takes traffic again"
