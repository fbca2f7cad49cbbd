"""Session-wide hooks and shared fixtures: the AWS engine's recorded calls are written out when a run asks
for them; ``aws`` is a moto account with fake credentials."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from support.aws import RecordingFactory, use_fake_credentials
from support.aws_calls import LEDGER, ledger_file


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingFactory]:
    """Fake credentials and region, every AWS call answered by moto; yields a recording client factory."""
    use_fake_credentials(monkeypatch)
    with mock_aws():
        yield RecordingFactory()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = ledger_file()
    if path is not None:
        LEDGER.write(path)
