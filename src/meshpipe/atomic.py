"""Writing a file so that readers see the old content or the new, never a part: a temporary file beside
the target, renamed over it. The temporary file never outlives a failure."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes | str, *, mode: int = 0o600) -> Path:
    """Replace ``path`` with ``data`` in one step; the file gets ``mode`` (default: owner only).

    Raises :class:`OSError` on failure, with ``path`` untouched and no temporary file left behind.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            os.fchmod(handle.fileno(), mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
