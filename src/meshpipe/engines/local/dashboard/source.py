"""Where the dashboard's data comes from: the daemon's own parts, read in its event loop (no HTTP to
itself). :class:`Source` is all the dashboard needs, so tests can give it a fake environment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from meshpipe.engines.local import metrics_view
from meshpipe.engines.local.topology import backends_from
from meshpipe.errors import NotFoundError

if TYPE_CHECKING:
    from meshpipe.engines.local.daemon import Daemon


class Source(Protocol):
    async def status(self) -> dict[str, Any]:
        """The daemon's ``/v1/status`` document."""

    async def scrape(self) -> list[metrics_view.ProxyScrape]:
        """Every live proxy's raw stats, now."""

    def backends(self, namespace: str) -> dict[str, set[str]]:
        """service -> services its versions call."""

    def runs(self, service: str) -> list[dict[str, Any]]:
        """The service's pipeline runs, newest first, as the control API gives them."""

    def events(self, after: int, limit: int) -> list[Any]:
        """Events with an id above ``after``, oldest first, at most the newest ``limit``."""

    async def rollout(self, service: str) -> dict[str, Any] | None:
        """The service's running (else latest) rollout, when the daemon has rollouts and the service had one."""


class DaemonSource:
    """The daemon as the dashboard's :class:`Source`."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def status(self) -> dict[str, Any]:
        return await self.daemon.status()

    async def scrape(self) -> list[metrics_view.ProxyScrape]:
        return await self.daemon.scrape()

    def backends(self, namespace: str) -> dict[str, set[str]]:
        return backends_from(((v.service, v.resolved) for v in self.daemon.store.versions()), namespace)

    def runs(self, service: str) -> list[dict[str, Any]]:
        from meshpipe.engines.local.api import _run_json

        return [_run_json(r) for r in self.daemon.store.runs(service)]

    def events(self, after: int, limit: int) -> list[Any]:
        return [e for e in self.daemon.store.events(limit=limit) if e.id > after]

    async def rollout(self, service: str) -> dict[str, Any] | None:
        # A daemon with a rollout controller answers rollout_status (GET /v1/rollouts/{svc}); one without
        # has no rollouts to show.
        status = getattr(self.daemon, "rollout_status", None)
        if status is None:
            return None
        try:
            return dict(await status(service))
        except NotFoundError:
            return None
