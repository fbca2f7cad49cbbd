"""What an environment keeps, captured so that two captures compare byte for byte: every file under a
folder (by content digest), and the rows of the environment's state.db (tables sorted, for a readable diff).

Left out of the byte comparison, each for a reason: ``logs/`` and ``*.log`` (the record of what ran;
health checks append to them every interval, whatever the API is asked) and ``state.db-shm`` (SQLite's
shared-memory index, which every reader writes its read marks to). state.db and its write-ahead log are
compared as bytes *and* as rows: a write shows in the rows; the rows name what changed.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

VOLATILE_SUFFIXES = (".log", ".db-shm")
VOLATILE_DIRS = ("logs",)


@dataclass(frozen=True)
class Capture:
    files: dict[str, str]  # path relative to the captured folder -> sha256 of its bytes ("dir" for a folder)
    rows: dict[str, list[tuple[object, ...]]]  # state.db: table -> its rows, sorted

    def differences(self, other: Capture, limit: int = 12) -> list[str]:
        """What ``other`` has that differs from this capture, one line each."""
        out = []
        for path in sorted(set(self.files) | set(other.files)):
            before, after = self.files.get(path), other.files.get(path)
            if before != after:
                out.append(f"{path}: {'created' if before is None else 'removed' if after is None else 'changed'}")
        for table in sorted(set(self.rows) | set(other.rows)):
            before_rows, after_rows = set(self.rows.get(table, [])), set(other.rows.get(table, []))
            out += [f"state.db {table}: + {row!r}"[:300] for row in sorted(after_rows - before_rows, key=repr)]
            out += [f"state.db {table}: - {row!r}"[:300] for row in sorted(before_rows - after_rows, key=repr)]
        return out[:limit]


def _volatile(relative: Path) -> bool:
    return relative.name.endswith(VOLATILE_SUFFIXES) or any(part in VOLATILE_DIRS for part in relative.parts)


def file_digests(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if _volatile(relative):
            continue
        try:
            out[str(relative)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:  # removed between the listing and the read: it shows as missing
            continue
    return out


def state_rows(state_db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table's rows, read through a read-only connection (it writes nothing but read marks)."""
    if not state_db.exists():
        return {}
    conn = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=10)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted((tuple(r) for r in conn.execute(f'SELECT * FROM "{t}"')), key=repr) for t in tables}
    finally:
        conn.close()


def capture(root: Path, state_db: Path) -> Capture:
    return Capture(file_digests(root), state_rows(state_db))


def settled(root: Path, state_db: Path, timeout: float = 30.0, quiet: float = 0.3) -> Capture:
    """A capture once two in a row, ``quiet`` seconds apart, agree (after a call that changed something,
    the work it started in the background has finished)."""
    deadline = time.monotonic() + timeout
    last = capture(root, state_db)
    while True:
        time.sleep(quiet)
        now = capture(root, state_db)
        if now == last:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"the environment did not settle within {timeout} s: {last.differences(now)}")
        last = now
