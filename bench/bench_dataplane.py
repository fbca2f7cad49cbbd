"""Data-plane speed: meshpipe's proxies against direct calls and HAProxy doing the same hops.

    .venv/bin/python bench/bench_dataplane.py [--duration 4] [--rounds 5] [--connections 32] [--chain-only]

Everything runs on 127.0.0.1 with the bundled sample apps (aiohttp). Configurations:

    direct-backend   wrk -> hello-backend /data
    direct-chain     wrk -> hello-web -> hello-backend                          (no proxy)
    haproxy-1hop     wrk -> HAProxy -> hello-backend
    meshpipe-1hop    wrk -> meshpipe sidecar ingress -> hello-backend
    haproxy-chain    wrk -> gateway -> web sidecar -> hello-web -> its egress -> backend sidecar -> hello-backend
    meshpipe-chain   the same hops through meshpipe's gateway and sidecars

HAProxy runs as one process per proxy (gateway, web sidecar, backend sidecar), single-threaded, as
meshpipe does. Load comes from wrk (``-t2 -cN --latency``), or from a small Python load generator
when wrk is not installed; HAProxy configurations are skipped when ``haproxy`` is not installed.
Rounds are interleaved, each pair of meshpipe and HAProxy runs back to back (in alternating order), and
the table shows medians. The target: meshpipe's full chain at least 90 % of HAProxy's, as the median of
the per-round ratios; the proxies' CPU time per request (from /proc) is shown beside it. Then the time
from the start of a route push to the first response from the new version is measured over 20 changes.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httptools

from meshpipe.engines.local.dataplane import client
from ratios import Ratio, report

# The process helpers are the tests' own (tests/support/dataplane.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.dataplane import LOOPBACK, Processes, free_port, mesh_document, wait_port

V1, V2, WEB = "e9d5f17a", "0badc0de", "66f2a19a"
TARGET_CHAIN_RATIO = 0.9  # the full chain at least 90 % of HAProxy's requests per second
BACKEND_VS = "hello-backend.demo.local"
HELLO = "/hello-service/hello/Bob"


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float | None = None  # CPU time of the configuration's proxy processes per request


def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU time of ``pids`` so far (Linux /proc; None elsewhere)."""
    total = 0.0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


def with_cpu(pids: list[int], run: Callable[[], Result], duration: float) -> Result:
    before = cpu_seconds(pids)
    result = run()
    after = cpu_seconds(pids)
    if before is not None and after is not None and result.rps > 0:
        result.cpu_us = (after - before) / (result.rps * duration) * 1e6
    return result


# ---- load generators ----

def _wrk_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, duration: float, connections: int) -> Result:
    seconds = max(1, math.ceil(duration))  # wrk takes whole seconds only
    proc = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                          capture_output=True, text=True, timeout=seconds + 30)
    out = proc.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise SystemExit(f"wrk gave no result for {url}: {(proc.stderr or out).strip()[:500]}")
    rps = float(found.group(1))
    p50 = _wrk_ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _wrk_ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    return Result(rps, p50, p99, errors)


async def _python_load(port: int, path: str, duration: float, connections: int) -> Result:
    latencies: list[float] = []
    errors = 0
    request = f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n\r\n".encode()
    stop_at = time.monotonic() + duration

    class Done:
        def __init__(self) -> None:
            self.complete = False
            self.status = 0

        def on_message_complete(self) -> None:
            self.complete = True

    async def one_connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            while time.monotonic() < stop_at:
                done = Done()
                parser = httptools.HttpResponseParser(done)
                started = time.perf_counter()
                writer.write(request)
                while not done.complete:
                    data = await reader.read(65536)
                    if not data:
                        raise ConnectionError("closed")
                    parser.feed_data(data)
                latencies.append((time.perf_counter() - started) * 1000)
                if parser.get_status_code() >= 400:
                    errors += 1
        except (OSError, httptools.HttpParserError):
            errors += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    elapsed = time.monotonic() - started
    latencies.sort()
    if not latencies:
        return Result(0.0, 0.0, 0.0, errors)
    return Result(len(latencies) / elapsed, latencies[len(latencies) // 2],
                  latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], errors)


def run_load(port: int, path: str, duration: float, connections: int) -> Result:
    if shutil.which("wrk"):
        return run_wrk(f"http://{LOOPBACK}:{port}{path}", duration, connections)
    return asyncio.run(_python_load(port, path, duration, connections))


# ---- the systems under test ----

HAPROXY_DEFAULTS = """global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
"""


def start_haproxy(procs: Processes, workdir: Path, name: str, body: str, ports: list[int]) -> None:
    cfg = workdir / f"{name}.cfg"
    cfg.write_text(HAPROXY_DEFAULTS + body)
    popen = procs.spawn(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL)
    for port in ports:
        if not wait_port(port, 10, popen):
            raise RuntimeError(f"haproxy {name} did not start")


@dataclass
class Apps:
    backend_v1: int
    backend_v2: int


def start_backends(procs: Processes) -> Apps:
    _, v1 = procs.sample("hello_backend", ["-g", "Hello", "-m", "Welcome to our world!"])
    _, v2 = procs.sample("hello_backend", ["-g", "Yo", "-m", "Have a great day!"])
    return Apps(v1, v2)


def setup_direct_chain(procs: Processes, apps: Apps) -> int:
    _, web = procs.sample("hello_web", ["-b", f"http://{LOOPBACK}:{apps.backend_v1}/data"])
    return web


def haproxy_ingress(listen_port: int, app_port: int) -> str:
    """HAProxy's part of a sidecar that forwards what reaches ``listen_port`` to the app on ``app_port``."""
    return f"""
frontend ingress
    bind {LOOPBACK}:{listen_port}
    default_backend app
backend app
    server app {LOOPBACK}:{app_port}
"""


def setup_haproxy(procs: Processes, apps: Apps, workdir: Path) -> tuple[int, int, list[int]]:
    """(one-hop port, chain gateway port, the chain's HAProxy pids)."""
    one_hop = free_port()
    start_haproxy(procs, workdir, "one-hop", haproxy_ingress(one_hop, apps.backend_v1), [one_hop])
    backend_ingress, web_ingress, web_egress, gateway = free_port(), free_port(), free_port(), free_port()
    start_haproxy(procs, workdir, "backend-sidecar", haproxy_ingress(backend_ingress, apps.backend_v1),
                  [backend_ingress])
    _, web_app = procs.sample("hello_web", ["-b", f"http://{BACKEND_VS}/data"],
                              env={"HTTP_PROXY": f"http://{LOOPBACK}:{web_egress}", "NO_PROXY": ""})
    start_haproxy(procs, workdir, "web-sidecar", haproxy_ingress(web_ingress, web_app) + f"""\
frontend egress
    bind {LOOPBACK}:{web_egress}
    acl declared hdr(host) -i {BACKEND_VS}
    http-request deny deny_status 403 unless declared
    http-request set-uri %[pathq]
    default_backend hello_backend
backend hello_backend
    server b1 {LOOPBACK}:{backend_ingress}
""", [web_ingress, web_egress])
    start_haproxy(procs, workdir, "gateway", f"""
frontend gateway
    bind {LOOPBACK}:{gateway}
    acl hello path_beg /hello-service
    http-request deny deny_status 404 unless hello
    http-request set-path %[path,regsub(^/hello-service/?,/)]
    default_backend hello_web
backend hello_web
    server w1 {LOOPBACK}:{web_ingress}
""", [gateway])
    chain_pids = [p.pid for p in procs.started[-4:] if "haproxy" in str(p.args)]
    return one_hop, gateway, chain_pids


@dataclass
class Meshpipe:
    one_hop: int
    gateway: int
    admins: list[int]
    web_ingress: int
    backend_ingress: dict[str, int]
    chain_pids: list[int]


def setup_meshpipe(procs: Processes, apps: Apps, src: str | None = None) -> Meshpipe:
    """meshpipe's proxies, from this checkout or (``src``) from another one's ``src`` folder."""
    env = {"PYTHONPATH": src} if src else None
    one_hop = procs.proxy("sidecar", app_port=apps.backend_v1, service="hello-backend", version=V1, env=env)
    backends = {version: procs.proxy("sidecar", app_port=port, service="hello-backend", version=version, env=env)
                for version, port in ((V1, apps.backend_v1), (V2, apps.backend_v2))}
    web_egress = free_port()
    _, web_app = procs.sample("hello_web", ["-b", f"http://{BACKEND_VS}/data"],
                              env={"HTTP_PROXY": f"http://{LOOPBACK}:{web_egress}", "NO_PROXY": ""})
    web = procs.proxy("sidecar", app_port=web_app, egress_port=web_egress, service="hello-web", version=WEB,
                      allowed_backends=[BACKEND_VS], env=env)
    gateway = procs.proxy("gateway", env=env)
    mp = Meshpipe(one_hop.ports["ingress_port"], gateway.ports["listen_port"],
                  [gateway.admin_port, web.admin_port, *(b.admin_port for b in backends.values())],
                  web.ports["ingress_port"], {v: b.ports["ingress_port"] for v, b in backends.items()},
                  [gateway.popen.pid, web.popen.pid, backends[V1].popen.pid])
    push_route(mp, 1, V1)
    return mp


def push_route(mp: Meshpipe, generation: int, version: str) -> None:
    doc = mesh_document(generation, routes={"hello-web": [(WEB, 100)], "hello-backend": [(version, 100)]},
                        endpoints={"hello-web": {WEB: [mp.web_ingress]},
                                   "hello-backend": {v: [p] for v, p in mp.backend_ingress.items()}},
                        gateway_routes=[("r-ingress-hello-service", "/hello-service", "hello-web", True)])
    for admin in mp.admins:
        client.push_config(admin, doc)


def check(port: int, path: str, expect: bytes) -> None:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    try:
        conn.request("GET", path)
        body = conn.getresponse().read()
    finally:
        conn.close()
    if expect not in body:
        raise RuntimeError(f"{LOOPBACK}:{port}{path} answered {body[:200]!r}, expected {expect!r}")


def measure_route_changes(mp: Meshpipe, changes: int = 20) -> tuple[list[float], list[float]]:
    """Per change: (push round trip to every proxy, push start -> first response from the new version), ms."""
    conn = http.client.HTTPConnection(LOOPBACK, mp.gateway, timeout=5)
    pushes, applied = [], []
    try:
        for i in range(changes):
            version, greeting = (V2, b"Yo ") if i % 2 == 0 else (V1, b"Hello ")
            started = time.perf_counter()
            push_route(mp, 100 + i, version)
            pushed = time.perf_counter()
            for _ in range(200):  # bounded: the first answer is expected to be the new version
                conn.request("GET", HELLO)
                if conn.getresponse().read().startswith(greeting):
                    break
            else:
                raise RuntimeError("the route change never showed")
            applied.append((time.perf_counter() - started) * 1000)
            pushes.append((pushed - started) * 1000)
    finally:
        conn.close()
    return pushes, applied


def _swap_pairs(names: list[str]) -> list[str]:
    """``[..., haproxy-x, meshpipe-x, ...]`` with each such pair in the other order."""
    out = list(names)
    for i in range(len(out) - 1):
        if out[i].startswith("haproxy-") and out[i + 1] == "meshpipe-" + out[i][len("haproxy-"):]:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per run (default 4)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians shown (default 5)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--chain-only", action="store_true", help="only the full chain, meshpipe and HAProxy")
    parser.add_argument("--compare-src", metavar="DIR",
                        help="also run the chain with the proxies of another checkout (its src folder), "
                             "side by side: what a change costs")
    args = parser.parse_args()

    if shutil.which("wrk"):
        args.duration = max(1, math.ceil(args.duration))  # wrk takes whole seconds only
    have_haproxy = shutil.which("haproxy") is not None
    loadgen = f"wrk -t2 -c{args.connections} --latency" if shutil.which("wrk") else (
        f"Python load generator, {args.connections} connections (wrk not installed)")
    if not have_haproxy:
        print("haproxy not installed: HAProxy configurations skipped (apt-get install -y haproxy)")
    with Processes() as procs, tempfile.TemporaryDirectory(prefix="bench-dataplane-") as tmp:
        apps = start_backends(procs)
        direct_web = setup_direct_chain(procs, apps)
        mp = setup_meshpipe(procs, apps)
        load = args.duration, args.connections
        runs: dict[str, Callable[[], Result]] = {}
        if not args.chain_only:
            runs["direct-backend"] = lambda: run_load(apps.backend_v1, "/data", *load)
            runs["direct-chain"] = lambda: run_load(direct_web, "/hello/Bob", *load)
        checks = [(apps.backend_v1, "/data", b"Hello"), (direct_web, "/hello/Bob", b"Hello Bob"),
                  (mp.one_hop, "/data", b"Hello"), (mp.gateway, HELLO, b"Hello Bob")]
        if have_haproxy:
            ha_one_hop, ha_gateway, ha_chain_pids = setup_haproxy(procs, apps, Path(tmp))
            if not args.chain_only:
                runs["haproxy-1hop"] = lambda: run_load(ha_one_hop, "/data", *load)
            checks += [(ha_one_hop, "/data", b"Hello"), (ha_gateway, HELLO, b"Hello Bob")]
        if not args.chain_only:
            runs["meshpipe-1hop"] = lambda: run_load(mp.one_hop, "/data", *load)
        if have_haproxy:
            runs["haproxy-chain"] = lambda: with_cpu(ha_chain_pids, lambda: run_load(ha_gateway, HELLO, *load),
                                                     args.duration)
        runs["meshpipe-chain"] = lambda: with_cpu(mp.chain_pids, lambda: run_load(mp.gateway, HELLO, *load),
                                                  args.duration)
        if args.compare_src:
            other = setup_meshpipe(procs, apps, str(Path(args.compare_src).resolve()))
            checks.append((other.gateway, HELLO, b"Hello Bob"))
            runs["compared-chain"] = lambda: with_cpu(other.chain_pids,
                                                      lambda: run_load(other.gateway, HELLO, *load), args.duration)
        for port, path, expect in checks:
            check(port, path, expect)

        results: dict[str, list[Result]] = {name: [] for name in runs}
        names = list(runs)
        for round_no in range(args.rounds):
            # Each meshpipe/HAProxy pair runs back to back, HAProxy first in odd rounds and last in even
            # ones, so that a drift in the machine's load favours neither.
            order = names if round_no % 2 == 0 else _swap_pairs(names)
            for name in order:
                result = runs[name]()
                results[name].append(result)
                cpu = f"  proxies' CPU {result.cpu_us:6.1f} us/request" if result.cpu_us is not None else ""
                print(f"round {round_no + 1} {name:15s} {result.rps:9.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                      f"p99 {result.p99_ms:6.2f} ms  errors {result.errors}{cpu}", flush=True)

        print(f"\nload: {loadgen}, {args.duration:g} s per run, {args.rounds} rounds (medians), 127.0.0.1, "
              "sample apps on aiohttp + uvloop\n")
        print(f"{'configuration':16s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>7s}  all rounds req/s")
        medians: dict[str, float] = {}
        for name, rs in results.items():
            medians[name] = statistics.median(r.rps for r in rs)
            print(f"{name:16s} {medians[name]:9.0f} {statistics.median(r.p50_ms for r in rs):8.2f} "
                  f"{statistics.median(r.p99_ms for r in rs):8.2f} {sum(r.errors for r in rs):7d}  "
                  + " / ".join(f"{r.rps:.0f}" for r in rs))
        if have_haproxy:
            if not args.chain_only:
                print(f"\nmeshpipe / HAProxy, one hop:    {medians['meshpipe-1hop'] / medians['haproxy-1hop']:.0%}")
            per_round = [m.rps / h.rps for m, h in zip(results["meshpipe-chain"], results["haproxy-chain"],
                                                       strict=True)]
            chain_ratio = statistics.median(per_round)
            print(f"meshpipe / HAProxy, full chain: {chain_ratio:.2f} (median of {len(per_round)} side-by-side "
                  "rounds: " + " ".join(f"{r:.2f}" for r in per_round) + ")")
            cpus = [[r.cpu_us for r in results[name] if r.cpu_us is not None]
                    for name in ("meshpipe-chain", "haproxy-chain")]
            if all(cpus):
                print(f"proxies' CPU per request in the chain (median): meshpipe {statistics.median(cpus[0]):.1f} us "
                      f"(gateway + 2 sidecars), HAProxy {statistics.median(cpus[1]):.1f} us (3 processes)")
        if args.compare_src:
            per_round = [m.rps / c.rps for m, c in zip(results["meshpipe-chain"], results["compared-chain"],
                                                       strict=True)]
            compared_cpu = [r.cpu_us for r in results["compared-chain"] if r.cpu_us is not None]
            print(f"meshpipe / {args.compare_src}, full chain: {statistics.median(per_round):.2f} (median of "
                  f"{len(per_round)} rounds: " + " ".join(f"{r:.2f}" for r in per_round) + ")"
                  + (f"; its proxies' CPU per request {statistics.median(compared_cpu):.1f} us"
                     if compared_cpu else ""))

        pushes, applied = measure_route_changes(mp)
        print(f"\nroute change, {len(applied)} changes through the gateway -> hello-web -> hello-backend chain:")
        print(f"  PUT /config to all 4 proxies: median {statistics.median(pushes):.1f} ms, max {max(pushes):.1f} ms")
        print(f"  push start -> first response from the new version: median {statistics.median(applied):.1f} ms, "
              f"max {max(applied):.1f} ms")
        # The target, side by side in this run (bench/ratios.py): the median of the per-round ratios, each
        # round's pair measured back to back. Without HAProxy there is nothing to compare with: no ratio,
        # and ./dev bench --check counts that as a miss.
        ratios = [Ratio("meshpipe-chain / haproxy-chain req/s", chain_ratio, TARGET_CHAIN_RATIO, at_most=False)
                  ] if have_haproxy else []
    return report("bench_dataplane", ratios)


if __name__ == "__main__":
    sys.exit(main())
