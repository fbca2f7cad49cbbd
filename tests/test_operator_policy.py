"""The operator policy in docs/aws.md allows every AWS call the engine makes, on the resources it names.

The engine's client factory reports the IAM action and parameters of each call (tests/support/aws_calls.py
records them while the AWS engine's own tests run, on moto and Stubber); support.operator_calls turns the
parameters into the ARNs IAM authorizes the call on, and support.iam_eval decides. Besides the calls
themselves, CloudFormation does two things with the caller's rights: a stack that has a role (service and
version stacks, created by the pipeline with its deploy role) is updated or deleted only if the caller may
pass that role to CloudFormation; a stack without one (the pipeline stack, which ``route gateway``
updates) is changed by its handlers with the caller's own rights. When this session has already run the
AWS tests, their record is used; otherwise they are run once more in a child pytest that writes its record
to a file.
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
from support import iam, iam_calls
from support.aws_calls import LEDGER, LEDGER_FILE_VARIABLE, CallLedger
from support.iam_eval import Request, decide
from support.iam_lint import ACCOUNT, in_newer_catalogue
from support.operator_calls import requests_for

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
AWS_TEST_FILES = sorted(TESTS.glob("test_aws_*.py"))


def operator_policy() -> dict[str, Any]:
    [policy] = iam.json_blocks((REPO / "docs" / "aws.md").read_text(), "<!-- policy: operator -->")
    return policy


def runner_statements() -> list[dict[str, Any]]:
    """Who runs meshpipe's commands: the operator policy, and for env create/delete and pipeline
    create/delete (which upload the bundle and empty buckets) the deployer policy beside it."""
    [deployer] = iam.json_blocks((REPO / "docs" / "aws.md").read_text(), "<!-- policy: deployer -->")
    return [*deployer["Statement"], *operator_policy()["Statement"]]


def _aws_tests_already_ran(session: pytest.Session, this_module: Path) -> bool:
    files = [Path(str(item.path)) for item in session.items]
    if this_module not in files or not set(AWS_TEST_FILES) <= set(files):
        return False
    first_here = files.index(this_module)
    return all(files.index(f) < first_here for f in AWS_TEST_FILES) and bool(LEDGER.actions)


Recorded = tuple[dict[str, int], dict[str, list[dict[str, Any]]]]


@pytest.fixture(scope="module")
def ledger(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    if _aws_tests_already_ran(request.session, Path(__file__).resolve()):
        return dict(LEDGER.actions), dict(LEDGER.calls)
    out = tmp_path_factory.mktemp("ledger") / "actions.json"
    env = {**os.environ, LEDGER_FILE_VARIABLE: str(out)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, AWS_TEST_FILES)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return CallLedger.read(out)


@pytest.fixture(scope="module")
def recorded(ledger: Recorded) -> dict[str, int]:
    return ledger[0]


def stack_role_requests(calls: dict[str, list[dict[str, Any]]]) -> list[Request]:
    """What CloudFormation checks of the caller besides the stack call itself (see the module's doc)."""
    found = []
    for action in ("cloudformation:UpdateStack", "cloudformation:DeleteStack"):
        for params in calls.get(action, []):
            stack = str(params.get("StackName", "")).rsplit("/", 1)[-1]
            env, _, rest = stack.partition("-")
            if env != iam.ENV or rest in ("env", "build-bucket") or not rest:
                continue
            if rest.endswith("-pipeline"):
                if action == "cloudformation:UpdateStack":
                    found += pipeline_update_requests()
                continue
            service = rest if len(rest.rsplit("-", 1)[-1]) != 8 else rest.rsplit("-", 1)[0]
            role = f"arn:aws:iam::{ACCOUNT}:role/{env}-{service}-pipeline-DeployRole-ABCDEF123456"
            found.append(Request("iam:PassRole", role, {"iam:PassedToService": "cloudformation.amazonaws.com"}))
    return found


def pipeline_update_requests() -> list[Request]:
    """``route gateway`` changes the pipeline stack's gateway-route parameters: CloudFormation runs the
    pipeline resource's update (and read) handler with the caller's rights."""
    deployed = {d.name: d for d in iam_calls.deployed_templates()}
    calls = iam_calls.handler_calls(deployed["service-connect/pipeline with gateway route"].deployment).calls
    return [Request(c.action, c.resource, c.context) for c in calls
            if "(AWS::CodePipeline::Pipeline) update" in c.origin or "(AWS::CodePipeline::Pipeline) read" in c.origin]


def refused(statements: list[dict[str, Any]], calls: dict[str, list[dict[str, Any]]]) -> set[str]:
    problems = set()
    for action, params_list in calls.items():
        for params in params_list:
            resolved = requests_for(action, params)
            if resolved.unresolved:
                problems.add(f"unresolved: {action} {params}")
            problems |= {f"{action} on {r.resource}" for r in resolved.requests if decide(statements, r) != "allowed"}
    problems |= {f"{r.action} on {r.resource} {dict(r.context)}" for r in stack_role_requests(calls)
                 if decide(statements, r) != "allowed"}
    return problems


def test_the_engine_was_recorded_at_work(recorded: dict[str, int]) -> None:
    # Stack deployment, S3 emptying (a differently named action), Service Connect and App Mesh calls.
    assert {"cloudformation:CreateStack", "cloudformation:DescribeStackEvents", "s3:ListBucketVersions",
            "ecs:StopServiceDeployment", "appmesh:UpdateRoute", "codepipeline:ListActionExecutions"} <= set(recorded)


def test_every_recorded_action_is_an_iam_action(recorded: dict[str, int]) -> None:
    assert [a for a in recorded if not in_newer_catalogue(a)] == []


def test_the_policies_allow_every_call_the_engine_makes(recorded: dict[str, int]) -> None:
    assert iam.missing_actions(runner_statements(), recorded) == set()


def test_each_call_names_its_resources(ledger: Recorded) -> None:
    actions, calls = ledger
    assert set(calls) == set(actions)
    assert sum(len(p) for p in calls.values()) > len(calls)  # several resources per action were seen
    assert [f"{a} {p}" for a, plist in calls.items() for p in plist if requests_for(a, p).unresolved] == []


def test_the_policies_allow_every_call_on_its_resources(ledger: Recorded) -> None:
    assert sorted(refused(runner_statements(), ledger[1])) == []


BUNDLE = "arn:aws:s3:::demo-build-bucket-buildbucket-abc123/meshpipe-bundle.zip"
DEPLOY_ROLE = f"arn:aws:iam::{ACCOUNT}:role/demo-hello-web-pipeline-DeployRole-ABCDEF123456"


@pytest.mark.parametrize(("action", "resource", "context"), [
    # The bundle every build installs meshpipe from: only env create (the deployer) writes it.
    ("s3:PutObject", BUNDLE, {}),
    ("s3:DeleteObject", BUNDLE, {}),
    # A stack is never given a role by the operator: the deploy role cannot be attached to a stack it updates.
    ("cloudformation:UpdateStack", "arn:aws:cloudformation:us-east-1:123456789012:stack/demo-hello-web-pipeline/x",
     {"cloudformation:RoleArn": DEPLOY_ROLE}),
    ("cloudformation:CreateStack", "arn:aws:cloudformation:us-east-1:123456789012:stack/demo-evil/x",
     {"cloudformation:RoleArn": DEPLOY_ROLE}),
])
def test_the_operator_alone_cannot(action: str, resource: str, context: dict[str, str]) -> None:
    assert decide(operator_policy()["Statement"], Request(action, resource, context)) != "allowed"


def test_the_operator_stages_big_templates_and_updates_stacks_without_a_new_role() -> None:
    staged = "arn:aws:s3:::demo-build-bucket-buildbucket-abc123/templates/demo-env.template.json"
    assert decide(operator_policy()["Statement"], Request("s3:PutObject", staged)) == "allowed"
    stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo-hello-web-pipeline/x"
    assert decide(operator_policy()["Statement"], Request("cloudformation:UpdateStack", stack)) == "allowed"


def test_route_gateway_changes_the_pipeline_with_the_operators_rights(ledger: Recorded) -> None:
    assert any(str(p.get("StackName", "")).endswith("-pipeline") for p in ledger[1]["cloudformation:UpdateStack"])
    requests = pipeline_update_requests()
    assert {"codepipeline:UpdatePipeline", "iam:PassRole"} <= {r.action for r in requests}


def test_narrowing_one_resource_of_the_operator_policy_fails_the_check(ledger: Recorded) -> None:
    statements = [dict(s) for s in runner_statements()]
    [services] = [s for s in statements if s.get("Sid") == "Services"]
    services["Resource"] = [r.replace("service/demo/*", "service/demo/hello-web") for r in services["Resource"]]
    assert any("service/demo/hello-backend" in p for p in refused(statements, ledger[1]))


def test_the_check_fails_when_the_policy_lacks_an_action(recorded: dict[str, int]) -> None:
    statements = [dict(s) for s in runner_statements()]
    for s in statements:
        s["Action"] = [a for a in iam.as_list(s["Action"]) if a != "s3:ListBucketVersions"]
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
    assert _IAM_ACTION_EXCEPTIONS
    for (prefix, operation), action in _IAM_ACTION_EXCEPTIONS.items():
        assert not in_newer_catalogue(f"{prefix}:{operation}"), operation
        assert in_newer_catalogue(action), action
