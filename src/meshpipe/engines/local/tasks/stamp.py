"""Stamps an app's output with the time it was captured: ``<UTC time, ms>Z <out|err> <line>``.

Run per app process as ``python -I -S stamp.py OUT_FD ERR_FD``, reading the read ends of the app's stdout
and stderr pipes and appending stamped lines to its own stdout (the task's log file, opened with
O_APPEND so that rotation's truncation in place keeps working). It runs in a session of its own, so it
outlives a daemon that stops or is killed, as the app does, and ends when both pipes are closed: when the
app and every process that inherited its output have exited, after writing what they left.

It imports only builtin modules and none of the project (``-S``: not even site-packages), because one
runs beside every app: its memory is the cost of stamping. :func:`parse` reads the format back.
"""

from __future__ import annotations

import os
import select
import sys
import time
from _collections_abc import Callable  # as collections.abc, which would load more: os has this loaded

STREAMS = {1: b"out", 2: b"err"}
MAX_LINE = 64 * 1024  # a longer run without a newline is cut into lines of this size, to bound memory
_SHAPE = "dddd-dd-ddTdd:dd:dd.ddd"  # d: a digit; no ``re`` here, it would cost every stamper its memory


def prefix(at: float, stream: bytes) -> bytes:
    """The stamp a line captured at ``at`` (seconds since the epoch) on ``stream`` gets."""
    millis = int(at * 1000)
    return b"%s.%03dZ %s " % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000)).encode(),
                               millis % 1000, stream)


def parse(text: str) -> tuple[str, str, str] | None:
    """(ISO time with Z, stream, the line as the app wrote it) of a stamped line; None for any other line."""
    if len(text) < 29 or text[23:29] not in ("Z out ", "Z err "):
        return None
    if not all(c.isdigit() if want == "d" else c == want for c, want in zip(text, _SHAPE, strict=False)):
        return None
    return text[:24], text[25:28], text[29:]


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass  # a full disk or a removed log: keep draining the pipes, or the app would block on a full pipe


def run(sources: dict[int, bytes], sink: int, clock: Callable[[], float] = time.time) -> None:
    """Copy every line read from ``sources`` (fd -> stream name) to ``sink``, stamped, until all are closed."""
    poller = select.poll()
    partial = {}
    for fd in sources:
        poller.register(fd, select.POLLIN)
        partial[fd] = b""
    while partial:
        for fd, _ in poller.poll():
            if fd not in partial:
                continue
            chunk = os.read(fd, 65536)
            lines = (partial[fd] + chunk).split(b"\n")
            rest = lines.pop()
            if not chunk:  # closed: its last, unfinished line goes too
                poller.unregister(fd)
                del partial[fd]
                if rest:
                    lines.append(rest)
            else:
                while len(rest) >= MAX_LINE:
                    lines.append(rest[:MAX_LINE])
                    rest = rest[MAX_LINE:]
                partial[fd] = rest
            if lines:
                head = prefix(clock(), sources[fd])
                _write_all(sink, b"".join(head + line + b"\n" for line in lines))


def main(argv: list[str]) -> int:
    out_fd, err_fd = int(argv[1]), int(argv[2])
    run({out_fd: STREAMS[1], err_fd: STREAMS[2]}, 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
