"""Where the local engine's home is, and the names of an environment's files a read command opens, as plain
strings: the read commands find the daemon without loading ``home``'s paths and dataclasses."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing's own flag would load typing, a tenth of a read command
if TYPE_CHECKING:
    from collections.abc import Mapping

ENVS = "envs"  # <home>/envs/<env>: one folder per environment
DAEMON_JSON = "daemon.json"


def home_folder(environ: Mapping[str, str] | None = None) -> str:
    """The home folder: ``$MESHPIPE_HOME`` when set, else ``~/.meshpipe``; absolute."""
    environ = os.environ if environ is None else environ
    configured = environ.get("MESHPIPE_HOME", "").strip()
    if configured:
        folder = os.path.expanduser(configured)
    else:
        folder = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".meshpipe")
    return folder if os.path.isabs(folder) else os.path.join(os.getcwd(), folder)
