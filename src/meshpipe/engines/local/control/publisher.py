"""The config publisher: the environment's mesh config, pushed to every live proxy.

On any change (route, gateway route, service, healthy endpoints) the daemon asks for a publish: the config
is rebuilt from state and health under a new generation number (``meshconfig.build_mesh_config``), PUT to
every proxy's admin API concurrently, and the publish returns once every proxy answered, so a caller such
as ``route set`` returns only when the mesh applies the change. A proxy that comes up gets the current
config before it counts as part of the mesh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from meshpipe.engines.local.dataplane.meshconfig import MeshSnapshot, build_mesh_config

log = logging.getLogger("meshpipe.daemon")

PUSH_TIMEOUT_SECONDS = 2.0


class Publisher:
    """Pushes the environment's mesh config to every live proxy; one push at a time, in generation order.

    ``snapshot(generation)`` is the mesh as state and health have it now; ``next_generation()`` hands out
    the next generation number (counted in state.db, so never reused, even across daemon restarts).
    """

    def __init__(self, snapshot: Callable[[int], MeshSnapshot], next_generation: Callable[[], int]) -> None:
        self._snapshot = snapshot
        self._next_generation = next_generation
        self.proxies: set[int] = set()
        self.current: dict[str, Any] | None = None
        self.lock = asyncio.Lock()
        self._session: Any = None
        # Called with the reason after each publish, once the proxies answered (the dashboard pushes
        # the change to its open pages); a listener must return at once.
        self.listeners: list[Callable[[str], None]] = []

    async def session(self) -> Any:
        """The HTTP session to the proxies' admin APIs, kept open between pushes (stats use it too)."""
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=PUSH_TIMEOUT_SECONDS))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _push(self, admin_port: int, doc: dict[str, Any]) -> str | None:
        """None once the proxy applied ``doc``, else what went wrong."""
        session = await self.session()
        try:
            async with session.put(f"http://127.0.0.1:{admin_port}/config", json=doc) as resp:
                text = await resp.text()
                if resp.status != 200:
                    return f"HTTP {resp.status}: {text[:200]}"
                return None
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def _build(self) -> dict[str, Any]:
        return build_mesh_config(self._snapshot(self._next_generation()))

    async def publish(self, reason: str) -> dict[str, Any]:
        """Recompute the config from state and health, push it to every proxy, wait for every answer."""
        async with self.lock:
            started = time.perf_counter()
            doc = self._build()
            ports = sorted(self.proxies)
            errors = await asyncio.gather(*(self._push(p, doc) for p in ports))
            self.current = doc
            failed = {p: e for p, e in zip(ports, errors, strict=True) if e is not None}
            ms = (time.perf_counter() - started) * 1000
            if failed:
                log.warning("config generation %d (%s): %d/%d proxies applied it; failed: %s", doc["generation"],
                            reason, len(ports) - len(failed), len(ports), failed)
            else:
                log.info("config generation %d (%s) applied by %d proxies in %.1f ms", doc["generation"], reason,
                         len(ports), ms)
            result = {"generation": doc["generation"], "proxies": len(ports), "applied": len(ports) - len(failed),
                      "failed": {str(p): e for p, e in failed.items()}, "ms": round(ms, 1)}
        for listener in self.listeners:
            try:
                listener(reason)
            except Exception:
                log.exception("a config-publish listener failed")
        return result

    async def add_proxy(self, admin_port: int) -> None:
        """A proxy just went live: it gets the current config before it is counted as part of the mesh."""
        async with self.lock:
            if self.current is None:
                self.current = self._build()
            error = await self._push(admin_port, self.current)
            if error is not None:
                log.warning("proxy on admin port %d did not take config generation %d: %s", admin_port,
                            self.current["generation"], error)
            self.proxies.add(admin_port)

    def remove_proxy(self, admin_port: int) -> None:
        self.proxies.discard(admin_port)
