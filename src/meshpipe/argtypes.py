"""Command-line values that must be a number within bounds, as argparse ``type=`` callables.

The proxy process and the sample apps stand apart from the rest of meshpipe but read their numbers the
same way: a value that is not a number and a value out of bounds each get their own message, and both
reach the user through argparse's usage error (exit status 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

N = TypeVar("N", int, float)


def bounded(convert: Callable[[str], N], low: N, high: N, *, not_a: str,
            outside: str) -> Callable[[str], N]:
    """A ``type=`` callable: ``convert(text)``, refused unless ``low <= value <= high``.

    ``not_a`` completes "'<text>' is not ..."; ``outside`` is a format string given ``value``.
    """

    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {not_a}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(outside.format(value=value))
        return value

    return parse
