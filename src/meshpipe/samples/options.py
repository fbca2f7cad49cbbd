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

from meshpipe.argtypes import bounded

DEFAULT_PORT = 8080
_OPTION_WORD = re.compile(r"^--?[A-Za-z][A-Za-z0-9-]*$")
DEFAULT_HOST = "127.0.0.1"  # containers set HOST=0.0.0.0 (see the Dockerfiles)


ORIGINAL_PROGRAM = ("node", "server")


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
        argv = list(argv)
        if argv[:2] == list(ORIGINAL_PROGRAM):
            # The original sample's manifests start their command with their image's own program: the
            # same manifests run this sample's image unchanged.
            argv = argv[2:]
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


# --- faults, so that a bad version can be pushed on purpose ------------------------------------------------

# Failing one request in five is "0.2"; the delay is capped at ten minutes so a typo cannot hang a task.
_rate = bounded(float, 0.0, 1.0, not_a="a number between 0 and 1",
                outside="{value:g} is not between 0 and 1 (0.2 fails one request in five)")
_millis = bounded(int, 0, 600_000, not_a="a whole number of milliseconds",
                  outside="{value} is not 0-600000 milliseconds")


class FaultOptions:
    """``--fail-rate`` and ``--delay-ms`` (or ``FAIL_RATE`` and ``DELAY_MS``): the share of requests answered
    500 and the time added to every answer. Health checks are never affected, so a faulty version deploys
    and takes traffic, and it is its rollout that must catch it."""

    def __init__(self, fail_rate: float = 0.0, delay_ms: int = 0) -> None:
        self.fail_rate = fail_rate
        self.delay_ms = delay_ms

    @staticmethod
    def add_to(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--fail-rate", type=_rate, default=None,
                            help="share of requests answered 500, 0-1 (default: $FAIL_RATE, else 0)")
        parser.add_argument("--delay-ms", type=_millis, default=None,
                            help="milliseconds added to every answer (default: $DELAY_MS, else 0)")

    @classmethod
    def from_args(cls, parser: argparse.ArgumentParser, args: argparse.Namespace,
                  environ: Mapping[str, str]) -> FaultOptions:
        fail_rate, delay_ms = args.fail_rate, args.delay_ms
        try:
            if fail_rate is None:
                fail_rate = _rate(environ.get("FAIL_RATE") or "0")
            if delay_ms is None:
                delay_ms = _millis(environ.get("DELAY_MS") or "0")
        except argparse.ArgumentTypeError as exc:
            parser.error(f"{'FAIL_RATE' if fail_rate is None else 'DELAY_MS'}: {exc}")
        return cls(fail_rate, delay_ms)

    def __bool__(self) -> bool:
        return bool(self.fail_rate or self.delay_ms)
