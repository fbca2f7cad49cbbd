"""The environment's traffic figures, merged from every proxy: what ``stats``, ``GET /metrics`` and the
dashboard read.

The daemon asks each live proxy for its raw stats (``GET /stats/raw``: counters and every histogram
bucket) when someone asks, never on a timer, so an idle environment does no work for metrics. Histograms
have the same fixed buckets in every proxy, so merging is adding buckets, and a service's p99 is the
p99 of all its traffic, not the worst proxy's.

* :func:`scrape` reads every proxy (``admin port -> proxy name``) concurrently;
* :func:`by_version` merges the clusters of a direction by (service, version);
* :func:`exposition` writes the environment's Prometheus page (every proxy's series labelled with
  ``proxy``, ``service`` and ``version``, plus the control plane's own figures);
* :class:`SeriesRecorder` keeps a window of scrapes and turns them into per-version time series
  (requests/s, success rate, p50/p99 over each interval) for a live view.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshpipe.clock import SYSTEM_CLOCK, Clock
from meshpipe.engines.local.dataplane.metrics import BUCKET_BOUNDS_MS, LatencyHistogram, histogram_of

EGRESS = "egress"  # what callers' proxies sent to a version: each request once per hop
INGRESS = "ingress"  # what a version's own sidecars passed to its app


@dataclass(frozen=True)
class ProxyScrape:
    """One proxy's raw stats (``GET /stats/raw``) and the name it goes by: a task id, or ``gateway``."""

    proxy: str
    admin_port: int
    raw: Mapping[str, Any]


@dataclass
class VersionFigures:
    """One version's traffic, summed over proxies (counters) and merged (histogram)."""

    service: str
    version: str
    requests: int = 0
    errors: int = 0
    retries: int = 0
    timeouts: int = 0
    by_class: list[int] = field(default_factory=lambda: [0] * 6)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def add(self, cluster: Mapping[str, Any]) -> None:
        self.requests += int(cluster.get("requests") or 0)
        self.errors += int(cluster.get("errors") or 0)
        self.retries += int(cluster.get("retries") or 0)
        self.timeouts += int(cluster.get("timeouts") or 0)
        for i, n in enumerate(cluster.get("by_class") or ()):
            if i < len(self.by_class):
                self.by_class[i] += int(n)
        self.latency.add_raw(cluster.get("latency") or {})

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "retries": self.retries,
                "timeouts": self.timeouts, "responses": {f"{i}xx": n for i, n in enumerate(self.by_class) if i},
                **self.latency.summary()}


async def scrape(session: Any, proxies: Mapping[int, str], timeout: float = 2.0) -> list[ProxyScrape]:
    """Every proxy's raw stats, read concurrently (``session``: an aiohttp ClientSession); a proxy that
    does not answer in time is left out."""
    import aiohttp

    async def one(port: int, name: str) -> ProxyScrape | None:
        try:
            async with session.get(f"http://127.0.0.1:{port}/stats/raw",
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if resp.status != 200:
                    return None
                raw = await resp.json()
        except Exception:
            return None
        if not isinstance(raw, dict) or raw.get("bucket_count") != len(BUCKET_BOUNDS_MS):
            return None
        return ProxyScrape(name, port, raw)

    found = await asyncio.gather(*(one(port, name) for port, name in sorted(proxies.items())))
    return [s for s in found if s is not None]


def by_version(scrapes: list[ProxyScrape], service: str | None = None,
               direction: str = EGRESS) -> dict[tuple[str, str], VersionFigures]:
    """(service, version) -> figures of every cluster of ``direction`` reaching it, over all proxies."""
    out: dict[tuple[str, str], VersionFigures] = {}
    for s in scrapes:
        for cluster in s.raw.get("clusters", []):
            if cluster.get("direction") != direction or (service is not None and cluster.get("service") != service):
                continue
            key = (str(cluster["service"]), str(cluster["version"]))
            figures = out.get(key)
            if figures is None:
                figures = out[key] = VersionFigures(*key)
            figures.add(cluster)
    return out


def since(before: list[ProxyScrape], after: list[ProxyScrape]) -> list[ProxyScrape]:
    """What each proxy counted between two scrapes: ``after``'s clusters less ``before``'s (the same proxy
    and cluster). A proxy or cluster that is new, or restarted meanwhile, counts whole."""
    earlier = {(s.admin_port, c.get("name")): c for s in before for c in s.raw.get("clusters", [])}
    out = []
    for s in after:
        clusters = []
        for c in s.raw.get("clusters", []):
            old = earlier.get((s.admin_port, c.get("name")))
            clusters.append(c if old is None else _cluster_since(old, c))
        out.append(ProxyScrape(s.proxy, s.admin_port, {**s.raw, "clusters": clusters}))
    return out


def _cluster_since(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    if int(new.get("requests") or 0) < int(old.get("requests") or 0):
        return dict(new)  # the proxy restarted: everything it holds is new
    then, now = LatencyHistogram(), LatencyHistogram()
    then.add_raw(old.get("latency") or {})
    now.add_raw(new.get("latency") or {})
    counters = ("requests", "errors", "retries", "timeouts")
    return {**new, **{k: int(new.get(k) or 0) - int(old.get(k) or 0) for k in counters},
            "by_class": [int(a) - int(b) for a, b in zip(new.get("by_class") or (), old.get("by_class") or (),
                                                         strict=False)],
            "latency": now.subtract(then).raw()}


def service_stats(scrapes: list[ProxyScrape], service: str, proxies: int) -> dict[str, Any]:
    """What ``meshpipe stats SVC`` shows: per version, as its callers' proxies saw it."""
    versions = {ver: f.as_dict() for (_, ver), f in sorted(by_version(scrapes, service).items())}
    return {"service": service, "versions": versions, "proxies": proxies, "answered": len(scrapes)}


# --- the Prometheus page --------------------------------------------------------------------------------

@dataclass
class ControlFigures:
    """The control plane's own counts, as of one scrape."""

    pipeline_runs: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (service, outcome) -> runs
    route_changes: Mapping[str, int] = field(default_factory=dict)  # service ("" for gateway routes) -> changes
    task_restarts: Mapping[tuple[str, str, str], int] = field(default_factory=dict)  # (svc, ver, task) -> n
    weights: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (service, version) -> route weight
    healthy_tasks: Mapping[tuple[str, str], int] = field(default_factory=dict)
    rollout_decisions: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (service, decision) -> n
    config_generation: int | None = None


def exposition(scrapes: list[ProxyScrape], control: ControlFigures) -> bytes:
    """The environment's ``/metrics`` page: every proxy's Envoy series with ``proxy``, ``service`` and
    ``version`` labels (a cluster's series: the version it reaches; any other: the proxy's own), and
    the control plane's figures (``meshpipe_*``)."""
    from meshpipe.engines.local.dataplane.prometheus import Exposition

    page = Exposition()
    for s in scrapes:
        own = {"proxy": s.proxy, "service": str(s.raw.get("service") or ""),
               "version": str(s.raw.get("version") or "")}
        clusters = {c["name"]: {"service": str(c["service"]), "version": str(c["version"])}
                    for c in s.raw.get("clusters", [])}
        page.add_proxy(s.raw, own, clusters)
    for (service, outcome), n in sorted(control.pipeline_runs.items()):
        page.counter("meshpipe_pipeline_runs_total", "Pipeline runs recorded in state.db, by outcome "
                     "(InProgress, Succeeded, Failed).", {"service": service, "outcome": outcome}, n)
    for service, n in sorted(control.route_changes.items()):
        page.counter("meshpipe_route_changes_total", "Route and gateway-route changes committed since the daemon "
                     "started (service empty: gateway routes).", {"service": service}, n)
    for (service, version, task), n in sorted(control.task_restarts.items()):
        page.counter("meshpipe_task_restarts_total", "Times a task was restarted after its app or sidecar failed.",
                     {"service": service, "version": version, "task": task}, n)
    for (service, decision), n in sorted(control.rollout_decisions.items()):
        page.counter("meshpipe_rollout_decisions_total", "Rollout decisions since the daemon started: judged windows "
                     "by verdict (passed, failed, inconclusive), ended rollouts by outcome.",
                     {"service": service, "decision": decision}, n)
    for (service, version), weight in sorted(control.weights.items()):
        page.gauge("meshpipe_route_weight", "The version's weight in its service's route.",
                   {"service": service, "version": version}, weight)
    for (service, version), n in sorted(control.healthy_tasks.items()):
        page.gauge("meshpipe_healthy_tasks", "Tasks of the version passing their health checks.",
                   {"service": service, "version": version}, n)
    page.gauge("meshpipe_proxies_scraped", "Proxies that answered this scrape.", {}, len(scrapes))
    if control.config_generation is not None:
        page.gauge("meshpipe_config_generation", "Generation of the mesh config last pushed to the proxies.", {},
                   control.config_generation)
    return page.render()


# --- time series for a live view ------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """One interval of one version's traffic (``at``: its end, seconds on the recorder's clock)."""

    at: float
    requests: int
    rps: float
    success_rate: float | None  # share of tries not answered 5xx; None without traffic
    p50_ms: float | None
    p99_ms: float | None


_Key = tuple[str, str, str, str]  # proxy, cluster name, service, version


class SeriesRecorder:
    """Per-version time series from successive scrapes (callers' view: egress clusters).

    Call :meth:`add` with each scrape (whoever wants a live view decides how often); each call adds a
    point per version: the requests in the interval, their rate, success rate and latency quantiles from
    the interval's merged histogram. A proxy that restarted (its counters went down) counts from zero.
    Points older than ``window_s`` are dropped.
    """

    def __init__(self, window_s: float = 900.0, clock: Clock = SYSTEM_CLOCK) -> None:
        self.window_s = window_s
        self.clock = clock
        self._last: dict[_Key, tuple[int, int, LatencyHistogram]] = {}
        self._last_at: float | None = None
        self._points: dict[tuple[str, str], deque[Point]] = {}

    def add(self, scrapes: list[ProxyScrape], at: float | None = None) -> None:
        now = self.clock.now() if at is None else at
        current: dict[_Key, tuple[int, int, LatencyHistogram]] = {}
        interval: dict[tuple[str, str], tuple[int, int, LatencyHistogram]] = {}
        for s in scrapes:
            for c in s.raw.get("clusters", []):
                if c.get("direction") != EGRESS:
                    continue
                key = (s.proxy, str(c["name"]), str(c["service"]), str(c["version"]))
                requests, fives, hist = int(c["requests"]), int(c["by_class"][5]), histogram_of(c["latency"])
                current[key] = (requests, fives, hist)
                before = self._last.get(key)
                if before is None or requests < before[0]:
                    before = (0, 0, LatencyHistogram())  # new, or restarted: all it holds is new
                d_requests, d_fives = requests - before[0], max(0, fives - before[1])
                d_hist = hist.subtract(before[2])
                version = (key[2], key[3])
                total = interval.get(version)
                if total is None:
                    merged = LatencyHistogram()
                    total = (0, 0, merged)
                merged = total[2]
                for i, n in enumerate(d_hist.counts):
                    merged.counts[i] += n
                merged.count += d_hist.count
                merged.sum_ms += d_hist.sum_ms
                merged.max_ms = max(merged.max_ms, d_hist.max_ms)
                interval[version] = (total[0] + d_requests, total[1] + d_fives, merged)
        first = self._last_at is None
        elapsed = (now - self._last_at) if self._last_at is not None else 0.0
        self._last, self._last_at = current, now
        if first:
            return  # the first scrape only sets the baseline: its counters span the proxies' whole life
        for version, (requests, fives, hist) in interval.items():
            points = self._points.setdefault(version, deque())
            points.append(Point(
                at=now, requests=requests, rps=requests / elapsed if elapsed > 0 else 0.0,
                success_rate=(1.0 - fives / requests) if requests else None,
                p50_ms=hist.quantile(0.5), p99_ms=hist.quantile(0.99)))
        for points in self._points.values():
            while points and points[0].at < now - self.window_s:
                points.popleft()

    def latest(self) -> dict[tuple[str, str], Point]:
        """(service, version) -> its newest point."""
        return {key: points[-1] for key, points in self._points.items() if points}

    def series(self, service: str) -> dict[str, list[Point]]:
        """version -> its points, oldest first."""
        return {ver: list(points) for (svc, ver), points in sorted(self._points.items()) if svc == service}
