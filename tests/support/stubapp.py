"""A small HTTP app to put behind the proxies in tests and benchmarks (aiohttp, like the samples).

    python tests/support/stubapp.py --name NAME [--port 0] [--backend URL]
        [--status N] [--delay SECONDS]

It prints ``stub NAME listening on 127.0.0.1:PORT`` once it listens (ask for port 0 and read it).

    GET  /anything[?status=N][&sleep=S]   JSON: name, method, path, request headers
    POST /anything                        the same plus the body's length and sha256
    GET  /call                            calls --backend (through HTTP_PROXY when set); JSON with its answer
    GET  /bytes?size=N                    N bytes, streamed in 64 KiB chunks (chunked encoding)
    GET  /cut                             promises 100000 bytes, sends 10, closes the connection
    GET  /drop                            closes the connection without answering
    GET  /ping                            "ok"
    GET  /_count                          how many requests it has served (except /ping and /_count)

``--status`` and ``--delay`` make every counted request answer that status, that late (a failing or
hanging version, for retry and timeout tests).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import sys
from typing import Any

import aiohttp
from aiohttp import web

CHUNK = 64 * 1024


def make_app(name: str, backend: str | None, status: int | None = None, delay: float = 0.0) -> web.Application:
    session: dict[str, aiohttp.ClientSession] = {}
    served = [0]

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in ("/ping", "/_count"):
            return await handler(request)
        served[0] += 1
        if delay:
            await asyncio.sleep(delay)
        if status is not None:
            return web.json_response({"name": name, "forced_status": status}, status=status,
                                     headers={"x-stub-name": name})
        return await handler(request)

    async def open_session(app: web.Application) -> None:
        # trust_env: HTTP_PROXY sends backend calls through the sidecar's egress, as in a meshed task.
        session["s"] = aiohttp.ClientSession(trust_env=True, timeout=aiohttp.ClientTimeout(total=20))

    async def close_session(app: web.Application) -> None:
        await session["s"].close()

    def headers_of(request: web.Request) -> dict[str, str]:
        return {k.lower(): v for k, v in request.headers.items()}

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def counted(request: web.Request) -> web.Response:
        return web.json_response({"name": name, "served": served[0]})

    async def drop(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(text="never sent")

    async def call(request: web.Request) -> web.Response:
        if not backend:
            return web.json_response({"name": name, "error": "no --backend"}, status=500)
        async with session["s"].get(backend + request.query.get("path", "")) as resp:
            body = await resp.read()
            answer = {"name": name, "backend_status": resp.status, "backend_body": body.decode("utf-8", "replace"),
                      "backend_version": resp.headers.get("x-meshpipe-version"), "path": request.path_qs}
        return web.json_response(answer, headers={"x-stub-name": name})

    async def sized(request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("size", "0"))
        resp = web.StreamResponse(headers={"x-stub-name": name, "content-type": "application/octet-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        block = b"m" * CHUNK
        sent = 0
        while sent < size:
            n = min(CHUNK, size - sent)
            await resp.write(block[:n])
            sent += n
        await resp.write_eof()
        return resp

    async def cut(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"x-stub-name": name})
        resp.content_length = 100_000
        await resp.prepare(request)
        await resp.write(b"0123456789")
        await asyncio.sleep(0.05)
        if request.transport is not None:
            request.transport.abort()
        return resp

    async def anything(request: web.Request) -> web.Response:
        sleep = float(request.query.get("sleep", "0"))
        if sleep:
            await asyncio.sleep(sleep)
        answer: dict[str, object] = {"name": name, "method": request.method, "path": request.path_qs,
                                     "headers": headers_of(request), "pid": os.getpid()}
        if request.can_read_body:
            body = await request.read()
            answer["body_length"] = len(body)
            answer["body_sha256"] = hashlib.sha256(body).hexdigest()
        status = int(request.query.get("status", "200"))
        return web.json_response(answer, status=status, headers={"x-stub-name": name})

    app = web.Application(client_max_size=1024**3, middlewares=[count])
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_get("/ping", ping)
    app.router.add_get("/_count", counted)
    app.router.add_get("/drop", drop)
    app.router.add_get("/call", call)
    app.router.add_get("/bytes", sized)
    app.router.add_get("/cut", cut)
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


async def _serve(name: str, port: int, backend: str | None, status: int | None, delay: float) -> None:
    runner = web.AppRunner(make_app(name, backend, status, delay), access_log=None, handle_signals=False,
                           shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"stub {name} listening on 127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m meshpipe.engines.local.dataplane.stubapp")
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--backend", help="URL called by GET /call")
    p.add_argument("--status", type=int, help="answer every request with this status")
    p.add_argument("--delay", type=float, default=0.0, help="answer every request this many seconds late")
    args = p.parse_args(argv)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover
        runner = asyncio.Runner()
    with runner:
        runner.run(_serve(args.name, args.port, args.backend, args.status, args.delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
