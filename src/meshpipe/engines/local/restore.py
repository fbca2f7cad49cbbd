"""Start-up restore: how a daemon picks up where its predecessor stopped (a crash, a kill -9, a reboot).

state.db is the truth, so a starting daemon, in this order (``Daemon.start``):

1. stops every process its predecessor left running (``clean_up_leftovers``);
2. starts the gateway on the recorded ingress port when that port is free (``ingress_port``);
3. starts the tasks of every version that should run (``Deployer.restore``);
4. runs again, from Source, every pipeline run left ``InProgress`` (``rerun_interrupted``);
5. starts a run for a repo whose main branch moved while no daemon listened (``catch_up_pushes``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from meshpipe.engines.local import processes as procs
from meshpipe.engines.local import state as st
from meshpipe.engines.local.runs import RunQueue
from meshpipe.engines.local.state import StateStore

log = logging.getLogger("meshpipe.daemon")


def clean_up_leftovers(store: StateStore, owner: Path) -> None:
    """Stop every process a previous daemon of this environment left running (it crashed or was killed).

    A stopping daemon runs it too, after the supervisor stopped the tasks: a last sweep by pid and owner mark.
    """
    rows = store.processes()
    tracked = {(p.pid, p.started or None) for p in rows}
    found = {(pid, procs.start_time(pid)) for pid in procs.owned_processes(owner)}
    leftovers = sorted(tracked | found, key=lambda p: p[0])
    alive = [(pid, started) for pid, started in leftovers if procs.is_running(pid, started)]
    if alive:
        log.warning("stopping %d process(es) left by a previous daemon: %s", len(alive),
                    ", ".join(str(pid) for pid, _ in alive))
        stuck = procs.kill_all(alive, timeout=5.0)
        if stuck:
            log.error("could not stop leftover process(es) %s", stuck)
    for row in rows:
        store.forget_process(row.pid)


def ingress_port(recorded: int | None) -> int:
    """The recorded ingress port, so the ingress URL survives a restart; a free one when it is taken."""
    port = recorded
    if port is None or not procs.port_is_free(port):
        if port is not None:
            log.warning("ingress port %d is taken; the ingress moves to another port", port)
        port = procs.free_port()
    return port


def rerun_interrupted(store: StateStore, runs: RunQueue) -> None:
    """Queue again, oldest first, the runs a stopped daemon left InProgress (from Source: nothing is resumed)."""
    for run in sorted(store.runs(status=st.RUN_IN_PROGRESS), key=lambda r: r.seq):
        log.info("pipeline run %s of %s was interrupted; running it again", run.run_id, run.service)
        store.restart_run(run.run_id)
        runs.enqueue(run.service, run.run_id)


async def catch_up_pushes(store: StateStore, push: Callable[[str, str, str | None, str], Awaitable[str]]) -> None:
    """Start the runs of pushes made while no daemon was running (their hook could not report them)."""
    from meshpipe.engines.local.gitrepo import DEFAULT_BRANCH, resolve_ref

    ref = f"refs/heads/{DEFAULT_BRANCH}"
    for svc in store.services():
        head = await asyncio.to_thread(resolve_ref, Path(svc.repo_path), ref)
        if head is None or any(r.commit == head for r in store.runs(svc.name)):
            continue
        run_id = await push(svc.name, ref, None, head)
        log.info("%s of %s is at %s, which no pipeline run has seen: run %s started", ref, svc.name, head[:8],
                 run_id)
