"""What a user sees when meshpipe itself fails: one line, and the traceback kept in a file for the report."""

from __future__ import annotations

import os
import tempfile
import traceback
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from meshpipe import __version__


def save_traceback(exc: BaseException, directory: str | None = None) -> Path:
    """Write ``exc``'s traceback (and meshpipe's version) to a new file of its own; return its path."""
    fd, name = tempfile.mkstemp(prefix="meshpipe-bug-", suffix=".txt", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"meshpipe {__version__}\n")
        f.write("".join(traceback.format_exception(exc)))
    return Path(name)


def report_bug(exc: BaseException, console: Console) -> None:
    summary = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    try:
        where = f"the traceback is in {save_traceback(exc)}"
    except OSError as cannot:
        where = f"the traceback could not be saved ({cannot.strerror or cannot})"
    console.print(f"error: meshpipe hit a bug ({escape(summary)}); {escape(where)}. "
                  "Re-run with --debug to see it, and include it when you report the bug.",
                  soft_wrap=True)
