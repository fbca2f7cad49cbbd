"""How every benchmark states its result: ratios, each beside its target.

A benchmark measures side by side in one run (its figure against a floor measured in the same run, such
as ``python -c pass`` or HAProxy doing the same hops); where a target is a fixed budget, the ratio is the
figure over that budget (``<= 1`` meets it). Each benchmark ends with::

    return report("bench_x", [Ratio("synth / python -c pass", synth / floor, 7.0), ...])

which prints every ratio beside its target, returns 1 when one misses (the benchmark's exit status), and,
when ``MESHPIPE_BENCH_RATIOS`` names a file, appends them there as JSON lines. ``./dev bench --check``
runs every benchmark with that file and ends with :func:`summary`: the table of every ratio beside its
target, exit status 1 when any ratio missed or a benchmark reported none.

    python bench/ratios.py summary FILE [BENCH ...]    the table of FILE; BENCH: benchmarks that must appear
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS_ENV = "MESHPIPE_BENCH_RATIOS"


@dataclass(frozen=True)
class Ratio:
    name: str  # what is divided by what, e.g. "versions / python -c pass"
    value: float
    target: float
    at_most: bool = True  # the ratio must be <= target; False: >= target

    @property
    def met(self) -> bool:
        return self.value <= self.target if self.at_most else self.value >= self.target

    def line(self) -> str:
        sign = "<=" if self.at_most else ">="
        return f"{self.name:<52} {self.value:>9.3f}   target {sign} {self.target:<8g} {'met' if self.met else 'MISSED'}"


def report(bench: str, ratios: Iterable[Ratio]) -> int:
    """Print ``ratios`` beside their targets (and record them for ``./dev bench --check``); 1 if one missed."""
    found = list(ratios)
    print(f"\nratios of {bench}:")
    for ratio in found:
        print("  " + ratio.line())
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            for ratio in found:
                out.write(json.dumps({"bench": bench, **asdict(ratio)}) + "\n")
    return 0 if found and all(r.met for r in found) else 1


def summary(path: Path, expected: Iterable[str] = ()) -> int:
    """The table of every recorded ratio; 1 when one missed, none were recorded, or an expected bench is absent."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if path.exists() else []
    print("\nevery ratio beside its target:")
    missed = 0
    for row in rows:
        ratio = Ratio(row["name"], row["value"], row["target"], row["at_most"])
        missed += not ratio.met
        print(f"  {row['bench']:<22} {ratio.line()}")
    absent = sorted(set(expected) - {row["bench"] for row in rows})
    for bench in absent:
        print(f"  {bench:<22} reported no ratio (it failed before its report)")
    print(f"{len(rows)} ratio(s), {missed} missed" + (f", {len(absent)} benchmark(s) without a report" if absent else ""))
    return 1 if missed or absent or not rows else 0


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "summary":
        sys.exit(__doc__)
    sys.exit(summary(Path(sys.argv[2]), sys.argv[3:]))
