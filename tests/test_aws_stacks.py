"""Stack deploys and waits: events reported, failures explained, timeouts bounded, big templates staged."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from meshpipe.engines.aws.stacks import MAX_TEMPLATE_BODY, template_bytes
from meshpipe.errors import Defect, OperationError
from support.aws import (
    ANY,
    FakeClock,
    RecordingFactory,
    RecordingReporter,
    StubFactory,
    env_template,
    make_engine,
    service_connect_env_template,
    stand_in_templates,
    stubbed,
    use_fake_credentials,
)

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
ENV_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo-env/1"
NOT_THERE = "Stack with id demo-env does not exist"


@pytest.fixture(autouse=True)
def _fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_credentials(monkeypatch)


def described(status: str) -> dict[str, Any]:
    return {"Stacks": [{"StackName": "demo-env", "StackId": ENV_ID, "StackStatus": status,
                        "CreationTime": T0}]}


def event(n: int, logical: str, kind: str, status: str, reason: str | None = None) -> dict[str, Any]:
    e = {"StackId": ENV_ID, "EventId": f"e{n}", "StackName": "demo-env", "LogicalResourceId": logical,
         "ResourceType": kind, "ResourceStatus": status, "Timestamp": T0 + dt.timedelta(seconds=n),
         "PhysicalResourceId": ENV_ID if kind == "AWS::CloudFormation::Stack" else logical.lower()}
    if reason:
        e["ResourceStatusReason"] = reason
    return e


STACK = "AWS::CloudFormation::Stack"
FAILED_BUCKET = event(2, "Mesh", "AWS::AppMesh::Mesh", "CREATE_FAILED",
                      "Mesh demo already exists")
CANCELLED = event(3, "IngressListener", "AWS::ElasticLoadBalancingV2::Listener", "CREATE_FAILED", "Resource creation cancelled")


def newest_first(*events: dict[str, Any]) -> dict[str, Any]:
    return {"StackEvents": sorted(events, key=lambda e: e["Timestamp"], reverse=True)}


def test_a_creation_that_rolls_back_names_the_failed_resource_and_what_to_do() -> None:
    cfn, stub = stubbed("cloudformation")
    stub.add_client_error("describe_stacks", "ValidationError", NOT_THERE)  # the access check
    stub.add_client_error("describe_stacks", "ValidationError", NOT_THERE)
    stub.add_response("create_stack", {"StackId": ENV_ID},
                      {"StackName": "demo-env", "TemplateBody": ANY, "Parameters": ANY,
                       "Capabilities": ANY})
    first = [event(1, "demo-env", STACK, "CREATE_IN_PROGRESS", "User Initiated"), FAILED_BUCKET, CANCELLED,
             event(4, "demo-env", STACK, "ROLLBACK_IN_PROGRESS", "The following resource(s) failed")]
    every = [*first, event(5, "IngressListener", "AWS::ElasticLoadBalancingV2::Listener", "DELETE_COMPLETE"),
             event(6, "demo-env", STACK, "ROLLBACK_COMPLETE")]
    stub.add_response("describe_stacks", described("ROLLBACK_IN_PROGRESS"), {"StackName": ENV_ID})
    stub.add_response("describe_stack_events", newest_first(*first), {"StackName": ENV_ID})
    stub.add_response("describe_stacks", described("ROLLBACK_COMPLETE"), {"StackName": ENV_ID})
    stub.add_response("describe_stack_events", newest_first(*every), {"StackName": ENV_ID})
    stub.add_response("describe_stack_events", newest_first(*every), {"StackName": ENV_ID})
    clock, reporter = FakeClock(), RecordingReporter()
    engine = make_engine(StubFactory(cloudformation=cfn), clock, reporter)

    with pytest.raises(OperationError) as caught:
        engine.env_create("demo")

    error = caught.value
    assert "demo-env" in error.message and "ROLLBACK_COMPLETE" in error.message
    assert ("first failure: Mesh (AWS::AppMesh::Mesh) CREATE_FAILED: Mesh demo already exists") in error.message
    # Running the command again replaces the empty rolled-back stack (see the next test).
    assert error.hint and "run the same command again" in error.hint
    # Every new event was reported once, oldest first, while waiting.
    assert [s for s in reporter.steps if s.startswith("demo-env: ")] == [
        "demo-env: demo-env CREATE_IN_PROGRESS (User Initiated)",
        "demo-env: Mesh CREATE_FAILED (Mesh demo already exists)",
        "demo-env: IngressListener CREATE_FAILED (Resource creation cancelled)",
        "demo-env: demo-env ROLLBACK_IN_PROGRESS (The following resource(s) failed)",
        "demo-env: IngressListener DELETE_COMPLETE",
        "demo-env: demo-env ROLLBACK_COMPLETE",
    ]
    assert clock.sleeps == [5.0]
    stub.assert_no_pending_responses()


def test_a_stack_left_in_rollback_complete_is_deleted_and_created_again() -> None:
    cfn, stub = stubbed("cloudformation")
    stub.add_response("describe_stacks", described("ROLLBACK_COMPLETE"), {"StackName": "demo-env"})  # access check
    stub.add_response("describe_stacks", described("ROLLBACK_COMPLETE"), {"StackName": "demo-env"})
    old = [event(1, "demo-env", STACK, "CREATE_IN_PROGRESS"), event(2, "demo-env", STACK, "ROLLBACK_COMPLETE")]
    stub.add_response("describe_stack_events", newest_first(*old), {"StackName": ENV_ID})
    stub.add_response("delete_stack", {}, {"StackName": ENV_ID})  # by id: exactly the stack that failed
    stub.add_response("describe_stacks", described("DELETE_COMPLETE"), {"StackName": ENV_ID})
    stub.add_response("describe_stack_events",
                      newest_first(*old, event(3, "demo-env", STACK, "DELETE_COMPLETE")), {"StackName": ENV_ID})
    new_id = ENV_ID.replace("/1", "/2")
    stub.add_response("create_stack", {"StackId": new_id},
                      {"StackName": "demo-env", "TemplateBody": ANY, "Parameters": ANY, "Capabilities": ANY})
    stub.add_response("describe_stacks", {"Stacks": [{**described("CREATE_COMPLETE")["Stacks"][0], "StackId": new_id}]},
                      {"StackName": new_id})
    stub.add_response("describe_stack_events", {"StackEvents": []}, {"StackName": new_id})
    # The build bucket stack fails at once: this test is about the environment stack only.
    stub.add_client_error("describe_stacks", "AccessDenied", "stop here", http_status_code=403)
    reporter = RecordingReporter()
    with pytest.raises(Exception, match="stop here"):
        make_engine(StubFactory(cloudformation=cfn), FakeClock(), reporter).env_create("demo")
    assert any("demo-env is ROLLBACK_COMPLETE: its first creation failed" in s for s in reporter.steps)
    assert "demo-env DELETE_COMPLETE" in reporter.dones and "demo-env CREATE_COMPLETE" in reporter.dones
    stub.assert_no_pending_responses()  # no update_stack was stubbed: none was made


def test_waiting_gives_up_after_the_timeout_and_says_the_stack_carries_on() -> None:
    cfn, stub = stubbed("cloudformation")
    stub.add_client_error("describe_stacks", "ValidationError", NOT_THERE)  # the access check
    stub.add_client_error("describe_stacks", "ValidationError", NOT_THERE)
    stub.add_response("create_stack", {"StackId": ENV_ID})
    for _ in range(4):  # polls at 0, 5, 10 and 15 s; the timeout is 12 s
        stub.add_response("describe_stacks", described("CREATE_IN_PROGRESS"))
        stub.add_response("describe_stack_events", {"StackEvents": []})
    clock = FakeClock()
    engine = make_engine(StubFactory(cloudformation=cfn), clock, timeout=12.0)
    with pytest.raises(OperationError) as caught:
        engine.env_create("demo")
    assert "gave up waiting for stack demo-env after 12 s; it is still CREATE_IN_PROGRESS" in (
        caught.value.message)
    assert caught.value.hint and "run the command again" in caught.value.hint
    assert clock.sleeps == [5.0, 5.0, 5.0]
    stub.assert_no_pending_responses()


def test_an_update_with_no_changes_is_not_an_error() -> None:
    cfn, stub = stubbed("cloudformation")
    stub.add_response("describe_stacks", described("UPDATE_COMPLETE"))
    stub.add_response("describe_stack_events", {"StackEvents": []})
    stub.add_client_error("update_stack", "ValidationError", "No updates are to be performed.")
    reporter = RecordingReporter()
    engine = make_engine(StubFactory(cloudformation=cfn), FakeClock(), reporter)
    state = engine.stacks.deploy("demo-env", {"Resources": {}})
    assert state.status == "UPDATE_COMPLETE"
    assert "demo-env is up to date (UPDATE_COMPLETE)" in reporter.dones
    stub.assert_no_pending_responses()


def test_a_failed_update_that_rolled_back_says_the_stack_still_works() -> None:
    cfn, stub = stubbed("cloudformation")
    stub.add_response("describe_stacks", described("CREATE_COMPLETE"))
    stub.add_response("describe_stack_events", {"StackEvents": []})
    stub.add_response("update_stack", {"StackId": ENV_ID})
    events = newest_first(event(1, "demo-env", STACK, "UPDATE_IN_PROGRESS", "User Initiated"),
                          event(2, "LogGroup", "AWS::Logs::LogGroup", "UPDATE_FAILED", "Invalid retention"),
                          event(3, "demo-env", STACK, "UPDATE_ROLLBACK_COMPLETE"))
    stub.add_response("describe_stacks", described("UPDATE_ROLLBACK_COMPLETE"))
    stub.add_response("describe_stack_events", events)
    stub.add_response("describe_stack_events", events)
    engine = make_engine(StubFactory(cloudformation=cfn), FakeClock())
    with pytest.raises(OperationError) as caught:
        engine.stacks.deploy("demo-env", {"Resources": {}})
    assert "LogGroup (AWS::Logs::LogGroup) UPDATE_FAILED: Invalid retention" in caught.value.message
    assert caught.value.hint and "previous state and still works" in caught.value.hint



@pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")
def test_a_template_too_big_to_send_inline_is_staged_in_the_build_bucket(aws: RecordingFactory) -> None:
    big = {**service_connect_env_template(), "Metadata": {"Padding": "x" * MAX_TEMPLATE_BODY}}
    assert len(template_bytes(big)) > MAX_TEMPLATE_BODY

    def templates(env: str, mesh: str = "appmesh") -> dict[str, dict[str, Any]]:
        return {**stand_in_templates(env, mesh), f"{env}-env.template.json": big}

    bucket = make_engine(aws, FakeClock()).env_create("demo").details["build bucket"]
    info = make_engine(aws, FakeClock(), templates=templates).env_create("demo")
    assert info.status == "UPDATE_COMPLETE"
    [update] = [c for c in aws.calls("cloudformation", "update_stack") if c.params["StackName"] == "demo-env"]
    assert "TemplateBody" not in update.params
    assert update.params["TemplateURL"] == f"https://{bucket}.s3.amazonaws.com/templates/demo-env.template.json"
    staged = aws.raw("s3").get_object(Bucket=bucket, Key="templates/demo-env.template.json")["Body"].read()
    assert staged == template_bytes(big)


def test_a_template_too_big_with_no_build_bucket_yet_is_a_defect_and_creates_nothing(aws: RecordingFactory) -> None:
    def templates(env: str, mesh: str = "appmesh") -> dict[str, dict[str, Any]]:
        return {**stand_in_templates(env, mesh), f"{env}-env.template.json": env_template(padding=MAX_TEMPLATE_BODY)}

    # meshpipe renders the environment's template itself: one it cannot send is its own fault (exit 70)
    with pytest.raises(Defect, match="too big to send to CloudFormation inline"):
        make_engine(aws, FakeClock(), templates=templates).env_create("demo")
    assert aws.calls("cloudformation", "create_stack") == []
