"""The daemon's watchdog: brings the environment's daemon back when it dies, without waiting for a command.

    python -m meshpipe.engines.local.control.watchdog --env-dir <home>/envs/<env>

One small process per environment (``watchdog.lock`` says which), started by the daemon. It follows the
daemon that ``daemon.json`` names through a pidfd, so it sleeps in one blocking ``poll`` and costs nothing
while the daemon lives. When that daemon ends:

* ``daemon.json`` still names it: it died without stopping (a crash, a ``kill -9``, the OOM killer). The
  watchdog records it in the event log and starts a daemon, which takes over what still runs;
* ``daemon.json`` names another running daemon (a command started one first): that one is followed;
* ``daemon.json`` is gone: the daemon stopped on request (``env delete``, SIGTERM), and so does the
  watchdog.

A daemon that dies again within ``STABLE_SECONDS`` of its start counts as a failed restart; restarts
back off (1 s, doubling, up to 30 s), and after ``MAX_FAILURES`` failed ones in a row the watchdog gives up
and says so in the event log: something is wrong that restarting does not fix (see daemon.log).

Why a watchdog rather than the gateway: the gateway is data plane, restarted and taken over by the
daemon; a separate process keeps the two planes apart and its only job is this one. The daemon in turn
starts a new watchdog when its watchdog dies, so either can be killed and the other brings it back.
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from meshpipe.engines.local.state.daemonfiles import (
    EXIT_ALREADY_RUNNING,
    acquire_lock,
    read_daemon_file,
    read_lock_holder,
)
from meshpipe.engines.local.state.home import EnvPaths, env_paths_of_dir
from meshpipe.engines.local.tasks import processes as procs

STABLE_SECONDS = 60.0
MAX_FAILURES = 5
BACKOFF_BASE = 1.0
BACKOFF_MAX = 30.0
READY_TIMEOUT = 60.0
POLL_SECONDS = 0.1


def log(paths: EnvPaths, message: str) -> None:
    # The daemon's log, where a person looks when the daemon misbehaves.
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} WATCHDOG {message}\n"
    try:
        with paths.daemon_log.open("a", encoding="utf-8") as fh:
            fh.write(line)
    except OSError:
        sys.stderr.write(line)


def event(paths: EnvPaths, message: str) -> None:
    """Record ``message`` in the environment's event log (``meshpipe events``), and in daemon.log."""
    from meshpipe.engines.local.state.store import StateStore

    log(paths, message)
    try:
        store = StateStore(paths.state_db)
        try:
            store.add_event("daemon", message)
        finally:
            store.close()
    except Exception as exc:  # a read-only or missing state.db must not stop the watchdog
        log(paths, f"could not record the event: {exc}")


def wait_for_exit(pid: int, started: str | None) -> None:
    """Block until process ``pid`` (started at ``started``) ends, costing no CPU meanwhile."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        fd = None
    try:
        if not procs.is_running(pid, started):
            return
        if fd is None:  # no pidfds: look once a second
            while procs.is_running(pid, started):
                time.sleep(1.0)
            return
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll():
            pass
    finally:
        if fd is not None:
            os.close(fd)


def start_daemon(paths: EnvPaths) -> subprocess.Popen[bytes]:
    env = {**os.environ, procs.OWNER_ENV: str(paths.root)}
    with paths.daemon_log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "meshpipe.engines.local.control.daemon", "--env-dir", str(paths.root)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=paths.root,
                                env=env, start_new_session=True, close_fds=True)


def wait_ready(paths: EnvPaths, child: subprocess.Popen[bytes]) -> tuple[int, str | None] | None:
    """The daemon that came up (ours, or the one that beat it to the lock), or None when ours failed."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        code = child.poll()
        data = read_daemon_file(paths.daemon_json)
        if data is not None and (data["pid"] == child.pid or code == EXIT_ALREADY_RUNNING):
            pid = int(data["pid"])
            started = procs.start_time(pid)
            if procs.is_running(pid, started):
                return pid, started
        if code is not None and code != EXIT_ALREADY_RUNNING:
            return None
        time.sleep(POLL_SECONDS)
    return None


def watch(paths: EnvPaths) -> int:
    """Follow the daemon until it stops on request; restart it whenever it dies."""
    failures = 0
    children: list[subprocess.Popen[bytes]] = []
    current: tuple[int, str | None, float] | None = None  # pid, start time, when we began following it
    while True:
        for child in list(children):  # reap the daemons we started that have ended
            if child.poll() is not None:
                children.remove(child)
        data = read_daemon_file(paths.daemon_json)
        if not paths.state_db.exists():
            return 0  # the environment is gone
        if data is None:
            log(paths, "the daemon stopped on request; the watchdog stops too")
            return 0
        pid = int(data["pid"])
        started = procs.start_time(pid)
        if procs.is_running(pid, started) and (current is None or current[0] != pid):
            current = (pid, started, time.monotonic())
        if current is not None and procs.is_running(current[0], current[1]):
            wait_for_exit(current[0], current[1])
            continue
        # The daemon daemon.json names is gone, and it did not remove the file: it died.
        died = current[0] if current is not None else pid
        if current is not None and time.monotonic() - current[2] >= STABLE_SECONDS:
            failures = 0
        failures += 1
        if failures > MAX_FAILURES:
            event(paths, f"the daemon died {MAX_FAILURES} times in a row soon after starting; the watchdog gives "
                         f"up (see {paths.daemon_log}); any meshpipe command starts it again")
            return 1
        delay = 0.0 if failures == 1 else min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (failures - 2))
        event(paths, f"the daemon (pid {died}) died without stopping; the watchdog starts it again"
                     + (f" in {delay:g} s" if delay else "") + f" (restart {failures} in a row)")
        time.sleep(delay)
        if read_daemon_file(paths.daemon_json) is None:
            continue  # stopped on request meanwhile (env delete)
        child = start_daemon(paths)
        children.append(child)
        ready = wait_ready(paths, child)
        if ready is None:
            log(paths, f"the daemon started by the watchdog (pid {child.pid}) did not come up "
                       f"(status {child.poll()})")
            current = (child.pid, None, time.monotonic())
            if child.poll() is None:
                child.kill()
                child.wait()
            continue
        current = (ready[0], ready[1], time.monotonic())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshpipe-watchdog", description="Restarts an environment's daemon.")
    parser.add_argument("--env-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    paths = env_paths_of_dir(args.env_dir)
    lock = acquire_lock(paths.watchdog_lock)
    if lock is None:
        holder = read_lock_holder(paths.watchdog_lock)
        print(f"meshpipe watchdog: environment {paths.name} has a watchdog already"
              + (f" (pid {holder})" if holder else ""), file=sys.stderr)
        return 0
    try:
        return watch(paths)
    except KeyboardInterrupt:
        return 0
    finally:
        os.close(lock)


if __name__ == "__main__":
    sys.exit(main())
