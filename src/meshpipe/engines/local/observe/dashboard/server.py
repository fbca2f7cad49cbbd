"""The dashboard's HTTP server: its own listener on 127.0.0.1, started with the daemon.

Pages (one HTML shell; the page's script picks the view from the path)::

    GET /                      the topology
    GET /services/{svc}        one service
    GET /events                the environment's events
    GET /assets/{file}         the page's script, style sheet and icon (package data, nothing from the internet)
    GET /favicon.ico           the icon (the only thing served without the token)
    GET /api/stream?view=...   server-sent events: the view's documents, then each change
    GET /api/snapshot?view=... the same first documents as JSON (for scripts and tests)

``view`` is ``topology``, ``events`` or ``service`` (with ``service=NAME``).

Access works as Jupyter's does. The token lives in the environment's ``dashboard.token`` (0600, kept across
daemon restarts, separate from the control token: it opens these read-only pages and nothing else).
``meshpipe dashboard`` prints ``http://127.0.0.1:PORT/?token=...``; a request with the right token gets an
HttpOnly, SameSite=Strict cookie and is redirected to the same address without the token, so it leaves
the address bar and the history. Any request without the cookie or the token is refused (403). The
server answers only requests addressed to 127.0.0.1 or localhost (a page on another name that resolves to
127.0.0.1 cannot reach it), and its pages may run only their own script (Content-Security-Policy).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from meshpipe.engines.local.observe.dashboard.live import EVENTS, SERVICE, TOPOLOGY, LiveHub, View
from meshpipe.engines.local.observe.dashboard.source import Source
from meshpipe.errors import MeshpipeError

log = logging.getLogger("meshpipe.daemon")

ASSETS = {  # file -> content type; only these are served
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
LOCAL_HOSTS = ("127.0.0.1", "localhost")
PUBLIC_PATHS = ("/favicon.ico", "/assets/favicon.svg")
KEEPALIVE_S = 20.0  # a comment line on an idle stream, so a closed page is noticed
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
REFUSED = ("This is the meshpipe dashboard of environment {env}. Open it with the address that\n"
           "  meshpipe dashboard --env {env}\nprints: it carries the access token.\n")


def cookie_name(environment: str) -> str:
    """One cookie per environment: cookies do not tell ports apart, and each environment's dashboard has
    its own port and token."""
    return f"meshpipe-dashboard-{environment}"


def load_assets() -> dict[str, bytes]:
    root = resources.files("meshpipe.engines.local.observe.dashboard") / "assets"
    return {name: (root / name).read_bytes() for name in ASSETS}


def parse_view(query: Any) -> View:
    """The view a page asks for; a bad one is a 400."""
    from aiohttp import web

    from meshpipe.model import check_service_name

    kind = query.get("view", TOPOLOGY)
    if kind == SERVICE:
        name = query.get("service", "")
        try:
            check_service_name(name)
        except MeshpipeError:
            raise web.HTTPBadRequest(text="service must be a service name\n") from None
        return View(SERVICE, name)
    if kind in (TOPOLOGY, EVENTS):
        return View(kind)
    raise web.HTTPBadRequest(text="view must be topology, service or events\n")


def make_dashboard_app(hub: LiveHub, token: str, environment: str) -> Any:
    from aiohttp import web

    assets = load_assets()
    cookie = cookie_name(environment)
    expected = token.encode()

    def valid(given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), expected)

    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        host = request.url.host or ""
        if host not in LOCAL_HOSTS:
            return web.Response(status=403, text="the dashboard answers only at 127.0.0.1 or localhost\n")
        if request.path in PUBLIC_PATHS:
            return await handler(request)  # the icon: browsers ask for it even on a refused page
        given = request.query.get("token")
        if given is not None:
            if not valid(given):
                return web.Response(status=403, text="wrong token\n\n" + REFUSED.format(env=environment))
            rest = [(k, v) for k, v in request.query.items() if k != "token"]
            target = request.path + (f"?{urlencode(rest)}" if rest else "")
            response = web.Response(status=303, headers={"Location": target})
            response.set_cookie(cookie, token, httponly=True, samesite="Strict", path="/")
            return response
        if not valid(request.cookies.get(cookie)):
            return web.Response(status=403, text=REFUSED.format(env=environment))
        return await handler(request)

    async def headers(request: web.Request, response: web.StreamResponse) -> None:
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=assets["index.html"], content_type="text/html", charset="utf-8")

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in assets or name == "index.html":
            raise web.HTTPNotFound()
        return web.Response(body=assets[name], headers={"Content-Type": ASSETS[name]})

    async def icon(request: web.Request) -> web.Response:
        return web.Response(body=assets["favicon.svg"], headers={"Content-Type": ASSETS["favicon.svg"]})

    async def snapshot(request: web.Request) -> web.Response:
        return web.json_response(await hub.snapshot(parse_view(request.query)))

    async def stream(request: web.Request) -> web.StreamResponse:
        view = parse_view(request.query)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        sub = await hub.subscribe(view)
        try:
            await response.write(b"retry: 2000\n\n")
            while True:
                try:
                    message = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    message = b": keep-alive\n\n"
                if message is None:
                    break
                await response.write(message)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the page went away
        finally:
            hub.unsubscribe(sub)
        return response

    app = web.Application(middlewares=[guard])
    app.on_response_prepare.append(headers)
    app.router.add_get("/", page)
    app.router.add_get("/services/{svc}", page)
    app.router.add_get("/events", page)
    app.router.add_get("/assets/{name}", asset)
    app.router.add_get("/favicon.ico", icon)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/api/stream", stream)
    return app


def _read_port(path: Path | None) -> int:
    try:
        port = int(path.read_text(encoding="utf-8").strip()) if path is not None else 0
    except (OSError, ValueError):
        return 0
    return port if 1024 <= port <= 65535 else 0


class DashboardServer:
    """The hub and its HTTP listener, for the daemon to start and stop."""

    def __init__(self, source: Source, token: str, environment: str, sample_every: float | None = None) -> None:
        self.hub = LiveHub(source) if sample_every is None else LiveHub(source, sample_every)
        self.token = token
        self.environment = environment
        self.port: int | None = None
        self._runner: Any = None

    async def start(self, host: str = "127.0.0.1", port_file: Path | None = None) -> int:
        """Listen on the port in ``port_file`` when it is free (so open pages reconnect by themselves after
        a daemon restart, and a bookmark keeps working), else on any free port, which the file then keeps."""
        from aiohttp import web

        # handler_cancellation: a page that closes ends its stream's handler at once, so the sampler stops
        # with the last page instead of at the next keep-alive.
        self._runner = web.AppRunner(make_dashboard_app(self.hub, self.token, self.environment), access_log=None,
                                     handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        wanted = _read_port(port_file)
        try:
            await web.TCPSite(self._runner, host, wanted).start()
        except OSError:
            if not wanted:
                raise
            await web.TCPSite(self._runner, host, 0).start()  # taken by now: another port
        self.port = int(self._runner.addresses[0][1])
        if port_file is not None and self.port != wanted:
            from meshpipe.atomic import write_atomically

            write_atomically(port_file, f"{self.port}\n", mode=0o600)
        return self.port

    def changed(self, reason: str = "") -> None:
        self.hub.changed(reason)

    async def stop(self) -> None:
        self.hub.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
