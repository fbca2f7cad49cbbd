"""Whether a process runs, and since when, from /proc: all a read command needs to know about the daemon
before asking it, without loading the rest of ``processes`` (sockets, paths, spawning)."""

from __future__ import annotations

import os


def stat_fields(pid: int) -> list[str] | None:
    """Fields 3 onwards of ``/proc/<pid>/stat``, or None when there is no such process (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing parenthesis.
    return raw[raw.rfind(")") + 2:].split()


def start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, from /proc), or None when there is no such process."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    return fields[19]  # field 22 of /proc/<pid>/stat; fields[0] is field 3


def is_running(pid: int, started: str | None = None) -> bool:
    """True while ``pid`` runs (a zombie does not count); with ``started``, only if it is that process."""
    fields = stat_fields(pid)
    if fields is None:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return started is None  # no /proc: cannot tell a reused pid apart, so only trust an unchecked ask
    if fields[0] in ("Z", "X"):
        return False
    return started is None or fields[19] == started
