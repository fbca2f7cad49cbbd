"""How late the daemon's rollout decisions land after their windows end, on the local engine.

    .venv/bin/python bench/bench_rollout.py [--step 10] [--interval 1]

An environment in a temporary home; hello-backend's first version, then a second one with a linear
rollout (``--step`` percent per step, ``--interval`` seconds each) under steady load through the ingress.
Each judged window records when it was due and when its decision was taken; the table shows the lag,
and the end-to-end time from ``git push`` to the promotion. Everything it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from meshpipe import git
from meshpipe.engines.local.engine import LocalEngine
from meshpipe.engines.local.state.options import LocalOptions
from meshpipe.mesh.routing import make_gateway_route
from ratios import Ratio, report

ENV, SERVICE = "bench", "hello-backend"
LAG_BOUND_MS = 1000.0  # a decision lands within this of its window's end


def manifest(greeting: str, step: int, interval: int) -> str:
    return (f'Task:\n  Family: "hello-backend"\nAppContainer:\n  Image: "wizriz/hello-backend:66f2a19"\n'
            f'  Port: 80\n  HealthCheckPath: "/ping"\n  Command: ["node", "server", "-g {greeting}"]\n'
            f"Rollout:\n  Strategy: linear\n  StepPercent: {step}\n  Interval: {interval}\n"
            f"  Analysis: {{MinRequests: 5}}\n")


def load(port: int, stop: threading.Event) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while not stop.is_set():
        try:
            conn.request("GET", "/backend/data")
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        stop.wait(0.01)
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=int, default=10)
    parser.add_argument("--interval", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        engine = LocalEngine(home=home / "home", options=LocalOptions(tasks_per_version=1, health_time_scale=0.2))
        engine.env_create(ENV)
        stop = threading.Event()
        try:
            info = engine.pipeline_create(ENV, SERVICE)
            work = home / "cfg"
            git.clone(info.clone_url, work)
            engine.gateway_route_set(ENV, make_gateway_route("r-backend", "/backend", SERVICE, f"{ENV}.local"))
            for greeting in ("Hello", "Yo"):
                (work / "manifest.yaml").write_text(manifest(greeting, args.step, args.interval))
                commit = git.commit_all(work, greeting)
                pushed = time.monotonic()
                git.push(work)
                engine.pipeline_wait(ENV, SERVICE, commit=commit[:8], timeout=120)
                if greeting == "Hello":
                    port = int(engine.ingress_url(ENV).rsplit(":", 1)[1])
                    threading.Thread(target=load, args=(port, stop), daemon=True).start()
                    continue
                while True:
                    status = engine.rollout_status(ENV, SERVICE)
                    if status["candidate"] == commit[:8] and status["status"] != "running":
                        break
                    time.sleep(0.1)
                total = time.monotonic() - pushed
            lags = [w["decision_lag_s"] * 1000 for w in status["windows"]]
            print(f"rollout {status['describe']}: {status['status']} after {len(lags)} windows, "
                  f"{total:.1f} s from git push")
            print(f"decision lag after a window's end: median {statistics.median(lags):.1f} ms, "
                  f"max {max(lags):.1f} ms (bound: {LAG_BOUND_MS:g} ms)")
        finally:
            stop.set()
            engine.env_delete(ENV)
    # The end-to-end tests only check that a decision is never early nor a window late; the bound is here.
    return report("bench_rollout", [Ratio(f"slowest decision lag / {LAG_BOUND_MS:g} ms bound", max(lags) / LAG_BOUND_MS,
                                          1.0)])


if __name__ == "__main__":
    sys.exit(main())
