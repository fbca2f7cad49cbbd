"""Plans before actions on AWS: every changing operation is planned with read calls only, ``--dry-run``
prints the plan and changes nothing, and running a plan does what the operation always did.

The proof that planning changes nothing is taken at botocore's level: every operation any client of the
engine sends is recorded (its ``before-call`` event, the API's own operation name) and must be a read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from meshpipe.cli import main
from meshpipe.engines.aws.clients import SessionClientFactory
from meshpipe.engines.aws.engine import AwsEngine
from meshpipe.engines.plan import Plan
from meshpipe.mesh.routing import WeightedTarget
from support.aws import (
    REGION,
    FakeClock,
    RecordingFactory,
    existing_appmesh_environment,
    make_engine,
    use_fake_credentials,
    version_template,
)

OLD = "e9d5f17a" + "1" * 32
READS = ("Describe", "List", "Get", "BatchGet", "Head")

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")


class OperationLog:
    """Clients of a moto-backed session that note every operation botocore is about to send."""

    def __init__(self) -> None:
        self.base = SessionClientFactory(region=REGION)
        self.operations: list[str] = []

    def client(self, service: str) -> Any:
        client = self.base.client(service)
        client.meta.events.register("before-call", self._note, unique_id="test-operation-log")
        return client

    def _note(self, model: Any, **_: Any) -> None:
        self.operations.append(f"{model.service_model.service_name}:{model.name}")

    def changes(self) -> list[str]:
        return [op for op in self.operations if not op.split(":", 1)[1].startswith(READS)]


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RecordingFactory, AwsEngine]]:
    """An App Mesh environment with the hello-backend pipeline, one version and its route."""
    use_fake_credentials(monkeypatch)
    with mock_aws():
        aws = RecordingFactory()
        engine = make_engine(aws, FakeClock())
        existing_appmesh_environment(aws, "demo")
        engine.pipeline_create("demo", "hello-backend")
        aws.raw("appmesh").create_virtual_router(
            meshName="demo", virtualRouterName="vr-hello-backend",
            spec={"listeners": [{"portMapping": {"port": 80, "protocol": "http"}}]})
        aws.raw("cloudformation").create_stack(StackName=f"demo-hello-backend-{OLD[:8]}",
                                               TemplateBody=json.dumps(version_template("hello-backend", OLD)))
        engine.route_set("demo", "hello-backend", (WeightedTarget(OLD[:8], 100),))
        yield aws, engine


def stacks(aws: RecordingFactory) -> list[tuple[str, str]]:
    return sorted((s["StackName"], s["StackStatus"]) for s in
                  aws.raw("cloudformation").list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE")


def every_plan(engine: AwsEngine) -> dict[str, Plan]:
    return {
        "env create": engine.plan_env_create("fresh"),
        "env delete": engine.plan_env_delete("demo"),
        "pipeline create": engine.plan_pipeline_create("demo", "hello-web"),
        "pipeline delete": engine.plan_pipeline_delete("demo", "hello-backend", force=True),
        "route set": engine.plan_route_set("demo", "hello-backend", (WeightedTarget(OLD[:8], 100),)),
        "version delete": engine.plan_version_delete("demo", "hello-backend", OLD[:8], force=True),
    }


def test_planning_every_operation_makes_read_calls_only(demo) -> None:
    aws, _ = demo
    before = stacks(aws)
    log = OperationLog()
    plans = every_plan(make_engine(log, FakeClock()))
    assert all(plan.steps for plan in plans.values()), {k: p.steps for k, p in plans.items()}
    assert log.operations, "planning read nothing: the check below would prove nothing"
    assert log.changes() == []
    assert stacks(aws) == before


def test_the_teardown_plan_keeps_the_order_that_works(demo) -> None:
    _, engine = demo
    plan = engine.plan_env_delete("demo")
    assert [(s.call, s.target) for s in plan.steps] == [
        ("appmesh:DeleteGatewayRoute,DeleteRoute", "every gateway route and route in mesh demo"),
        ("cloudformation:DeleteStack", f"demo-hello-backend-{OLD[:8]}"),
        ("cloudformation:DeleteStack", "demo-hello-backend-pipeline"),
        ("s3:DeleteObjects", "the build bucket of demo-build-bucket"),
        ("cloudformation:DeleteStack", "demo-build-bucket"),
        ("cloudformation:DeleteStack", "demo-env"),
    ]
    assert all(s.reason for s in plan.steps)


def test_a_version_with_weight_plans_taking_it_out_of_the_route_first(demo) -> None:
    _, engine = demo
    plan = engine.plan_version_delete("demo", "hello-backend", OLD[:8], force=True)
    assert [s.call for s in plan.steps] == ["appmesh:DeleteRoute", "cloudformation:DeleteStack"]


def test_running_the_plan_does_what_it_says(demo) -> None:
    aws, engine = demo
    plan = engine.plan_env_delete("demo")
    engine.env_delete("demo")
    deleted = [c.params["StackName"] for c in aws.calls("cloudformation", "delete_stack")]
    planned = [s.target for s in plan.steps if s.call == "cloudformation:DeleteStack"]
    assert len(deleted) == len(planned) == 4
    assert stacks(aws) == []


def test_dry_run_prints_the_plan_as_json_and_changes_nothing(demo, capsys) -> None:
    aws, _ = demo
    before = stacks(aws)
    assert main(["env", "delete", "demo", "--engine", "aws", "--dry-run", "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["operation"] == "env delete demo"
    assert [s["call"] for s in printed["steps"]][-1] == "cloudformation:DeleteStack"
    assert set(printed["steps"][0]) == {"call", "target", "reason"}
    assert stacks(aws) == before


def test_dry_run_prints_the_plan_for_people(demo, capsys) -> None:
    assert main(["route", "set", "hello-backend", f"{OLD[:8]}=100", "--env", "demo", "--engine", "aws",
                 "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "route set hello-backend --env demo: 1 step(s)"
    assert lines[1] == "  1. appmesh:CreateRoute|UpdateRoute r-hello-backend on vr-hello-backend"
    assert lines[2].strip() == "weights vn-hello-backend-e9d5f17a=100"


def test_dry_run_is_refused_by_an_engine_that_does_not_plan(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MESHPIPE_HOME", str(tmp_path))
    assert main(["env", "delete", "demo", "--dry-run"]) == 2
    assert "--dry-run is not available on the local engine" in capsys.readouterr().err
