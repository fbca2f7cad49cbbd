"""Reading an environment's state.db without writing it: the one way in for code that is not the daemon.

:class:`StateReads` holds the queries both sides need (the environment, its services and versions, the
processes recorded, the events); the daemon's :class:`~meshpipe.engines.local.state.store.StateStore`
has them with its writes, and :class:`StateReader` has them alone, on a connection SQLite opens read-only
(``mode=ro``): it never migrates, locks for writing or changes the file, so the client can read a
stopped environment, or one whose disk is full or read-only, beside a running daemon.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from meshpipe.errors import NotFoundError, OperationError
from meshpipe.status import VersionStatus

BUSY_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class EnvironmentRow:
    name: str
    namespace: str
    created_at: str
    gateway_port: int | None
    config_generation: int


@dataclass(frozen=True)
class ServiceRow:
    name: str
    virtual_service: str
    router: str
    repo_path: str
    created_at: str


@dataclass(frozen=True)
class VersionRow:
    service: str
    version: str
    commit: str
    stack_name: str
    status: VersionStatus
    reason: str
    desired_tasks: int
    template: dict[str, Any]
    resolved: dict[str, Any]
    run_id: str | None
    created_at: str
    updated_at: str
    scale_down_at: float | None = None  # when a rollout's loser is to be scaled to zero (epoch seconds)
    scaled_down_at: str | None = None  # since when it runs no task (None: it runs desired_tasks)

    @property
    def scaled_down(self) -> bool:
        return self.scaled_down_at is not None


@dataclass(frozen=True)
class ProcessRow:
    pid: int
    started: str
    role: str  # gateway | app | sidecar
    task_id: str | None
    argv: list[str]


@dataclass(frozen=True)
class EventRow:
    id: int
    at: str
    kind: str
    service: str | None
    version: str | None
    message: str


def _optional(r: sqlite3.Row, column: str) -> Any:
    """A column a state.db written by an earlier meshpipe may lack (the reader does not migrate it)."""
    return r[column] if column in r.keys() else None  # noqa: SIM118 (in on a Row looks at its values)


class StateReads:
    """The reads of state.db that the daemon and the client share; ``_read`` runs one query."""

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def environment(self) -> EnvironmentRow | None:
        rows = self._read("SELECT * FROM environment WHERE id = 1")
        if not rows:
            return None
        r = rows[0]
        return EnvironmentRow(r["name"], r["namespace"], r["created_at"], r["gateway_port"], r["config_generation"])

    def service(self, name: str) -> ServiceRow | None:
        rows = self._read("SELECT * FROM services WHERE name = ?", (name,))
        return self._service_row(rows[0]) if rows else None

    def require_service(self, name: str) -> ServiceRow:
        row = self.service(name)
        if row is None:
            raise NotFoundError(f"service {name!r} has no pipeline in this environment",
                                hint=f"create it with: meshpipe pipeline create {name}")
        return row

    def services(self) -> list[ServiceRow]:
        return [self._service_row(r) for r in self._read("SELECT * FROM services ORDER BY name")]

    @staticmethod
    def _service_row(r: sqlite3.Row) -> ServiceRow:
        return ServiceRow(r["name"], r["virtual_service"], r["router"], r["repo_path"], r["created_at"])

    def version(self, service: str, version: str) -> VersionRow | None:
        rows = self._read("SELECT * FROM versions WHERE service = ? AND version = ?", (service, version))
        return self._version_row(rows[0]) if rows else None

    def versions(self, service: str | None = None) -> list[VersionRow]:
        if service is None:
            rows = self._read("SELECT * FROM versions ORDER BY service, created_at, version")
        else:
            rows = self._read("SELECT * FROM versions WHERE service = ? ORDER BY created_at, version", (service,))
        return [self._version_row(r) for r in rows]

    @staticmethod
    def _version_row(r: sqlite3.Row) -> VersionRow:
        return VersionRow(r["service"], r["version"], r["commit_id"], r["stack_name"], VersionStatus(r["status"]),
                          r["reason"],
                          r["desired_tasks"], json.loads(r["template_json"]), json.loads(r["resolved_json"]),
                          r["run_id"], r["created_at"], r["updated_at"], _optional(r, "scale_down_at"),
                          _optional(r, "scaled_down_at"))

    def processes(self) -> list[ProcessRow]:
        return [ProcessRow(r["pid"], r["started"], r["role"], r["task_id"], json.loads(r["argv"]))
                for r in self._read("SELECT * FROM processes ORDER BY pid")]

    def events(self, limit: int = 100, service: str | None = None) -> list[EventRow]:
        """The newest events, oldest first."""
        where, args = ("WHERE service = ?", (service, limit)) if service else ("", (limit,))
        rows = self._read(f"SELECT * FROM events {where} ORDER BY id DESC LIMIT ?", args)
        return [EventRow(r["id"], r["at"], r["kind"], r["service"], r["version"], r["message"]) for r in reversed(rows)]


class StateReader(StateReads):
    """state.db opened read-only, for one command: use it as a context manager (the file closes after)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._conn = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True,
                                         timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise OperationError(f"cannot read {self.path}: {exc}") from None
        self._conn.row_factory = sqlite3.Row

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise OperationError(f"cannot read {self.path}: {exc}") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> StateReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
