"""``meshpipe load``: a steady stream of GETs at a fixed rate, then latency percentiles and who answered.

The load is open-loop: request ``i`` is sent at ``start + i / rps`` whether or not earlier ones came back
(a slow version must not slow the load down and hide itself), with at most ``max_in_flight`` requests
outstanding; a request that would exceed it is counted as *not sent*. The mesh's sidecars name the
version that answered in ``x-meshpipe-version``, so the report shows the split a rollout made.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from meshpipe.errors import UserError

VERSION_HEADER = "x-meshpipe-version"
MAX_RPS = 20_000
MAX_DURATION = 3600.0


@dataclass(frozen=True)
class Sample:
    ms: float
    status: int  # 0: no answer
    version: str  # "" when the answer named none
    error: str = ""


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0-1) of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 1))))
    return sorted_values[rank - 1]


@dataclass
class VersionFigures:
    requests: int = 0
    errors: int = 0  # 5xx
    p99_ms: float | None = None
    share: float = 0.0  # percent of the answers


@dataclass
class LoadReport:
    url: str
    rps: float
    duration: float
    planned: int
    sent: int
    answered: int
    elapsed: float
    statuses: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # no answer, by reason
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    versions: dict[str, VersionFigures] = field(default_factory=dict)

    @property
    def achieved_rps(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0


def summarize(samples: Sequence[Sample], url: str, rps: float, duration: float, planned: int,
              elapsed: float) -> LoadReport:
    """The report of a run. Pure."""
    answered = [s for s in samples if s.status]
    times = sorted(s.ms for s in answered)
    report = LoadReport(url, rps, duration, planned, len(samples), len(answered), elapsed)
    report.statuses = dict(sorted(Counter(str(s.status) for s in answered).items()))
    report.failures = dict(Counter(s.error for s in samples if not s.status))
    report.latency_ms = {"p50": percentile(times, 0.50), "p90": percentile(times, 0.90),
                         "p99": percentile(times, 0.99), "max": times[-1] if times else None,
                         "mean": sum(times) / len(times) if times else None}
    by_version: dict[str, list[Sample]] = {}
    for s in answered:
        by_version.setdefault(s.version or "(none)", []).append(s)
    for version, got in sorted(by_version.items()):
        report.versions[version] = VersionFigures(
            requests=len(got), errors=sum(1 for s in got if s.status >= 500),
            p99_ms=percentile(sorted(s.ms for s in got), 0.99), share=100.0 * len(got) / len(answered))
    return report


def check_args(url: str, rps: float, duration: float, headers: Sequence[str]) -> dict[str, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{url!r} is not an http:// or https:// URL",
                        hint="e.g. meshpipe load http://127.0.0.1:PORT/backend/data --rps 50 --duration 10")
    if not 0 < rps <= MAX_RPS:
        raise UserError(f"--rps {rps:g} is not above 0 and at most {MAX_RPS}")
    if not 0 < duration <= MAX_DURATION:
        raise UserError(f"--duration {duration:g} is not above 0 and at most {MAX_DURATION:g} seconds")
    parsed: dict[str, str] = {}
    for h in headers:
        name, sep, value = h.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--header {h!r} is not NAME=VALUE, e.g. --header x-canary=always")
        parsed[name.strip()] = value
    return parsed


async def _run(url: str, rps: float, duration: float, headers: Mapping[str, str], timeout: float,
               max_in_flight: int) -> tuple[list[Sample], int, float]:
    import aiohttp

    planned = max(1, int(rps * duration))
    samples: list[Sample] = []
    in_flight = 0
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=max_in_flight, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def one() -> None:
            nonlocal in_flight
            started = loop.time()
            try:
                async with session.get(url, headers=dict(headers), allow_redirects=False) as resp:
                    await resp.read()
                    samples.append(Sample((loop.time() - started) * 1000, resp.status,
                                          resp.headers.get(VERSION_HEADER, "")))
            except TimeoutError:
                samples.append(Sample((loop.time() - started) * 1000, 0, "", f"no answer within {timeout:g} s"))
            except aiohttp.ClientError as exc:
                samples.append(Sample((loop.time() - started) * 1000, 0, "", type(exc).__name__))
            finally:
                in_flight -= 1

        begin = loop.time()
        tasks: list[asyncio.Task[None]] = []
        for i in range(planned):
            delay = begin + i / rps - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= max_in_flight:
                samples.append(Sample(0.0, 0, "", f"not sent: {max_in_flight} requests already in flight"))
                continue
            in_flight += 1
            tasks.append(asyncio.create_task(one()))
        if tasks:
            await asyncio.gather(*tasks)
        elapsed = loop.time() - begin
    return samples, planned, elapsed


def generate(url: str, rps: float, duration: float, headers: Sequence[str] = (), timeout: float = 10.0,
             max_in_flight: int = 256) -> LoadReport:
    """Send the load and return its report (blocks for about ``duration`` seconds)."""
    parsed = check_args(url, rps, duration, headers)
    started = time.monotonic()
    samples, planned, elapsed = asyncio.run(_run(url, rps, duration, parsed, timeout, max_in_flight))
    return summarize(samples, url, rps, duration, planned, elapsed or time.monotonic() - started)


def report_json(report: LoadReport) -> dict[str, Any]:
    return {"url": report.url, "rps": report.rps, "duration_s": report.duration, "planned": report.planned,
            "sent": report.sent, "answered": report.answered, "achieved_rps": round(report.achieved_rps, 1),
            "statuses": report.statuses, "failures": report.failures,
            "latency_ms": {k: None if v is None else round(v, 2) for k, v in report.latency_ms.items()},
            "versions": {v: {"requests": f.requests, "errors": f.errors, "share": round(f.share, 1),
                             "p99_ms": None if f.p99_ms is None else round(f.p99_ms, 2)}
                         for v, f in report.versions.items()}}
