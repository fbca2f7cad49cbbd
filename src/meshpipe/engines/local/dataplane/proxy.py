"""A proxy process's state and listeners: the ingress gateway, or one task's sidecar.

* ``gateway``: one listener (the environment's ingress URL) routing by gateway-route prefix.
* ``sidecar``: an ingress listener in front of the task's app (counting requests for this version)
  and an egress listener, the app's HTTP proxy, reaching only the declared backends.

Every listener binds 127.0.0.1 only. The current config is one reference, replaced whole by
:meth:`DataPlane.apply_config`; each request reads it once when its headers arrive, so requests in
flight finish on the config they started with while the next request already sees the new one.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httptools

from meshpipe.engines.local.dataplane import ADMIN_PROTOCOL
from meshpipe.engines.local.dataplane.accesslog import AccessLog
from meshpipe.engines.local.dataplane.config import DataplaneConfig, Endpoint
from meshpipe.engines.local.dataplane.downstream import DownstreamProtocol
from meshpipe.engines.local.dataplane.exchange import Exchange
from meshpipe.engines.local.dataplane.limits import (
    DEFAULT_MAX_HEADERS_COUNT,
    DEFAULT_MAX_REQUEST_HEADERS_KB,
    DEFAULT_REQUEST_HEADERS_TIMEOUT_MS,
    DEFAULT_REQUEST_TIMEOUT_MS,
    ParserFactory,
    RequestLimits,
)
from meshpipe.engines.local.dataplane.metrics import BUCKET_BOUNDS_MS, ListenerStats, Metrics, UpstreamStats
from meshpipe.engines.local.dataplane.routing import (
    Forward,
    RandomSource,
    Refuse,
    decide_egress,
    decide_gateway,
    split_absolute_form,
)
from meshpipe.engines.local.dataplane.statnames import GATEWAY_NODE, cluster_name
from meshpipe.engines.local.dataplane.upstream import UpstreamPool
from meshpipe.naming import virtual_node_name
from meshpipe.status import ProxyState

LOOPBACK = "127.0.0.1"
# Timeouts are checked this often while requests are in flight: fine enough for per-try timeouts in
# seconds. An idle proxy has no timer at all (it would wake the process 50 times a second for nothing).
TIMER_TICK_S = 0.02
LOG_FLUSH_S = 0.25
DEFAULT_DRAIN_TIMEOUT_S = 5.0  # well inside ECS's (and the daemon's) 10 s stop timeout
DEFAULT_INGRESS_TIMEOUT_MS = 15000  # App Mesh's default per-request timeout of a listener


class PortInUseError(OSError):
    """A listener's port is taken: the daemon picks another and starts the proxy again."""


@dataclass(frozen=True)
class ProxyOptions:
    mode: str  # "gateway" | "sidecar"
    admin_port: int
    listen_port: int | None = None
    ingress_port: int | None = None
    egress_port: int | None = None
    app_port: int | None = None
    service: str | None = None
    version: str | None = None
    allowed_backends: tuple[str, ...] = ()
    access_log: bool = False
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    ingress_timeout_ms: int = DEFAULT_INGRESS_TIMEOUT_MS
    netns: str | None = None  # a container task's network namespace: listeners there, on every address
    run_as: int | None = None
    max_request_headers_kb: int = DEFAULT_MAX_REQUEST_HEADERS_KB
    max_headers_count: int = DEFAULT_MAX_HEADERS_COUNT
    request_headers_timeout_ms: int = DEFAULT_REQUEST_HEADERS_TIMEOUT_MS
    request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS

    def request_limits(self) -> RequestLimits:
        return RequestLimits(self.max_request_headers_kb * 1024, self.max_headers_count,
                             self.request_headers_timeout_ms / 1000, self.request_timeout_ms / 1000)


class Listener:
    """One listening socket and how its requests are routed."""

    name = "listener"
    edge = False  # adds x-forwarded-for / x-request-id, as the mesh's edge proxy
    response_header = b""  # inserted into every forwarded response
    app_stats: UpstreamStats | None = None  # set when the listener fronts the task's own app

    def __init__(self, dp: DataPlane, port: int) -> None:
        self.dp = dp
        self.port = port
        self.stats: ListenerStats = dp.metrics.listener(self.name)
        self.connections: set[DownstreamProtocol] = set()
        self.access_log = AccessLog(self.name) if dp.options.access_log else None
        self.server: asyncio.AbstractServer | None = None

    def decide(self, method: bytes, url: bytes, host: bytes | None,
               headers: dict[bytes, bytes] | None = None) -> Forward | Refuse:
        raise NotImplementedError

    async def start(self) -> None:
        try:
            self.server = await self.dp.loop.create_server(
                lambda: DownstreamProtocol(self), self.dp.listen_host, self.port, backlog=1024, reuse_address=True)
        except OSError as exc:
            raise PortInUseError(
                exc.errno, f"cannot listen on {self.dp.listen_host}:{self.port} for the {self.name} listener: "
                           f"{exc.strerror or exc}") from exc
        sockets = self.server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]


class GatewayListener(Listener):
    name = "gateway"
    edge = True

    def decide(self, method: bytes, url: bytes, host: bytes | None,
               headers: dict[bytes, bytes] | None = None) -> Forward | Refuse:
        return decide_gateway(self.dp.config, method, url, self.dp.rnd, headers)


class EgressListener(Listener):
    name = "egress"

    def __init__(self, dp: DataPlane, port: int, allowed_backends: Iterable[str]) -> None:
        super().__init__(dp, port)
        self.allowed = frozenset(name.lower().encode("ascii") for name in allowed_backends)

    def decide(self, method: bytes, url: bytes, host: bytes | None,
               headers: dict[bytes, bytes] | None = None) -> Forward | Refuse:
        return decide_egress(self.dp.config, self.allowed, method, url, host, self.dp.rnd, headers)


class IngressListener(Listener):
    """In front of the task's own app: every request goes to it; counted for this version."""

    name = "ingress"

    def __init__(self, dp: DataPlane, port: int, app_port: int, service: str, version: str,
                 timeout_ms: int) -> None:
        super().__init__(dp, port)
        self.app = (Endpoint(LOOPBACK, app_port),)
        self.service = service
        self.version = version
        self.timeout_s = timeout_ms / 1000.0
        # Which version answered, for people and tests watching a canary.
        self.response_header = b"x-meshpipe-version: " + version.encode("ascii") + b"\r\n"
        self.app_stats = dp.metrics.app = UpstreamStats()

    def decide(self, method: bytes, url: bytes, host: bytes | None,
               headers: dict[bytes, bytes] | None = None) -> Forward | Refuse:
        if not url.startswith(b"/"):
            absolute = split_absolute_form(url)
            if absolute is None:
                return Refuse(400, "bad_request", "the ingress takes origin-form request targets")
            url = absolute[1]
        return Forward("", self.service, self.version, self.app, url, 0, 0.0, self.timeout_s)


class DataPlane:
    """Everything one proxy process runs: listeners, config, pools, timers, metrics."""

    def __init__(self, options: ProxyOptions, loop: asyncio.AbstractEventLoop,
                 rnd: RandomSource = random.random,
                 new_parser: ParserFactory = httptools.HttpRequestParser) -> None:
        self.options = options
        self.loop = loop
        self.rnd = rnd
        self.limits = options.request_limits()
        self.new_parser = new_parser
        # In a task's own namespace the ingress takes what the interception rules send to the task's
        # address; on the host every listener stays on loopback.
        self.listen_host = "0.0.0.0" if options.netns is not None else LOOPBACK
        self.config: DataplaneConfig | None = None
        self.metrics = Metrics()
        self.pools: dict[Endpoint, UpstreamPool] = {}
        self.rr: dict[tuple[str, str], int] = {}
        self.inflight: set[Exchange] = set()
        self.listeners: list[Listener] = []
        self.state = ProxyState.PRE_INITIALIZING
        self.draining = False
        self.started_at = time.time()
        self._stopped = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        if options.mode == "gateway":
            self.listeners.append(GatewayListener(self, _required(options.listen_port, "--listen-port")))
        elif options.mode == "sidecar":
            self.listeners.append(IngressListener(
                self, _required(options.ingress_port, "--ingress-port"), _required(options.app_port, "--app-port"),
                _required(options.service, "--service"), _required(options.version, "--version"),
                options.ingress_timeout_ms))
            self.listeners.append(EgressListener(self, _required(options.egress_port, "--egress-port"),
                                                 options.allowed_backends))
        else:
            raise ValueError(f"unknown mode {options.mode!r}: gateway or sidecar")

    # ---- lifecycle ----

    async def start(self) -> None:
        """Bind every listener (PortInUseError if one cannot) and start the timer."""
        try:
            for listener in self.listeners:
                await listener.start()
        except PortInUseError:
            for listener in self.listeners:
                if listener.server is not None:
                    listener.server.close()
            raise
        self.state = ProxyState.LIVE

    def begin_drain(self) -> None:
        """Stop accepting, let exchanges in flight finish, close idle connections; then stop."""
        if self.draining:
            return
        self.draining = True
        self.state = ProxyState.DRAINING
        for listener in self.listeners:
            if listener.server is not None:
                listener.server.close()
            for conn in list(listener.connections):
                conn.close_when_idle()
        self.loop.call_later(self.options.drain_timeout_s, self._force_stop)
        self.connection_closed()

    def connection_closed(self) -> None:
        if self.draining and not any(listener.connections for listener in self.listeners):
            self._finish_stop()

    def _force_stop(self) -> None:
        for listener in self.listeners:
            for conn in list(listener.connections):
                if conn.transport is not None:
                    conn.transport.abort()
        self._finish_stop()

    def _finish_stop(self) -> None:
        if self._stopped.is_set():
            return
        for pool in self.pools.values():
            pool.close_idle()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flush_logs()
        self.state = ProxyState.STOPPED
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def track(self, exchange: Exchange) -> None:
        """An exchange is in flight: its deadlines need the timer, which runs only while one is."""
        self.inflight.add(exchange)
        if self._timer is None and not self._stopped.is_set():
            self._timer = self.loop.call_later(TIMER_TICK_S, self._tick)

    def _flush_logs(self) -> None:
        for listener in self.listeners:
            if listener.access_log is not None:
                listener.access_log.flush()

    def _tick(self) -> None:
        now = time.monotonic()
        if self.inflight:
            expired = [ex for ex in self.inflight if ex.deadline and ex.deadline <= now]
            for ex in expired:
                if not ex.finished:
                    ex.on_timer(now)
        if not self.inflight:
            # Idle: the log lines of the last requests go out now, and the timer stops until the next one.
            self._flush_logs()
            self._timer = None
            return
        if now - self._last_flush >= LOG_FLUSH_S:
            self._last_flush = now
            self._flush_logs()
        self._timer = self.loop.call_later(TIMER_TICK_S, self._tick)

    # ---- config and pools ----

    def apply_config(self, config: DataplaneConfig) -> bool:
        """Make ``config`` current unless it is not newer than the current one. True: applied."""
        current = self.config
        if current is not None and config.generation <= current.generation:
            return False
        self.config = config
        keep = config.endpoint_set
        for endpoint in [ep for ep in self.pools if ep not in keep and not self._is_local_app(ep)]:
            pool = self.pools.pop(endpoint)
            pool.retired = True
            pool.close_idle()
        return True

    def _is_local_app(self, endpoint: Endpoint) -> bool:
        return any(isinstance(lst, IngressListener) and endpoint in lst.app for lst in self.listeners)

    def pool(self, endpoint: Endpoint) -> UpstreamPool:
        pool = self.pools.get(endpoint)
        if pool is None:
            pool = self.pools[endpoint] = UpstreamPool(endpoint, self.loop)
        return pool

    # ---- views for the admin API ----

    def server_info(self) -> dict[str, Any]:
        opts = self.options
        return {
            "state": self.state,
            "protocol": ADMIN_PROTOCOL,
            "mode": opts.mode,
            "service": opts.service,
            "version": opts.version,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 3),
            "generation": self.config.generation if self.config is not None else None,
            "listeners": {listener.name: {"address": LOOPBACK, "port": listener.port} for listener in self.listeners},
            "allowed_backends": sorted(opts.allowed_backends) if opts.mode == "sidecar" else None,
        }

    def node_name(self) -> str:
        """The App Mesh resource this proxy stands for: the version's virtual node, or the gateway."""
        opts = self.options
        if opts.mode == "sidecar":
            return virtual_node_name(str(opts.service), str(opts.version))
        return GATEWAY_NODE

    def raw_stats(self) -> dict[str, Any]:
        """Every counter and every histogram bucket, with the Envoy cluster each upstream is; the daemon
        merges these across proxies and the Prometheus exposition is written from them."""
        config = self.config
        mesh = config.environment if config is not None else ""
        opts = self.options

        def port_of(service: str, version: str) -> int | None:
            return config.listener_port(service, version) if config is not None else None

        clusters = []
        for (service, version), stats in sorted(self.metrics.upstreams.items()):
            clusters.append({"name": cluster_name("egress", mesh, virtual_node_name(service, version),
                                                  port_of(service, version)),
                             "direction": "egress", "service": service, "version": version, **stats.raw()})
        app = self.metrics.app
        if app is not None and opts.service and opts.version:
            clusters.append({"name": cluster_name("ingress", mesh, self.node_name(),
                                                  port_of(opts.service, opts.version)),
                             "direction": "ingress", "service": opts.service, "version": opts.version, **app.raw()})
        ports = {listener.name: listener.port for listener in self.listeners}
        return {
            "mode": opts.mode, "service": opts.service, "version": opts.version, "mesh": mesh,
            "node": self.node_name(), "state": self.state, "uptime_s": round(time.time() - self.started_at, 3),
            "generation": config.generation if config is not None else None,
            "bucket_count": len(BUCKET_BOUNDS_MS),
            "listeners": {name: {"port": ports.get(name), **stats.raw()}
                          for name, stats in sorted(self.metrics.listeners.items())},
            "clusters": clusters,
        }

    def stats(self) -> dict[str, Any]:
        snapshot = self.metrics.snapshot()
        app = snapshot.pop("app")
        if app is not None:
            app = {"service": self.options.service, "version": self.options.version, **app}
        return {
            "mode": self.options.mode,
            "service": self.options.service,
            "version": self.options.version,
            "generation": self.config.generation if self.config is not None else None,
            "in_flight": len(self.inflight),
            "app": app,
            "upstream_pools": {f"{ep.host}:{ep.port}": len(pool.idle) for ep, pool in sorted(self.pools.items())},
            **snapshot,
        }


def _required(value: Any, flag: str) -> Any:
    if value is None:
        raise ValueError(f"{flag} is required in this mode")
    return value
