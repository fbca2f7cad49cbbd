"""Operating-system processes for the local engine: the one place that spawns, signals and finds them.

Every process the daemon starts (the gateway, each sidecar, each app) runs in its own session, so its
process group id is its pid and a stop reaches the children it may have started. Each carries
``MESHPIPE_OWNER=<env dir>`` in its environment, and its pid and start time are recorded in state.db, so
a daemon that restarts after a crash can find what its predecessor left behind and stop exactly that
(a pid reused by an unrelated program has another start time and is left alone).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

# Their home is pids, which a read command loads without the rest of this module.
from meshpipe.engines.local.tasks.pids import is_running as is_running
from meshpipe.engines.local.tasks.pids import start_time as start_time

OWNER_ENV = "MESHPIPE_OWNER"
LOG_MAX_BYTES = 4 * 1024 * 1024
# Variables of the daemon's own environment an app still needs (finding programs, locale, temp dir).
PASS_THROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV",
                    "SYSTEMROOT")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it). Whoever uses it may still lose a race for
    it, so every user retries with a new one when its bind fails."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid``, or to ``pid`` alone when it leads none."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    except PermissionError:
        pass


def terminate_group(pid: int) -> None:
    """Ask a process group to stop: SIGTERM, then SIGCONT, so that a stopped process (``kill -STOP``) wakes up
    to handle the SIGTERM rather than waiting for the SIGKILL at the end of the stop timeout."""
    signal_group(pid, signal.SIGTERM)
    signal_group(pid, signal.SIGCONT)


def owned_processes(env_dir: Path, exclude: Iterable[int] = ()) -> list[int]:
    """Pids of running processes whose environment says they belong to the environment at ``env_dir``."""
    marker = f"{OWNER_ENV}={Path(env_dir).absolute()}".encode()
    skip = set(exclude) | {os.getpid()}
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0") and is_running(int(entry)):
            found.append(int(entry))
    return sorted(found)


def runs_module(pid: int, modules: Iterable[str]) -> bool:
    """True when process ``pid`` is ``python -m <one of modules>`` (read from /proc/<pid>/cmdline)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    wanted = {m.encode() for m in modules}
    return any(a == b"-m" and b in wanted for a, b in itertools.pairwise(argv))


def child_env(owner: Path, extra: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a process the daemon starts: a few of its own variables, the owner marker, extra."""
    base = os.environ if base is None else base
    env = {k: base[k] for k in PASS_THROUGH_ENV if k in base}
    env[OWNER_ENV] = str(Path(owner).absolute())
    env.update(extra)
    return env


def log_files(logs: Path) -> list[Path]:
    """The ``*.log`` files in ``logs`` and its folders one level down (where the daemon keeps them)."""
    found = []
    with os.scandir(logs) as top:
        for entry in top:
            if entry.is_dir(follow_symlinks=False):
                with os.scandir(entry.path) as sub:
                    found += [Path(e.path) for e in sub if e.name.endswith(".log")]
            elif entry.name.endswith(".log"):
                found.append(Path(entry.path))
    return found


def rotate_log(path: Path, max_bytes: int = LOG_MAX_BYTES) -> bool:
    """Keep a log bounded: past ``max_bytes`` it is copied to ``<name>.1`` and emptied in place.

    Writers hold the file open with O_APPEND, so after the truncation they simply write at the new end.
    """
    try:
        if path.stat().st_size <= max_bytes:
            return False
        old = path.with_name(path.name + ".1")
        with path.open("rb") as src, old.open("wb") as dst:
            # Only the newest part is worth keeping.
            src.seek(max(0, path.stat().st_size - max_bytes))
            dst.write(src.read(max_bytes))
        os.truncate(path, 0)
        return True
    except FileNotFoundError:
        return False


def kill_all(processes: Iterable[tuple[int, str | None]], timeout: float) -> list[int]:
    """Stop many processes that are not our children at once: SIGTERM to all, SIGKILL to the ones still
    running after ``timeout``. Returns the pids that could not be stopped."""
    targets = [(pid, started) for pid, started in processes if is_running(pid, started)]
    for pid, _ in targets:
        terminate_group(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(is_running(p, s) for p, s in targets):
        time.sleep(0.02)
    for pid, started in targets:
        if is_running(pid, started):
            signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(is_running(p, s) for p, s in targets):
        time.sleep(0.02)
    return [pid for pid, started in targets if is_running(pid, started)]
