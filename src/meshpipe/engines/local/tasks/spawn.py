"""Processes the daemon runs, watched from its event loop: the ones it starts (``OsSpawner``) and the ones
a previous daemon started that it takes over (``AdoptedProcess``).

Apart from :mod:`processes` (finding, signalling, identifying processes), which the command line uses
too and which must not load asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshpipe.engines.local.tasks.capture import drained, spawn_stamped
from meshpipe.engines.local.tasks.processes import is_running, signal_group, terminate_group


@dataclass
class OsProcess:
    """A process the daemon started, and the asyncio handle that reaps it."""

    pid: int
    argv: list[str]
    _proc: asyncio.subprocess.Process
    _stamper: asyncio.subprocess.Process | None = None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        code = await self._proc.wait()
        if self._stamper is not None:
            await drained(self._stamper)
        return code


class OsSpawner:
    """Starts real processes: own session, stdin from /dev/null, stdout and stderr appended to a log file
    (with ``stamp``, through a stamper that puts the capture time on each line: see :mod:`capture`)."""

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path,
                    cwd: Path | None = None, stamp: bool = False) -> OsProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if stamp:
                proc, stamper = await spawn_stamped(argv, env, fd, cwd)
                return OsProcess(proc.pid, list(argv), proc, stamper)
            proc = await asyncio.create_subprocess_exec(
                *argv, env=dict(env), stdin=asyncio.subprocess.DEVNULL, stdout=fd, stderr=fd,
                start_new_session=True, close_fds=True, cwd=cwd)
        finally:
            os.close(fd)
        return OsProcess(proc.pid, list(argv), proc)

    async def stop(self, proc: Any, timeout: float) -> int | None:
        """SIGTERM (and SIGCONT) to the process group, SIGKILL after ``timeout``; returns the exit status.

        ``proc`` is an :class:`OsProcess` this spawner started."""
        if proc.returncode is None:
            terminate_group(proc.pid)
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), timeout)
            except TimeoutError:
                signal_group(proc.pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(proc.wait()), 5.0)
        # Children the process left in its group go too. Only the group is signalled: the pid itself is
        # reaped by now and may already belong to another program.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode


class AdoptedProcess:
    """A running process a previous daemon started, taken over by this one (so not its child).

    Its exit is seen through a pidfd (readable once the process ends), so watching it costs nothing while
    it runs; its exit status is not ours to collect, so :meth:`wait` returns None. Without pidfds (an old
    kernel) the process is polled once a second instead.
    """

    POLL_SECONDS = 1.0

    def __init__(self, pid: int, started: str | None, argv: Sequence[str]) -> None:
        self.pid = pid
        self.started = started
        self.argv = list(argv)
        self._gone = False
        self._exited: asyncio.Future[None] | None = None
        self._fd: int | None = None
        self._poller: asyncio.Task[None] | None = None
        with contextlib.suppress(OSError, AttributeError):
            self._fd = os.pidfd_open(pid)
        # The pid may have been reused between the caller's check and the pidfd: check it again, now that
        # the pidfd pins whatever process has it.
        if not is_running(pid, started):
            self._gone = True
            self._close()

    @property
    def returncode(self) -> int | None:
        # Unknown once gone; -1 says "exited" to callers that only test for None.
        return -1 if self._gone else None

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _on_exit(self) -> None:
        self._gone = True
        if self._fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
        self._close()
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)

    async def wait(self) -> int | None:
        """Returns once the process has ended; None: its exit status is not known."""
        if self._gone:
            return None
        loop = asyncio.get_running_loop()
        if self._exited is None:
            self._exited = loop.create_future()
            if self._fd is not None:
                loop.add_reader(self._fd, self._on_exit)
            else:
                self._poller = loop.create_task(self._poll())
        await asyncio.shield(self._exited)
        return None

    async def _poll(self) -> None:
        while is_running(self.pid, self.started):
            await asyncio.sleep(self.POLL_SECONDS)
        self._on_exit()
