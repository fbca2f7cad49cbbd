"""The docker runtime against the process runtime, side by side in one run, on the same machine.

    python bench/bench_runtimes.py [--services 10] [--versions 2] [--tasks-per-version 2] [--pushes 3]
                                   [--load-seconds 10] [--measure 20]

For each runtime, in one environment of its own (the bundled hello-backend sample; for docker, its image
built from this machine's files first, never pulled):

* push -> serving: seconds from ``git push`` of a new version to its stack CREATE_COMPLETE (median of
  ``--pushes``);
* ingress throughput: requests per second through the ingress gateway to one version of 2 tasks, 8
  keep-alive clients for ``--load-seconds``;
* idle: ``--services`` x ``--versions`` x ``--tasks-per-version`` tasks, no traffic, CPU % of one core over
  ``--measure`` seconds of everything the environment runs (daemon, gateway, sidecars, apps; for docker
  also each task's pause container and the engine's per-container shims; dockerd and containerd, shared
  by every environment, are shown on a line of their own);
* memory per task: PSS (pages shared between processes counted once) of a task's processes, median.

Tasks get one vCPU (``Cpu: 1024``): with the sample's quarter of a CPU, enforced by the docker runtime only,
push -> serving mostly measures how long Python takes to start on a quarter of a CPU.

Ratios are docker / process, each beside what this runtime accepts: a version serving within 10 times the
process runtime's time, at least 0.8 of its throughput, at most 1.5 times its memory per task and 12 times
its idle CPU (health checks run in the containers: a process started per check).
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_idle import cpu_seconds, memory_kib
from meshpipe.demos.walkthrough import DOCKER_IMAGES, bundled_manifest
from meshpipe.engines.local.engine import LocalEngine
from meshpipe.engines.local.state.daemonfiles import read_daemon_file
from meshpipe.engines.local.state.options import LocalOptions
from meshpipe.engines.local.state.store import StateStore
from meshpipe.git import GitIdentity, clone, commit_all, push
from meshpipe.mesh.routing import WeightedTarget, make_gateway_route
from ratios import Ratio, report

ENV = "rt"
IDENTITY = GitIdentity("meshpipe bench", "bench@meshpipe.invalid")


def manifest(runtime: str, service: str, n: int) -> bytes:
    text = bundled_manifest("hello-backend-cfg").decode()
    if runtime == "docker":
        text = text.replace("wizriz/hello-backend:66f2a19", DOCKER_IMAGES["hello-backend"])
    # One vCPU per task (the sample asks for a quarter): the figures are the runtime's cost, not the time a
    # quarter of a CPU takes to start Python on a busy machine.
    text = text.replace("Cpu: 256", "Cpu: 1024").replace("Memory: 512", "Memory: 2048")
    return text.replace('"hello-backend"', f'"{service}"').replace('"-g Hello"', f'"-g Hello{n}"').encode()


def deploy(engine: LocalEngine, repo: Path, runtime: str, service: str, n: int) -> tuple[str, float]:
    (repo / "manifest.yaml").write_bytes(manifest(runtime, service, n))
    commit = commit_all(repo, f"version {n}", IDENTITY)
    started = time.monotonic()
    push(repo)
    run = engine.pipeline_wait(ENV, service, commit=commit, timeout=600)
    took = time.monotonic() - started
    if run.status != "Succeeded" or not run.version:
        why = "\n".join(line for stage in run.stages for line in stage.log.splitlines()[-3:])
        raise SystemExit(f"{runtime}: {service} run {run.run_id} ended {run.status}:\n{why}")
    return run.version, took


def throughput(port: int, path: str, seconds: float, clients: int = 8) -> tuple[float, int]:
    done = [0] * clients
    failed = [0] * clients
    stop = threading.Event()

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    done[i] += 1
                else:
                    failed[i] += 1
            except (OSError, http.client.HTTPException):
                failed[i] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(done) / seconds, sum(failed)


def parent_of(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rfind(")") + 2:].split()[1])


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = parent_of(int(entry))
            if ppid is not None:
                children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def task_processes(engine: LocalEngine, runtime: str) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Pids by kind, and by task (every process that is part of a task)."""
    paths = engine.paths(ENV)
    kinds: dict[str, list[int]] = {"daemon": [], "gateway": [], "sidecar": [], "app": []}
    by_task: dict[str, list[int]] = {}
    daemon = read_daemon_file(paths.daemon_json)
    if daemon is not None:
        kinds["daemon"].append(int(daemon["pid"]))
    store = StateStore(paths.state_db)
    try:
        for p in store.processes():
            if p.role == "app" and runtime == "docker":
                continue  # counted from the engine below, with its container's other processes
            kinds.setdefault(p.role, []).append(p.pid)
            if p.task_id:
                by_task.setdefault(p.task_id, []).append(p.pid)
    finally:
        store.close()
    if runtime == "docker":
        from meshpipe.engines.local.tasks.dockerhost import LABEL_OWNER, LABEL_ROLE, LABEL_TASK, connect

        client = connect()
        kinds.update({"app container": [], "pause container": [], "container shim": []})
        for c in client.containers.list(filters={"label": f"{LABEL_OWNER}={paths.root.absolute()}"}):
            pid = int(c.attrs["State"]["Pid"])
            role = c.labels.get(LABEL_ROLE)
            tree = descendants(pid)
            shim = parent_of(pid)
            kinds["app container" if role == "app" else "pause container"] += tree
            if shim is not None:
                kinds["container shim"].append(shim)
            by_task.setdefault(c.labels.get(LABEL_TASK, "?"), []).extend(tree + ([shim] if shim else []))
    return kinds, by_task


def run(runtime: str, args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"meshpipe-bench-{runtime}-"))
    os.environ["MESHPIPE_HOME"] = str(home)
    engine = LocalEngine(home=home, options=LocalOptions(tasks_per_version=2, runtime=runtime, pull="never"))
    out: dict[str, Any] = {}
    try:
        engine.env_create(ENV)
        info = engine.pipeline_create(ENV, "hello-backend")
        repo = clone(info.clone_url, home / "work" / "hello-backend")
        times = []
        version = ""
        for n in range(args.pushes):
            version, took = deploy(engine, repo, runtime, "hello-backend", n)
            times.append(took)
        out["push -> serving, s"] = statistics.median(times)
        engine.route_set(ENV, "hello-backend", (WeightedTarget(version, 100),))
        engine.gateway_route_set(ENV, make_gateway_route("r-b", "/b", "hello-backend", f"{ENV}.local"))
        port = int(engine.ingress_url(ENV).rsplit(":", 1)[1])
        throughput(port, "/b/data", 2.0)  # warm-up
        rate, failed = throughput(port, "/b/data", args.load_seconds)
        out["ingress throughput, req/s"] = rate
        out["failed requests"] = failed
        engine.env_delete(ENV)

        # Idle: a fresh environment of services x versions x tasks.
        engine = LocalEngine(home=home, options=LocalOptions(tasks_per_version=args.tasks_per_version,
                                                             runtime=runtime, pull="never"))
        engine.env_create(ENV)
        repos = {}
        for i in range(args.services):
            service = f"svc-{i:02d}"
            repos[service] = clone(engine.pipeline_create(ENV, service).clone_url, home / "work" / service)
        for v in range(args.versions):
            for service, r in repos.items():
                deploy(engine, r, runtime, service, v)
        time.sleep(args.settle)
        kinds, by_task = task_processes(engine, runtime)
        before = {pid: cpu_seconds(pid) for pids in kinds.values() for pid in pids}
        engine_pids = [pid for pid in (_pid_of("dockerd"), _pid_of("containerd")) if pid]
        engine_before = {pid: cpu_seconds(pid) for pid in engine_pids}
        t0 = time.monotonic()
        time.sleep(args.measure)
        elapsed = time.monotonic() - t0
        used = 0.0
        for pid, b in before.items():
            a = cpu_seconds(pid)
            if a is not None and b is not None:
                used += a - b
        out["idle CPU, % of a core"] = 100 * used / elapsed
        if runtime == "docker":
            eng = sum((cpu_seconds(p) or 0) - (b or 0) for p, b in engine_before.items())
            out["  dockerd + containerd (shared), %"] = 100 * eng / elapsed
        per_task = [sum(memory_kib(p)[1] for p in set(pids)) / 1024 for pids in by_task.values()]
        out["memory per task, PSS MiB"] = statistics.median(per_task) if per_task else 0.0
        out["tasks"] = len(by_task)
    finally:
        try:
            if engine.paths(ENV).exists():
                engine.env_delete(ENV)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    return out


def _pid_of(name: str) -> int | None:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == name:
                    return int(entry)
            except OSError:
                continue
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--versions", type=int, default=2)
    parser.add_argument("--tasks-per-version", type=int, default=2)
    parser.add_argument("--pushes", type=int, default=3)
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--measure", type=float, default=20.0)
    args = parser.parse_args()

    from meshpipe.engines.local.tasks.dockerhost import build_sample_image, connect
    from meshpipe.errors import MeshpipeError

    try:
        build_sample_image(connect(), "hello-backend", DOCKER_IMAGES["hello-backend"])
    except MeshpipeError as exc:
        print(f"bench_runtimes: {exc.message} ({exc.hint})" if exc.hint else f"bench_runtimes: {exc.message}")
        return 2
    results = {}
    for runtime in ("process", "docker"):
        print(f"measuring the {runtime} runtime ...", flush=True)
        results[runtime] = run(runtime, args)
    size = f"{args.services} x {args.versions} x {args.tasks_per_version}"
    print()
    print(f"{'figure':<38}{'process':>12}{'docker':>12}{'docker/process':>16}   (idle: {size})")
    for key in results["docker"]:
        p, d = results["process"].get(key), results["docker"][key]
        ratio = f"{d / p:>16.2f}" if isinstance(p, (int, float)) and p else f"{'':>16}"
        p_text = f"{p:>12.2f}" if isinstance(p, (int, float)) else f"{'':>12}"
        print(f"{key:<38}{p_text}{d:>12.2f}{ratio}")
    p, d = results["process"], results["docker"]
    return report("bench_runtimes", [
        Ratio("push -> serving, docker / process", d["push -> serving, s"] / p["push -> serving, s"], 10.0),
        Ratio("ingress throughput, docker / process",
              d["ingress throughput, req/s"] / p["ingress throughput, req/s"], 0.8, at_most=False),
        Ratio("memory per task, docker / process",
              d["memory per task, PSS MiB"] / p["memory per task, PSS MiB"], 1.5),
        Ratio("idle CPU 10x2x2, docker / process",
              d["idle CPU, % of a core"] / max(p["idle CPU, % of a core"], 0.01), 12.0),
    ])


if __name__ == "__main__":
    sys.exit(main())
