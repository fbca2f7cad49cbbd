"""Pipeline runs: one queue per service, its runs one after the other, each in a worker thread.

A push (reported by the config repo's hook) records a run and queues it behind the runs of its service
already queued, as CodePipeline serializes a pipeline's executions; runs of different services go on
side by side. A run is ``meshpipe.pipeline.stages.run_pipeline`` in a thread of its own, every line it logs
written to state.db as it comes; its Deploy stage comes back to the event loop for the deployer. A run
the daemon's stop cuts short stays ``InProgress``: the next daemon runs it again from Source.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from meshpipe.engines.local.state.store import StateStore
from meshpipe.engines.local.tasks.deploy import Deployer
from meshpipe.errors import OperationError
from meshpipe.status import RunStatus

if TYPE_CHECKING:  # the pipeline (model, synthesizer) is loaded by the first run, not by the daemon's start
    from meshpipe.pipeline.stages import SourceInput

MANIFEST_FILE = "manifest.yaml"  # where a config repo holds the service's manifest

# How a local build names its template: the original sample's, recorded as it is, run on this machine's
# own mesh (App Mesh itself was shut down; nothing here talks to it).
LOCAL_MESH_NOTE = "the original sample's template, run on the local mesh"
log = logging.getLogger("meshpipe.daemon")

T = TypeVar("T")


class RunQueue:
    """The pipeline runs of one environment: a queue and a worker task per service."""

    def __init__(self, store: StateStore, environment: str, deployer: Deployer, stopping: Callable[[], bool],
                 after_success: Callable[[str, str, str], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.environment = environment
        self.deployer = deployer
        self._stopping = stopping
        # Called with (service, version, run id) once a run succeeded: where a rollout starts by itself.
        self.after_success = after_success
        self.queues: dict[str, asyncio.Queue[str]] = {}
        self.workers: dict[str, asyncio.Task[None]] = {}

    @property
    def stopping(self) -> bool:
        """The daemon is stopping: a run it interrupts is left for the next daemon, not failed."""
        return self._stopping()

    def submit(self, service: str, ref: str, old: str | None, new: str) -> str:
        """Record a run of commit ``new`` and queue it; returns its id."""
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        self.store.create_run(run_id, service, ref, old, new)
        self.enqueue(service, run_id)
        log.info("push to %s of %s at %s: pipeline run %s queued", ref, service, new[:8], run_id)
        return run_id

    def enqueue(self, service: str, run_id: str) -> None:
        """Queue a recorded run behind the runs of its service already queued."""
        queue = self.queues.get(service)
        if queue is None:
            queue = self.queues[service] = asyncio.Queue()
            self.workers[service] = asyncio.create_task(self._worker(service, queue),
                                                        name=f"pipeline {service}")
        queue.put_nowait(run_id)

    def forget(self, service: str) -> None:
        """The service is gone: its worker stops and its queue goes with it."""
        worker = self.workers.pop(service, None)
        if worker is not None:
            worker.cancel()
        self.queues.pop(service, None)

    def cancel(self) -> None:
        """Stop every worker (the daemon is stopping)."""
        for worker in self.workers.values():
            worker.cancel()

    async def _worker(self, service: str, queue: asyncio.Queue[str]) -> None:
        """Runs of one service, one after the other (as CodePipeline serializes a pipeline's executions).

        As in CodePipeline's superseded mode, a run still waiting when a newer one is queued behind it is
        not run: it is recorded as Superseded, and the newest push is the one that gets deployed."""
        while True:
            run_id = await queue.get()
            if queue.qsize():
                self._supersede(run_id)
                continue
            try:
                await self._execute_run(run_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("pipeline run %s failed unexpectedly", run_id)
                if not self.stopping:
                    self.store.append_stage_log(run_id, "Deploy", f"internal error: {exc}\n")
                    self.store.finish_run(run_id, RunStatus.FAILED, None)

    def _supersede(self, run_id: str) -> None:
        run = self.store.run(run_id)
        if run is None or run.status != RunStatus.IN_PROGRESS:
            return
        note = "superseded: a newer push of this service was waiting, and runs instead\n"
        self.store.finish_run(run_id, RunStatus.SUPERSEDED, None,
                              [("Source", "Skipped", note), ("Build", "Skipped", None), ("Deploy", "Skipped", None)])
        log.info("pipeline run %s of %s superseded by a newer push", run_id, run.service)

    async def _execute_run(self, run_id: str) -> None:
        from meshpipe.pipeline.stages import run_pipeline
        from meshpipe.platform import local_settings

        run = self.store.run(run_id)
        if run is None or run.status != RunStatus.IN_PROGRESS or run.commit is None:
            return
        svc = self.store.service(run.service)
        if svc is None:
            self.store.finish_run(run_id, RunStatus.FAILED, None)
            return
        loop = asyncio.get_running_loop()
        source = git_source(Path(svc.repo_path), run.service, run.commit)
        settings = local_settings(self.environment)
        begun: set[str] = set()

        def log_line(stage: str, line: str) -> None:
            if stage not in begun:
                begun.add(stage)
                self.store.set_stage(run_id, stage, "InProgress")
            self.store.append_stage_log(run_id, stage, line + "\n")

        def deploy(version: Any, stack: Any) -> str:
            future = asyncio.run_coroutine_threadsafe(self.deployer.deploy(version, stack.template, run_id), loop)
            while True:
                try:
                    return future.result(timeout=0.25)
                except TimeoutError:
                    if self.stopping:
                        future.cancel()
                        raise OperationError("the environment's daemon stopped during the deployment") from None
                except Exception as exc:
                    if type(exc).__name__ == "CancelledError":
                        raise OperationError("the deployment was cancelled (the version was deleted or the "
                                             "daemon stopped)") from None
                    raise

        outcome = await in_thread(f"run {run_id}", functools.partial(run_pipeline, mesh_note=LOCAL_MESH_NOTE),
                                  source, settings, deploy, log_line)
        if self.stopping:
            return  # left InProgress on purpose: the next daemon runs it again
        self.store.finish_run(run_id, outcome.status, outcome.version,
                              [(s.name, s.status, s.log) for s in outcome.stages])
        log.info("pipeline run %s of %s: %s", run_id, run.service, outcome.status)
        if outcome.succeeded and outcome.version and self.after_success is not None:
            await self.after_success(run.service, outcome.version, run_id)


async def in_thread(name: str, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in a daemon thread (never joined at exit, so a stuck run cannot hold the process)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            future.set_result(value) if ok else future.set_exception(value)

    def target() -> None:
        try:
            result: Any = fn(*args)
            ok = True
        except BaseException as exc:
            result, ok = exc, False
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, ok, result)

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future


def git_source(repo: Path, service: str, commit: str, path: str = MANIFEST_FILE) -> SourceInput:
    """The Source stage of a local run: ``path`` in the service's bare config repo as of ``commit``, read when
    the stage runs."""
    from meshpipe.engines.local.source.gitrepo import read_file_at
    from meshpipe.pipeline.stages import SourceInput

    return SourceInput(service=service, commit=commit, read_manifest=lambda: read_file_at(repo, commit, path),
                       file_label=path)


def rerun_interrupted(store: StateStore, runs: RunQueue) -> None:
    """Queue again, oldest first, the runs a stopped daemon left InProgress (from Source: nothing is resumed)."""
    for run in sorted(store.runs(status=RunStatus.IN_PROGRESS), key=lambda r: r.seq):
        log.info("pipeline run %s of %s was interrupted; running it again", run.run_id, run.service)
        store.restart_run(run.run_id)
        runs.enqueue(run.service, run.run_id)


async def catch_up_pushes(store: StateStore, push: Callable[[str, str, str | None, str], Awaitable[str]]) -> None:
    """Start the runs of pushes made while no daemon was running (their hook could not report them)."""
    from meshpipe.engines.local.source.gitrepo import DEFAULT_BRANCH, resolve_ref

    ref = f"refs/heads/{DEFAULT_BRANCH}"
    for svc in store.services():
        head = await asyncio.to_thread(resolve_ref, Path(svc.repo_path), ref)
        if head is None or any(r.commit == head for r in store.runs(svc.name)):
            continue
        run_id = await push(svc.name, ref, None, head)
        log.info("%s of %s is at %s, which no pipeline run has seen: run %s started", ref, svc.name, head[:8],
                 run_id)
