"""Every IAM action the AWS engine's calls needed during this test session, with the parameters that name
their resources.

The engine's client factory tells an observer the IAM action and parameters of each call before botocore
makes it (meshpipe.engines.aws.clients.iam_action); the AWS test fixtures build their clients with
:data:`LEDGER` as that observer, so running the engine's tests records what an operator's identity
must allow. tests/test_operator_policy.py checks the documented operator policy against it, each call on
the resources its parameters name.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Set to a file path, the session writes the actions it recorded there when it ends (see conftest.py).
LEDGER_FILE_VARIABLE = "MESHPIPE_CALL_LEDGER"


# Parameters that name no resource, or are too long to keep (templates, bodies).
_SKIPPED_PARAMS = {"TemplateBody", "Body", "Parameters", "Tags", "Capabilities", "NextToken", "nextToken"}
_MAX_PER_ACTION = 40


def resource_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of a call that can name a resource: strings and lists of strings."""
    kept: dict[str, Any] = {}
    for key, value in params.items():
        if key in _SKIPPED_PARAMS:
            continue
        if isinstance(value, str) and len(value) <= 300:
            kept[key] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            kept[key] = list(value)
        elif isinstance(value, dict) and key == "Delete":  # S3 DeleteObjects: the keys it deletes
            kept["Key"] = [o.get("Key", "") for o in value.get("Objects", [])][:1]
    return kept


class CallLedger:
    def __init__(self) -> None:
        self.actions: dict[str, int] = {}
        self.calls: dict[str, list[dict[str, Any]]] = {}

    def record(self, action: str, params: Mapping[str, Any] | None = None) -> None:
        """Count ``action`` and keep its parameters if the engine made the call (a test's own set-up and
        checks use the same clients, but no meshpipe code is on their call stack)."""
        if _called_by_meshpipe():
            self.actions[action] = self.actions.get(action, 0) + 1
            kept = resource_params(params or {})
            seen = self.calls.setdefault(action, [])
            if kept not in seen and len(seen) < _MAX_PER_ACTION:
                seen.append(kept)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps({"actions": self.actions, "calls": self.calls}, sort_keys=True, indent=1))

    @staticmethod
    def read(path: Path) -> tuple[dict[str, int], dict[str, list[dict[str, Any]]]]:
        found = json.loads(path.read_text())
        return found["actions"], found["calls"]


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
