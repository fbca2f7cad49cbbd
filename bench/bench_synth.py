"""How fast and how big version-stack synthesis is, as ratios beside targets (bench/ratios.py).

    .venv/bin/python bench/bench_synth.py [--runs N] [--process-runs N]

(a) in-process: load + validate + resolve + synthesize + JSON text, per sample manifest and flavour
    (median of many runs);
(b) whole process: ``meshpipe synth`` wall time (median) and the child's peak RSS; the library path
    through ``python -c`` when the CLI has no ``synth`` command;
(c) what the whole process spends importing (``python -X importtime``), largest first.
Targets: in-process < 5 ms; whole process <= 7x ``python -c pass`` timed in the same interleaved rounds
(bench_cli.py has the same ratio beside the read commands), and < 100 MiB.
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

from ratios import Ratio, report

REPO = Path(__file__).resolve().parents[1]
PLATFORM_FILE = REPO / "examples" / "platform.yaml"
SAMPLES = {
    "hello-web": REPO / "examples" / "hello-web-cfg" / "manifest.yaml",
    "hello-backend": REPO / "examples" / "hello-backend-cfg" / "manifest.yaml",
}
COMMIT = "e9d5f17a3c4b5d6e7f8091a2b3c4d5e6f7a8b9c0"
TARGET_IN_PROCESS_MS = 5.0
TARGET_PROCESS_RATIO = 7.0
TARGET_RSS_MIB = 100.0
FLAVOURS = ("appmesh", "service-connect")

LIBRARY_SCRIPT = """\
import sys
from meshpipe.manifest import load_manifest
from meshpipe.model import resolve
from meshpipe.platform import load_platform_file
from meshpipe.synth import synthesize
platform = load_platform_file(sys.argv[1])
version = resolve(load_manifest(sys.argv[2], platform.policy), platform, sys.argv[3], sys.argv[4])
result = synthesize(version, sys.argv[5])
with open(sys.argv[6] + "/" + result.file_name, "w", encoding="utf-8") as fh:
    fh.write(result.json_text)
print(result.stack_name)
"""


def fmt_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def in_process(runs: int) -> float:
    """The slowest median of the samples and flavours."""
    from meshpipe.manifest import load_manifest
    from meshpipe.model import resolve
    from meshpipe.platform import load_platform_file
    from meshpipe.synth import synthesize

    worst = 0.0
    start = time.perf_counter()
    platform = load_platform_file(str(PLATFORM_FILE))
    print(f"  platform.yaml load: {fmt_seconds(time.perf_counter() - start)} (once per process, not below)")
    for service, manifest in SAMPLES.items():
        for mesh in FLAVOURS:
            times, size = [], 0
            for _ in range(runs):
                t0 = time.perf_counter()
                version = resolve(load_manifest(manifest, platform.policy), platform, service, COMMIT)
                size = len(synthesize(version, mesh).json_text)  # the bytes are part of the work
                times.append(time.perf_counter() - t0)
            print(f"  {service:14} {mesh:16} median {fmt_seconds(statistics.median(times)):>9}   "
                  f"p95 {fmt_seconds(sorted(times)[int(len(times) * 0.95)]):>9}   {size} bytes   ({runs} runs)")
            worst = max(worst, statistics.median(times))
    return worst


def cli_has_synth() -> str | None:
    exe = shutil.which("meshpipe", path=str(Path(sys.executable).parent)) or shutil.which("meshpipe")
    if not exe:
        return None
    probe = subprocess.run([exe, "synth", "--help"], capture_output=True, timeout=60)
    return exe if probe.returncode == 0 else None


def run_child(argv: list[str]) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of one child process, from its own rusage."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode() if child.stderr else ""
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({child.returncode}):\n{stderr}")
    return elapsed, usage.ru_maxrss  # Linux reports KiB


def synth_argv(exe: str | None, mesh: str, out_dir: str) -> list[str]:
    if exe:
        return [exe, "synth", str(SAMPLES["hello-web"]), "--commit", COMMIT, "--platform", str(PLATFORM_FILE),
                "--mesh", mesh, "-o", out_dir]
    return [sys.executable, "-c", LIBRARY_SCRIPT, str(PLATFORM_FILE), str(SAMPLES["hello-web"]), "hello-web",
            COMMIT, mesh, out_dir]


def whole_process(exe: str | None, runs: int) -> list[Ratio]:
    """Each flavour's whole-process wall time over ``python -c pass``'s, in interleaved rounds, and its peak
    RSS over the 100 MiB budget."""
    floor = [sys.executable, "-c", "pass"]
    ratios = []
    with tempfile.TemporaryDirectory(prefix="meshpipe-bench-") as out_dir:
        walls: dict[str, list[float]] = {"python -c pass": [], **{mesh: [] for mesh in FLAVOURS}}
        peak = 0.0
        for _ in range(runs):
            walls["python -c pass"].append(run_child(floor)[0])
            for mesh in FLAVOURS:
                wall, rss = run_child(synth_argv(exe, mesh, out_dir))
                walls[mesh].append(wall)
                peak = max(peak, rss / 1024)
        base = statistics.median(walls["python -c pass"])
        for name, values in walls.items():
            print(f"  {name:26} wall median {fmt_seconds(statistics.median(values)):>9}  "
                  f"min {fmt_seconds(min(values)):>9}  ({statistics.median(values) / base:.1f}x python -c pass)")
        print(f"  peak RSS {peak:.1f} MiB  ({runs} rounds)")
        ratios += [Ratio(f"synth {mesh} / python -c pass", statistics.median(walls[mesh]) / base, TARGET_PROCESS_RATIO)
                   for mesh in FLAVOURS]
        ratios.append(Ratio(f"synth peak RSS / {TARGET_RSS_MIB:g} MiB budget", peak / TARGET_RSS_MIB, 1.0))
    what = "meshpipe synth (the CLI)" if exe else "python -c <library path> (no `meshpipe synth` yet)"
    print(f"  measured: {what}")
    return ratios


def import_costs(exe: str | None, top: int) -> None:
    with tempfile.TemporaryDirectory(prefix="meshpipe-bench-") as out_dir:
        argv = synth_argv(exe, "appmesh", out_dir)
        # A console script is a Python file: run it under -X importtime with the same interpreter.
        cmd = [sys.executable, "-X", "importtime", *(argv[1:] if argv[0] == sys.executable else argv)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    rows = []  # (cumulative µs, depth, module); stderr lines read "import time: self | cumulative | name"
    for line in proc.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or not fields[1].strip().isdigit():
            continue
        name = fields[2].rstrip()
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((int(fields[1]), depth, name.strip()))
    total = sum(cumulative for cumulative, depth, _ in rows if depth == 0)
    print(f"  all imports: {fmt_seconds(total / 1e6)}; largest (top two levels, cumulative):")
    for cumulative, depth, name in sorted((r for r in rows if r[1] <= 1), reverse=True)[:top]:
        print(f"    {fmt_seconds(cumulative / 1e6):>9}  {'  ' * depth}{name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500, help="in-process runs per manifest and flavour")
    parser.add_argument("--process-runs", type=int, default=10, help="whole-process runs per flavour")
    parser.add_argument("--top", type=int, default=15, help="imports to list")
    args = parser.parse_args()
    # Children run as installed, with bytecode cached: with PYTHONDONTWRITEBYTECODE inherited, each would
    # compile meshpipe's sources again and be timed doing it.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    print(f"python {sys.version.split()[0]} on {os.cpu_count()} CPU(s)")
    print("(a) in-process load + validate + resolve + synth + JSON:")
    worst = in_process(args.runs)
    exe = cli_has_synth()
    print("(b) whole process, interleaved with python -c pass:")
    ratios = whole_process(exe, args.process_runs)
    print("(c) import time of one whole-process run:")
    import_costs(exe, args.top)
    return report("bench_synth", [
        Ratio(f"in-process synth / {TARGET_IN_PROCESS_MS:g} ms budget", worst * 1000 / TARGET_IN_PROCESS_MS, 1.0),
        *ratios])


if __name__ == "__main__":
    sys.exit(main())
