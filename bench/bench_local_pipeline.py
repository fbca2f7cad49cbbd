"""How fast the local engine turns a push into served traffic, and a route change into applied weights.

    python bench/bench_local_pipeline.py [--pushes 5] [--changes 20] [--tasks-per-version 1]

(a) push -> new version answering through the mesh: from the start of ``git push`` (and, separately, from
    its return) to the first response of the new version through the ingress, the route having been set
    to it as soon as its pipeline run succeeded. Median over ``--pushes`` pushes to hello-backend.
(b) route change -> fully applied: from calling ``route_set`` (100 % to the other version) to the first
    response from that version through the ingress, and the ``route_set`` call's own duration. Median over
    ``--changes`` changes.

Targets: (a) <= 3 s, (b) <= 100 ms. Everything runs in a temporary MESHPIPE_HOME, removed afterwards.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from meshpipe.demos.walkthrough import (
    BACKEND,
    ENV,
    GATEWAY_PREFIX,
    GATEWAY_ROUTE,
    HELLO_PATH,
    WEB,
    IngressClient,
    bundled_manifest,
    make_local_engine,
)
from meshpipe.git import GitIdentity, clone, commit_all, push
from meshpipe.mesh.routing import WeightedTarget, make_gateway_route
from ratios import Ratio, report

TARGET_PUSH_S = 3.0
TARGET_ROUTE_MS = 100.0
IDENTITY = GitIdentity("meshpipe bench", "bench@meshpipe.invalid")
WAIT_S = 120.0


def backend_manifest(greeting: str) -> bytes:
    """The original sample's backend manifest with another greeting, so each version's pages can be told apart."""
    text = bundled_manifest("hello-backend-cfg").decode()
    return text.replace('"-g Hello"', f'"-g {greeting}"').encode()


def run_id_of(remote: str) -> str | None:
    for line in remote.splitlines():
        if line.startswith("meshpipe: pipeline run "):
            return line.split()[3]
    return None


def wait_for_greeting(ingress: IngressClient, greeting: str, timeout: float = WAIT_S) -> float:
    """Poll the ingress until a page starts with ``greeting``; returns the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, body = ingress.get(HELLO_PATH)
        except (OSError, http.client.HTTPException):
            status, body = 0, ""
        if status == 200 and body.startswith(f"{greeting} Bob<br>"):
            return time.monotonic()
    raise SystemExit(f"no page greeting {greeting!r} within {timeout:g} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pushes", type=int, default=5)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--tasks-per-version", type=int, default=1)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="meshpipe-bench-"))
    os.environ["MESHPIPE_HOME"] = str(home)
    engine = make_local_engine(home, args.tasks_per_version)
    work = home / "work"
    try:
        print(f"setting up environment {ENV} in {home} ({args.tasks_per_version} task(s) per version) ...", flush=True)
        ingress = IngressClient(engine.env_create(ENV).ingress_url or engine.ingress_url(ENV))
        repos: dict[str, Path] = {}
        runs: dict[str, str | None] = {}
        for service in (WEB, BACKEND):
            info = engine.pipeline_create(ENV, service)
            repos[service] = clone(info.clone_url, work / f"{service}-cfg")
            manifest = bundled_manifest(f"{service}-cfg") if service == WEB else backend_manifest("Base")
            (repos[service] / "manifest.yaml").write_bytes(manifest)
            commit_all(repos[service], "Baseline service configuration", IDENTITY)
            runs[service] = run_id_of(push(repos[service]))
        versions = {s: engine.pipeline_wait(ENV, s, runs[s], timeout=WAIT_S).version for s in (WEB, BACKEND)}
        engine.gateway_route_set(ENV, make_gateway_route(GATEWAY_ROUTE, GATEWAY_PREFIX, WEB, f"{ENV}.local"))
        engine.route_set(ENV, WEB, (WeightedTarget(str(versions[WEB]), 100),))
        engine.route_set(ENV, BACKEND, (WeightedTarget(str(versions[BACKEND]), 100),))
        wait_for_greeting(ingress, "Base")

        # (a) push -> serving
        from_start: list[float] = []
        from_return: list[float] = []
        pipeline_s: list[float] = []
        current = str(versions[BACKEND])
        previous: list[str] = []
        greetings: dict[str, str] = {current: "Base"}
        for i in range(1, args.pushes + 1):
            greeting = f"Push{i}"
            (repos[BACKEND] / "manifest.yaml").write_bytes(backend_manifest(greeting))
            commit_all(repos[BACKEND], f"Greeting {greeting}", IDENTITY)
            t_start = time.monotonic()
            remote = push(repos[BACKEND])
            t_returned = time.monotonic()
            run = engine.pipeline_wait(ENV, BACKEND, run_id_of(remote), timeout=WAIT_S)
            if run.status != "Succeeded" or not run.version:
                raise SystemExit(f"pipeline run {run.run_id} ended {run.status}")
            t_built = time.monotonic()
            engine.route_set(ENV, BACKEND, (WeightedTarget(run.version, 100),))
            t_served = wait_for_greeting(ingress, greeting)
            from_start.append(t_served - t_start)
            from_return.append(t_served - t_returned)
            pipeline_s.append(t_built - t_returned)
            print(f"  push {i}: {t_served - t_start:.2f} s from push start "
                  f"(push {t_returned - t_start:.2f} s, pipeline {t_built - t_returned:.2f} s, "
                  f"route to first response {t_served - t_built:.3f} s)", flush=True)
            previous.append(current)
            current = run.version
            greetings[current] = greeting
            # Keep two versions alive (for part b); retire older ones so the machine is not crowded.
            while len(previous) > 1:
                engine.version_delete(ENV, BACKEND, previous.pop(0))

        # (b) route change -> applied
        applied_ms: list[float] = []
        call_ms: list[float] = []
        pair = [previous[-1], current]
        for i in range(args.changes):
            target = pair[i % 2]
            t0 = time.monotonic()
            engine.route_set(ENV, BACKEND, (WeightedTarget(target, 100),))
            t_call = time.monotonic()
            t_seen = wait_for_greeting(ingress, greetings[target], timeout=10.0)
            call_ms.append((t_call - t0) * 1000)
            applied_ms.append((t_seen - t0) * 1000)
        ingress.close()
    finally:
        try:
            engine.env_delete(ENV)
        finally:
            shutil.rmtree(home, ignore_errors=True)

    push_median = statistics.median(from_start)
    route_median = statistics.median(applied_ms)
    print()
    print(f"(a) push -> new version answering through the mesh, median of {len(from_start)}:")
    print(f"    from push start   {push_median:.2f} s   (target <= {TARGET_PUSH_S:g} s: "
          f"{'met' if push_median <= TARGET_PUSH_S else 'MISSED'})")
    print(f"    from push return  {statistics.median(from_return):.2f} s; pipeline run alone "
          f"{statistics.median(pipeline_s):.2f} s")
    print(f"(b) route change -> fully applied, median of {len(applied_ms)}:")
    print(f"    to first response {route_median:.1f} ms   (target <= {TARGET_ROUTE_MS:g} ms: "
          f"{'met' if route_median <= TARGET_ROUTE_MS else 'MISSED'}); max {max(applied_ms):.1f} ms")
    print(f"    route_set call    {statistics.median(call_ms):.1f} ms")
    # Fixed budgets: each ratio is the median over its budget.
    return report("bench_local_pipeline", [
        Ratio(f"push -> answering / {TARGET_PUSH_S:g} s budget", push_median / TARGET_PUSH_S, 1.0),
        Ratio(f"route change -> applied / {TARGET_ROUTE_MS:g} ms budget", route_median / TARGET_ROUTE_MS, 1.0)])


if __name__ == "__main__":
    sys.exit(main())
