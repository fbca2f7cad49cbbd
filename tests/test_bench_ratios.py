"""bench/ratios.py, the way every benchmark states its result: each ratio is printed beside its target, a
miss makes the exit status 1, and the summary ``./dev bench --check`` ends with fails on a miss or on a
benchmark that reported nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from ratios import RESULTS_ENV, Ratio, report  # noqa: E402


def summary(path: Path, *benches: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH / "ratios.py"), "summary", str(path), *benches],
                          capture_output=True, text=True, timeout=60)


def test_a_ratio_is_met_on_the_right_side_of_its_target() -> None:
    assert Ratio("a / b", 4.9, 5.0).met and not Ratio("a / b", 5.1, 5.0).met
    assert Ratio("a / b", 0.95, 0.9, at_most=False).met and not Ratio("a / b", 0.8, 0.9, at_most=False).met


def test_report_prints_each_ratio_beside_its_target_and_records_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "ratios.jsonl"
    monkeypatch.setenv(RESULTS_ENV, str(results))
    assert report("bench_x", [Ratio("synth / python -c pass", 6.5, 7.0)]) == 0
    assert report("bench_y", [Ratio("versions / python -c pass", 5.5, 5.0),
                              Ratio("chain / haproxy", 0.95, 0.9, at_most=False)]) == 1
    out = capsys.readouterr().out
    assert "synth / python -c pass" in out and "target <= 7" in out and "met" in out
    assert "versions / python -c pass" in out and "MISSED" in out and "target >= 0.9" in out
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["bench"], r["name"]) for r in rows] == [("bench_x", "synth / python -c pass"),
                                                        ("bench_y", "versions / python -c pass"),
                                                        ("bench_y", "chain / haproxy")]
    assert report("bench_z", []) == 1  # a benchmark that states no ratio has not met its target


def test_the_summary_fails_on_a_miss_and_prints_every_ratio(tmp_path: Path) -> None:
    results = tmp_path / "ratios.jsonl"
    rows = [{"bench": "bench_a", "name": "a / floor", "value": 3.0, "target": 5.0, "at_most": True},
            {"bench": "bench_b", "name": "b / floor", "value": 9.0, "target": 7.0, "at_most": True}]
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = summary(results, "bench_a", "bench_b")
    assert done.returncode == 1, done.stdout
    assert "a / floor" in done.stdout and "b / floor" in done.stdout and "1 missed" in done.stdout
    results.write_text(json.dumps(rows[0]) + "\n")
    assert summary(results, "bench_a").returncode == 0
    # A benchmark that ended before its report (a crash, a missing tool) fails the check too.
    done = summary(results, "bench_a", "bench_b")
    assert done.returncode == 1 and "bench_b" in done.stdout and "reported no ratio" in done.stdout
    assert summary(tmp_path / "none.jsonl").returncode == 1


def test_every_benchmark_reports_through_ratios() -> None:
    for path in sorted(BENCH.glob("bench_*.py")):
        text = path.read_text()
        assert "from ratios import" in text and f'report("{path.stem}"' in text, path.name
