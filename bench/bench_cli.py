"""How long ``meshpipe`` commands take as whole processes, side by side with ``python -c pass``.

    python bench/bench_cli.py [--rounds 15]

Sets up a local environment serving hello-backend (one version, 100 % of the traffic), then runs, in
interleaved rounds so that the machine's load hits every command alike: ``python -c pass`` (the floor),
the read commands ``versions``, ``route show``, ``env status`` and ``stats`` (each one request to the
running daemon), and ``synth`` of the sample manifest. Prints the median and the fastest wall time of each.

Targets, as ratios to ``python -c pass`` in the same run: each read command <= 5x; ``synth`` <= 7x, which
on a machine where ``python -c pass`` takes 15-20 ms and the original sample's build step, ``cdk synth``,
13.7-21 s, is ``synth`` at least 100 times faster than ``cdk synth``. When ``npx cdk`` is on the PATH,
``cdk synth`` is timed in the same rounds and the factor itself is a ratio too (>= 100).
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

from baseline import deploy_baseline
from meshpipe.engines.local.engine import LocalEngine
from meshpipe.engines.local.state.options import LocalOptions
from ratios import Ratio, report

REPO = Path(__file__).resolve().parents[1]
ENV = "clibench"
SERVICE = "hello-backend"
READS = ("versions", "route show", "env status", "stats")
TARGET_READ_RATIO = 5.0
TARGET_SYNTH_RATIO = 7.0
TARGET_SYNTH_FACTOR = 100.0


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="meshpipe-bench-"))
    # As installed: bytecode cached (a PYTHONDONTWRITEBYTECODE from the caller would make every command
    # compile meshpipe's sources again, and time that instead).
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
           "MESHPIPE_HOME": str(home), "MESHPIPE_ENV": ENV}
    os.environ["MESHPIPE_HOME"] = str(home)
    engine = LocalEngine(home=home, options=LocalOptions(tasks_per_version=1))
    # The command as a user runs it: the installed console script (python -m meshpipe adds runpy's work).
    script = Path(sys.executable).parent / "meshpipe"
    meshpipe = [str(script)] if script.exists() else [sys.executable, "-m", "meshpipe"]
    out = home / "synth"
    out.mkdir()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "versions": [*meshpipe, "versions", SERVICE],
        "route show": [*meshpipe, "route", "show", SERVICE],
        "env status": [*meshpipe, "env", "status", ENV],
        "stats": [*meshpipe, "stats", SERVICE],
        "synth": [*meshpipe, "synth", str(REPO / "examples" / "hello-backend-cfg" / "manifest.yaml"),
                  "--platform", str(REPO / "examples" / "platform.yaml"), "--commit", "e9d5f17a" * 5,
                  "-o", str(out)],
    }
    if shutil.which("npx") and shutil.which("cdk"):
        commands["cdk synth (original)"] = ["npx", "cdk", "synth", "--quiet"]
    times: dict[str, list[float]] = {name: [] for name in commands}
    try:
        print(f"setting up {SERVICE} in {home} ...", flush=True)
        deploy_baseline(engine, ENV, SERVICE, home / "work")
        for argv in commands.values():  # warm the file cache once
            timed(argv, env, home)
        for _ in range(args.rounds):
            for name, argv in commands.items():
                times[name].append(timed(argv, env, home))
    finally:
        try:
            engine.env_delete(ENV)
        finally:
            shutil.rmtree(home, ignore_errors=True)

    floor = statistics.median(times["python -c pass"])
    print()
    print(f"whole-process wall time, {args.rounds} interleaved rounds (median / fastest):")
    for name, values in times.items():
        median, best = statistics.median(values), min(values)
        print(f"  {name:<22}{median * 1000:>8.0f} ms {best * 1000:>6.0f} ms   ({median / floor:>4.1f}x python -c pass)")
    ratios = [Ratio(f"{name} / python -c pass", statistics.median(times[name]) / floor, TARGET_READ_RATIO)
              for name in READS]
    synth = statistics.median(times["synth"])
    ratios.append(Ratio("synth / python -c pass", synth / floor, TARGET_SYNTH_RATIO))
    if "cdk synth (original)" in times:
        ratios.append(Ratio("cdk synth (original) / synth", statistics.median(times["cdk synth (original)"]) / synth,
                            TARGET_SYNTH_FACTOR, at_most=False))
    return report("bench_cli", ratios)


if __name__ == "__main__":
    sys.exit(main())
