"""Requests lost while the local engine's daemon is killed (``kill -9``) and brought back, under steady load.

    python bench/bench_restart.py [--window 8] [--clients 4] [--tasks-per-version 2]

An environment serves hello-backend (one version, its tasks, 100 % of the traffic) through the ingress.
Client threads send GETs through the ingress on keep-alive connections for ``--window`` seconds; after a
quarter of it the daemon is killed with SIGKILL and a read command (``meshpipe versions``, as a whole
process) is run, which finds the daemon gone (or already back) and waits for it. Every answer that is
not a 200 counts as failed, connection errors included.

Target: 0 failed requests. Also printed: how long the command took, and whether the gateway, sidecars
and apps that serve afterwards are the same processes as before (adopted) or new ones.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from baseline import deploy_baseline
from meshpipe.engines.local.engine import LocalEngine
from meshpipe.engines.local.state.daemonfiles import read_daemon_file
from meshpipe.engines.local.state.options import LocalOptions
from meshpipe.engines.local.state.store import StateStore
from meshpipe.engines.local.tasks import processes as procs
from meshpipe.mesh.routing import make_gateway_route
from ratios import Ratio, report

ENV = "bench"
SERVICE = "hello-backend"
PATH = "/backend/data"
TARGET_FAILED = 0


class Load:
    """Client threads on keep-alive connections; each result is (monotonic time, status or 0)."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.results: list[tuple[float, int, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]

    def client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", PATH)
                resp = conn.getresponse()
                body = resp.read()
                result = (resp.status, body[:80].decode("utf-8", "replace"))
            except (OSError, http.client.HTTPException) as exc:
                result = (0, f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = None
            with self.lock:
                self.results.append((time.monotonic(), *result))
        if conn is not None:
            conn.close()

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)


def serving_pids(engine: LocalEngine) -> dict[str, list[tuple[int, str]]]:
    store = StateStore(engine.paths(ENV).state_db)
    try:
        out: dict[str, list[tuple[int, str]]] = {}
        for p in store.processes():
            out.setdefault(p.role, []).append((p.pid, p.started))
        return {k: sorted(v) for k, v in out.items()}
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--window", type=float, default=8.0, help="seconds of load in all")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--tasks-per-version", type=int, default=2)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="meshpipe-bench-"))
    os.environ["MESHPIPE_HOME"] = str(home)
    engine = LocalEngine(home=home, options=LocalOptions(tasks_per_version=args.tasks_per_version))
    try:
        print(f"setting up {SERVICE} with {args.tasks_per_version} task(s) in {home} ...", flush=True)
        deploy_baseline(engine, ENV, SERVICE, home / "work" / f"{SERVICE}-cfg")
        engine.gateway_route_set(ENV, make_gateway_route("r-backend", "/backend", SERVICE, f"{ENV}.local"))
        port = int(engine.ingress_url(ENV).rsplit(":", 1)[1])
        before = serving_pids(engine)
        daemon = read_daemon_file(engine.paths(ENV).daemon_json)
        assert daemon is not None

        cli = [sys.executable, "-m", "meshpipe", "versions", SERVICE, "--env", ENV]
        with Load(port, args.clients) as load:
            time.sleep(args.window / 4)
            killed_at = time.monotonic()
            os.kill(int(daemon["pid"]), signal.SIGKILL)
            done = subprocess.run(cli, capture_output=True, text=True, env={**os.environ}, timeout=120)
            restored_at = time.monotonic()
            time.sleep(max(0.0, args.window - (restored_at - load.results[0][0] if load.results else 0)))
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cli[2:])} failed: {done.stdout}{done.stderr}")
        after = serving_pids(engine)
        new_daemon = read_daemon_file(engine.paths(ENV).daemon_json)
    finally:
        try:
            engine.env_delete(ENV)
        finally:
            shutil.rmtree(home, ignore_errors=True)

    results = load.results
    failed = [r for r in results if r[1] != 200]
    window = results[-1][0] - results[0][0] if results else 0.0
    first_fail = min((r[0] for r in failed), default=None)
    last_fail = max((r[0] for r in failed), default=None)
    same = {role: before.get(role) == after.get(role) for role in ("gateway", "sidecar", "app")}
    print()
    print(f"requests through the ingress in {window:.1f} s: {len(results)}; failed: {len(failed)} "
          f"(target {TARGET_FAILED}: {'met' if len(failed) <= TARGET_FAILED else 'MISSED'})")
    if failed:
        kinds: dict[str, int] = {}
        for r in failed:
            key = str(r[1]) if r[1] else r[2].split(":")[0]
            kinds[key] = kinds.get(key, 0) + 1
        print(f"  failures by kind: {kinds}; from {first_fail - killed_at:+.2f} s to "  # type: ignore[operator]
              f"{last_fail - killed_at:+.2f} s after the kill")
    print(f"kill -9 -> '{' '.join(cli[2:])}' answered: {restored_at - killed_at:.2f} s "
          f"(daemon pid {daemon['pid']} -> {new_daemon['pid'] if new_daemon else '?'})")
    print("same processes serving afterwards: " + ", ".join(
        f"{role} {'yes' if ok else 'no'} ({len(before.get(role, []))})" for role, ok in same.items()))
    still = [pid for pids in after.values() for pid, _ in pids if procs.is_running(pid)]
    if still:
        print(f"warning: processes still running after env delete: {still}")
    # A share of requests (target 0): every request counts, whatever the window held.
    return report("bench_restart", [Ratio("failed requests / requests", len(failed) / max(1, len(results)),
                                          TARGET_FAILED / max(1, len(results)))])


if __name__ == "__main__":
    sys.exit(main())
