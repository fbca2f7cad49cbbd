"""The one fake of :class:`meshpipe.clock.Clock`: time moves only when the code under test sleeps or waits,
or when the test moves it (``clock.t``); with ``tick``, every read of the wall clock moves it on by that much
too, so stamps written one after another differ."""

from __future__ import annotations

import asyncio


class FakeClock:
    def __init__(self, start: float = 0.0, tick: float = 0.0) -> None:
        self.t = start
        self.tick = tick
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        self.t += self.tick
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    async def wait(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)
