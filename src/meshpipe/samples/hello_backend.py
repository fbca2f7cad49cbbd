"""hello-backend: a REST API answering ``GET /data`` (and ``POST /data``) with a greeting, a message and a
timestamp.

    python -m meshpipe.samples.hello_backend [-g GREETING] [-m MESSAGE] [-p PORT] [--host HOST]
                                             [--fail-rate 0.2] [--delay-ms 200]

``GET /data`` -> ``{"timestamp": <ms since epoch>, "greeting": ..., "message": ...}`` (``?pretty`` indents
it); ``GET /ping`` -> ``ok`` for health checks. Greeting and message come from ``-g``/``-m`` or the
environment variables ``GREETING``/``MESSAGE``; the port from ``-p`` or ``PORT``. ``--fail-rate`` and
``--delay-ms`` (``FAIL_RATE``, ``DELAY_MS``) make a bad version on purpose: that share of requests answered
500, that much latency added (``/ping`` stays healthy).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence

from aiohttp import web

from meshpipe.samples.options import FaultOptions, SampleArgumentParser
from meshpipe.samples.serve import run, with_faults

NAME = "hello-backend"
DEFAULT_GREETING = "Hello"
DEFAULT_MESSAGE = "Welcome to our world!"


def data_body(greeting: str, message: str, timestamp_ms: int, pretty: bool) -> str:
    payload = {"timestamp": timestamp_ms, "greeting": greeting, "message": message}
    return json.dumps(payload, indent=2 if pretty else None, ensure_ascii=False) + ("\n" if pretty else "")


def make_app(greeting: str, message: str) -> web.Application:
    async def data(request: web.Request) -> web.Response:
        body = data_body(greeting, message, time.time_ns() // 1_000_000, "pretty" in request.query)
        return web.Response(text=body, content_type="application/json")

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/data", data)
    app.router.add_post("/data", data)
    app.router.add_get("/ping", ping)
    return app


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[str, str, str, int, FaultOptions]:
    parser = SampleArgumentParser(prog="hello-backend",
                                  description="Answers GET /data with a greeting and a message.")
    parser.add_argument("-g", "--greeting", default=None,
                        help=f"greeting (default: $GREETING, else {DEFAULT_GREETING!r})")
    parser.add_argument("-m", "--message", default=None,
                        help=f"message (default: $MESSAGE, else {DEFAULT_MESSAGE!r})")
    parser.add_listen_options()
    FaultOptions.add_to(parser)
    args = parser.parse_sample_args(argv, environ)
    greeting = args.greeting if args.greeting is not None else environ.get("GREETING", DEFAULT_GREETING)
    message = args.message if args.message is not None else environ.get("MESSAGE", DEFAULT_MESSAGE)
    return greeting, message, args.host, args.port, FaultOptions.from_args(parser, args, environ)


def main(argv: Sequence[str] | None = None) -> int:
    greeting, message, host, port, faults = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    return run(with_faults(make_app(greeting, message), faults), NAME, host, port)


if __name__ == "__main__":
    sys.exit(main())
