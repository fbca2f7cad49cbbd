"""Session-wide hooks and shared fixtures: the AWS engine's recorded calls are written out when a run asks
for them; under CI a skip or xfail not in tests/allowed_skips.txt fails the run (support/ci_skips.py);
``aws`` is a moto account with fake credentials."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from support.aws import RecordingFactory, use_fake_credentials
from support.aws_calls import LEDGER, ledger_file
from support.ci_skips import SkipWatch, ci_enabled

SKIPS = SkipWatch(enabled=ci_enabled())


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingFactory]:
    """Fake credentials and region, every AWS call answered by moto; yields a recording client factory."""
    use_fake_credentials(monkeypatch)
    with mock_aws():
        yield RecordingFactory()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    SKIPS.note(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    SKIPS.note(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = ledger_file()
    if path is not None:
        LEDGER.write(path)
    if SKIPS.enabled and SKIPS.judge() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SKIPS.enabled:
        terminalreporter.section("skips under CI")
        for line in SKIPS.summary():
            terminalreporter.write_line(line)
