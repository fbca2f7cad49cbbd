"""Bounded exponential backoff, with the clock and the randomness passed in so tests run instantly."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from meshpipe.clock import Clock

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """How often and how patiently a throttled call is retried.

    ``attempts`` counts every try, the first included. Delays double from ``base`` up to ``cap``; each is
    scaled by a random factor in [0.5, 1] so several clients throttled together do not retry in step.
    """

    attempts: int = 6
    base: float = 1.0
    cap: float = 20.0

    def delay(self, retry_number: int, rand: float) -> float:
        """Seconds to wait before retry number ``retry_number`` (1 for the first retry)."""
        raw = min(self.cap, self.base * (2 ** (retry_number - 1)))
        return raw * (0.5 + 0.5 * rand)


class RetriesExhausted(Exception):
    """Raised with the last error as ``__cause__`` when every attempt was throttled."""

    def __init__(self, attempts: int, last: BaseException) -> None:
        super().__init__(f"still failing after {attempts} attempts")
        self.attempts = attempts
        self.last = last


def call_with_backoff(fn: Callable[[], T], *, is_retryable: Callable[[BaseException], bool],
                      backoff: Backoff, clock: Clock,
                      rand: Callable[[], float] = random.random) -> T:
    """Call ``fn``; on a retryable error wait and try again, at most ``backoff.attempts`` times in all."""
    for attempt in range(1, backoff.attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            if attempt == backoff.attempts:
                raise RetriesExhausted(attempt, exc) from exc
            clock.sleep(backoff.delay(attempt, rand()))
    raise AssertionError("unreachable")  # pragma: no cover

