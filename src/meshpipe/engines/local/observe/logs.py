"""A service's logs on the local engine: its apps' and its sidecars' output, interleaved by time.

Each task writes ``logs/<svc>-<ver>/<task>-app.log`` (the app's stdout and stderr) and ``<task>-envoy.log``
(its sidecar: a start line, then one JSON access-log line per request when the environment logs access).
An app's lines carry the time they were captured, put there by the task's stamper (``tasks.stamp``), which
is read and stripped (the stream, out or err, stays in the file for whoever reads it raw). Any other line's
time is the time it carries (an access log's ``start_time``, or a timestamp at its start); a line without one
(a log written before stamping, a sidecar's status line) takes the time of the line before it in the same
file, so untimed lines stay next to what surrounds them. ``follow`` stamps such lines with the time they
appear.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from meshpipe.clock import SYSTEM_CLOCK, Clock
from meshpipe.engines.base import LogLine
from meshpipe.engines.local.state.home import EnvPaths
from meshpipe.engines.local.tasks import stamp

_STAMP = re.compile(r"^\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)(Z|[+-]\d{2}:?\d{2})?")


def line_time(text: str) -> float | None:
    """The time a line carries: an access log's ``start_time`` or a leading ISO-8601 timestamp (UTC
    unless it says otherwise)."""
    stamp: str | None = None
    if text.startswith("{"):
        try:
            value = json.loads(text).get("start_time")
        except (ValueError, AttributeError):
            value = None
        stamp = value if isinstance(value, str) else None
    else:
        found = _STAMP.match(text)
        if found:
            stamp = found.group(1).replace(",", ".") + (found.group(2) or "Z")
    if stamp is None:
        return None
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def read_line(source: str, text: str) -> tuple[float | None, str, str]:
    """(time, source, text) of one line: a stamped line's capture time, stream and own text; any other
    line's own time (None if it carries none), as it is."""
    captured = stamp.parse(text)
    if captured is None:
        return line_time(text), source, text
    at, _, own = captured
    return line_time(at), source, own


def log_files(paths: EnvPaths, service: str, version: str | None = None) -> list[tuple[str, Path]]:
    """(source, file) for every task of the service's versions (or of one version) that has logs."""
    found = []
    for folder in sorted(paths.logs.glob(f"{service}-*")):
        ver = folder.name[len(service) + 1:]
        if not folder.is_dir() or "-" in ver or (version is not None and ver != version):
            continue  # another service whose name starts like this one (hello-web-x vs hello-web)
        for log in sorted(folder.glob("*.log")):
            task, _, kind = log.stem.rpartition("-")
            found.append((f"{task} {kind}", log))
    return found


def _read(path: Path) -> list[str]:
    """The rotated part first (``<name>.1``), then the live file."""
    lines: list[str] = []
    for part in (path.with_name(path.name + ".1"), path):
        try:
            lines += part.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            continue
    return lines


def stamped(source: str, lines: list[str]) -> list[LogLine]:
    out = []
    last = 0.0
    for line in lines:
        at, src, text = read_line(source, line)
        last = at if at is not None else last
        out.append(LogLine(last, src, text))
    return out


def interleave(files: list[tuple[str, Path]], tail: int | None = None) -> list[LogLine]:
    """Every line of ``files`` in time order (stable: lines of equal time keep their file order)."""
    every = [line for source, path in files for line in stamped(source, _read(path))]
    every.sort(key=lambda line: line.at)
    return every[-tail:] if tail else every


def follow(files: Callable[[], list[tuple[str, Path]]], stop: Callable[[], bool], every: float = 0.25,
           clock: Clock = SYSTEM_CLOCK) -> Iterator[LogLine]:
    """New lines as they are written (files that appear later, new tasks, are picked up too)."""
    offsets: dict[Path, int] = {path: path.stat().st_size for _, path in files() if path.exists()}
    while not stop():
        for source, path in files():
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            start = offsets.get(path, 0)
            if size < start:  # rotated: emptied in place
                start = 0
            if size == start:
                continue
            with path.open("rb") as fh:
                fh.seek(start)
                data = fh.read(size - start)
            complete = data.rfind(b"\n") + 1  # a partly written line waits for its end
            offsets[path] = start + complete
            now = clock.wall()
            for line in data[:complete].decode("utf-8", "replace").splitlines():
                at, src, text = read_line(source, line)
                yield LogLine(at or now, src, text)
        clock.sleep(every)
