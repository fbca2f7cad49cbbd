"""The daemon's health probes against real sockets on 127.0.0.1 (servers on ports the OS picks)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from meshpipe.engines.local.tasks.health import check_http, check_sidecar, server_info
from meshpipe.engines.local.tasks.processes import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def answering(raw: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(raw)
        await writer.drain()
        writer.close()

    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(5)
    writer.close()


def probe(handler: Handler | None, fn: Callable[[int], Awaitable[object]]) -> object:
    async def main() -> object:
        if handler is None:
            return await fn(free_port())
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        try:
            return await fn(server.sockets[0].getsockname()[1])
        finally:
            server.close()

    return asyncio.run(main())


def ok(status: int, body: bytes = b"ok") -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)


def test_app_check_is_healthy_below_400_within_its_timeout() -> None:
    assert probe(answering(ok(200)), lambda p: check_http(p, "/ping", 1.0)).ok  # type: ignore[attr-defined]
    assert probe(answering(ok(302)), lambda p: check_http(p, "/ping", 1.0)).ok  # type: ignore[attr-defined]
    bad = probe(answering(ok(500)), lambda p: check_http(p, "/ping", 1.0))
    assert not bad.ok and "answered HTTP 500" in bad.detail  # type: ignore[attr-defined]
    slow = probe(silent, lambda p: check_http(p, "/ping", 0.2))
    assert not slow.ok and "did not answer within 0.2 s" in slow.detail  # type: ignore[attr-defined]
    refused = probe(None, lambda p: check_http(p, "/ping", 1.0))
    assert not refused.ok and "refused" in refused.detail.lower()  # type: ignore[attr-defined]
    garbage = probe(answering(b"SSH-2.0-x\r\n"), lambda p: check_http(p, "/ping", 1.0))
    assert not garbage.ok and "not an HTTP response" in garbage.detail  # type: ignore[attr-defined]


def test_sidecar_check_asks_whether_it_is_live() -> None:
    assert probe(answering(ok(200, b'{"state": "LIVE"}')), lambda p: check_sidecar(p, 1.0)).ok  # type: ignore[attr-defined]
    draining = probe(answering(ok(503, b'{"state": "DRAINING"}')), lambda p: check_sidecar(p, 1.0))
    assert not draining.ok and "not LIVE" in draining.detail  # type: ignore[attr-defined]


def test_server_info_is_the_document_or_none() -> None:
    body = b'{"state": "LIVE", "pid": 42}'
    assert probe(answering(ok(200, body)), lambda p: server_info(p, 1.0)) == {"state": "LIVE", "pid": 42}
    assert probe(answering(ok(404, b"{}")), lambda p: server_info(p, 1.0)) is None
    assert probe(answering(ok(200, b"[1]")), lambda p: server_info(p, 1.0)) is None
    assert probe(silent, lambda p: server_info(p, 0.2)) is None
