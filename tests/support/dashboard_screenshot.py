"""Pictures of the dashboard for the README: the original sample's services on the local engine, a 80/20
canary of hello-backend, a minute of uneven traffic, then the topology and hello-backend's page in
headless Chromium.

    python tests/support/dashboard_screenshot.py [--out docs] [--seconds 60]

writes ``dashboard-topology.png`` and ``dashboard-service.png`` in ``--out``. Everything runs in a
temporary MESHPIPE_HOME, removed afterwards.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshpipe.demos.walkthrough import bundled_manifest
from meshpipe.engines.local.engine import LocalEngine
from meshpipe.engines.local.state.options import LocalOptions
from meshpipe.git import GitIdentity, clone, commit_all, push
from meshpipe.mesh.routing import WeightedTarget, make_gateway_route
from support.browser import Chromium, find_chromium

ENV = "demo"
IDENTITY = GitIdentity("meshpipe docs", "docs@meshpipe.invalid")


def deploy(engine: LocalEngine, repo: Path, service: str, manifest: bytes, message: str) -> str:
    (repo / "manifest.yaml").write_bytes(manifest)
    commit = commit_all(repo, message, IDENTITY)
    push(repo)
    run = engine.pipeline_wait(ENV, service, commit=commit, timeout=120)
    if run.status != "Succeeded" or not run.version:
        raise SystemExit(f"{service}: pipeline run {run.run_id} ended {run.status}")
    return run.version


def traffic(port: int, stop: threading.Event, started: float) -> None:
    """Requests through the ingress at a rate that swells and ebbs (so the charts have a shape)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while not stop.is_set():
        rate = 40 + 30 * math.sin((time.monotonic() - started) / 8)
        try:
            conn.request("GET", "/hello-service/hello/Bob")
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        time.sleep(1 / rate)
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("Chromium is not installed: apt-get install chromium")
    home = Path(tempfile.mkdtemp(prefix="meshpipe-docs-"))
    os.environ["MESHPIPE_HOME"] = str(home)
    engine = LocalEngine(home=home, options=LocalOptions(tasks_per_version=2, health_time_scale=0.2))
    try:
        engine.env_create(ENV)
        repos = {s: clone(engine.pipeline_create(ENV, s).clone_url, home / "work" / s) for s in
                 ("hello-web", "hello-backend")}
        web = deploy(engine, repos["hello-web"], "hello-web", bundled_manifest("hello-web-cfg"), "Baseline")
        backend = bundled_manifest("hello-backend-cfg")
        old = deploy(engine, repos["hello-backend"], "hello-backend", backend, "Baseline")
        new = deploy(engine, repos["hello-backend"], "hello-backend",
                     backend.replace(b'"-g Hello"', b'"-g Howdy"'), "A friendlier greeting")
        engine.gateway_route_set(ENV, make_gateway_route("r-ingress-hello-service", "/hello-service", "hello-web",
                                                         f"{ENV}.local"))
        engine.route_set(ENV, "hello-web", (WeightedTarget(web, 100),))
        engine.route_set(ENV, "hello-backend", (WeightedTarget(old, 80), WeightedTarget(new, 20)))
        url = engine.dashboard_url(ENV)
        base = url.split("/?", 1)[0]
        port = int(engine.ingress_url(ENV).rsplit(":", 1)[1])
        args.out.mkdir(parents=True, exist_ok=True)
        with Chromium(chromium, width=1280, height=720) as browser:
            browser.open(url)
            browser.open(f"{base}/services/hello-backend")  # the daemon records while a page is open
            stop = threading.Event()
            started = time.monotonic()
            load = threading.Thread(target=traffic, args=(port, stop, started), daemon=True)
            load.start()
            time.sleep(args.seconds)
            browser.wait_for("!!document.querySelector('td.rps polyline')", 10, "the charts")
            service = browser.screenshot(args.out / "dashboard-service.png")
            browser.open(base + "/")
            browser.wait_for("!!document.querySelector('#graph g.edge text')", 10, "the topology")
            time.sleep(4)  # two samples: the edges carry rates
            topology = browser.screenshot(args.out / "dashboard-topology.png")
            stop.set()
            load.join(timeout=15)
        print(f"wrote {service} and {topology}")
        return 0
    finally:
        try:
            engine.env_delete(ENV)
        finally:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
