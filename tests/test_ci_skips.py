"""Under CI a skip or xfail that the allow-list does not name fails the run; each case runs pytest in a
subprocess on a small test file of its own, with this project's conftest hooks, and reads its exit status
and summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.ci_skips import ALLOW_LIST, read_allow_list

TESTS = Path(__file__).resolve().parent

SKIPPING = '''
import pytest

def test_runs():
    assert True

def test_skipped():
    pytest.skip("not here")
'''
XFAILING = '''
import pytest

@pytest.mark.xfail(reason="known")
def test_xfailed():
    assert False
'''
PASSING = '''
def test_runs():
    assert True
'''


def run_pytest(tmp_path: Path, source: str, ci: str | None, allow: str | None = None) -> subprocess.CompletedProcess[str]:
    """pytest on ``source`` as tests/test_case.py of a copy whose conftest is this project's."""
    tests = tmp_path / "tests"
    (tests / "support").mkdir(parents=True)
    (tests / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    for name in ("__init__.py", "aws.py", "aws_calls.py", "ci_skips.py", "clock.py"):
        (tests / "support" / name).write_text((TESTS / "support" / name).read_text())
    if allow is not None:
        (tests / "allowed_skips.txt").write_text(allow)
    (tests / "test_case.py").write_text(source)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -ra\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_case.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_skip_fails_the_run_under_ci(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, SKIPPING, ci="true")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "tests/test_case.py::test_skipped skipped" in done.stdout and "is not in allowed_skips.txt" in done.stdout


def test_an_xfail_fails_the_run_under_ci(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, XFAILING, ci="true")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "test_xfailed xfail" in done.stdout


def test_without_ci_a_skip_is_only_reported(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, SKIPPING, ci=None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skips under CI" not in done.stdout


def test_an_allowed_skip_passes_and_the_allow_list_is_printed(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, SKIPPING, ci="true",
                      allow="tests/test_case.py::test_skipped  # only runs where the thing exists\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tests/test_case.py::test_skipped  # only runs where the thing exists" in done.stdout
    assert "tests/test_case.py::test_skipped skipped: not here" in done.stdout


def test_an_entry_without_a_reason_fails_the_run(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, PASSING, ci="1", allow="tests/test_case.py::test_skipped\n")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "allowed_skips.txt:1: an entry is" in done.stdout


def test_a_clean_run_under_ci_passes_and_says_so(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, PASSING, ci="true")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped or xfailed in this run (0)" in done.stdout


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_ci_set_to_nothing_or_false_is_not_ci(tmp_path: Path, value: str) -> None:
    assert run_pytest(tmp_path, SKIPPING, ci=value).returncode == 0


def test_the_projects_allow_list_gives_every_entry_a_reason() -> None:
    entries, problems = read_allow_list(ALLOW_LIST)
    assert not problems
    for entry in entries:
        path = entry.prefix.split("::")[0]
        assert (TESTS.parent / path).exists(), entry
        assert len(entry.reason) > 30, entry
