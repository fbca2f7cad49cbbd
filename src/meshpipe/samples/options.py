"""Command-line handling shared by the sample apps.

Task definitions often pass an option and its value as ONE argument (the seed's manifests say
``"-g Yo"`` and ``"-b http://hello-backend.demo.local/data"``), because the command is a list of strings
that no shell splits. The samples accept that form as well as the usual ``-g Yo`` and ``--greeting=Yo``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"  # containers set HOST=0.0.0.0 (see the Dockerfiles)


def split_joined_options(argv: Sequence[str]) -> list[str]:
    """``["-g Yo", "-m Have a great day!"]`` -> ``["-g", "Yo", "-m", "Have a great day!"]``.

    Only an argument that starts with a dash and has whitespace after its option word is split, once, at
    that whitespace; values that merely contain spaces (``-m`` followed by ``"Have a great day!"``) are
    left alone because they do not start with a dash.
    """
    out: list[str] = []
    for arg in argv:
        word, sep, rest = arg.partition(" ")
        is_option_word = len(word) > 1 and word.startswith("-") and "=" not in word
        if sep and is_option_word and rest.strip():
            out += [word, rest.strip()]
        else:
            out.append(arg)
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
