"""Run a sample's aiohttp application until SIGTERM or SIGINT, then stop gracefully.

A stop signal closes the listening socket first (no new connections), lets requests in flight finish
for up to ``grace`` seconds, then exits with status 0, as ECS expects within the container's stop timeout.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable

from aiohttp import web

GRACE_SECONDS = 5.0


async def _serve(app: web.Application, name: str, host: str, port: int, grace: float) -> None:
    # No access log: every line costs time on the request path, and the sidecar already counts requests.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        print(f"{name} listening on http://{host}:{bound}", flush=True)
        await stop.wait()
        print(f"{name} stopping: finishing requests in flight", flush=True)
    finally:
        await runner.cleanup()


def run(app: web.Application, name: str, host: str, port: int, grace: float = GRACE_SECONDS) -> int:
    """Serve ``app`` on ``host:port``; returns the process exit status."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        loop_factory = asyncio.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_serve(app, name, host, port, grace))
    except OSError as exc:
        print(f"{name}: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return 1
    return 0
