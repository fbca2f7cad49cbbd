"""The proxy process: ``python -m meshpipe.engines.local.dataplane --mode gateway|sidecar ...``.

Exit status: 0 after a drain (SIGTERM, SIGINT or ``POST /quitquitquit``); 2 for bad arguments or an
invalid ``--config-file``; 3 when a port is taken (the daemon picks another and tries again); 4 when the
task's network namespace (``--netns``) cannot be entered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import signal
import sys
import time
from collections.abc import Sequence

from meshpipe.argtypes import bounded
from meshpipe.engines.local.dataplane.config import ConfigError, DataplaneConfig, parse_config
from meshpipe.engines.local.dataplane.limits import (
    DEFAULT_MAX_HEADERS_COUNT,
    DEFAULT_MAX_REQUEST_HEADERS_KB,
    DEFAULT_REQUEST_HEADERS_TIMEOUT_MS,
    DEFAULT_REQUEST_TIMEOUT_MS,
    ParserFactory,
)
from meshpipe.engines.local.dataplane.proxy import (
    DEFAULT_DRAIN_TIMEOUT_S,
    DEFAULT_INGRESS_TIMEOUT_MS,
    DataPlane,
    PortInUseError,
    ProxyOptions,
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_PORT_IN_USE = 3
EXIT_NO_NAMESPACE = 4
PROG = "python -m meshpipe.engines.local.dataplane"


_port = bounded(int, 1, 65535, not_a="a port number", outside="{value} is not a port number 1-65535")
_positive = bounded(int, 1, 10**9, not_a="a whole number", outside="{value} is not a whole number 1-1000000000")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="meshpipe's local proxy: ingress gateway or sidecar.")
    p.add_argument("--mode", choices=("gateway", "sidecar"), required=True)
    p.add_argument("--admin-port", type=_port, required=True, help="admin API (server_info, config, stats)")
    p.add_argument("--listen-port", type=_port, help="gateway: the environment's ingress port")
    p.add_argument("--ingress-port", type=_port, help="sidecar: where other tasks reach this task")
    p.add_argument("--egress-port", type=_port, help="sidecar: the app's HTTP proxy")
    p.add_argument("--app-port", type=_port, help="sidecar: the app's port on 127.0.0.1")
    p.add_argument("--service", help="sidecar: the service of this task, e.g. hello-web")
    p.add_argument("--version", help="sidecar: the version of this task, e.g. 66f2a19a")
    p.add_argument("--allowed-backend", action="append", default=[], metavar="NAME",
                   help="sidecar: a virtual service the app may call (repeat); anything else is refused")
    p.add_argument("--netns", metavar="PATH",
                   help="sidecar of a container task: its network namespace (/proc/PID/ns/net); the admin API "
                        "stays on the host's 127.0.0.1, the listeners are made in the task on every address")
    p.add_argument("--run-as", type=int, metavar="UID",
                   help="with --netns: the user to become once the listeners are bound (the proxy "
                        "configuration's IgnoredUID)")
    p.add_argument("--config-file", help="a config document to start with (JSON, as PUT /config takes)")
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False,
                   help="one line per request on stdout (default: off)")
    p.add_argument("--drain-timeout", type=float, default=DEFAULT_DRAIN_TIMEOUT_S, metavar="SECONDS",
                   help=f"longest wait for requests in flight when stopping (default {DEFAULT_DRAIN_TIMEOUT_S:g})")
    p.add_argument("--ingress-timeout-ms", type=int, default=DEFAULT_INGRESS_TIMEOUT_MS,
                   help=f"sidecar: request timeout towards the app (default {DEFAULT_INGRESS_TIMEOUT_MS})")
    p.add_argument("--max-request-headers-kb", type=_positive, default=DEFAULT_MAX_REQUEST_HEADERS_KB,
                   help=f"request line and headers larger than this are answered 431 "
                        f"(default {DEFAULT_MAX_REQUEST_HEADERS_KB}, as Envoy)")
    p.add_argument("--max-headers-count", type=_positive, default=DEFAULT_MAX_HEADERS_COUNT,
                   help=f"requests with more headers are answered 431 (default {DEFAULT_MAX_HEADERS_COUNT}, as Envoy)")
    p.add_argument("--request-headers-timeout-ms", type=_positive, default=DEFAULT_REQUEST_HEADERS_TIMEOUT_MS,
                   help=f"a request head must arrive within this of its first byte, else 408 "
                        f"(default {DEFAULT_REQUEST_HEADERS_TIMEOUT_MS})")
    p.add_argument("--request-timeout-ms", type=_positive, default=DEFAULT_REQUEST_TIMEOUT_MS,
                   help=f"a request held by the proxy (body not yet forwarded) must arrive whole within this, "
                        f"else 408 (default {DEFAULT_REQUEST_TIMEOUT_MS})")
    return p


def parse_args(argv: Sequence[str] | None = None) -> tuple[ProxyOptions, str | None]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.run_as is not None and args.netns is None:
        parser.error("--run-as goes with --netns")
    if args.mode == "gateway":
        if args.netns is not None:
            parser.error("--netns is for a sidecar")
        if args.listen_port is None:
            parser.error("--mode gateway needs --listen-port")
    else:
        missing = [flag for flag, value in (("--ingress-port", args.ingress_port), ("--egress-port", args.egress_port),
                                            ("--app-port", args.app_port), ("--service", args.service),
                                            ("--version", args.version)) if value is None]
        if missing:
            parser.error("--mode sidecar needs " + ", ".join(missing))
    options = ProxyOptions(
        mode=args.mode, admin_port=args.admin_port, listen_port=args.listen_port, ingress_port=args.ingress_port,
        egress_port=args.egress_port, app_port=args.app_port, service=args.service, version=args.version,
        allowed_backends=tuple(args.allowed_backend), access_log=args.access_log,
        drain_timeout_s=args.drain_timeout, ingress_timeout_ms=args.ingress_timeout_ms,
        max_request_headers_kb=args.max_request_headers_kb, max_headers_count=args.max_headers_count,
        request_headers_timeout_ms=args.request_headers_timeout_ms, request_timeout_ms=args.request_timeout_ms,
        netns=args.netns, run_as=args.run_as)
    return options, args.config_file


def load_config_file(path: str) -> DataplaneConfig:
    try:
        with open(path, encoding="utf-8") as fh:
            document = json.load(fh)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except ValueError as exc:
        raise ConfigError([f"{path}: not JSON: {exc}"]) from None
    return parse_config(document)


async def serve(options: ProxyOptions, config: DataplaneConfig | None,
                new_parser: ParserFactory | None = None) -> None:
    from meshpipe.engines.local.dataplane.admin import start_admin

    loop = asyncio.get_running_loop()
    dp = DataPlane(options, loop) if new_parser is None else DataPlane(options, loop, new_parser=new_parser)
    if config is not None:
        dp.apply_config(config)
    if options.netns is not None:
        # The admin socket on the host first; everything made after entering the namespace is in the task.
        from meshpipe.engines.local.dataplane.netns import become, enter_network_namespace

        admin = await start_admin(dp, options.admin_port)
        try:
            enter_network_namespace(options.netns)
            await dp.start()
        except BaseException:
            admin.close()
            raise
        if options.run_as is not None:
            become(options.run_as)
    else:
        await dp.start()
        try:
            admin = await start_admin(dp, options.admin_port)
        except PortInUseError:
            for listener in dp.listeners:
                if listener.server is not None:
                    listener.server.close()
            raise
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, dp.begin_drain)
    ports = " ".join(f"{listener.name}={dp.listen_host}:{listener.port}" for listener in dp.listeners)
    who = f" {options.service}/{options.version}" if options.mode == "sidecar" else ""
    print(f"{_now()} meshpipe {options.mode}{who} LIVE: {ports} admin=127.0.0.1:{options.admin_port}", flush=True)
    await dp.wait_stopped()
    admin.close()
    print(f"{_now()} meshpipe {options.mode}{who} stopped", flush=True)


def _now() -> str:
    """UTC, to the millisecond: ``meshpipe logs`` places the proxy's own lines among the app's by it."""
    at = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


def raise_open_files_limit() -> None:
    """Every client and upstream connection is a file descriptor: a soft limit of 1024 would refuse
    connections long before the proxy is busy. Raised to the hard limit, which needs no privilege."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):  # a container may cap it lower: keep what there is
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def main(argv: Sequence[str] | None = None, new_parser: ParserFactory | None = None) -> int:
    options, config_file = parse_args(argv)
    config = None
    if config_file:
        try:
            config = load_config_file(config_file)
        except ConfigError as exc:
            print(f"meshpipe proxy: {exc.message}", file=sys.stderr)
            return EXIT_USAGE
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio works, slower
        runner = asyncio.Runner()
    raise_open_files_limit()
    try:
        with runner:
            runner.run(serve(options, config, new_parser))
    except PortInUseError as exc:
        print(f"meshpipe proxy: {exc.strerror}", file=sys.stderr)
        return EXIT_PORT_IN_USE
    except OSError as exc:  # the task's namespace is gone, or this user may not enter it
        print(f"meshpipe proxy: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_NO_NAMESPACE
    return EXIT_OK
