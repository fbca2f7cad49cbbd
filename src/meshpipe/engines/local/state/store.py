"""The local engine's state: one SQLite file per environment.

It plays the part of CloudFormation, App Mesh and ECS's records: which services and versions exist, the
template and resolved model each version was deployed from, routes, gateway routes, which tasks should
run and the processes that run them, pipeline runs with their stage logs, and an event log.

Rules that keep it safe to crash at any moment:

* every change that touches more than one row happens in one transaction (``BEGIN IMMEDIATE``), so a
  reader (or a daemon restarting after a crash) sees all of it or none of it;
* WAL mode, so the CLI can read while the daemon writes, and a busy timeout instead of "database is
  locked" errors when two writers meet;
* the schema (``schema``) is versioned with ``PRAGMA user_version`` and migrated forward in a transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshpipe.clock import SYSTEM_CLOCK, Clock, iso_utc
from meshpipe.delivery.machine import Rollout

# The rows and the reads shared with the read-only reader are part of the store's interface: re-exported.
from meshpipe.engines.local.state.reader import BUSY_TIMEOUT_MS as BUSY_TIMEOUT_MS
from meshpipe.engines.local.state.reader import EnvironmentRow as EnvironmentRow
from meshpipe.engines.local.state.reader import EventRow as EventRow
from meshpipe.engines.local.state.reader import ProcessRow as ProcessRow
from meshpipe.engines.local.state.reader import ServiceRow as ServiceRow
from meshpipe.engines.local.state.reader import StateReads
from meshpipe.engines.local.state.reader import VersionRow as VersionRow

# The schema's version and migrations are part of the store's interface: re-exported.
from meshpipe.engines.local.state.schema import MIGRATIONS as MIGRATIONS
from meshpipe.engines.local.state.schema import SCHEMA_VERSION as SCHEMA_VERSION
from meshpipe.engines.local.state.schema import migrate
from meshpipe.errors import ConflictError, NotFoundError, OperationError
from meshpipe.mesh.headers import HeaderMatch
from meshpipe.mesh.routing import MAX_ROUTES_PER_ROUTER, GatewayRoute, HeaderRoute, Route, WeightedTarget
from meshpipe.status import RunStatus, TaskGoal, TaskState, VersionStatus

MAX_EVENTS = 5_000
# Events that record a change of a route or a gateway route (each one counts in meshpipe_route_changes_total).
ROUTE_EVENT_KINDS = ("route", "gateway-route")
MAX_STAGE_LOG_CHARS = 256 * 1024
KEEP_FINISHED_ROLLOUTS = 20  # per service, beside its running one

STAGE_NAMES = ("Source", "Build", "Deploy")



@dataclass(frozen=True)
class TaskRow:
    task_id: str
    service: str
    version: str
    slot: int
    desired: TaskGoal
    actual: TaskState
    app_port: int | None = None
    ingress_port: int | None = None
    egress_port: int | None = None
    admin_port: int | None = None
    restarts: int = 0
    last_error: str = ""
    updated_at: str = ""


@dataclass(frozen=True)
class StageRow:
    name: str
    status: RunStatus
    log: str


@dataclass(frozen=True)
class RunRow:
    run_id: str
    seq: int
    service: str
    ref: str
    old_commit: str | None
    commit: str | None
    status: RunStatus
    version: str | None
    started_at: str
    finished_at: str | None
    stages: tuple[StageRow, ...] = field(default=())


def task_id_of(service: str, version: str, slot: int) -> str:
    return f"{service}-{version}-{slot}"


# SQLite's primary result codes for a write the storage refused (extended codes keep them in the low byte).
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_FULL = 13


class StateStore(StateReads):
    """Typed access to ``state.db``. Safe to use from several threads (one connection per thread)."""

    def __init__(self, path: Path, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = Path(path)
        self._clock = clock
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        # Route and gateway-route changes committed through this store, by service ("" for gateway routes),
        # whoever made them (a command, a rollout, a version delete): meshpipe_route_changes_total.
        self.route_changes: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._migrate()

    # --- connections and transactions ----------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=BUSY_TIMEOUT_MS / 1000)
            except sqlite3.Error as exc:
                raise OperationError(f"cannot open {self.path}: {exc}") from None
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode survives a crash of any process; only an OS crash may lose the last commit.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            self._local.depth = 0
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested uses join the outer one, so helpers compose."""
        conn = self._conn()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._write_error(exc) from exc
        self._local.depth = 1
        try:
            yield conn
        except BaseException as exc:
            self._local.depth = 0
            self._local.route_changes = []
            with suppress(sqlite3.Error):  # a failed write may have ended the transaction already
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._write_error(exc) from exc
            raise
        self._local.depth = 0
        counted, self._local.route_changes = getattr(self._local, "route_changes", []), []
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise self._write_error(exc) from exc
        if counted:  # only what was committed counts
            with self._counts_lock:
                self.route_changes.update(counted)

    def _write_error(self, exc: sqlite3.Error) -> Exception:
        """A write the disk refused, said as what it is (a full disk, a read-only file) rather than as a bug;
        any other database error is left as it was."""
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == SQLITE_FULL:
            return OperationError(f"cannot write {self.path}: the disk is full; nothing was changed",
                                  hint=f"free space on the disk holding {self.path.parent}, then run the command "
                                       "again (what runs keeps serving)")
        if code == SQLITE_READONLY:
            return OperationError(f"cannot write {self.path}: it is read-only; nothing was changed",
                                  hint=f"make {self.path} and its folder writable again (what runs keeps serving)")
        if code == SQLITE_IOERR:
            return OperationError(f"cannot write {self.path}: disk I/O error ({exc}); nothing was changed",
                                  hint=f"check the disk holding {self.path.parent}")
        return exc

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, args).fetchall()

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    def now(self) -> str:
        return iso_utc(self._clock.wall())

    def _migrate(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        with self.transaction():
            migrate(conn, self.path)

    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    # --- environment ---------------------------------------------------------------------------------

    def init_environment(self, name: str, namespace: str) -> EnvironmentRow:
        """Record the environment once; later calls return the existing record."""
        with self.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO environment (id, name, namespace, created_at) VALUES (1, ?, ?, ?)",
                       (name, namespace, self.now()))
            self._event(tx, "environment", f"environment {name} recorded")
        env = self.environment()
        assert env is not None
        return env

    def check_writable(self) -> None:
        """Raise the write error a change would meet (read-only file or folder, full disk) by committing a
        write that changes nothing, so a daemon finds out before it touches any process."""
        with self.transaction() as tx:
            tx.execute("UPDATE environment SET name = name WHERE id = 1")

    def set_gateway_port(self, port: int) -> None:
        with self.transaction() as tx:
            tx.execute("UPDATE environment SET gateway_port = ? WHERE id = 1", (port,))

    def next_generation(self) -> int:
        """A config generation number that never repeats, across daemon restarts too."""
        with self.transaction() as tx:
            tx.execute("UPDATE environment SET config_generation = config_generation + 1 WHERE id = 1")
            row = tx.execute("SELECT config_generation FROM environment WHERE id = 1").fetchone()
        if row is None:
            raise OperationError("the environment is not recorded in state.db")
        return int(row[0])

    # --- services ------------------------------------------------------------------------------------

    def add_service(self, name: str, virtual_service: str, router: str, repo_path: str) -> ServiceRow:
        with self.transaction() as tx:
            if tx.execute("SELECT 1 FROM services WHERE name = ?", (name,)).fetchone():
                raise ConflictError(f"a pipeline for {name!r} already exists")
            tx.execute("INSERT INTO services (name, virtual_service, router, repo_path, created_at) "
                       "VALUES (?, ?, ?, ?, ?)", (name, virtual_service, router, repo_path, self.now()))
            self._event(tx, "pipeline", f"virtual service {virtual_service} with router {router} created", name)
        row = self.service(name)
        assert row is not None
        return row

    def delete_service(self, name: str) -> None:
        """Remove a service with its route and runs; refused while versions or gateway routes use it."""
        with self.transaction() as tx:
            if not tx.execute("SELECT 1 FROM services WHERE name = ?", (name,)).fetchone():
                raise NotFoundError(f"service {name!r} has no pipeline in this environment")
            versions = [r[0] for r in tx.execute("SELECT version FROM versions WHERE service = ? ORDER BY version",
                                                 (name,))]
            if versions:
                raise ConflictError(f"{name} still has {len(versions)} version(s): {', '.join(versions)}",
                                    hint=f"delete them first: meshpipe version delete {name} VERSION")
            gateways = [r[0] for r in tx.execute("SELECT name FROM gateway_routes WHERE service = ?", (name,))]
            if gateways:
                raise ConflictError(f"gateway route(s) {', '.join(gateways)} send traffic to {name}",
                                    hint="delete them first: meshpipe route gateway-delete NAME")
            tx.execute("DELETE FROM routes WHERE service = ?", (name,))
            tx.execute("DELETE FROM header_routes WHERE service = ?", (name,))
            tx.execute("DELETE FROM pipeline_runs WHERE service = ?", (name,))
            tx.execute("DELETE FROM services WHERE name = ?", (name,))
            self._event(tx, "pipeline", f"pipeline, virtual service and router of {name} deleted", name)

    # --- versions (stacks) ---------------------------------------------------------------------------

    def create_version(self, service: str, version: str, commit: str, stack_name: str, desired_tasks: int,
                       template: dict[str, Any], resolved: dict[str, Any], run_id: str | None,
                       status: VersionStatus = VersionStatus.CREATE_IN_PROGRESS, reason: str = "") -> VersionRow:
        """Record a new stack and its tasks in one transaction."""
        now = self.now()
        with self.transaction() as tx:
            self._require_service_tx(tx, service)
            if tx.execute("SELECT 1 FROM versions WHERE service = ? AND version = ?", (service, version)).fetchone():
                raise ConflictError(f"version {version} of {service} already exists (stack {stack_name})")
            tx.execute(
                "INSERT INTO versions (service, version, commit_id, stack_name, status, reason, desired_tasks, "
                "template_json, resolved_json, run_id, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (service, version, commit, stack_name, status, reason, desired_tasks,
                 json.dumps(template, sort_keys=True), json.dumps(resolved, sort_keys=True), run_id, now, now))
            if status != VersionStatus.CREATE_FAILED:
                for slot in range(1, desired_tasks + 1):
                    tx.execute("INSERT INTO tasks (task_id, service, version, slot, desired, actual, updated_at) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (task_id_of(service, version, slot), service, version, slot, TaskGoal.RUNNING,
                                TaskState.PENDING, now))
            self._event(tx, "stack", f"stack {stack_name} {status}" + (f": {reason}" if reason else ""),
                        service, version)
        row = self.version(service, version)
        assert row is not None
        return row

    # --- scaling a version down to zero and back -------------------------------------------------------

    def schedule_scale_down(self, service: str, version: str, at: float, why: str) -> None:
        """Scale ``version`` to zero tasks at ``at`` (epoch seconds), unless it has weight again by then."""
        with self.transaction() as tx:
            cur = tx.execute("UPDATE versions SET scale_down_at = ?, updated_at = ? WHERE service = ? AND version = ? "
                             "AND scaled_down_at IS NULL AND status = ?",
                             (at, self.now(), service, version, VersionStatus.CREATE_COMPLETE))
            if cur.rowcount:
                self._event(tx, "scale", f"{version} to be scaled to 0 tasks {why}", service, version)

    def due_scale_downs(self, now: float) -> list[VersionRow]:
        rows = self._read("SELECT * FROM versions WHERE scale_down_at IS NOT NULL AND scale_down_at <= ? "
                          "ORDER BY scale_down_at", (now,))
        return [self._version_row(r) for r in rows]

    def cancel_scale_down(self, service: str, version: str, why: str) -> None:
        with self.transaction() as tx:
            cur = tx.execute("UPDATE versions SET scale_down_at = NULL, updated_at = ? WHERE service = ? AND "
                             "version = ? AND scale_down_at IS NOT NULL", (self.now(), service, version))
            if cur.rowcount:
                self._event(tx, "scale", f"{version} stays up: {why}", service, version)

    def scale_version(self, service: str, version: str, tasks: int, why: str) -> VersionRow:
        """Set how many tasks ``version`` runs: 0 scales it down (its task rows say stopped), more brings
        it back (task rows for every slot up to ``tasks``, the others stopped)."""
        now = self.now()
        with self.transaction() as tx:
            row = tx.execute("SELECT status FROM versions WHERE service = ? AND version = ?",
                             (service, version)).fetchone()
            if row is None:
                raise NotFoundError(f"version {version} of {service} does not exist",
                                    hint=f"list versions with: meshpipe versions {service}")
            if row[0] != VersionStatus.CREATE_COMPLETE:
                raise ConflictError(f"version {version} of {service} is {row[0]}; only {VersionStatus.CREATE_COMPLETE} versions "
                                    "can be scaled")
            if tasks:
                tx.execute("UPDATE versions SET desired_tasks = ?, scale_down_at = NULL, scaled_down_at = NULL, "
                           "updated_at = ? WHERE service = ? AND version = ?", (tasks, now, service, version))
                for slot in range(1, tasks + 1):
                    tx.execute("INSERT INTO tasks (task_id, service, version, slot, desired, actual, updated_at) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (task_id) DO UPDATE SET desired = "
                               "excluded.desired, updated_at = excluded.updated_at",
                               (task_id_of(service, version, slot), service, version, slot, TaskGoal.RUNNING,
                                TaskState.PENDING, now))
                tx.execute("UPDATE tasks SET desired = ?, updated_at = ? WHERE service = ? AND version = ? AND "
                           "slot > ?", (TaskGoal.STOPPED, now, service, version, tasks))
                self._event(tx, "scale", f"{version} scaled to {tasks} task(s) {why}", service, version)
            else:
                tx.execute("UPDATE versions SET scale_down_at = NULL, scaled_down_at = ?, updated_at = ? "
                           "WHERE service = ? AND version = ?", (now, now, service, version))
                tx.execute("UPDATE tasks SET desired = ?, updated_at = ? WHERE service = ? AND version = ?",
                           (TaskGoal.STOPPED, now, service, version))
                self._event(tx, "scale", f"{version} scaled down to 0 tasks {why}", service, version)
        found = self.version(service, version)
        assert found is not None
        return found

    def listener_ports(self) -> dict[str, dict[str, int]]:
        """service -> version -> the app port its manifest declares (the virtual node's listener)."""
        rows = self._read("SELECT service, version, json_extract(resolved_json, '$.app.port') AS port FROM versions")
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            if isinstance(r["port"], int):
                out.setdefault(r["service"], {})[r["version"]] = r["port"]
        return out

    def set_version_status(self, service: str, version: str, status: str, reason: str = "") -> None:
        with self.transaction() as tx:
            cur = tx.execute("UPDATE versions SET status = ?, reason = ?, updated_at = ? WHERE service = ? AND "
                             "version = ?", (status, reason, self.now(), service, version))
            if cur.rowcount == 0:
                raise NotFoundError(f"version {version} of {service} does not exist")
            if status == VersionStatus.CREATE_FAILED:
                # A failed stack rolls back: its tasks must not run.
                tx.execute("UPDATE tasks SET desired = ?, updated_at = ? WHERE service = ? AND version = ?",
                           (TaskGoal.STOPPED, self.now(), service, version))
            self._event(tx, "stack", f"stack {self._stack_name(tx, service, version)} {status}"
                        + (f": {reason}" if reason else ""), service, version)

    @staticmethod
    def _stack_name(tx: sqlite3.Connection, service: str, version: str) -> str:
        row = tx.execute("SELECT stack_name FROM versions WHERE service = ? AND version = ?",
                         (service, version)).fetchone()
        return row[0] if row else f"{service}-{version}"

    def delete_version(self, service: str, version: str, force: bool = False) -> Route | None:
        """Remove a stack, its tasks and its place in the route; returns the route as it is afterwards.

        Refused while the version carries weight unless ``force``: then its targets are dropped, and a
        route left with no weight at all is deleted (the virtual service then answers 503).
        """
        with self.transaction() as tx:
            row = tx.execute("SELECT stack_name FROM versions WHERE service = ? AND version = ?",
                             (service, version)).fetchone()
            if row is None:
                raise NotFoundError(f"version {version} of {service} does not exist",
                                    hint=f"list versions with: meshpipe versions {service}")
            weight = tx.execute("SELECT COALESCE(SUM(weight), 0) FROM route_targets WHERE service = ? AND "
                                "version = ?", (service, version)).fetchone()[0]
            if weight and not force:
                raise ConflictError(f"version {version} of {service} carries {weight} % of its traffic",
                                    hint="move the traffic first (meshpipe route set ...), or pass --force")
            by_header = [r[0] for r in tx.execute("SELECT DISTINCT name FROM header_route_targets WHERE service = ? "
                                                  "AND version = ? AND weight > 0", (service, version))]
            if by_header and not force:
                raise ConflictError(f"version {version} of {service} takes the traffic of header route(s) "
                                    f"{', '.join(by_header)}",
                                    hint=f"delete them first (meshpipe route delete {service} --header NAME), "
                                         "or pass --force")
            self._drop_header_targets(tx, service, version)
            tx.execute("DELETE FROM route_targets WHERE service = ? AND version = ?", (service, version))
            left = tx.execute("SELECT COALESCE(SUM(weight), 0) FROM route_targets WHERE service = ?",
                              (service,)).fetchone()[0]
            if not left:
                tx.execute("DELETE FROM routes WHERE service = ?", (service,))
            else:
                self._renumber_targets(tx, service)
            tx.execute("DELETE FROM tasks WHERE service = ? AND version = ?", (service, version))
            tx.execute("DELETE FROM versions WHERE service = ? AND version = ?", (service, version))
            self._event(tx, "stack", f"stack {row[0]} deleted" + (" (forced)" if weight else ""), service, version)
        return self.route(service)

    @staticmethod
    def _renumber_targets(tx: sqlite3.Connection, service: str) -> None:
        rows = tx.execute("SELECT version, weight FROM route_targets WHERE service = ? ORDER BY position",
                          (service,)).fetchall()
        tx.execute("DELETE FROM route_targets WHERE service = ?", (service,))
        for i, r in enumerate(rows):
            tx.execute("INSERT INTO route_targets (service, position, version, weight) VALUES (?, ?, ?, ?)",
                       (service, i, r[0], r[1]))

    # --- routes --------------------------------------------------------------------------------------

    def set_route(self, route: Route) -> Route:
        """Replace a service's route. Every target must be a deployed (CREATE_COMPLETE) version."""
        with self.transaction() as tx:
            self._require_service_tx(tx, route.service)
            self._check_targets_tx(tx, route.service, route.targets)
            now = self.now()
            tx.execute("DELETE FROM routes WHERE service = ?", (route.service,))
            tx.execute("INSERT INTO routes (service, prefix, method, priority, max_retries, per_retry_timeout_ms, "
                       "timeout_ms, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (route.service, route.prefix, route.method, route.priority, route.max_retries,
                        route.per_retry_timeout_ms, route.timeout_ms, now))
            for i, t in enumerate(route.targets):
                tx.execute("INSERT INTO route_targets (service, position, version, weight) VALUES (?, ?, ?, ?)",
                           (route.service, i, t.version, t.weight))
            spread = ", ".join(f"{t.version}={t.weight}" for t in route.targets)
            self._event(tx, "route", f"route {route.name} set: {spread}", route.service)
        return route

    def route(self, service: str) -> Route | None:
        return self.routes(service).get(service)

    def routes(self, service: str | None = None) -> dict[str, Route]:
        where, args = ("WHERE service = ?", (service,)) if service is not None else ("", ())
        routes = self._read(f"SELECT * FROM routes {where} ORDER BY service", args)
        targets = self._read(f"SELECT * FROM route_targets {where} ORDER BY service, position", args)
        by_service: dict[str, list[WeightedTarget]] = {}
        for t in targets:
            by_service.setdefault(t["service"], []).append(WeightedTarget(t["version"], t["weight"]))
        return {r["service"]: Route(service=r["service"], targets=tuple(by_service.get(r["service"], ())),
                                    prefix=r["prefix"], method=r["method"], priority=r["priority"],
                                    max_retries=r["max_retries"], per_retry_timeout_ms=r["per_retry_timeout_ms"],
                                    timeout_ms=r["timeout_ms"])
                for r in routes}

    def delete_route(self, service: str) -> None:
        with self.transaction() as tx:
            self._require_service_tx(tx, service)
            cur = tx.execute("DELETE FROM routes WHERE service = ?", (service,))
            if cur.rowcount == 0:
                raise NotFoundError(f"{service} has no route")
            self._event(tx, "route", f"route r-{service} deleted", service)

    # --- header routes (extra routes that match a request header) ------------------------------------

    def set_header_route(self, route: HeaderRoute, owner: str = "") -> HeaderRoute:
        """Add or replace a header route of a service (by name). Its targets must be deployed versions;
        a router holds the weighted route and at most MAX_ROUTES_PER_ROUTER - 1 header routes."""
        with self.transaction() as tx:
            self._require_service_tx(tx, route.service)
            self._check_targets_tx(tx, route.service, route.targets)
            others = tx.execute("SELECT COUNT(*) FROM header_routes WHERE service = ? AND name != ?",
                                (route.service, route.name)).fetchone()[0]
            if others + 1 > MAX_ROUTES_PER_ROUTER - 1:
                raise ConflictError(f"{route.service} already has {others} header routes; App Mesh allows "
                                    f"{MAX_ROUTES_PER_ROUTER} routes per virtual router, the weighted one included",
                                    hint=f"delete one first: meshpipe route delete {route.service} --header NAME")
            tx.execute("DELETE FROM header_routes WHERE service = ? AND name = ?", (route.service, route.name))
            tx.execute("INSERT INTO header_routes (service, name, priority, prefix, method, headers_json, max_retries, "
                       "per_retry_timeout_ms, timeout_ms, owner, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (route.service, route.name, route.priority, route.prefix, route.method,
                        json.dumps([h.to_json() for h in route.headers]), route.max_retries,
                        route.per_retry_timeout_ms, route.timeout_ms, owner, self.now()))
            for i, t in enumerate(route.targets):
                tx.execute("INSERT INTO header_route_targets (service, name, position, version, weight) "
                           "VALUES (?, ?, ?, ?, ?)", (route.service, route.name, i, t.version, t.weight))
            spread = ", ".join(f"{t.version}={t.weight}" for t in route.targets)
            self._event(tx, "route", f"header route {route.name} set: {route.describe()} -> {spread}", route.service)
        return route

    def header_routes(self, service: str | None = None) -> dict[str, list[HeaderRoute]]:
        """Header routes by service, in the order the mesh tries them (priority, then name)."""
        where, args = ("WHERE service = ?", (service,)) if service is not None else ("", ())
        rows = self._read(f"SELECT * FROM header_routes {where} ORDER BY service, priority, name", args)
        targets: dict[tuple[str, str], list[WeightedTarget]] = {}
        for t in self._read(f"SELECT * FROM header_route_targets {where} ORDER BY service, name, position", args):
            targets.setdefault((t["service"], t["name"]), []).append(WeightedTarget(t["version"], t["weight"]))
        out: dict[str, list[HeaderRoute]] = {}
        for r in rows:
            out.setdefault(r["service"], []).append(HeaderRoute(
                service=r["service"], headers=tuple(HeaderMatch.from_json(h) for h in json.loads(r["headers_json"])),
                targets=tuple(targets.get((r["service"], r["name"]), ())), priority=r["priority"], prefix=r["prefix"],
                method=r["method"], max_retries=r["max_retries"], per_retry_timeout_ms=r["per_retry_timeout_ms"],
                timeout_ms=r["timeout_ms"]))
        return out

    def header_route_owner(self, service: str, name: str) -> str | None:
        rows = self._read("SELECT owner FROM header_routes WHERE service = ? AND name = ?", (service, name))
        return str(rows[0][0]) if rows else None

    def delete_header_route(self, service: str, name: str, missing_ok: bool = False) -> None:
        with self.transaction() as tx:
            self._require_service_tx(tx, service)
            cur = tx.execute("DELETE FROM header_routes WHERE service = ? AND name = ?", (service, name))
            if cur.rowcount == 0:
                if missing_ok:
                    return
                raise NotFoundError(f"{service} has no header route {name!r}",
                                    hint=f"list them with: meshpipe route show {service}")
            self._event(tx, "route", f"header route {name} deleted", service)

    @staticmethod
    def _drop_header_targets(tx: sqlite3.Connection, service: str, version: str) -> None:
        """A deleted version leaves every header route; a header route left with no weight goes."""
        tx.execute("DELETE FROM header_route_targets WHERE service = ? AND version = ?", (service, version))
        tx.execute("DELETE FROM header_routes WHERE service = ? AND NOT EXISTS (SELECT 1 FROM header_route_targets t "
                   "WHERE t.service = header_routes.service AND t.name = header_routes.name AND t.weight > 0)",
                   (service,))

    def weights(self, service: str) -> dict[str, int]:
        route = self.route(service)
        return {t.version: t.weight for t in route.targets} if route else {}

    # --- gateway routes ------------------------------------------------------------------------------

    def put_gateway_route(self, gr: GatewayRoute) -> GatewayRoute:
        with self.transaction() as tx:
            self._require_service_tx(tx, gr.service)
            clash = tx.execute("SELECT name FROM gateway_routes WHERE prefix = ? AND name != ?",
                               (gr.prefix, gr.name)).fetchone()
            if clash:
                raise ConflictError(f"gateway route {clash[0]} already matches prefix {gr.prefix}")
            old = tx.execute("SELECT created_at FROM gateway_routes WHERE name = ?", (gr.name,)).fetchone()
            tx.execute("INSERT OR REPLACE INTO gateway_routes (name, prefix, service, namespace, rewrite_prefix, "
                       "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (gr.name, gr.prefix, gr.service, gr.namespace, int(gr.rewrite_prefix),
                        old[0] if old else self.now()))
            self._event(tx, "gateway-route", f"gateway route {gr.name}: {gr.prefix} -> {gr.virtual_service}",
                        gr.service)
        return gr

    def gateway_routes(self) -> list[GatewayRoute]:
        return [GatewayRoute(name=r["name"], prefix=r["prefix"], service=r["service"], namespace=r["namespace"],
                             rewrite_prefix=bool(r["rewrite_prefix"]))
                for r in self._read("SELECT * FROM gateway_routes ORDER BY name")]

    def delete_gateway_route(self, name: str) -> None:
        with self.transaction() as tx:
            cur = tx.execute("DELETE FROM gateway_routes WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise NotFoundError(f"gateway route {name!r} does not exist")
            self._event(tx, "gateway-route", f"gateway route {name} deleted")

    # --- tasks ---------------------------------------------------------------------------------------

    def tasks(self, service: str | None = None, version: str | None = None) -> list[TaskRow]:
        sql, args = "SELECT * FROM tasks", ()  # type: tuple[str, tuple[Any, ...]]
        if service is not None and version is not None:
            sql, args = sql + " WHERE service = ? AND version = ?", (service, version)
        elif service is not None:
            sql, args = sql + " WHERE service = ?", (service,)
        rows = self._read(sql + " ORDER BY service, version, slot", args)
        return [TaskRow(r["task_id"], r["service"], r["version"], r["slot"], TaskGoal(r["desired"]), TaskState(r["actual"]),
                        r["app_port"], r["ingress_port"], r["egress_port"], r["admin_port"], r["restarts"],
                        r["last_error"], r["updated_at"]) for r in rows]

    def update_task(self, task_id: str, **values: Any) -> None:
        allowed = {"actual", "desired", "app_port", "ingress_port", "egress_port", "admin_port", "restarts",
                   "last_error"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"unknown task fields {sorted(unknown)}")
        if not values:
            return
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.transaction() as tx:
            tx.execute(f"UPDATE tasks SET {cols}, updated_at = ? WHERE task_id = ?",
                       (*values.values(), self.now(), task_id))

    # --- processes -----------------------------------------------------------------------------------

    def record_process(self, pid: int, started: str, role: str, task_id: str | None, argv: list[str]) -> None:
        with self.transaction() as tx:
            tx.execute("INSERT OR REPLACE INTO processes (pid, started, role, task_id, argv, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (pid, started, role, task_id, json.dumps(argv), self.now()))

    def forget_process(self, pid: int) -> None:
        with self.transaction() as tx:
            tx.execute("DELETE FROM processes WHERE pid = ?", (pid,))

    # --- pipeline runs -------------------------------------------------------------------------------

    def create_run(self, run_id: str, service: str, ref: str, old: str | None, commit: str | None) -> RunRow:
        with self.transaction() as tx:
            self._require_service_tx(tx, service)
            seq = tx.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM pipeline_runs").fetchone()[0]
            tx.execute("INSERT INTO pipeline_runs (run_id, seq, service, ref, old_commit, commit_id, status, "
                       "started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (run_id, seq, service, ref, old, commit, RunStatus.IN_PROGRESS, self.now()))
            for i, name in enumerate(STAGE_NAMES):
                tx.execute("INSERT INTO pipeline_stages (run_id, position, name, status) VALUES (?, ?, ?, ?)",
                           (run_id, i, name, "Pending"))
            self._event(tx, "pipeline", f"run {run_id} started for {ref} at {(commit or '')[:8]}", service)
        run = self.run(run_id)
        assert run is not None
        return run

    def set_stage(self, run_id: str, stage: str, status: str) -> None:
        with self.transaction() as tx:
            tx.execute("UPDATE pipeline_stages SET status = ? WHERE run_id = ? AND name = ?", (status, run_id, stage))

    def append_stage_log(self, run_id: str, stage: str, text: str) -> None:
        """Add to a stage's log, keeping the newest part when it grows past its bound."""
        with self.transaction() as tx:
            tx.execute("UPDATE pipeline_stages SET log = substr(log || ?, -?) WHERE run_id = ? AND name = ?",
                       (text, MAX_STAGE_LOG_CHARS, run_id, stage))

    def finish_run(self, run_id: str, status: str, version: str | None,
                   stages: list[tuple[str, str, str | None]] | None = None) -> None:
        """Close a run; ``stages`` = (name, status, full log or None to keep what was appended)."""
        with self.transaction() as tx:
            for name, stage_status, log in stages or []:
                if log is None:
                    tx.execute("UPDATE pipeline_stages SET status = ? WHERE run_id = ? AND name = ?",
                               (stage_status, run_id, name))
                else:
                    tx.execute("UPDATE pipeline_stages SET status = ?, log = ? WHERE run_id = ? AND name = ?",
                               (stage_status, log[-MAX_STAGE_LOG_CHARS:], run_id, name))
            tx.execute("UPDATE pipeline_runs SET status = ?, version = ?, finished_at = ? WHERE run_id = ?",
                       (status, version, self.now(), run_id))
            row = tx.execute("SELECT service FROM pipeline_runs WHERE run_id = ?", (run_id,)).fetchone()
            if row:
                self._event(tx, "pipeline", f"run {run_id} {status}", row[0], version)

    def restart_run(self, run_id: str) -> None:
        """Put an interrupted run back to its start, so it can be run again from Source."""
        with self.transaction() as tx:
            tx.execute("UPDATE pipeline_stages SET status = 'Pending', log = '' WHERE run_id = ?", (run_id,))
            tx.execute("UPDATE pipeline_runs SET status = ?, finished_at = NULL WHERE run_id = ?",
                       (RunStatus.IN_PROGRESS, run_id))

    def run(self, run_id: str) -> RunRow | None:
        rows = self._read("SELECT * FROM pipeline_runs WHERE run_id = ?", (run_id,))
        return self._runs_with_stages(rows)[0] if rows else None

    def runs(self, service: str | None = None, status: str | None = None) -> list[RunRow]:
        """Runs, newest first."""
        conds, args = [], []  # type: list[str], list[Any]
        if service is not None:
            conds.append("service = ?")
            args.append(service)
        if status is not None:
            conds.append("status = ?")
            args.append(status)
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        return self._runs_with_stages(self._read(f"SELECT * FROM pipeline_runs {where} ORDER BY seq DESC",
                                                 tuple(args)))

    def _runs_with_stages(self, rows: list[sqlite3.Row]) -> list[RunRow]:
        if not rows:
            return []
        ids = [r["run_id"] for r in rows]
        marks = ",".join("?" * len(ids))
        stages: dict[str, list[StageRow]] = {}
        for s in self._read(f"SELECT * FROM pipeline_stages WHERE run_id IN ({marks}) ORDER BY run_id, position",
                            tuple(ids)):
            stages.setdefault(s["run_id"], []).append(StageRow(s["name"], RunStatus(s["status"]), s["log"]))
        return [RunRow(r["run_id"], r["seq"], r["service"], r["ref"], r["old_commit"], r["commit_id"], RunStatus(r["status"]),
                       r["version"], r["started_at"], r["finished_at"], tuple(stages.get(r["run_id"], ())))
                for r in rows]

    # --- events --------------------------------------------------------------------------------------

    def add_event(self, kind: str, message: str, service: str | None = None, version: str | None = None) -> None:
        with self.transaction() as tx:
            self._event(tx, kind, message, service, version)

    def _event(self, tx: sqlite3.Connection, kind: str, message: str, service: str | None = None,
               version: str | None = None) -> None:
        cur = tx.execute("INSERT INTO events (at, kind, service, version, message) VALUES (?, ?, ?, ?, ?)",
                         (self.now(), kind, service, version, message))
        if kind in ROUTE_EVENT_KINDS:
            if not hasattr(self._local, "route_changes"):
                self._local.route_changes = []
            self._local.route_changes.append(service or "" if kind == "route" else "")
        if cur.lastrowid and cur.lastrowid % 500 == 0:
            tx.execute("DELETE FROM events WHERE id <= ?", (cur.lastrowid - MAX_EVENTS,))

    # --- rollouts: one row per rollout, its machine state as JSON --------------------------------------

    def insert_rollout(self, r: Rollout, started_at: str | None) -> int:
        """Record a new running rollout (one per service: a second is refused) and set its id; only the
        newest finished ones of the service are kept."""
        with self.transaction() as tx:
            try:
                cur = tx.execute("INSERT INTO rollouts (service, candidate, status, state_json, started_at, updated_at)"
                                 " VALUES (?, ?, ?, ?, ?, ?)", (r.service, r.candidate, r.status,
                                                                json.dumps(r.to_json()), started_at, self.now()))
            except sqlite3.IntegrityError as exc:  # the unique index: one running rollout per service
                if "UNIQUE" in str(exc):
                    raise ConflictError(f"a rollout of {r.service} is already running") from None
                raise
            rollout_id = int(cur.lastrowid or 0)
            tx.execute("DELETE FROM rollouts WHERE service = ? AND status != 'running' AND id NOT IN (SELECT id FROM "
                       "rollouts WHERE service = ? ORDER BY id DESC LIMIT ?)",
                       (r.service, r.service, KEEP_FINISHED_ROLLOUTS))
        r.id = rollout_id
        return rollout_id

    def save_rollout(self, r: Rollout) -> None:
        assert r.id is not None
        with self.transaction() as tx:
            tx.execute("UPDATE rollouts SET status = ?, state_json = ?, updated_at = ? WHERE id = ?",
                       (r.status, json.dumps(r.to_json()), self.now(), r.id))

    def _rollouts(self, where: str, args: tuple[Any, ...] = ()) -> list[Rollout]:
        rows = self._read(f"SELECT id, state_json FROM rollouts {where}", args)
        return [Rollout.from_json(json.loads(row["state_json"]), int(row["id"])) for row in rows]

    def running_rollouts(self) -> list[Rollout]:
        return self._rollouts("WHERE status = 'running' ORDER BY id")

    def latest_rollout(self, service: str) -> Rollout | None:
        found = self._rollouts("WHERE service = ? ORDER BY id DESC LIMIT 1", (service,))
        return found[0] if found else None

    def finished_rollouts_with_pending_hooks(self) -> list[Rollout]:
        """Finished rollouts with hooks still to call (recorded before they are called, so none is lost)."""
        return [r for r in self._rollouts("WHERE status != 'running' AND state_json LIKE '%\"pending_hooks\": [\"%' "
                                          "ORDER BY id") if r.pending_webhooks]

    # --- counts for the metrics --------------------------------------------------------------------------

    def run_counts(self) -> dict[tuple[str, str], int]:
        """(service, status) -> how many pipeline runs ended (or are) in that status."""
        rows = self._read("SELECT service, status, COUNT(*) AS n FROM pipeline_runs GROUP BY service, status")
        return {(r["service"], r["status"]): int(r["n"]) for r in rows}

    # --- helpers -------------------------------------------------------------------------------------

    @staticmethod
    def _check_targets_tx(tx: sqlite3.Connection, service: str, targets: tuple[WeightedTarget, ...]) -> None:
        for t in targets:
            r = tx.execute("SELECT status, reason FROM versions WHERE service = ? AND version = ?",
                           (service, t.version)).fetchone()
            if r is None:
                raise NotFoundError(f"version {t.version} of {service} does not exist",
                                    hint=f"list versions with: meshpipe versions {service}")
            if r["status"] != VersionStatus.CREATE_COMPLETE:
                why = f" ({r['reason']})" if r["reason"] else ""
                raise ConflictError(f"version {t.version} of {service} is {r['status']}{why}; only "
                                    f"{VersionStatus.CREATE_COMPLETE} versions can take traffic")

    @staticmethod
    def _require_service_tx(tx: sqlite3.Connection, service: str) -> None:
        if not tx.execute("SELECT 1 FROM services WHERE name = ?", (service,)).fetchone():
            raise NotFoundError(f"service {service!r} has no pipeline in this environment",
                                hint=f"create it with: meshpipe pipeline create {service}")
