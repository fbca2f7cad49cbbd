"""Time as the engines read it, wait for it and write it down.

Every part that polls, times out, backs off or stamps a record is given a :class:`Clock` rather than calling
:mod:`time` itself, so its tests run on a fake clock in virtual time. A moment written down (state.db, JSON
answers) is written by :func:`iso_utc` alone, so two columns of one row never disagree on precision.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol, overload


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a clock that never jumps (monotonic): for deadlines and intervals, not for records."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch: for what is recorded or shown."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread (the AWS engine's polls and retries)."""
        ...

    async def wait(self, seconds: float) -> None:
        """Let the event loop run meanwhile (the local daemon's tasks)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


@overload
def iso_utc(moment: datetime | float) -> str: ...
@overload
def iso_utc(moment: None) -> None: ...


def iso_utc(moment: datetime | float | None) -> str | None:
    """A moment (an aware datetime, or seconds since the epoch) in UTC, to the millisecond:
    ``2026-01-01T12:00:00.250Z``; None stays None. Fixed width, so the text sorts as the time does."""
    if moment is None:
        return None
    at = datetime.fromtimestamp(moment, UTC) if isinstance(moment, int | float) else moment.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
