"""The daemon's files in its environment folder: how a running daemon makes itself known.

* ``daemon.lock`` is held (``flock``) for the life of the daemon, so an environment has one daemon at most,
  and a crashed daemon's lock goes with its process;
* ``watchdog.lock`` likewise for the daemon's watchdog (``watchdog``), which holds it;
* ``daemon.json`` says where its control API listens and the bearer token to use: the CLI and the config
  repos' hooks read it, so it is written atomically and readable by its owner only.
"""

from __future__ import annotations

import fcntl
import json
import os

TYPE_CHECKING = False  # typing's own flag would load typing: read commands load this module
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

EXIT_ALREADY_RUNNING = 3  # the daemon's exit status when another daemon of the environment holds the lock


def write_daemon_file(path: Path, data: dict[str, Any]) -> None:
    """Write daemon.json atomically, readable by its owner only (it holds the control token)."""
    from meshpipe.atomic import write_atomically  # tempfile and shutil: not for a read command

    write_atomically(path, json.dumps(data), mode=0o600)


def read_daemon_file(path: Path | str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError, OSError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    return data


def acquire_lock(path: Path) -> int | None:
    """Hold ``daemon.lock`` for the life of the process; None when another daemon holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def read_lock_holder(path: Path) -> int | None:
    """The pid written in a lock file by the process that took it (it may have ended since)."""
    try:
        return int(path.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def lock_is_held(path: Path) -> bool:
    """True while some process holds the lock (without taking it, or writing to the file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock taken just now
    return False


def metrics_token(path: Path) -> str:
    """The bearer token Prometheus scrapes ``/metrics`` with: made once, kept across daemon restarts (unlike
    the control token), readable by its owner only. It opens ``/metrics`` and nothing else."""
    return kept_token(path)


def kept_token(path: Path) -> str:
    """The token in ``path``, made (random, 0600) when the file is missing or too short to be one."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if len(token) < 32:
        import secrets

        from meshpipe.atomic import write_atomically  # tempfile and shutil: not for a read command

        token = secrets.token_urlsafe(32)
        write_atomically(path, token + "\n", mode=0o600)
    return token
