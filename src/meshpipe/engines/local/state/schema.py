"""The local engine's state.db schema: its tables, their version, and how an older file is brought up to it.

``PRAGMA user_version`` says which version a file has; ``MIGRATIONS[n]`` takes a file at version n to
n + 1. A file newer than this meshpipe is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from meshpipe.errors import OperationError

SCHEMA_VERSION = 3

_SCHEMA_V1 = """
CREATE TABLE environment (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    name              TEXT NOT NULL,
    namespace         TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    gateway_port      INTEGER,
    config_generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE services (
    name            TEXT PRIMARY KEY,
    virtual_service TEXT NOT NULL UNIQUE,
    router          TEXT NOT NULL,
    repo_path       TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE TABLE versions (
    service       TEXT NOT NULL REFERENCES services(name),
    version       TEXT NOT NULL,
    commit_id     TEXT NOT NULL,
    stack_name    TEXT NOT NULL UNIQUE,
    status        TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    desired_tasks INTEGER NOT NULL,
    template_json TEXT NOT NULL,
    resolved_json TEXT NOT NULL,
    run_id        TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (service, version)
);
CREATE TABLE routes (
    service              TEXT PRIMARY KEY REFERENCES services(name),
    prefix               TEXT NOT NULL,
    method               TEXT,
    priority             INTEGER NOT NULL,
    max_retries          INTEGER NOT NULL,
    per_retry_timeout_ms INTEGER NOT NULL,
    timeout_ms           INTEGER NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE TABLE route_targets (
    service  TEXT NOT NULL REFERENCES routes(service) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    version  TEXT NOT NULL,
    weight   INTEGER NOT NULL CHECK (weight BETWEEN 0 AND 100),
    PRIMARY KEY (service, position),
    FOREIGN KEY (service, version) REFERENCES versions(service, version)
);
CREATE TABLE gateway_routes (
    name           TEXT PRIMARY KEY,
    prefix         TEXT NOT NULL UNIQUE,
    service        TEXT NOT NULL REFERENCES services(name),
    namespace      TEXT NOT NULL,
    rewrite_prefix INTEGER NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE TABLE tasks (
    task_id      TEXT PRIMARY KEY,
    service      TEXT NOT NULL,
    version      TEXT NOT NULL,
    slot         INTEGER NOT NULL,
    desired      TEXT NOT NULL,
    actual       TEXT NOT NULL,
    app_port     INTEGER,
    ingress_port INTEGER,
    egress_port  INTEGER,
    admin_port   INTEGER,
    restarts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT NOT NULL DEFAULT '',
    updated_at   TEXT NOT NULL,
    FOREIGN KEY (service, version) REFERENCES versions(service, version) ON DELETE CASCADE
);
CREATE TABLE processes (
    pid        INTEGER PRIMARY KEY,
    started    TEXT NOT NULL,
    role       TEXT NOT NULL,
    task_id    TEXT,
    argv       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE pipeline_runs (
    run_id      TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    service     TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,
    ref         TEXT NOT NULL,
    old_commit  TEXT,
    commit_id   TEXT,
    status      TEXT NOT NULL,
    version     TEXT,
    started_at  TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX pipeline_runs_by_service ON pipeline_runs(service, seq);
CREATE TABLE pipeline_stages (
    run_id   TEXT NOT NULL REFERENCES pipeline_runs(run_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name     TEXT NOT NULL,
    status   TEXT NOT NULL,
    log      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, position)
);
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    kind    TEXT NOT NULL,
    service TEXT,
    version TEXT,
    message TEXT NOT NULL
);
"""

# Version 2: header routes (a service's extra routes that match on a request header) and rollouts (the
# controller's state of each rollout, one running per service, kept after it ends).
_SCHEMA_V2 = """
CREATE TABLE header_routes (
    service              TEXT NOT NULL REFERENCES services(name),
    name                 TEXT NOT NULL,
    priority             INTEGER NOT NULL,
    prefix               TEXT NOT NULL,
    method               TEXT,
    headers_json         TEXT NOT NULL,
    max_retries          INTEGER NOT NULL,
    per_retry_timeout_ms INTEGER NOT NULL,
    timeout_ms           INTEGER NOT NULL,
    owner                TEXT NOT NULL DEFAULT '',
    updated_at           TEXT NOT NULL,
    PRIMARY KEY (service, name)
);
CREATE TABLE header_route_targets (
    service  TEXT NOT NULL,
    name     TEXT NOT NULL,
    position INTEGER NOT NULL,
    version  TEXT NOT NULL,
    weight   INTEGER NOT NULL CHECK (weight BETWEEN 0 AND 100),
    PRIMARY KEY (service, name, position),
    FOREIGN KEY (service, name) REFERENCES header_routes(service, name) ON DELETE CASCADE,
    FOREIGN KEY (service, version) REFERENCES versions(service, version)
);
CREATE TABLE rollouts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    service     TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,
    candidate   TEXT NOT NULL,
    status      TEXT NOT NULL,
    state_json  TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX one_running_rollout_per_service ON rollouts(service) WHERE status = 'running';
CREATE INDEX rollouts_by_service ON rollouts(service, id);
"""

# Version 3: routes match every method unless one is named. Earlier versions stored GET on every route
# without a way to choose it, so a stored GET is the old default, not a choice: it becomes "any method".
# Versions left without weight by a rollout are scaled to zero tasks: when (scale_down_at, seconds since
# the epoch) and since when they are (scaled_down_at).
_SCHEMA_V3 = """
UPDATE routes SET method = NULL WHERE method = 'GET';
UPDATE header_routes SET method = NULL WHERE method = 'GET';
ALTER TABLE versions ADD COLUMN scale_down_at REAL;
ALTER TABLE versions ADD COLUMN scaled_down_at TEXT
"""

# MIGRATIONS[n] takes a database at user_version n to n + 1.
MIGRATIONS: tuple[str, ...] = (_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the database on ``conn`` (the file at ``path``) up to ``SCHEMA_VERSION``.

    The caller holds a write transaction, so a migration that fails half-way leaves the file as it was.
    """
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise OperationError(f"{path} has schema version {current}; this meshpipe knows up to "
                             f"{SCHEMA_VERSION}", hint="upgrade meshpipe")
    for step in range(current, SCHEMA_VERSION):
        # executescript would commit the open transaction; run the statements one by one instead.
        for statement in MIGRATIONS[step].split(";"):
            if statement.strip():
                conn.execute(statement)
    if current != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
