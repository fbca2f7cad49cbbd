"""Every IAM action the AWS engine's calls needed during this test session.

The engine's client factory tells an observer the IAM action of each call before botocore makes it
(meshpipe.engines.aws.clients.iam_action); the AWS test fixtures build their clients with
:data:`LEDGER` as that observer, so running the engine's tests records what an operator's identity
must allow. tests/test_operator_policy.py checks the documented operator policy against it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# Set to a file path, the session writes the actions it recorded there when it ends (see conftest.py).
LEDGER_FILE_VARIABLE = "MESHPIPE_CALL_LEDGER"


class CallLedger:
    def __init__(self) -> None:
        self.actions: dict[str, int] = {}

    def record(self, action: str) -> None:
        """Count ``action`` if the engine made the call (a test's own set-up and checks use the same
        clients, but no meshpipe code is on their call stack)."""
        if _called_by_meshpipe():
            self.actions[action] = self.actions.get(action, 0) + 1

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.actions, sort_keys=True, indent=1))

    @staticmethod
    def read(path: Path) -> dict[str, int]:
        found: dict[str, int] = json.loads(path.read_text())
        return found


def _called_by_meshpipe() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module.startswith("meshpipe.") and module != "meshpipe.engines.aws.clients":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


LEDGER = CallLedger()


def ledger_file() -> Path | None:
    value = os.environ.get(LEDGER_FILE_VARIABLE)
    return Path(value) if value else None
