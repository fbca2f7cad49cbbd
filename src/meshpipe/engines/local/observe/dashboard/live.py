"""Live updates for the pages that are open, and no work at all when none is.

Each open page is a :class:`Subscriber` with its :class:`View` (the topology, one service, or the events).
The hub sends a page a document only when it differs from what that page last got, as server-sent-event
messages in the page's queue.

Two things make the hub send: the daemon calls :meth:`LiveHub.changed` after every config publish (a route
or gateway route set, a service created, a task's health changed), so a weight change reaches the pages
as soon as the proxies have it; and, while at least one page is open, a sampler reads the calling proxies'
stats (:meth:`Source.scrape`) every ``sample_every`` seconds for the rates, counters and time series, and
looks for new events. The daemon's status is read again only after a publish or a new event. The sampler
and the sender start with the first page and stop with the last one: an environment nobody watches runs
no timer for the dashboard, and :meth:`changed` then returns at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from meshpipe.clock import SYSTEM_CLOCK, Clock
from meshpipe.engines.local.observe import metrics_view
from meshpipe.engines.local.observe.dashboard import views
from meshpipe.engines.local.observe.dashboard.source import Source

log = logging.getLogger("meshpipe.daemon")

SAMPLE_EVERY_S = 2.0
SERIES_WINDOW_S = 900.0
EVENTS_BACKLOG = 200  # events a page gets when it opens
QUEUE_MAX = 64  # messages waiting for a page; a page that falls this far behind is dropped (it reconnects)

TOPOLOGY, SERVICE, EVENTS = "topology", "service", "events"


@dataclass(frozen=True)
class View:
    kind: str  # TOPOLOGY | SERVICE | EVENTS
    service: str = ""


@dataclass(eq=False)
class Subscriber:
    view: View
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    last: dict[str, str] = field(default_factory=dict)  # event name -> the JSON last sent
    series_until: float = -math.inf  # the newest point this page has
    events_after: int = 0  # the newest event id this page has
    closed: bool = False

    def send(self, event: str, data: Any, dedupe: bool = True) -> None:
        """Queue one message unless it repeats the last one of its name."""
        if self.closed:
            return
        text = json.dumps(data, separators=(",", ":"))
        if dedupe and self.last.get(event) == text:
            return
        self.last[event] = text
        try:
            self.queue.put_nowait(f"event: {event}\ndata: {text}\n\n".encode())
        except asyncio.QueueFull:
            self.close()

    def close(self) -> None:
        """End the page's stream (its browser reconnects and starts afresh)."""
        if self.closed:
            return
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class LiveHub:
    def __init__(self, source: Source, sample_every: float = SAMPLE_EVERY_S,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.source = source
        self.sample_every = sample_every
        self.clock = clock
        self.recorder = metrics_view.SeriesRecorder(window_s=SERIES_WINDOW_S, clock=clock)
        self.subscribers: set[Subscriber] = set()
        self.samples = 0  # scrapes taken: how tests and the benchmark see that sampling stops
        self._totals: dict[tuple[str, str], metrics_view.VersionFigures] = {}
        self._latest: dict[tuple[str, str], metrics_view.Point] = {}
        self._dirty: asyncio.Event | None = None
        self._stale = True  # the status must be read again before the next send
        self._status: dict[str, Any] | None = None
        self._runs: dict[str, list[dict[str, Any]]] = {}
        self._topology_doc: tuple[dict[str, Any], Any, dict[str, Any]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refresh_lock: asyncio.Lock | None = None

    @property
    def running(self) -> bool:
        """Whether the sampler and sender run (only while a page is open)."""
        return bool(self._tasks)

    # -- pages come and go --

    async def subscribe(self, view: View) -> Subscriber:
        """A page opened: it gets the current documents at once, then changes."""
        self._loop = asyncio.get_running_loop()
        sub = Subscriber(view)
        if not self.subscribers:
            self._stale = True  # nothing was followed while no page was open
        self.subscribers.add(sub)
        await self._refresh([sub])
        if not self._tasks:
            self._dirty = asyncio.Event()
            self._tasks = [asyncio.create_task(self._sample_loop()), asyncio.create_task(self._send_loop())]
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.close()
        self.subscribers.discard(sub)
        if not self.subscribers:
            self._stop_tasks()

    def close(self) -> None:
        """The daemon stops: end every page's stream."""
        for sub in list(self.subscribers):
            self.unsubscribe(sub)
        self._stop_tasks()

    def _stop_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()

    # -- what makes it send --

    def changed(self, reason: str = "") -> None:
        """Something pages show changed (called after each config publish, from any thread)."""
        dirty, loop = self._dirty, self._loop
        if not self.subscribers or dirty is None or loop is None:
            return

        def mark() -> None:
            self._stale = True
            dirty.set()

        loop.call_soon_threadsafe(mark)

    async def _sample_loop(self) -> None:
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dashboard: reading the proxies' stats failed")
            if self._dirty is not None:
                self._dirty.set()
            await asyncio.sleep(self.sample_every)

    async def sample(self) -> None:
        """Read every proxy once: counters for the pages, a point for each version's time series."""
        scrapes = await self.source.scrape()
        self.samples += 1
        self.recorder.add(scrapes)
        self._totals = metrics_view.by_version(scrapes)
        self._latest = self.recorder.latest()

    async def _send_loop(self) -> None:
        assert self._dirty is not None
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._refresh(list(self.subscribers))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dashboard: building a page update failed")

    # -- building and sending the documents --

    async def _refresh(self, subs: list[Subscriber]) -> None:
        """Send each page what changed. The daemon's status is read again only when something may have
        changed it (a config publish, a new event, a page opening); otherwise a sample costs the scrape
        and a look for new events."""
        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        async with self._refresh_lock:
            subs = [s for s in subs if not s.closed]
            if not subs:
                return
            after = min(s.events_after for s in subs)
            new_events = [views.event(e) for e in self.source.events(after, EVENTS_BACKLOG)]
            if new_events or self._stale or self._status is None:
                self._stale = False
                self._status = await self.source.status()
                self._runs.clear()
            status = self._status
            nav = views.nav(status)
            now = self.clock.now()
            services: dict[str, dict[str, Any]] = {}
            for sub in subs:
                sub.send("nav", nav)
                view = sub.view
                if view.kind == TOPOLOGY:
                    sub.send("topology", self._topology(status))
                elif view.kind == SERVICE:
                    doc = services.get(view.service)
                    if doc is None:
                        doc = services[view.service] = await self._service(status, view.service)
                    sub.send("service", doc)
                    self._send_series(sub, now)
                mine = [e for e in new_events if e["id"] > sub.events_after
                        and (view.kind != SERVICE or e["service"] == view.service)]
                if new_events:
                    sub.events_after = max(sub.events_after, new_events[-1]["id"])
                if mine:
                    sub.send("events", mine, dedupe=False)

    def _topology(self, status: dict[str, Any]) -> dict[str, Any]:
        """The topology document, drawn again only when the status or the rates changed."""
        rates = views.rates_of(self._latest)
        cached = self._topology_doc
        if cached is not None and cached[0] is status and cached[1] == rates:
            return cached[2]
        doc = views.topology(status, self.source.backends(), self._latest)
        self._topology_doc = (status, rates, doc)
        return doc

    async def _service(self, status: dict[str, Any], name: str) -> dict[str, Any]:
        if not any(s["name"] == name for s in status.get("services", [])):
            return views.service(status, name, [], None)
        runs = self._runs.get(name)
        if runs is None or any(r.get("status") == "InProgress" for r in runs):
            # A run's stages move on without an event: read them again while one is in progress.
            runs = self._runs[name] = self.source.runs(name)[:views.MAX_RUNS]
        return views.service(status, name, runs, await self.source.rollout(name))

    def _send_series(self, sub: Subscriber, now: float) -> None:
        points = self.recorder.series(sub.view.service)
        doc = views.series(sub.view.service, points, self._totals, sub.series_until, now)
        newest = max((p.at for pts in points.values() for p in pts if p.at > sub.series_until), default=None)
        if newest is None and sub.last.get("totals") == json.dumps(doc["totals"], separators=(",", ":")):
            return  # nothing new: idle pages get no message
        sub.last["totals"] = json.dumps(doc["totals"], separators=(",", ":"))
        if newest is not None:
            sub.series_until = newest
        sub.send("series", doc, dedupe=False)

    async def snapshot(self, view: View) -> dict[str, Any]:
        """The documents a page of ``view`` gets when it opens (``GET /api/snapshot``)."""
        sub = Subscriber(view, asyncio.Queue())
        self._stale = True
        await self._refresh([sub])
        out: dict[str, Any] = {}
        while not sub.queue.empty():
            raw = sub.queue.get_nowait()
            if raw is None:
                break
            head, _, body = raw.decode().partition("\ndata: ")
            event = head.removeprefix("event: ")
            data = json.loads(body)
            out[event] = out.get(event, []) + data if event == EVENTS else data
        return out
