"""Traffic to each version of a service as its callers' proxies counted it: what ``stats`` prints and what a
rollout judges a version by."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class VersionStats:
    requests: int = 0
    errors: int = 0
    retries: int = 0
    timeouts: int = 0
    responses: dict[str, int] = field(default_factory=dict)  # by status class: "2xx" -> count
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VersionStats:
        return cls(requests=int(data.get("requests") or 0), errors=int(data.get("errors") or 0),
                   retries=int(data.get("retries") or 0), timeouts=int(data.get("timeouts") or 0),
                   responses={str(k): int(n) for k, n in (data.get("responses") or {}).items()},
                   p50_ms=data.get("p50_ms"), p99_ms=data.get("p99_ms"), max_ms=data.get("max_ms"),
                   mean_ms=data.get("mean_ms"))


@dataclass(frozen=True)
class ServiceStats:
    service: str
    versions: dict[str, VersionStats] = field(default_factory=dict)
    proxies: int = 0  # proxies asked
    answered: int = 0  # proxies that answered
    window_s: float | None = None  # the figures are of these last seconds (None: since each proxy started)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceStats:
        window = data.get("window_s")
        return cls(str(data["service"]),
                   {str(v): VersionStats.from_json(c) for v, c in (data.get("versions") or {}).items()},
                   int(data.get("proxies") or 0), int(data.get("answered") or 0),
                   None if window is None else float(window))

    def of(self, version: str) -> VersionStats:
        """The counters of ``version`` (zeros when no proxy sent it traffic)."""
        return self.versions.get(version, VersionStats())
