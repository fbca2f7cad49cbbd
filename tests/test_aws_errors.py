"""AWS failures become meshpipe errors that say what happened and what to do; throttling is retried."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshpipe.engines.aws.clients import EndpointConnectionError, NoCredentialsError, NoRegionError
from meshpipe.engines.aws.errors import translate
from meshpipe.engines.aws.retry import Backoff
from meshpipe.errors import ConflictError, NotFoundError, OperationError, UserError
from meshpipe.mesh.routing import WeightedTarget
from test_aws_support import ANY, FakeClock, StubFactory, make_engine, stubbed, use_fake_credentials

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
ENV_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo-env/1"


@pytest.fixture(autouse=True)
def _fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_credentials(monkeypatch)


def stack(name: str, status: str, stack_id: str = ENV_ID, outputs: dict[str, str] | None = None) -> dict[str, Any]:
    return {"Stacks": [{"StackName": name, "StackId": stack_id, "StackStatus": status, "CreationTime": NOW,
                        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in (outputs or {}).items()]}]}


def test_throttling_is_retried_with_growing_delays_then_succeeds() -> None:
    cfn, stub = stubbed("cloudformation")
    for _ in range(2):
        stub.add_client_error("describe_stacks", "Throttling", "Rate exceeded", expected_params={"StackName": "demo-env"})
    stub.add_response("describe_stacks", stack("demo-env", "CREATE_COMPLETE", outputs={"IngressEndpoint": "http://x"}),
                      {"StackName": "demo-env"})
    stub.add_response("list_stacks", {"StackSummaries": []}, {"StackStatusFilter": ANY})
    stub.add_client_error("describe_stacks", "ValidationError", "Stack with id demo-build-bucket does not exist",
                          expected_params={"StackName": "demo-build-bucket"})
    clock = FakeClock()
    info = make_engine(StubFactory(cloudformation=cfn), clock).env_status("demo")
    assert (info.status, info.ingress_url) == ("CREATE_COMPLETE", "http://x")
    assert info.details["build bucket stack"] == "NOT_FOUND"
    assert clock.sleeps == [1.0, 2.0]
    stub.assert_no_pending_responses()


def test_throttling_that_never_stops_ends_in_an_operation_error() -> None:
    cfn, stub = stubbed("cloudformation")
    for _ in range(4):  # the test engine's backoff allows 4 attempts
        stub.add_client_error("describe_stacks", "ThrottlingException", "Rate exceeded")
    clock = FakeClock()
    with pytest.raises(OperationError) as caught:
        make_engine(StubFactory(cloudformation=cfn), clock).env_status("demo")
    assert "throttling cloudformation:DescribeStacks" in caught.value.message
    assert "4 attempts" in caught.value.message
    assert caught.value.hint and "retry" in caught.value.hint
    assert clock.sleeps == [1.0, 2.0, 4.0]
    stub.assert_no_pending_responses()


def test_access_denied_names_the_action_to_allow() -> None:
    cfn, stub = stubbed("cloudformation")
    for _ in range(2):  # the access check, then the deploy's own look
        stub.add_client_error("describe_stacks", "ValidationError", "Stack with id demo-env does not exist")
    stub.add_client_error("create_stack", "AccessDenied",
                          "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: "
                          "cloudformation:CreateStack", http_status_code=403)
    with pytest.raises(OperationError) as caught:
        make_engine(StubFactory(cloudformation=cfn), FakeClock()).env_create("demo")
    assert "AWS denied cloudformation:CreateStack" in caught.value.message
    assert caught.value.hint and "allow cloudformation:CreateStack" in caught.value.hint
    assert caught.value.exit_code == 1


class _Raising:
    """A client whose every operation raises ``exc``."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __getattr__(self, name: str) -> Any:
        def fail(**_: Any) -> Any:
            raise self.exc

        return fail


class _NoRegionFactory:
    def client(self, service: str) -> Any:
        raise NoRegionError()


def test_no_region_is_a_user_error_saying_how_to_set_one() -> None:
    with pytest.raises(UserError) as caught:
        make_engine(_NoRegionFactory(), FakeClock()).env_status("demo")
    assert caught.value.exit_code == 2
    assert "region" in caught.value.message
    assert caught.value.hint and "AWS_REGION" in caught.value.hint


def test_missing_credentials_are_a_user_error_saying_how_to_configure_them() -> None:
    factory = StubFactory(cloudformation=_Raising(NoCredentialsError()))
    with pytest.raises(UserError) as caught:
        make_engine(factory, FakeClock()).env_status("demo")
    assert caught.value.exit_code == 2
    assert caught.value.hint and "aws configure" in caught.value.hint


def test_unreachable_endpoint_is_an_operation_error() -> None:
    factory = StubFactory(cloudformation=_Raising(
        EndpointConnectionError(endpoint_url="https://cloudformation.us-east-1.amazonaws.com/")))
    with pytest.raises(OperationError, match="cannot reach AWS cloudformation"):
        make_engine(factory, FakeClock()).env_status("demo")


def test_a_missing_environment_is_not_found_with_the_command_that_creates_it() -> None:
    cfn, stub = stubbed("cloudformation")
    stub.add_client_error("describe_stacks", "ValidationError", "Stack with id demo-env does not exist")
    with pytest.raises(NotFoundError) as caught:
        make_engine(StubFactory(cloudformation=cfn), FakeClock()).route_show("demo", "hello-web")
    assert caught.value.hint == "create it with `meshpipe env create demo --engine aws`"


def test_a_stack_stuck_in_update_rollback_failed_says_how_to_continue_the_rollback() -> None:
    cfn, stub = stubbed("cloudformation")
    stub.add_client_error("update_stack", "ValidationError",
                          "Stack:arn:aws:cloudformation:us-east-1:1:stack/demo-env/1 is in UPDATE_ROLLBACK_FAILED "
                          "state and can not be updated.")
    with pytest.raises(Exception) as raw:
        cfn.update_stack(StackName="demo-env")
    error = translate(raw.value, "cloudformation", "UpdateStack")
    assert isinstance(error, OperationError)
    assert error.hint and "continue-update-rollback" in error.hint


@given(st.integers(min_value=1, max_value=40), st.floats(min_value=0.0, max_value=1.0))
def test_backoff_delays_grow_and_stay_bounded(retry: int, rand: float) -> None:
    backoff = Backoff(attempts=6, base=1.0, cap=20.0)
    delay = backoff.delay(retry, rand)
    assert 0.5 * min(20.0, 2.0 ** (retry - 1)) <= delay <= 20.0
    assert backoff.delay(retry + 1, 1.0) >= backoff.delay(retry, 1.0)


def test_a_bundle_that_cannot_be_built_stops_env_create_before_any_aws_change() -> None:
    def no_network(out_dir: object) -> Any:
        raise OperationError("pip download failed: no network")

    cfn, stub = stubbed("cloudformation")  # only the read-only access check is expected
    stub.add_client_error("describe_stacks", "ValidationError", "Stack with id demo-env does not exist")
    with pytest.raises(OperationError, match="pip download failed"):
        make_engine(StubFactory(cloudformation=cfn), FakeClock(), bundle=no_network).env_create("demo")
    stub.assert_no_pending_responses()


def test_missing_credentials_stop_env_create_before_the_bundle_is_built() -> None:
    built: list[object] = []

    def bundle(out_dir: object) -> Any:
        built.append(out_dir)
        raise AssertionError("the bundle must not be built without AWS access")

    cfn, stub = stubbed("cloudformation")
    stub.add_client_error("describe_stacks", "AccessDenied",
                          "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: "
                          "cloudformation:DescribeStacks", http_status_code=403)
    with pytest.raises(OperationError, match="DescribeStacks"):
        make_engine(StubFactory(cloudformation=cfn), FakeClock(), bundle=bundle).env_create("demo")
    assert built == []


def test_a_route_to_a_version_still_deploying_is_refused_before_any_app_mesh_call() -> None:
    cfn, stub = stubbed("cloudformation")
    stub.add_response("describe_stacks", stack("demo-env", "CREATE_COMPLETE"), {"StackName": "demo-env"})
    stub.add_response("describe_stacks", stack("demo-hello-backend-pipeline", "CREATE_COMPLETE"),
                      {"StackName": "demo-hello-backend-pipeline"})
    stub.add_response("describe_stacks", stack("demo-hello-backend-0badc0de", "CREATE_IN_PROGRESS"),
                      {"StackName": "demo-hello-backend-0badc0de"})
    engine = make_engine(StubFactory(cloudformation=cfn), FakeClock())  # no App Mesh client at all
    with pytest.raises(ConflictError) as caught:
        engine.route_set("demo", "hello-backend", (WeightedTarget("0badc0de", 100),))
    assert "stack demo-hello-backend-0badc0de is CREATE_IN_PROGRESS" in caught.value.message
    assert caught.value.hint and "Deploy stage" in caught.value.hint
    stub.assert_no_pending_responses()


@pytest.mark.parametrize("service", ["cloudformation", "s3", "appmesh", "ecs", "elbv2", "servicediscovery",
                                     "codepipeline", "codebuild", "logs"])
def test_denied_actions_are_named_with_iams_service_prefix(service: str) -> None:
    """The action an error tells the user to allow carries IAM's prefix for the service, which is the name
    the service signs requests with in botocore's model (elbv2's is elasticloadbalancing)."""
    import botocore.session

    from meshpipe.engines.aws.errors import iam_action

    metadata = botocore.session.get_session().get_service_model(service).metadata
    prefix = metadata.get("signingName", metadata["endpointPrefix"])
    assert iam_action(service, "DescribeThings") == f"{prefix}:DescribeThings"
