"""How long ``meshpipe`` commands take as whole processes, side by side with ``python -c pass``.

    python bench/bench_cli.py [--rounds 15]

Sets up a local environment serving hello-backend (one version, 100 % of the traffic), then runs, in
interleaved rounds so that the machine's load hits every command alike: ``python -c pass`` (the floor),
the read commands ``versions``, ``route show``, ``env status`` and ``stats`` (each one request to the
running daemon), and ``synth`` of the sample manifest. Prints the median and the fastest wall time of each.

Targets: read commands <= 150 ms; ``synth`` at least 100 times faster than the original sample's build
step, ``cdk synth`` (timed here when ``npx cdk`` is on the PATH, else quoted: 20-22 s measured on a
2-core machine, after a 30-41 s ``npm install``).
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

REPO = Path(__file__).resolve().parents[1]
ENV = "clibench"
SERVICE = "hello-backend"
TARGET_READ_MS = 150.0
TARGET_SYNTH_FACTOR = 100.0
CDK_SYNTH_QUOTED_S = 21.0  # the middle of the 20-22 s measured for the original sample's cdk synth


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
    env = {**os.environ, "MESHPIPE_HOME": str(home), "MESHPIPE_ENV": ENV}
    os.environ["MESHPIPE_HOME"] = str(home)
    engine = LocalEngine(home=home, options=LocalOptions(tasks_per_version=1))
    meshpipe = [sys.executable, "-m", "meshpipe"]
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
        note = ""
        if name in ("versions", "route show", "env status", "stats"):
            note = f"target <= {TARGET_READ_MS:g} ms: {'met' if median * 1000 <= TARGET_READ_MS else 'MISSED'}"
        print(f"  {name:<22}{median * 1000:>8.0f} ms {best * 1000:>6.0f} ms   "
              f"({median / floor:>4.1f}x python -c pass)  {note}")
    synth = statistics.median(times["synth"])
    cdk = statistics.median(times["cdk synth (original)"]) if "cdk synth (original)" in times else CDK_SYNTH_QUOTED_S
    how = "timed here" if "cdk synth (original)" in times else "quoted: node and cdk are not installed here"
    factor = cdk / synth
    print(f"synth vs cdk synth ({cdk:.1f} s, {how}): {factor:.0f}x faster "
          f"(target >= {TARGET_SYNTH_FACTOR:g}x: {'met' if factor >= TARGET_SYNTH_FACTOR else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
