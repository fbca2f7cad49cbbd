"""hello-web: the front end. ``GET /hello/<name>`` asks hello-backend for data and builds an HTML greeting;
``POST /hello/<name>`` does the same with a POST to the backend, so a request that is not a GET can be
followed through the mesh end to end.

    python -m meshpipe.samples.hello_web -b BACKEND_URL [-p PORT] [--host HOST] [--fail-rate 0.2] [--delay-ms 200]

The page is ``<greeting> <name><br><message><br><br>timestamp: <ts>``. The backend URL comes from ``-b``
or ``BACKEND_URL``. Calls to it go through ``HTTP_PROXY`` when that is set (``NO_PROXY`` respected), which
is how a meshed task reaches ``http://hello-backend.demo.local/data`` through its sidecar. When the backend
cannot be reached or answers badly, the page is a 502 saying so.
"""

from __future__ import annotations

import html
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from meshpipe.samples.options import FaultOptions, SampleArgumentParser
from meshpipe.samples.serve import run, with_faults

NAME = "hello-web"
BACKEND_TIMEOUT_SECONDS = 10.0
_SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)


class BackendError(Exception):
    """The backend did not give usable data; the message says why, for the 502 page."""


def proxy_for(url: str, environ: Mapping[str, str]) -> str | None:
    """The HTTP proxy to use for ``url`` under ``environ``: ``HTTP_PROXY`` (or ``http_proxy``) unless
    ``NO_PROXY`` (or ``no_proxy``) names the host, one of its parent domains, or ``*``.

    Decided once at start-up, since the backend URL never changes, instead of on every request.
    """
    lower = {k.lower(): v for k, v in environ.items() if v}
    proxy = lower.get("http_proxy")
    if not proxy or urlsplit(url).scheme != "http":
        return None
    host = (urlsplit(url).hostname or "").lower()
    for entry in lower.get("no_proxy", "").split(","):
        entry = entry.strip().lower().lstrip(".")
        if entry.rsplit(":", 1)[0] in ("*", host) or (entry and host.endswith("." + entry)):
            return None
    return proxy


def page(name: str, data: Mapping[str, Any]) -> str:
    """The greeting page for ``name`` from the backend's data (every piece HTML-escaped)."""
    greeting = html.escape(str(data.get("greeting", "")))
    message = html.escape(str(data.get("message", "")))
    timestamp = html.escape(str(data.get("timestamp", "")))
    return f"{greeting} {html.escape(name)}<br>{message}<br><br>timestamp: {timestamp}"


def parse_backend_data(status: int, body: bytes) -> dict[str, Any]:
    if status != 200:
        snippet = body[:200].decode("utf-8", "replace").strip()
        raise BackendError(f"answered HTTP {status}" + (f": {snippet}" if snippet else ""))
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BackendError("answered with something that is not JSON") from None
    if not isinstance(data, dict) or "greeting" not in data or "message" not in data:
        raise BackendError("answered JSON without 'greeting' and 'message'")
    return data


def make_app(backend_url: str, proxy: str | None) -> web.Application:
    async def open_session(app: web.Application) -> None:
        # One session for the life of the process: its pool keeps connections to the backend (or the
        # sidecar) alive between requests.
        connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=60)
        app[_SESSION] = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=BACKEND_TIMEOUT_SECONDS))

    async def close_session(app: web.Application) -> None:
        await app[_SESSION].close()

    async def fetch_data(session: aiohttp.ClientSession, method: str) -> dict[str, Any]:
        try:
            async with session.request(method, backend_url, proxy=proxy) as resp:
                body = await resp.read()
                return parse_backend_data(resp.status, body)
        except TimeoutError:
            raise BackendError(f"did not answer within {BACKEND_TIMEOUT_SECONDS:g} s") from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"could not be reached: {exc or type(exc).__name__}") from None

    async def hello(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            data = await fetch_data(request.app[_SESSION], request.method)
        except BackendError as exc:
            return web.Response(status=502, text=f"hello-web: the backend {backend_url} {exc}\n")
        return web.Response(text=page(name, data), content_type="text/html")

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_get("/hello/{name}", hello)
    app.router.add_post("/hello/{name}", hello)
    app.router.add_get("/ping", ping)
    return app


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[str, str, int, FaultOptions]:
    parser = SampleArgumentParser(prog="hello-web",
                                  description="Answers GET /hello/<name> with data from hello-backend.")
    parser.add_argument("-b", "--backend", default=None,
                        help="URL of hello-backend's /data (default: $BACKEND_URL)")
    parser.add_listen_options()
    FaultOptions.add_to(parser)
    args = parser.parse_sample_args(argv, environ)
    backend = args.backend or environ.get("BACKEND_URL", "")
    if not backend:
        parser.error("no backend URL: pass -b http://HOST/data or set BACKEND_URL")
    parts = urlsplit(backend)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        parser.error(f"backend URL {backend!r} is not an http:// URL")
    return backend, args.host, args.port, FaultOptions.from_args(parser, args, environ)


def main(argv: Sequence[str] | None = None) -> int:
    backend, host, port, faults = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    return run(with_faults(make_app(backend, proxy_for(backend, os.environ)), faults), NAME, host, port)


if __name__ == "__main__":
    sys.exit(main())
