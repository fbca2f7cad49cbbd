"""The daemon's rollout controller: it runs ``meshpipe.delivery.machine`` for every service with a rollout.

Each running rollout has a driver task that sleeps until its next decision (or until a control wakes it),
then does the I/O the machine asks for: it takes a snapshot of the proxies' counters, calls the webhooks,
hands both to the machine, stores the new state in state.db, records the machine's events, and makes the
mesh look the way the rollout wants (route weights, the preview header route), pushing the config to
every proxy. The state is stored *before* the route is applied, and the route is derived from the state,
so a daemon killed at any moment resumes the rollout at the same step with its windows and figures: on
start it applies the route the stored state wants and carries on. A window cut by the restart is judged
on what the proxies counted meanwhile (their counters restart with them; see ``delivery.analysis``).

One rollout runs per service. A newer version's rollout supersedes the running one: the older candidate's
share goes back to the versions that had it before, and the newer one starts from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshpipe.clock import SYSTEM_CLOCK, Clock, iso_utc
from meshpipe.delivery import machine as m
from meshpipe.delivery.analysis import Counters, Snapshot, snapshot_from_json
from meshpipe.delivery.policy import RolloutSpec, Webhook
from meshpipe.engines.local.state.store import StateStore
from meshpipe.errors import ConflictError, NotFoundError
from meshpipe.mesh.headers import HeaderMatch
from meshpipe.mesh.routing import WeightedTarget, make_header_route, make_route
from meshpipe.naming import header_route_name
from meshpipe.status import RolloutPhase, RolloutStatus, VersionStatus

log = logging.getLogger("meshpipe.daemon")

ROLLOUT_OWNER = "rollout"  # the header routes the controller made (its previews)

SnapshotFn = Callable[[str], Awaitable[Snapshot]]
WebhooksFn = Callable[[Sequence[Webhook], dict[str, Any]], Awaitable[list[m.WebhookResult]]]
PublishFn = Callable[[str], Awaitable[object]]


# --- the status document -----------------------------------------------------------------------------------

def status_json(r: m.Rollout, environment: str, now: float) -> dict[str, Any]:
    targets, preview = m.desired(r)
    decision = r.next_decision_at if not r.paused and not r.finished else None
    return {
        "id": r.id, "environment": environment, "service": r.service, "candidate": r.candidate, "stable": r.stable,
        "strategy": r.spec.strategy, "plan": r.spec.to_json(), "describe": r.spec.describe(),
        "status": r.status, "phase": r.phase, "paused": r.paused, "step": r.step + 1, "steps": r.steps_total(),
        "candidate_weight": r.weight(),
        "weights": {t.version: t.weight for t in targets},
        "preview": preview.to_json() if preview else None,
        "base": r.base, "failed_windows": r.failed_windows, "failed_windows_allowed": r.spec.analysis.failed_windows,
        # Steps count from 1 here, as "step" above and every command's output do (the state counts from 0).
        "windows": [{**w.to_json(), "step": w.step + 1, "started_at": iso_utc(w.started_at), "due_at": iso_utc(w.due_at),
                     "decided_at": iso_utc(w.decided_at), "decision_lag_s": round(w.decided_at - w.due_at, 3)}
                    for w in r.windows],
        "window_started_at": iso_utc(r.window_started_at) if not r.finished else None,
        "next_decision_at": iso_utc(decision), "next_decision_in_s": None if decision is None else round(
            max(0.0, decision - now), 1),
        "confirmations": [h.to_json() for h in r.confirmations],
        "reason": r.reason, "started_by": r.started_by, "holding": m.holding(r),
        "started_at": iso_utc(r.started_at), "finished_at": iso_utc(r.finished_at),
    }


# --- the controller ----------------------------------------------------------------------------------------

@dataclass
class _Driver:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    rollout: m.Rollout | None = None


@dataclass(eq=False)
class RolloutController:
    store: StateStore
    environment: str
    publish: PublishFn
    snapshot: SnapshotFn
    call_webhooks: WebhooksFn
    bounds: Sequence[float]
    clock: Clock = SYSTEM_CLOCK
    drivers: dict[str, _Driver] = field(default_factory=dict, init=False)
    stopping: bool = field(default=False, init=False)
    # Decisions taken since the daemon started, by (service, decision): each judged window by its verdict
    # (passed, failed, inconclusive) and each ending by its outcome (promoted, rolled-back, halted,
    # superseded). meshpipe_rollout_decisions_total.
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter, init=False)
    _counted: dict[int, tuple[int, bool]] = field(default_factory=dict, init=False)  # rollout id -> (windows, end)

    def _driver(self, service: str) -> _Driver:
        driver = self.drivers.get(service)
        if driver is None:
            driver = self.drivers[service] = _Driver()
        return driver

    # -- life cycle --

    async def restore(self) -> list[str]:
        """After a daemon start: call webhooks a crash left uncalled, and drive every running rollout on."""
        for r in self.store.finished_rollouts_with_pending_hooks():
            await self._run_pending_webhooks(r)
        resumed = []
        for r in self.store.running_rollouts():
            driver = self._driver(r.service)
            driver.rollout = r
            if r.id is not None:  # decided before this start: not counted again
                self._counted[r.id] = (len(r.windows), False)
            m.restart_window(r, self.clock.wall(), await self._counters(r))
            self.store.save_rollout(r)
            self._event(r, f"resumed after a daemon start at {_where(r)}, {len(r.windows)} window(s) judged, "
                           f"{r.failed_windows} failed" + ("; the window in progress starts over"
                                                           if r.phase in (RolloutPhase.STEP, RolloutPhase.PREVIEW) and not r.paused else ""))
            self._spawn(r.service)
            resumed.append(r.service)
        return resumed

    def stop(self) -> None:
        self.stopping = True
        for driver in self.drivers.values():
            if driver.task is not None:
                driver.task.cancel()

    def _spawn(self, service: str) -> None:
        driver = self._driver(service)
        if driver.task is None or driver.task.done():
            driver.task = asyncio.create_task(self._drive(service), name=f"rollout {service}")

    # -- starting --

    async def start(self, service: str, version: str, plan: RolloutSpec, started_by: str) -> dict[str, Any]:
        """Start a rollout of ``version`` (deployed), superseding a running one of another version."""
        driver = self._driver(service)
        async with driver.lock:
            row = self.store.version(service, version)
            if row is None:
                raise NotFoundError(f"version {version} of {service} does not exist",
                                    hint=f"list versions with: meshpipe versions {service}")
            if row.status != VersionStatus.CREATE_COMPLETE:
                raise ConflictError(f"version {version} of {service} is {row.status}; only {VersionStatus.CREATE_COMPLETE} "
                                    "versions can be rolled out")
            if row.scaled_down:
                raise ConflictError(f"version {version} of {service} is scaled down: it runs no task",
                                    hint=f"bring it back first: meshpipe version scale {service} {version} --tasks 2")
            if plan.preview is not None:
                owner = self.store.header_route_owner(service, header_route_name(service, plan.preview.key))
                if owner not in (None, ROLLOUT_OWNER):
                    raise ConflictError(f"the header route of {plan.preview.name} on {service} was set by hand; "
                                        "the blue-green preview needs that header",
                                        hint=f"delete it first: meshpipe route delete {service} --header "
                                             f"{plan.preview.name}")
            now = self.clock.wall()
            current = driver.rollout if driver.rollout is not None and not driver.rollout.finished else None
            if current is not None and current.candidate == version:
                return status_json(current, self.environment, now)
            route = self.store.route(service)
            if current is not None:
                base = dict(current.base)
                if version in base:
                    raise ConflictError(f"{version} is the stable version the running rollout of {current.candidate} "
                                        "moves traffic from: there is nothing to roll out to it",
                                        hint=f"to send all traffic back to it: meshpipe rollout abort {service}")
            elif route is None or not any(t.weight for t in route.targets):
                return await self._first_version(service, version, plan, started_by, now)
            else:
                base = {t.version: t.weight for t in route.targets if t.weight > 0 and t.version != version}
                if not base:
                    raise ConflictError(f"{version} already takes all of {service}'s traffic: nothing to roll out")
            # The new rollout is made (and can be refused) before the running one is superseded.
            r, events = m.start(service, version, base, plan, now, started_by)
            if current is not None:
                self._record(current, m.supersede(current, now, version))
            self.store.insert_rollout(r, iso_utc(r.started_at))
            driver.rollout = r
            self._record(r, events)
            await self._apply(r, f"rollout of {version} started")
            if not plan.webhooks_of("pre-rollout"):
                # Nothing to wait for: the first step is taken before the caller hears back.
                await self._tick(r)
        self._spawn(service)
        driver.wake.set()
        return status_json(r, self.environment, now)

    async def _first_version(self, service: str, version: str, plan: RolloutSpec, started_by: str,
                             now: float) -> dict[str, Any]:
        """A service's first version has nothing to be compared with: it takes all traffic at once."""
        r, _ = m.start(service, version, {}, plan, now, started_by)
        r.status, r.phase, r.finished_at = RolloutStatus.PROMOTED, RolloutPhase.DONE, now
        r.reason = "the service's first version: nothing to roll out from, it takes all traffic"
        self.store.insert_rollout(r, iso_utc(r.started_at))
        self._driver(service).rollout = r
        self._count_decisions(r)
        self._event(r, f"{version} takes all traffic: {r.reason}")
        self.store.set_route(make_route(service, (WeightedTarget(version, 100),)))
        await self.publish(f"first version {version} of {service} routed")
        return status_json(r, self.environment, now)

    # -- controls --

    async def control(self, service: str, action: str) -> dict[str, Any]:
        """``pause``, ``resume``, ``abort`` or ``promote`` the running rollout of ``service``."""
        driver = self._driver(service)
        async with driver.lock:
            r = driver.rollout
            if r is None or r.finished:
                latest = r or self.store.latest_rollout(service)
                raise ConflictError(f"no rollout of {service} is running"
                                    + (f" (the last one, of {latest.candidate}, {latest.status})" if latest else ""),
                                    hint=f"start one with: meshpipe rollout start {service} VERSION")
            now = self.clock.wall()
            if action == "pause":
                events = m.pause(r, now)
            elif action == "resume":
                events = m.resume(r, now, await self._counters(r))
            elif action == "abort":
                events = m.abort(r, now)
            elif action == "promote":
                events = m.promote(r, now)
            else:
                raise ValueError(action)
            self._record(r, events)
            await self._apply(r, f"rollout of {r.candidate}: {action}")
            await self._run_pending_webhooks(r)
        driver.wake.set()
        return status_json(r, self.environment, self.clock.wall())

    def status(self, service: str) -> dict[str, Any]:
        driver = self.drivers.get(service)
        r = driver.rollout if driver is not None and driver.rollout is not None else self.store.latest_rollout(service)
        if r is None:
            raise NotFoundError(f"{service} has had no rollout yet",
                                hint=f"push a manifest with a Rollout section, or: meshpipe rollout start {service} VERSION")
        return status_json(r, self.environment, self.clock.wall())

    def wake(self, service: str) -> None:
        """Something changed under the service (a version deleted): its driver looks now, not at its next decision."""
        driver = self.drivers.get(service)
        if driver is not None:
            driver.wake.set()

    def running(self, service: str) -> bool:
        driver = self.drivers.get(service)
        return bool(driver and driver.rollout and not driver.rollout.finished)

    # -- the driver --

    async def _drive(self, service: str) -> None:
        driver = self._driver(service)
        while not self.stopping:
            async with driver.lock:
                # Cleared before deciding, so a control that comes in after this step still wakes the wait.
                driver.wake.clear()
                r = driver.rollout
                if r is None or r.finished:
                    return
                try:
                    await self._tick(r)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("rollout of %s: a step failed; trying again shortly", service)
                    await asyncio.sleep(1.0)
                    continue
                delay = None if r.finished or r.paused or r.next_decision_at is None else \
                    max(0.0, r.next_decision_at - self.clock.wall())
            if r.finished:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(driver.wake.wait(), delay)

    async def _tick(self, r: m.Rollout) -> None:
        if not self._versions_still_there(r):
            await self._apply(r, f"rollout of {r.candidate} ended")
            await self._run_pending_webhooks(r)
            return
        await self._apply(r, f"rollout of {r.candidate}")  # after a restart: the route the state wants
        kind = m.due(r, self.clock.wall())
        if kind is None:
            return
        counters = await self._counters(r)
        now = self.clock.wall()  # the window ends when its counters were read
        if kind == "begin":
            results = await self.call_webhooks(r.spec.webhooks_of("pre-rollout"), self._payload(r, None))
            events = m.begin(r, now, counters, results)
        elif kind == "window":
            candidate, stable = m.window_figures(r, counters, self.bounds)
            window = {"candidate": candidate.to_json(), "stable": stable.to_json()}
            results = await self.call_webhooks(r.spec.webhooks_of("rollout"), self._payload(r, window))
            events = m.conclude(r, now, counters, self.bounds, results)
        else:
            results = await self.call_webhooks(r.spec.webhooks_of("confirm-promotion"), self._payload(r, None))
            events = m.confirm(r, self.clock.wall(), counters, results)
        self._record(r, events)
        await self._apply(r, f"rollout of {r.candidate}: {kind}")
        await self._run_pending_webhooks(r)

    def _versions_still_there(self, r: m.Rollout) -> bool:
        """A version deleted under a rollout ends it: the candidate (rolled back), or a base version (dropped)."""
        candidate = self.store.version(r.service, r.candidate)
        gone = [v for v in r.base if (row := self.store.version(r.service, v)) is None
                or row.status != VersionStatus.CREATE_COMPLETE]
        for v in gone:
            del r.base[v]
        if candidate is None or candidate.status != VersionStatus.CREATE_COMPLETE:
            self._record(r, m.fail(r, self.clock.wall(), f"the new version {r.candidate} was deleted"))
            return False
        if not r.base:
            self._record(r, m.fail(r, self.clock.wall(), "every version it was rolled out from was deleted"))
            return False
        if gone:
            self.store.save_rollout(r)
        return True

    async def _counters(self, r: m.Rollout) -> dict[str, dict[str, Counters]]:
        """The proxies' counters now; a proxy that did not answer keeps the figures it had at the window's
        start (so that it does not count whole at the next window)."""
        fresh = dict(await self.snapshot(r.service))
        for proxy, versions in snapshot_from_json(r.baseline).items():
            fresh.setdefault(proxy, versions)
        return {p: dict(v) for p, v in fresh.items()}

    def _payload(self, r: m.Rollout, window: dict[str, Any] | None) -> dict[str, Any]:
        targets, preview = m.desired(r)
        return {"environment": self.environment, "service": r.service, "candidate": r.candidate,
                "stable": r.stable, "strategy": r.spec.strategy, "status": r.status, "phase": r.phase,
                "step": r.step + 1, "steps": r.steps_total(), "weights": {t.version: t.weight for t in targets},
                "preview": preview.to_json() if preview else None, "failed_windows": r.failed_windows,
                "window": window, "reason": r.reason}

    # -- effects --

    def _record(self, r: m.Rollout, events: list[str]) -> None:
        if r.id is not None:
            self.store.save_rollout(r)
        self._count_decisions(r)
        for message in events:
            self._event(r, message)

    def _count_decisions(self, r: m.Rollout) -> None:
        key = r.id if r.id is not None else -id(r)
        windows, ended = self._counted.get(key, (0, False))
        for w in r.windows[windows:]:
            self.decisions[(r.service, w.verdict)] += 1
        if r.finished and not ended:
            self.decisions[(r.service, r.status)] += 1
            # Once per ending: the versions it left without weight go to zero tasks, now or later.
            for version, at, why in m.scale_downs(r):
                self.store.schedule_scale_down(r.service, version, at, why)
        self._counted[key] = (len(r.windows), r.finished)

    def busy_versions(self) -> set[tuple[str, str]]:
        """Versions a running rollout moves traffic between: never scaled down under it."""
        busy: set[tuple[str, str]] = set()
        for service, driver in self.drivers.items():
            r = driver.rollout
            if r is not None and not r.finished:
                busy.add((service, r.candidate))
                busy.update((service, v) for v in r.base)
        return busy

    def _event(self, r: m.Rollout, message: str) -> None:
        log.info("rollout of %s %s: %s", r.service, r.candidate, message)
        self.store.add_event("rollout", message, r.service, r.candidate)

    async def _apply(self, r: m.Rollout, why: str) -> None:
        """Make the service's route and preview route what the rollout wants; push only when they change."""
        if not r.base and r.status != RolloutStatus.PROMOTED:
            return  # nothing left to route to
        targets, preview = m.desired(r)
        changed = False
        route = self.store.route(r.service)
        if route is None or route.targets != targets:
            self.store.set_route(make_route(r.service, targets))
            changed = True
        changed |= self._apply_preview(r.service, r.candidate, preview)
        if changed:
            await self.publish(why)

    def _apply_preview(self, service: str, candidate: str, preview: HeaderMatch | None) -> bool:
        mine = [h for h in self.store.header_routes(service).get(service, [])
                if self.store.header_route_owner(service, h.name) == ROLLOUT_OWNER]
        wanted = make_header_route(service, [preview], [WeightedTarget(candidate, 100)]) if preview else None
        changed = False
        for h in mine:
            if wanted is None or h.name != wanted.name:
                self.store.delete_header_route(service, h.name, missing_ok=True)
                changed = True
        if wanted is not None and not any(h == wanted for h in mine):
            if self.store.header_route_owner(service, wanted.name) not in (None, ROLLOUT_OWNER):
                raise ConflictError(f"header route {header_route_name(service, preview.key if preview else '')} "
                                    f"of {service} was set by hand; the blue-green preview needs its header")
            self.store.set_header_route(wanted, owner=ROLLOUT_OWNER)
            changed = True
        return changed

    async def _run_pending_webhooks(self, r: m.Rollout) -> None:
        while r.pending_webhooks:
            kind = r.pending_webhooks[0]
            results = await self.call_webhooks(r.spec.webhooks_of(kind), self._payload(r, None))
            for h in results:
                self._event(r, f"{kind} webhook {h.name}: {h.detail}")
            r.pending_webhooks.pop(0)
            if r.id is not None:
                self.store.save_rollout(r)


def _where(r: m.Rollout) -> str:
    if r.phase == RolloutPhase.PRE_ROLLOUT:
        return "the start"
    if r.phase == RolloutPhase.PREVIEW:
        return "the preview"
    if r.phase == RolloutPhase.CONFIRMING:
        return "the promotion (awaiting confirm-promotion)"
    return f"step {r.step + 1}/{r.steps_total()} ({r.weight()} %)"


def counters_from_stats(answer: dict[str, Any], service: str) -> dict[str, Counters]:
    """A proxy's ``/stats`` answer -> the counters of each version of ``service`` it sent traffic to."""
    upstream = (answer or {}).get("upstreams", {}).get(service, {})
    return {version: Counters(int(c.get("requests") or 0), int(c.get("errors") or 0),
                              {int(i): int(n) for i, n in (c.get("buckets") or {}).items()})
            for version, c in upstream.items()}
