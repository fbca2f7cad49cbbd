"""The operator policy in docs/aws.md allows every AWS call the engine makes.

The engine's client factory reports the IAM action of each call (tests/support/aws_calls.py records
them while the AWS engine's own tests run, on moto and Stubber). When this session has already run
those tests, their record is used; otherwise they are run once more in a child pytest that writes its
record to a file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from meshpipe.engines.aws.clients import _IAM_ACTION_EXCEPTIONS, iam_action
from support import iam
from support.aws_calls import LEDGER, LEDGER_FILE_VARIABLE, CallLedger
from support.iam_lint import in_newer_catalogue

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
AWS_TEST_FILES = sorted(TESTS.glob("test_aws_*.py"))


def operator_policy() -> dict[str, Any]:
    [policy] = iam.json_blocks((REPO / "docs" / "aws.md").read_text(), "<!-- policy: operator -->")
    return policy


def _aws_tests_already_ran(session: pytest.Session, this_module: Path) -> bool:
    files = [Path(str(item.path)) for item in session.items]
    if this_module not in files or not set(AWS_TEST_FILES) <= set(files):
        return False
    first_here = files.index(this_module)
    return all(files.index(f) < first_here for f in AWS_TEST_FILES) and bool(LEDGER.actions)


@pytest.fixture(scope="module")
def recorded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    if _aws_tests_already_ran(request.session, Path(__file__).resolve()):
        return dict(LEDGER.actions)
    out = tmp_path_factory.mktemp("ledger") / "actions.json"
    env = {**os.environ, LEDGER_FILE_VARIABLE: str(out)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, AWS_TEST_FILES)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return CallLedger.read(out)


def test_the_engine_was_recorded_at_work(recorded: dict[str, int]) -> None:
    # Stack deployment, S3 emptying (a differently named action), Service Connect and App Mesh calls.
    assert {"cloudformation:CreateStack", "cloudformation:DescribeStackEvents", "s3:ListBucketVersions",
            "ecs:StopServiceDeployment", "appmesh:UpdateRoute", "codepipeline:ListActionExecutions"} <= set(recorded)


def test_every_recorded_action_is_an_iam_action(recorded: dict[str, int]) -> None:
    assert [a for a in recorded if not in_newer_catalogue(a)] == []


def test_the_operator_policy_allows_every_call_the_engine_makes(recorded: dict[str, int]) -> None:
    assert iam.missing_actions(operator_policy()["Statement"], recorded) == set()


def test_the_check_fails_when_the_policy_lacks_an_action(recorded: dict[str, int]) -> None:
    statements = [dict(s) for s in operator_policy()["Statement"]]
    for s in statements:
        s["Action"] = [a for a in s["Action"] if a != "s3:ListBucketVersions"]
    assert iam.missing_actions(statements, recorded) == {"s3:ListBucketVersions"}


def _operation(service: str, name: str) -> Any:
    return botocore.session.get_session().get_service_model(service).operation_model(name)


@pytest.mark.parametrize(("service", "operation", "action"), [
    ("cloudformation", "DescribeStacks", "cloudformation:DescribeStacks"),
    ("logs", "GetLogEvents", "logs:GetLogEvents"),
    ("appmesh", "UpdateRoute", "appmesh:UpdateRoute"),
    ("s3", "ListObjectVersions", "s3:ListBucketVersions"),
    ("s3", "DeleteObjects", "s3:DeleteObject"),
    ("s3", "PutObject", "s3:PutObject"),
])
def test_a_botocore_operation_maps_to_its_iam_action(service: str, operation: str, action: str) -> None:
    assert iam_action(_operation(service, operation)) == action


def test_each_renamed_operation_has_no_action_of_its_own_and_maps_to_a_real_one() -> None:
    for (prefix, operation), action in _IAM_ACTION_EXCEPTIONS.items():
        assert not in_newer_catalogue(f"{prefix}:{operation}"), operation
        assert in_newer_catalogue(action), action
