"""Command-line handling shared by the sample apps.

Task definitions often pass an option and its value as ONE argument (the original sample's manifests say
``"-g Yo"`` and ``"-b http://hello-backend.demo.local/data"``), because the command is a list of strings
that no shell splits. The samples accept that form as well as the usual ``-g Yo`` and ``--greeting=Yo``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence

DEFAULT_PORT = 8080
_OPTION_WORD = re.compile(r"^--?[A-Za-z][A-Za-z0-9-]*$")
DEFAULT_HOST = "127.0.0.1"  # containers set HOST=0.0.0.0 (see the Dockerfiles)


def split_joined_options(argv: Sequence[str]) -> list[str]:
    """``["-g Yo", "-m Have a great day!"]`` -> ``["-g", "Yo", "-m", "Have a great day!"]``.

    Only an argument that starts with an option word followed by whitespace is split, once, at that
    whitespace. An argument right after a bare option word (``"-m", "- with a dash"``) is that option's
    value and is left alone, as are values that merely contain spaces.
    """
    out: list[str] = []
    after_bare_option = False
    for arg in argv:
        word, sep, rest = arg.partition(" ")
        if not after_bare_option and sep and _OPTION_WORD.match(word) and rest.strip():
            out += [word, rest.strip()]
            after_bare_option = False
        else:
            out.append(arg)
            after_bare_option = bool(_OPTION_WORD.match(arg)) and not after_bare_option
    return out


class SampleArgumentParser(argparse.ArgumentParser):
    """An argparse parser that also takes joined option words and learns the port and host from the env."""

    def add_listen_options(self) -> None:
        self.add_argument("-p", "--port", type=int, default=None,
                          help=f"port to listen on (default: $PORT, else {DEFAULT_PORT}; 0: any free port)")
        self.add_argument("--host", default=None,
                          help=f"address to listen on (default: $HOST, else {DEFAULT_HOST})")

    def parse_sample_args(self, argv: Sequence[str],
                          environ: Mapping[str, str] | None = None) -> argparse.Namespace:
        environ = os.environ if environ is None else environ
        args = self.parse_args(split_joined_options(argv))
        if args.port is None:
            raw = environ.get("PORT", "")
            if raw:
                try:
                    args.port = int(raw)
                except ValueError:
                    self.error(f"PORT={raw!r} is not a port number")
            else:
                args.port = DEFAULT_PORT
        if not 0 <= args.port <= 65535:
            self.error(f"port {args.port} is not 0-65535")
        if args.host is None:
            args.host = environ.get("HOST") or DEFAULT_HOST
        return args
