"""Where the dashboard's data comes from: :class:`Source` is all the dashboard needs. The daemon gives it
its own parts, read in its event loop with no HTTP to itself (``control.dashboard_source``); tests give it
a fake environment."""

from __future__ import annotations

from typing import Any, Protocol

from meshpipe.engines.local.observe import metrics_view


class Source(Protocol):
    async def status(self) -> dict[str, Any]:
        """The daemon's ``/v1/status`` document."""

    async def scrape(self) -> list[metrics_view.ProxyScrape]:
        """The raw stats of the live proxies whose egress counts the pages show (at least the gateway's)."""

    def backends(self) -> dict[str, set[str]]:
        """service -> services its versions call."""

    def runs(self, service: str) -> list[dict[str, Any]]:
        """The service's pipeline runs, newest first, as the control API gives them."""

    def events(self, after: int, limit: int) -> list[Any]:
        """Events with an id above ``after``, oldest first, at most the newest ``limit``."""

    async def rollout(self, service: str) -> dict[str, Any] | None:
        """The service's running (else latest) rollout, when the daemon has rollouts and the service had one."""
