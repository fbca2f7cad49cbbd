"""The daemon as the dashboard's :class:`~meshpipe.engines.local.observe.dashboard.source.Source`: its own
parts, read in its event loop (no HTTP to itself). It lives with the daemon so that the dashboard needs
nothing of the control plane."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshpipe.engines.local.control import operations as ops
from meshpipe.engines.local.control.actions import DaemonActions, _run_json
from meshpipe.engines.local.observe import metrics_view
from meshpipe.engines.local.observe.topology import backends_from
from meshpipe.errors import NotFoundError


@dataclass(frozen=True)
class _Calls:
    generation: int | None
    backends: dict[str, set[str]]  # service -> services its versions call
    callers: frozenset[tuple[str, str]]  # (service, version) of the versions that call anything


class DaemonSource:
    """The daemon as the dashboard's :class:`Source`."""

    def __init__(self, daemon: DaemonActions) -> None:
        self.daemon = daemon
        self._calls: _Calls | None = None

    async def status(self) -> dict[str, Any]:
        return self.daemon.status_document()

    async def scrape(self) -> list[metrics_view.ProxyScrape]:
        """The stats of the proxies that send traffic to versions: the gateway and the sidecars of versions
        that call other services. The pages show each version's traffic as its callers' proxies counted
        it (egress clusters), and a sidecar of a version that calls nothing has none, so reading it would
        be work for nothing (``GET /metrics`` still reads every proxy)."""
        daemon = self.daemon
        callers = self._resolved().callers
        names: dict[int, str] = {}
        gateway = daemon.supervisor.gateway
        if gateway is not None and gateway.admin_port is not None:
            names[gateway.admin_port] = "gateway"
        for task in daemon.supervisor.task_statuses():
            if task.ports is not None and (task.service, task.version) in callers:
                names[task.ports.admin] = task.task_id
        live = daemon.publisher.proxies
        return await metrics_view.scrape(await daemon.publisher.session(),
                                         {port: name for port, name in names.items() if port in live})

    def _resolved(self) -> _Calls:
        """Who calls whom, read from the versions' resolved models again only when the mesh config changed
        (a version comes or goes, or gets its first healthy task, only with a new config generation)."""
        current = self.daemon.publisher.current
        generation = current["generation"] if current else None
        if self._calls is None or self._calls.generation != generation:
            versions = self.daemon.store.versions()
            self._calls = _Calls(
                generation, backends_from(((v.service, v.resolved) for v in versions), self.daemon.env.namespace),
                frozenset((v.service, v.version) for v in versions if v.resolved.get("backends")))
        return self._calls

    def backends(self) -> dict[str, set[str]]:
        return self._resolved().backends

    def runs(self, service: str) -> list[dict[str, Any]]:
        return [_run_json(r) for r in self.daemon.store.runs(service)]

    def events(self, after: int, limit: int) -> list[Any]:
        store = self.daemon.store
        newest = store.events(limit=1)  # one row: what a sample with nothing new costs
        if not newest or newest[-1].id <= after:
            return []
        return [e for e in store.events(limit=limit) if e.id > after]

    async def rollout(self, service: str) -> dict[str, Any] | None:
        try:
            return await self.daemon.rollout_status(ops.OfService(service))
        except NotFoundError:
            return None
