"""Starting an app whose output is stamped with the time it was captured (see :mod:`stamp`).

The app writes to two pipes; a stamper process reads them and appends to the log. Both run in sessions of
their own, so both outlive the daemon: a restarted daemon adopts the app as before, and its output goes on
being stamped. The stamper is not the app's parent, so the pid the daemon watches, signals and adopts is
still the app's own, and so is its exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from meshpipe.engines.local.tasks import stamp

DRAIN_SECONDS = 1.0  # how long an app's exit waits for the stamper to write its last lines


def stamper_argv(out_fd: int, err_fd: int) -> list[str]:
    # -I -S: no site-packages and no environment: the stamper needs the standard library alone.
    return [sys.executable, "-I", "-S", stamp.__file__, str(out_fd), str(err_fd)]


async def spawn_stamped(argv: Sequence[str], env: Mapping[str, str], log_fd: int,
                        cwd: Path | None) -> tuple[asyncio.subprocess.Process, asyncio.subprocess.Process]:
    """Start ``argv`` with its stdout and stderr stamped into ``log_fd``: (the app, its stamper)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        stamper = await asyncio.create_subprocess_exec(
            *stamper_argv(out_r, err_r), stdin=asyncio.subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
            pass_fds=(out_r, err_r), start_new_session=True, close_fds=True)
        os.close(out_r)
        os.close(err_r)
        out_r = err_r = -1
        # Started after the stamper: the pipes' write ends are not inheritable, so the stamper holds none of
        # them and sees the end of the app's output when the app (and whatever inherited it) is gone.
        app = await asyncio.create_subprocess_exec(
            *argv, env=dict(env), stdin=asyncio.subprocess.DEVNULL, stdout=out_w, stderr=err_w,
            start_new_session=True, close_fds=True, cwd=cwd)
    finally:
        for fd in (out_r, err_r, out_w, err_w):  # a failed start closes the write ends: the stamper then ends
            if fd >= 0:
                os.close(fd)
    return app, stamper


async def drained(stamper: asyncio.subprocess.Process) -> None:
    """Once the app has exited: wait (briefly) for its last lines to reach the log, so that whoever reads
    the log next, the exit reason first, sees them. A process that inherited the app's output and lives on
    keeps the stamper running: it is not waited for beyond :data:`DRAIN_SECONDS`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(stamper.wait()), DRAIN_SECONDS)
