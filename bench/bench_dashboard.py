"""What the web dashboard costs an idle environment, and how fast a weight change reaches an open page.

    python bench/bench_dashboard.py [--services 20] [--versions 3] [--tasks-per-version 1] [--window 20]
                                    [--rounds 3] [--changes 10]

Sets up ``--services`` services with ``--versions`` versions each (real pipeline runs, each version its
app and sidecar processes), a route per service with all its versions weighted, and a gateway route per
service. Then, with no traffic, it measures the CPU time of every process of the environment (daemon,
gateway, sidecars, apps: utime + stime from /proc) over ``--window`` seconds, in alternating rounds:

* no dashboard page open,
* the topology page open in headless Chromium (Debian's package),
* a service page open.

The dashboard's cost is the difference to the rounds without a page, in percent of one CPU core.
Chromium's own CPU is shown apart: it is the viewer's, not the environment's.

Finally, with the topology page open, ``--changes`` route changes: the time from calling ``route_set``
to the page showing the new weight (``route_set`` returns once every proxy applied the change).

Targets: the dashboard adds <= 2 % of one core to the idle environment; a weight change shows within 1 s.
Everything runs in a temporary MESHPIPE_HOME, removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Chromium driver the browser test uses

from meshpipe.demos.walkthrough import bundled_manifest  # noqa: E402
from meshpipe.engines.local.engine import LocalEngine  # noqa: E402
from meshpipe.engines.local.state.options import LocalOptions  # noqa: E402
from meshpipe.git import GitIdentity, clone, commit_all, push  # noqa: E402
from meshpipe.mesh.routing import WeightedTarget, make_gateway_route  # noqa: E402
from ratios import Ratio, report  # noqa: E402
from support.browser import Chromium, find_chromium  # noqa: E402

TARGET_CPU_PERCENT = 2.0
TARGET_CHANGE_S = 1.0
ENV = "bench"
IDENTITY = GitIdentity("meshpipe bench", "bench@meshpipe.invalid")
TICKS = os.sysconf("SC_CLK_TCK")
WAIT_S = 300.0


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes, in seconds (a process that is gone counts 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def cores_used(pids: list[int], seconds: float) -> float:
    start_cpu, start = cpu_seconds(pids), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pids) - start_cpu) / (time.monotonic() - start)


def manifest(greeting: str, calls: str | None) -> bytes:
    """hello-backend with its own greeting; or, for a service that calls another, hello-web calling it."""
    if calls is None:
        text = bundled_manifest("hello-backend-cfg").decode()
        return text.replace('"-g Hello"', f'"-g {greeting}"').encode()
    text = bundled_manifest("hello-web-cfg").decode()
    return text.replace("hello-backend.demo.local", f"{calls}.{ENV}.local").encode()


def run_id_of(remote: str) -> str | None:
    for line in remote.splitlines():
        if line.startswith("meshpipe: pipeline run "):
            return line.split()[3]
    return None


def set_up(engine: LocalEngine, work: Path, services: int, versions: int) -> dict[str, list[str]]:
    """Every service's versions, deployed through their pipelines (services in parallel). Every odd-numbered
    service calls the next one, so half the versions' sidecars send traffic (and the dashboard reads them)."""
    names = [f"svc-{i:02d}" for i in range(1, services + 1)]
    calls = {name: names[i + 1] if i % 2 == 0 and i + 1 < len(names) else None for i, name in enumerate(names)}
    repos = {}
    for name in names:
        repos[name] = clone(engine.pipeline_create(ENV, name).clone_url, work / f"{name}-cfg")
    deployed: dict[str, list[str]] = {name: [] for name in names}

    def one_version(name: str, n: int) -> None:
        (repos[name] / "manifest.yaml").write_bytes(manifest(f"V{n}", calls[name]) + f"# version {n}\n".encode())
        commit_all(repos[name], f"version {n}", IDENTITY)
        run = engine.pipeline_wait(ENV, name, run_id_of(push(repos[name])), timeout=WAIT_S)
        if run.status != "Succeeded" or not run.version:
            raise SystemExit(f"pipeline run {run.run_id} of {name} ended {run.status}")
        deployed[name].append(run.version)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for n in range(1, versions + 1):
            list(pool.map(lambda name, n=n: one_version(name, n), names))
            print(f"  version {n} of every service deployed", flush=True)
    shares = [70, 20, 10] if versions == 3 else [100 // versions] * versions
    shares[0] += 100 - sum(shares)
    for name in names:
        engine.route_set(ENV, name, tuple(WeightedTarget(v, w) for v, w in zip(deployed[name], shares, strict=True)))
        engine.gateway_route_set(ENV, make_gateway_route(f"r-{name}", f"/{name}", name, f"{ENV}.local"))
    return deployed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--tasks-per-version", type=int, default=1)
    parser.add_argument("--window", type=float, default=20.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--settle", type=float, default=15.0, help="seconds to wait after set-up")
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("Chromium is not installed: apt-get install chromium chromium-driver (./dev bench does)")

    home = Path(tempfile.mkdtemp(prefix="meshpipe-bench-"))
    os.environ["MESHPIPE_HOME"] = str(home)
    engine = LocalEngine(home=home, options=LocalOptions(tasks_per_version=args.tasks_per_version))
    try:
        size = f"{args.services} services x {args.versions} versions x {args.tasks_per_version} task(s)"
        print(f"setting up environment {ENV} ({size}) in {home} ...", flush=True)
        started = time.monotonic()
        engine.env_create(ENV)
        deployed = set_up(engine, home / "work", args.services, args.versions)
        print(f"  ready in {time.monotonic() - started:.0f} s; settling {args.settle:g} s", flush=True)
        time.sleep(args.settle)
        pids = engine.running_pids(ENV)
        url = engine.dashboard_url(ENV)
        base = url.split("/?", 1)[0]
        first = sorted(deployed)[0]
        callers = (args.services // 2) * args.versions * args.tasks_per_version
        proxies = 1 + args.services * args.versions * args.tasks_per_version
        print(f"{len(pids)} environment processes; an open page reads {1 + callers} of the {proxies} proxies "
              f"(the gateway and the callers' sidecars); {args.rounds} rounds of {args.window:g} s each", flush=True)

        results: dict[str, list[float]] = {"no page": [], "topology page": [], "service page": []}
        browser_cpu: dict[str, list[float]] = {k: [] for k in results}
        with Chromium(chromium) as browser:
            browser.open(url)  # takes the token: the cookie is set for the pages below
            for r in range(1, args.rounds + 1):
                for label, page in (("no page", "about:blank"), ("topology page", base + "/"),
                                    ("service page", f"{base}/services/{first}")):
                    browser.call("Page.navigate", url=page)
                    if page != "about:blank":
                        browser.wait_for("document.getElementById('live')?.textContent === 'live'", 30, label)
                    time.sleep(2.0)  # the page's first documents, or the stream's end, settle
                    own = browser.pids
                    own_before, env_before, t0 = cpu_seconds(own), cpu_seconds(pids), time.monotonic()
                    time.sleep(args.window)
                    elapsed = time.monotonic() - t0
                    results[label].append((cpu_seconds(pids) - env_before) / elapsed * 100)
                    browser_cpu[label].append((cpu_seconds(own) - own_before) / elapsed * 100)
                    print(f"  round {r}: {label:<14} environment {results[label][-1]:6.2f} % of a core "
                          f"(Chromium {browser_cpu[label][-1]:5.1f} %)", flush=True)

            # Weight changes seen by the topology page.
            browser.open(base + "/")
            browser.wait_for("!!document.querySelector('#graph g.edge[data-weight]')", 30, "the topology")
            latencies, after_return = [], []
            versions = deployed[first]
            for i in range(args.changes):
                weights = (100, 0) if i % 2 == 0 else (0, 100)
                targets = tuple(WeightedTarget(v, w) for v, w in zip(versions[:2], weights, strict=True))
                node = f"vn_{first.replace('-', '_')}_{versions[1]}"
                t0 = time.monotonic()
                engine.route_set(ENV, first, targets)
                returned = time.monotonic()
                browser.wait_for(f"document.querySelector('#graph g.edge[data-to=\"{node}\"]')"
                                 f".dataset.weight === '{weights[1]}'", 10, "the new weight", every=0.005)
                latencies.append(time.monotonic() - t0)
                after_return.append(time.monotonic() - returned)

        idle = statistics.median(results["no page"])
        print()
        print(f"environment: {size}, {len(pids)} processes, no traffic; median of {args.rounds} rounds of "
              f"{args.window:g} s")
        print(f"{'':<16}{'CPU (% of one core)':>22}{'added by the page':>20}{'target':>10}{'Chromium':>10}")
        for label, values in results.items():
            median = statistics.median(values)
            added = "" if label == "no page" else f"{median - idle:+.2f}"
            target = "" if label == "no page" else f"<= {TARGET_CPU_PERCENT:g}"
            print(f"{label:<16}{median:>22.2f}{added:>20}{target:>10}{statistics.median(browser_cpu[label]):>9.1f}%")
        worst = max(statistics.median(v) for k, v in results.items() if k != "no page") - idle
        print(f"dashboard's cost: {worst:+.2f} % of one core (target <= {TARGET_CPU_PERCENT:g} %): "
              f"{'met' if worst <= TARGET_CPU_PERCENT else 'MISSED'}")
        med, top = statistics.median(latencies), max(latencies)
        print(f"route_set -> weight shown on the open page: median {med * 1000:.0f} ms, max {top * 1000:.0f} ms "
              f"over {len(latencies)} changes (target <= {TARGET_CHANGE_S * 1000:.0f} ms): "
              f"{'met' if top <= TARGET_CHANGE_S else 'MISSED'}; of which after route_set returned (every proxy "
              f"applied it): median {statistics.median(after_return) * 1000:.0f} ms")
        return report("bench_dashboard", [
            Ratio("CPU the open page adds / one core", worst / 100, TARGET_CPU_PERCENT / 100),
            Ratio(f"slowest weight change shown / {TARGET_CHANGE_S:g} s budget", top / TARGET_CHANGE_S, 1.0)])
    finally:
        try:
            engine.env_delete(ENV)
        finally:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
