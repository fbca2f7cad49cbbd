"""Rollout policies: the rules their values follow, and the spec a service's rollout runs.

A policy comes from two places. The platform policy's ``rollout:`` section is the default every service
gets (``enabled: false`` by default: only services that ask are rolled out); a manifest's ``Rollout:``
section turns rollouts on for its service and overrides any of the platform's values, key by key
(``Analysis`` keys one by one). Webhooks add up: the platform's run for every service, then the
manifest's. :func:`resolve_rollout_spec` merges the two into a :class:`RolloutSpec`, which is what the
controller runs and what is stored with the rollout.

Strategies:

* ``canary``: the candidate's weight goes through explicit ``steps`` (e.g. 10, 25, 50, 100);
* ``linear``: ``step_percent`` at a time (20 gives 20, 40, 60, 80, 100);
* ``blue-green``: the candidate first answers only requests carrying the ``preview_header`` (a header
  route), then takes all traffic at once; the stable version stays up until the bake window passed.

Every step holds for ``interval`` seconds, then the window is judged (see ``analysis``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from meshpipe.mesh.headers import HeaderMatch
from meshpipe.text import shorten

Strategy = Literal["canary", "linear", "blue-green"]
WebhookType = Literal["pre-rollout", "rollout", "confirm-promotion", "post-rollout", "rollback"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
WEBHOOK_TYPES: tuple[WebhookType, ...] = get_args(WebhookType)

# Defaults a platform team would accept: four canary steps a minute apart, judged on at least 20
# requests each, rolled back after two bad windows; no more than 1 % of 5xx and a p99 at most 50 %
# slower than the stable version's.
DEFAULT_STRATEGY: Strategy = "canary"
DEFAULT_STEPS = (10, 25, 50, 100)
DEFAULT_STEP_PERCENT = 20
DEFAULT_INTERVAL = 60
DEFAULT_MIN_SUCCESS_RATE = 99.0
DEFAULT_MAX_P99_INCREASE_PERCENT = 50.0
DEFAULT_MIN_REQUESTS = 20
DEFAULT_FAILED_WINDOWS = 2
# What an inconclusive deadline does: roll back (the cautious choice) or promote.
ON_INCONCLUSIVE = ("rollback", "promote")
DEFAULT_ON_INCONCLUSIVE = "rollback"
DEFAULT_PREVIEW_HEADER = ("x-canary", "always")
DEFAULT_WEBHOOK_TIMEOUT = 10
DEFAULT_SCALE_DOWN_DELAY = 30.0

MAX_STEPS = 20
MAX_INTERVAL = 86_400
MAX_WEBHOOK_TIMEOUT = 300
MAX_WEBHOOKS = 20
MAX_METADATA = 20
MAX_METADATA_VALUE = 1024
MAX_URL = 2048
WEBHOOK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z", re.ASCII)


# --- rules on single values (the manifest's and the platform's models both call them) ----------------

def steps_problem(steps: list[int]) -> str | None:
    if not steps:
        return "must list at least one step, ending at 100, e.g. [10, 25, 50, 100]"
    if len(steps) > MAX_STEPS:
        return f"has {len(steps)} steps; at most {MAX_STEPS}"
    if any(not 1 <= s <= 100 for s in steps):
        return f"{shorten(steps)}: every step is a percentage of traffic, 1-100"
    if steps != sorted(set(steps)):
        return f"{shorten(steps)} must rise strictly, e.g. [10, 25, 50, 100]"
    if steps[-1] != 100:
        return f"{shorten(steps)} must end at 100: the last step promotes the new version"
    return None


def webhook_name_problem(name: str) -> str | None:
    if not WEBHOOK_NAME_RE.match(name):
        return f"{shorten(name)} is not a webhook name: 1-64 letters, digits, '-', '_' or '.'"
    return None


def webhook_url_problem(url: str) -> str | None:
    if len(url) > MAX_URL:
        return f"is {len(url)} characters long; a webhook URL has at most {MAX_URL}"
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        return f"{shorten(url)} holds whitespace or a control character"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        return f"{shorten(url)} is not a URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{shorten(url)} is not an http:// or https:// URL with a host"
    if parts.username or parts.password:
        return "must not carry credentials: put a token in Metadata, or in the URL's query if the webhook takes it there"
    return None


def metadata_problem(metadata: dict[str, str]) -> str | None:
    if len(metadata) > MAX_METADATA:
        return f"has {len(metadata)} entries; at most {MAX_METADATA}"
    for key, value in metadata.items():
        if len(value) > MAX_METADATA_VALUE:
            return f"{key}: is {len(value)} characters long; a metadata value has at most {MAX_METADATA_VALUE}"
    return None


def webhooks_problems(webhooks: Iterable[Any]) -> list[tuple[int, str]]:
    """Rules on the list as a whole: (index, problem) for each repeated name and for too many webhooks."""
    found: list[tuple[int, str]] = []
    first: dict[str, int] = {}
    items = list(webhooks)
    if len(items) > MAX_WEBHOOKS:
        found.append((-1, f"has {len(items)} webhooks; at most {MAX_WEBHOOKS}"))
    for i, webhook in enumerate(items):
        name = webhook.get("Name", webhook.get("name")) if isinstance(webhook, dict) else getattr(webhook, "name", None)
        if not isinstance(name, str):
            continue
        if name in first:
            found.append((i, f"{shorten(name)} is also the name of webhook {first[name]}; each webhook once"))
        else:
            first[name] = i
    return found


# --- the resolved spec -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Analysis:
    """How a window is judged. Rates in percent, latencies in milliseconds."""

    min_success_rate: float = DEFAULT_MIN_SUCCESS_RATE  # non-5xx answers of the candidate
    max_p99_ms: float | None = None  # the candidate's p99, absolute
    max_p99_increase_percent: float | None = DEFAULT_MAX_P99_INCREASE_PERCENT  # over the stable version's p99
    min_requests: int = DEFAULT_MIN_REQUESTS  # to the candidate in a window; fewer: inconclusive, the step holds
    failed_windows: int = DEFAULT_FAILED_WINDOWS  # failed windows in one rollout before it rolls back
    # How long a step may stay inconclusive before on_inconclusive decides; None: it holds until traffic
    # comes (or someone promotes or aborts it).
    inconclusive_deadline_s: float | None = None
    on_inconclusive: str = DEFAULT_ON_INCONCLUSIVE  # one of ON_INCONCLUSIVE


@dataclass(frozen=True)
class Webhook:
    name: str
    type: str  # one of WEBHOOK_TYPES
    url: str
    timeout_s: float = DEFAULT_WEBHOOK_TIMEOUT
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RolloutSpec:
    """What a service's rollout runs. Stored and shown under the JSON key ``plan`` (a rollout's state in
    state.db and ``rollout status --format json`` have always called it so)."""

    strategy: str
    steps: tuple[int, ...]  # the candidate's weight at each step; the last is 100 (promotion)
    interval_s: float
    analysis: Analysis = field(default_factory=Analysis)
    preview: HeaderMatch | None = None  # blue-green: requests with this header reach the candidate first
    webhooks: tuple[Webhook, ...] = ()
    # After a promotion, the versions left without weight are scaled to zero this much later.
    scale_down_delay_s: float = DEFAULT_SCALE_DOWN_DELAY

    def webhooks_of(self, kind: str) -> tuple[Webhook, ...]:
        return tuple(h for h in self.webhooks if h.type == kind)

    def describe(self) -> str:
        if self.strategy == "blue-green":
            assert self.preview is not None
            return (f"blue-green: preview on {self.preview.describe()}, then 100 %, "
                    f"{self.interval_s:g} s per window")
        return f"{self.strategy} {' → '.join(str(s) for s in self.steps)} %, {self.interval_s:g} s per step"

    def to_json(self) -> dict[str, Any]:
        a = self.analysis
        return {
            "strategy": self.strategy, "steps": list(self.steps), "interval_s": self.interval_s,
            "analysis": {"min_success_rate": a.min_success_rate, "max_p99_ms": a.max_p99_ms,
                         "max_p99_increase_percent": a.max_p99_increase_percent,
                         "min_requests": a.min_requests, "failed_windows": a.failed_windows,
                         "inconclusive_deadline_s": a.inconclusive_deadline_s,
                         "on_inconclusive": a.on_inconclusive},
            "preview": self.preview.to_json() if self.preview else None,
            "webhooks": [{"name": h.name, "type": h.type, "url": h.url, "timeout_s": h.timeout_s,
                          "metadata": dict(h.metadata)} for h in self.webhooks],
            "scale_down_delay_s": self.scale_down_delay_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutSpec:
        a = data.get("analysis") or {}
        return cls(
            strategy=str(data["strategy"]), steps=tuple(int(s) for s in data["steps"]),
            interval_s=float(data["interval_s"]),
            analysis=Analysis(min_success_rate=float(a.get("min_success_rate", DEFAULT_MIN_SUCCESS_RATE)),
                              max_p99_ms=_opt_float(a.get("max_p99_ms")),
                              max_p99_increase_percent=_opt_float(a.get("max_p99_increase_percent")),
                              min_requests=int(a.get("min_requests", DEFAULT_MIN_REQUESTS)),
                              failed_windows=int(a.get("failed_windows", DEFAULT_FAILED_WINDOWS)),
                              inconclusive_deadline_s=_opt_float(a.get("inconclusive_deadline_s")),
                              on_inconclusive=str(a.get("on_inconclusive", DEFAULT_ON_INCONCLUSIVE))),
            preview=HeaderMatch.from_json(data["preview"]) if data.get("preview") else None,
            webhooks=tuple(Webhook(name=str(h["name"]), type=str(h["type"]), url=str(h["url"]),
                                   timeout_s=float(h.get("timeout_s", DEFAULT_WEBHOOK_TIMEOUT)),
                                   # a mapping, or the pairs dataclasses.asdict makes of it
                                   metadata=tuple(sorted((str(k), str(v)) for k, v in
                                                         dict(h.get("metadata") or {}).items())))
                           for h in data.get("webhooks") or ()),
            scale_down_delay_s=float(data.get("scale_down_delay_s", DEFAULT_SCALE_DOWN_DELAY)),
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def linear_steps(step_percent: int) -> tuple[int, ...]:
    """20 -> (20, 40, 60, 80, 100); 30 -> (30, 60, 90, 100)."""
    return (*range(step_percent, 100, step_percent), 100)


def _pick(name: str, section: Any, defaults: Any) -> Any:
    """The manifest's value when it wrote one, else the platform's."""
    if section is not None and name in section.model_fields_set:
        return getattr(section, name)
    return getattr(defaults, name)


def _webhook(webhook: Any) -> Webhook:
    return Webhook(name=webhook.name, type=webhook.type, url=webhook.url, timeout_s=float(webhook.timeout),
                   metadata=tuple(sorted(webhook.metadata.items())))


def resolve_rollout_spec(defaults: Any, section: Any, *, force: bool = False) -> RolloutSpec | None:
    """The rollout spec of a service from the platform's ``defaults`` (``platform.RolloutDefaults``) and the
    manifest's ``section`` (``manifest.model.Rollout`` or None). None when rollouts are off for the
    service, unless ``force`` (a rollout started by hand)."""
    if section is not None:
        enabled = section.enabled if "enabled" in section.model_fields_set else True
    else:
        enabled = defaults.enabled
    if not enabled and not force:
        return None
    strategy = _pick("strategy", section, defaults)
    if strategy == "linear":
        steps = linear_steps(_pick("step_percent", section, defaults))
    elif strategy == "blue-green":
        steps = (100,)
    else:
        steps = tuple(_pick("steps", section, defaults))
    d_analysis = defaults.analysis
    s_analysis = section.analysis if section is not None and "analysis" in section.model_fields_set else None
    analysis = Analysis(**{name: _pick(name, s_analysis, d_analysis) for name in (
        "min_success_rate", "max_p99_ms", "max_p99_increase_percent", "min_requests", "failed_windows",
        "on_inconclusive")})
    deadline = _pick("inconclusive_deadline", s_analysis, d_analysis)
    analysis = dataclasses.replace(analysis, inconclusive_deadline_s=None if deadline is None else float(deadline))
    preview = None
    if strategy == "blue-green":
        header = _pick("preview_header", section, defaults)
        preview = HeaderMatch(header.name, header.value, "exact")
    webhooks = tuple(_webhook(h) for h in defaults.webhooks)
    if section is not None and section.webhooks:
        webhooks += tuple(_webhook(h) for h in section.webhooks)
    return RolloutSpec(strategy=strategy, steps=steps, interval_s=float(_pick("interval", section, defaults)),
                       analysis=analysis, preview=preview, webhooks=webhooks,
                       scale_down_delay_s=float(_pick("scale_down_delay", section, defaults)))
