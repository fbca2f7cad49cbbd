"""The admin HTTP API of a proxy (the role of Envoy's port 9901), on 127.0.0.1 only.

    GET  /server_info    {"state": "LIVE", ...} once every listener is bound (the sidecar health check)
    GET  /ready          200 "LIVE" when live, 503 otherwise
    GET  /config         the config document in effect (404 before the first one)
    PUT  /config         apply a config document: 200 once it is in effect, or ignored when its
                         generation is not newer ({"applied": false}); 400 when invalid (old one kept)
    GET  /stats          counters and latencies per listener and per upstream (service, version)
    GET  /stats/prometheus  the same in Prometheus' text format, Envoy's names (also /stats?format=prometheus)
    GET  /stats/raw      every counter and histogram bucket, with Envoy cluster names (the daemon merges these)
    POST /quitquitquit   drain and exit (as SIGTERM does)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httptools

from meshpipe.engines.local.dataplane.config import ConfigError, parse_config
from meshpipe.engines.local.dataplane.http11 import json_reply
from meshpipe.engines.local.dataplane.proxy import LOOPBACK, DataPlane, PortInUseError
from meshpipe.status import ProxyState

MAX_BODY = 16 * 1024 * 1024


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True).encode("utf-8")


class AdminProtocol(asyncio.Protocol):
    def __init__(self, dp: DataPlane) -> None:
        self.dp = dp
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._send(400, {"error": f"malformed request: {exc}"}, keep_alive=False)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size <= MAX_BODY:
            self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("ascii", "replace")
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        body = b"".join(self.body)
        too_big = self.size > MAX_BODY
        query = self.url.split(b"?", 1)[1] if b"?" in self.url else b""
        self.url, self.body, self.size = b"", [], 0
        keep_alive = self.parser.should_keep_alive()
        if too_big:
            self._send(413, {"error": f"body larger than {MAX_BODY} bytes"}, keep_alive=False)
            return
        if method == "GET" and (path == "/stats/prometheus"
                                or (path == "/stats" and b"format=prometheus" in query.split(b"&"))):
            self._send_prometheus(keep_alive)
            return
        status, answer = self.handle(method, path, body)
        self._send(status, answer, keep_alive)
        if path == "/quitquitquit" and status == 200:
            self.dp.loop.call_soon(self.dp.begin_drain)

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        dp = self.dp
        if path == "/server_info" and method == "GET":
            return 200, dp.server_info()
        if path == "/ready" and method == "GET":
            return (200 if dp.state == ProxyState.LIVE else 503), {"state": dp.state}
        if path == "/stats" and method == "GET":
            return 200, dp.stats()
        if path == "/stats/raw" and method == "GET":
            return 200, dp.raw_stats()
        if path == "/config" and method == "GET":
            if dp.config is None:
                return 404, {"error": "no config applied yet"}
            return 200, dp.config.document
        if path == "/config" and method in ("PUT", "POST"):
            return self._put_config(body)
        if path == "/quitquitquit" and method == "POST":
            return 200, {"state": ProxyState.DRAINING}
        endpoints = ["/server_info", "/ready", "/config", "/stats", "/stats/prometheus", "/stats/raw",
                     "/quitquitquit"]
        if path in endpoints:
            return 405, {"error": f"{method} is not allowed on {path}"}
        return 404, {"error": f"no admin endpoint {path}", "endpoints": endpoints}

    def _put_config(self, body: bytes) -> tuple[int, Any]:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return 400, {"error": f"config is not JSON: {exc}"}
        try:
            config = parse_config(document)
        except ConfigError as exc:
            return 400, {"error": exc.message, "problems": exc.problems}
        dp = self.dp
        if dp.apply_config(config):
            return 200, {"applied": True, "generation": config.generation}
        current = dp.config.generation if dp.config is not None else None
        return 200, {"applied": False, "generation": current,
                     "reason": f"generation {config.generation} is not newer than {current}"}

    def _send_prometheus(self, keep_alive: bool) -> None:
        # Imported on the first scrape only: a proxy nobody scrapes never loads prometheus_client.
        from meshpipe.engines.local.dataplane.prometheus import CONTENT_TYPE, proxy_exposition

        transport = self.transport
        if transport is None or transport.is_closing():
            return
        body = proxy_exposition(self.dp.raw_stats())
        transport.write(json_reply(200, body, keep_alive, CONTENT_TYPE.encode("ascii")))
        if not keep_alive:
            transport.close()

    def _send(self, status: int, answer: Any, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(json_reply(status, _dumps(answer), keep_alive))
        if not keep_alive:
            transport.close()


async def start_admin(dp: DataPlane, port: int) -> asyncio.AbstractServer:
    try:
        return await dp.loop.create_server(lambda: AdminProtocol(dp), LOOPBACK, port, reuse_address=True)
    except OSError as exc:
        raise PortInUseError(exc.errno, f"cannot listen on {LOOPBACK}:{port} for the admin API: "
                                        f"{exc.strerror or exc}") from exc
