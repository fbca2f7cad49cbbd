"""What an idle local environment costs: CPU and memory of its processes when no request comes in.

    python bench/bench_idle.py [--services 20] [--versions 3] [--tasks-per-version 2] [--measure 30]

Builds an environment of ``--services`` services, each with ``--versions`` deployed versions (pushed
through their pipelines, the bundled hello-backend sample with the platform policy's health checks) of
``--tasks-per-version`` tasks each; then, with no traffic at all, measures for ``--measure`` seconds the
CPU time (utime + stime from /proc/<pid>/stat) every process of the environment used, by kind: daemon,
watchdog, gateway, sidecars, apps. An empty ``sleep`` process is measured alongside as the floor.

Target: the whole environment at most 5 % of one core at 20 x 3 x 2. Also printed: resident memory
(RSS, and PSS, which shares the pages processes have in common) per process of each kind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshpipe.demos.walkthrough import bundled_manifest
from meshpipe.engines.local.engine import LocalEngine
from meshpipe.engines.local.state.daemonfiles import read_daemon_file, read_lock_holder
from meshpipe.engines.local.state.options import LocalOptions
from meshpipe.engines.local.state.store import StateStore
from meshpipe.engines.local.tasks import processes as procs
from meshpipe.git import GitIdentity, clone, commit_all, push
from ratios import Ratio, report

ENV = "idle"
TARGET_PERCENT = 5.0
IDENTITY = GitIdentity("meshpipe bench", "bench@meshpipe.invalid")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15)


def memory_kib(pid: int) -> tuple[int, int]:
    """RSS and PSS in KiB (0 when the process is gone)."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def processes_by_kind(engine: LocalEngine) -> dict[str, list[int]]:
    paths = engine.paths(ENV)
    kinds: dict[str, list[int]] = {"daemon": [], "watchdog": [], "gateway": [], "sidecar": [], "app": []}
    daemon = read_daemon_file(paths.daemon_json)
    if daemon is not None:
        kinds["daemon"].append(int(daemon["pid"]))
    watchdog = read_lock_holder(paths.watchdog_lock)
    if watchdog is not None and procs.is_running(watchdog):
        kinds["watchdog"].append(watchdog)
    store = StateStore(paths.state_db)
    try:
        for p in store.processes():
            kinds.setdefault(p.role, []).append(p.pid)
    finally:
        store.close()
    return kinds


def manifest(service: str, version: int) -> bytes:
    text = bundled_manifest("hello-backend-cfg").decode()
    return text.replace('"hello-backend"', f'"{service}"').replace('"-g Hello"', f'"-g Hello{version}"').encode()


def build(engine: LocalEngine, home: Path, services: int, versions: int) -> None:
    repos = {}
    for i in range(1, services + 1):
        service = f"svc-{i:02d}"
        info = engine.pipeline_create(ENV, service)
        repos[service] = clone(info.clone_url, home / "work" / service)
    pending: list[tuple[str, str]] = []
    for v in range(1, versions + 1):
        for service, repo in repos.items():
            (repo / "manifest.yaml").write_bytes(manifest(service, v))
            commit = commit_all(repo, f"version {v}", IDENTITY)
            push(repo)
            pending.append((service, commit))
    for service, commit in pending:
        run = engine.pipeline_wait(ENV, service, commit=commit, timeout=900)
        if run.status != "Succeeded":
            raise SystemExit(f"{service} {commit[:8]}: pipeline run {run.run_id} ended {run.status}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--tasks-per-version", type=int, default=2)
    parser.add_argument("--settle", type=float, default=15.0, help="seconds to wait once everything is healthy")
    parser.add_argument("--measure", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true", help="leave the environment running (for profiling)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="meshpipe-bench-"))
    os.environ["MESHPIPE_HOME"] = str(home)
    engine = LocalEngine(home=home, options=LocalOptions(tasks_per_version=args.tasks_per_version))
    sleeper = subprocess.Popen(["sleep", "100000"])
    try:
        size = f"{args.services} x {args.versions} x {args.tasks_per_version}"
        print(f"building {size} (services x versions x tasks) in {home} ...", flush=True)
        t0 = time.monotonic()
        engine.env_create(ENV)
        build(engine, home, args.services, args.versions)
        print(f"  built in {time.monotonic() - t0:.0f} s; settling {args.settle:g} s", flush=True)
        time.sleep(args.settle)
        kinds = processes_by_kind(engine)
        kinds["sleep (baseline)"] = [sleeper.pid]
        before = {pid: cpu_seconds(pid) for pids in kinds.values() for pid in pids}
        t_start = time.monotonic()
        time.sleep(args.measure)
        elapsed = time.monotonic() - t_start
        after = {pid: cpu_seconds(pid) for pid in before}
        memory = {pid: memory_kib(pid) for pid in before}
        if args.keep:
            print(f"kept: MESHPIPE_HOME={home} (env {ENV}); delete it with meshpipe env delete {ENV}")
    finally:
        sleeper.kill()
        sleeper.wait()
        if not args.keep:
            try:
                engine.env_delete(ENV)
            finally:
                shutil.rmtree(home, ignore_errors=True)

    total = 0.0
    print()
    print(f"idle CPU over {elapsed:.1f} s, % of one core ({sum(len(p) for p in kinds.values()) - 1} processes):")
    print(f"  {'kind':<18}{'processes':>10}{'CPU %':>9}{'per process':>13}{'RSS MiB':>10}{'PSS MiB':>10}")
    for kind, pids in kinds.items():
        used = [(after[p] or 0.0) - (before[p] or 0.0) for p in pids if before[p] is not None and after[p] is not None]
        percent = 100 * sum(used) / elapsed
        if kind != "sleep (baseline)":
            total += percent
        rss = [memory[p][0] / 1024 for p in pids if memory[p][0]]
        pss = [memory[p][1] / 1024 for p in pids if memory[p][1]]
        print(f"  {kind:<18}{len(pids):>10}{percent:>9.2f}{(percent / len(pids) if pids else 0):>13.3f}"
              f"{(statistics.median(rss) if rss else 0):>10.1f}{(statistics.median(pss) if pss else 0):>10.1f}")
    all_rss = sum(memory[p][0] for pids in kinds.values() for p in pids) / 1024 / 1024
    print(f"  {'environment':<18}{'':>10}{total:>9.2f}   (target <= {TARGET_PERCENT:g} %: "
          f"{'met' if total <= TARGET_PERCENT else 'MISSED'}); RSS in all {all_rss:.2f} GiB")
    return report("bench_idle", [Ratio("idle environment CPU / one core", total / 100, TARGET_PERCENT / 100)])


if __name__ == "__main__":
    sys.exit(main())
