"""Session-wide hooks: the AWS engine's recorded calls are written out when a run asks for them."""

from __future__ import annotations

import pytest

from support.aws_calls import LEDGER, ledger_file


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = ledger_file()
    if path is not None:
        LEDGER.write(path)
