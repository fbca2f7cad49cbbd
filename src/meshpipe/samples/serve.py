"""Run a sample's aiohttp application until SIGTERM or SIGINT, then stop gracefully.

A stop signal closes the listening socket first (no new connections), lets requests in flight finish
for up to ``grace`` seconds, then exits with status 0, as ECS expects within the container's stop timeout.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from meshpipe.samples.options import FaultOptions

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


HEALTH_PATH = "/ping"


def with_faults(app: web.Application, faults: FaultOptions, rnd: Callable[[], float] | None = None) -> web.Application:
    """Answer ``faults.fail_rate`` of the requests 500 and delay every answer by ``faults.delay_ms``
    (the health-check path excepted)."""
    if not faults:
        return app
    import random

    draw = rnd or random.random

    @web.middleware
    async def faulty(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        if request.path == HEALTH_PATH:
            return await handler(request)
        if faults.delay_ms:
            await asyncio.sleep(faults.delay_ms / 1000)
        if faults.fail_rate and draw() < faults.fail_rate:
            return web.Response(status=500, text="injected failure (--fail-rate)\n")
        return await handler(request)

    app.middlewares.append(faulty)
    return app


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
