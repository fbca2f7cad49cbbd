"""A failed first deploy does not block a service's pipeline, run against moto's CloudFormation.

CodePipeline cannot run here, so :class:`CloudFormationDeployAction` plays its CloudFormation deploy action:
it reads the Deploy action's configuration from the rendered pipeline template (``ActionMode``,
``StackName``, ``RoleArn``, ``Capabilities``, ``ParameterOverrides``, ``TemplatePath``) and does what AWS's
action reference says each mode does. Setting the template back to ``CREATE_UPDATE`` makes these tests fail.

moto's CloudFormation raises on a resource it cannot create instead of rolling back;
:class:`RollingBackCloudFormation` finishes what CloudFormation does then: it deletes whatever the stack
had made and leaves the stack ``ROLLBACK_COMPLETE``, the state CloudFormation will only delete. moto's own
``UpdateStack`` refuses a stack in that state, as CloudFormation does.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from moto import mock_aws
from moto.cloudformation.models import cloudformation_backends

from meshpipe.engines.aws.clients import ClientError
from meshpipe.synth import service_connect as sc
from meshpipe.synth.service_pipeline import render_service_pipeline
from test_aws_support import REGION, FakeClock, RecordingFactory, make_engine, use_fake_credentials, version_template

ACCOUNT = "123456789012"  # moto's default account
SERVICE = "hello-web"
COMMIT = "0badc0de" + "2" * 32
NEXT_COMMIT = "66f2a19c" + "0" * 32
# What AWS's action reference calls a failed state: REPLACE_ON_FAILURE deletes such a stack and creates it anew.
FAILED_STATES = frozenset({"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED",
                           "UPDATE_ROLLBACK_FAILED"})


@dataclass
class RollingBackCloudFormation:
    """moto's CloudFormation client, with the rollback CloudFormation does after a failed creation."""

    moto: Any

    def __getattr__(self, name: str) -> Any:
        return getattr(self.moto, name)

    def create_stack(self, **request: Any) -> dict[str, Any]:
        try:
            return self.moto.create_stack(**request)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ValidationError":
                raise  # a bad request: CloudFormation refuses it before any stack exists
            stack = next(s for s in cloudformation_backends[ACCOUNT][REGION].stacks.values()
                         if s.name == request["StackName"])
            stack._add_stack_event("CREATE_FAILED", resource_status_reason=str(exc))
            stack._add_stack_event("ROLLBACK_IN_PROGRESS")
            stack.resource_map.delete()
            stack.status = "ROLLBACK_COMPLETE"
            stack._add_stack_event("ROLLBACK_COMPLETE")
            return {"StackId": stack.stack_id}


def _resolve(value: Any, scope: dict[str, Any]) -> Any:
    """The intrinsics the Deploy action's configuration uses, over parameters, attributes and the
    pipeline's ``#{Namespace.Variable}`` variables."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        text = value["Fn::Sub"]
        assert isinstance(text, str), "the Deploy configuration uses the one-argument Fn::Sub"
        text = re.sub(r"\$\{([A-Za-z0-9:.]+)\}", lambda m: str(scope[m[1]]), text)
        return re.sub(r"#\{([A-Za-z0-9]+\.[A-Za-z0-9_]+)\}", lambda m: str(scope[m[1]]), text)
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        return scope[".".join(value["Fn::GetAtt"])]
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return scope[value["Ref"]]
    return value


@dataclass
class CloudFormationDeployAction:
    """CodePipeline's CloudFormation deploy action, as its action reference describes the modes we use.

    CREATE_UPDATE creates a missing stack and updates an existing one (CloudFormation refuses the update of
    a stack in a failed state, and the action fails). REPLACE_ON_FAILURE creates a missing stack, updates a
    stack in any other state, and deletes then recreates a stack in a failed state.
    """

    configuration: dict[str, Any]
    scope: dict[str, Any]
    cfn: RollingBackCloudFormation
    runs: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, pipeline_template: dict[str, Any], cfn: RollingBackCloudFormation,
           scope: dict[str, Any]) -> CloudFormationDeployAction:
        [deploy_stage] = [s for s in pipeline_template["Resources"]["Pipeline"]["Properties"]["Stages"]
                          if s["Name"] == "Deploy"]
        [action] = deploy_stage["Actions"]
        assert action["ActionTypeId"] == {"Category": "Deploy", "Owner": "AWS", "Provider": "CloudFormation",
                                          "Version": "1"}
        defaults = {k: p.get("Default") for k, p in pipeline_template["Parameters"].items()}
        return cls(action["Configuration"], {**defaults, **scope}, cfn)

    def run(self, artifacts: dict[str, dict[str, str]], variables: dict[str, str]) -> str:
        """One execution of the action; returns ``Succeeded`` or ``Failed: <reason>``."""
        scope = {**self.scope, **variables}
        conf = {k: _resolve(v, scope) for k, v in self.configuration.items()}
        artifact, path = conf["TemplatePath"].split("::")
        request: dict[str, Any] = {
            "StackName": conf["StackName"], "TemplateBody": artifacts[artifact][path],
            "Capabilities": conf.get("Capabilities", "").split(","), "RoleARN": conf["RoleArn"],
            "Parameters": [{"ParameterKey": k, "ParameterValue": str(v)}
                           for k, v in json.loads(conf.get("ParameterOverrides", "{}")).items()],
        }
        mode = conf["ActionMode"]
        assert mode in {"CREATE_UPDATE", "REPLACE_ON_FAILURE"}, mode
        try:
            stack = self._describe(conf["StackName"])
            if stack is not None and mode == "REPLACE_ON_FAILURE" and stack["StackStatus"] in FAILED_STATES:
                self.cfn.delete_stack(StackName=stack["StackId"])
                stack = None
            if stack is None:
                self.cfn.create_stack(**request)
            else:
                self.cfn.update_stack(**request)
        except ClientError as exc:
            outcome = f"Failed: {exc.response['Error']['Message']}"
        else:
            status = self._describe(conf["StackName"])["StackStatus"]  # type: ignore[index]
            outcome = "Succeeded" if status in {"CREATE_COMPLETE", "UPDATE_COMPLETE"} else f"Failed: stack {status}"
        self.runs.append(outcome)
        return outcome

    def _describe(self, name: str) -> dict[str, Any] | None:
        try:
            return self.cfn.describe_stacks(StackName=name)["Stacks"][0]
        except ClientError:
            return None


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingFactory]:
    use_fake_credentials(monkeypatch)
    with mock_aws():
        yield RecordingFactory()


def deploy_role(factory: RecordingFactory) -> str:
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "cloudformation.amazonaws.com"}}]}
    return factory.raw("iam").create_role(RoleName="demo-hello-web-deploy",
                                          AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


def built(template: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The Build stage's artifact: the service's template under the name the Deploy action reads."""
    return {"BuildOutput": {"service.template.json": json.dumps(template)}}


def service_template(commit: str, *, task_definition_exists: bool = True) -> dict[str, Any]:
    """What the Build stage hands on for one commit, cut to what moto deploys (a task definition and an ECS
    service), with the gateway-route parameters the Deploy action passes. Without ``task_definition_exists``
    the service names a revision that is not registered: moto refuses to create it, as ECS would."""
    template = version_template(SERVICE, commit)
    template["Parameters"] = sc.ingress_parameters()
    if not task_definition_exists:
        template["Resources"]["Service"]["Properties"]["TaskDefinition"] = (
            f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{SERVICE}-missing:1")
    return template


def pipeline(mesh: str, *, mode: str | None = None) -> dict[str, Any]:
    template = copy.deepcopy(render_service_pipeline("demo", mesh=mesh))
    if mode is not None:
        [deploy] = template["Resources"]["Pipeline"]["Properties"]["Stages"][2]["Actions"]
        deploy["Configuration"]["ActionMode"] = mode
    return template


def action_for(aws: RecordingFactory, template: dict[str, Any]) -> CloudFormationDeployAction:
    aws.raw("ecs").create_cluster(clusterName="demo")
    cfn = RollingBackCloudFormation(aws.raw("cloudformation"))
    return CloudFormationDeployAction.of(template, cfn, {"ServiceName": SERVICE,
                                                         "DeployRole.Arn": deploy_role(aws)})


def versions(commit: str) -> dict[str, str]:
    return {"BuildVariables.VERSION_ID": commit[:8]}


# moto's CloudFormation does not parse the ECS service's deployment settings.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_service_connect_a_failed_first_create_is_replaced_by_the_next_push(aws: RecordingFactory) -> None:
    action = action_for(aws, pipeline("service-connect"))
    cfn = aws.raw("cloudformation")

    first = action.run(built(service_template(COMMIT, task_definition_exists=False)), versions(COMMIT))
    assert first.startswith("Failed")
    [stack] = cfn.describe_stacks(StackName="demo-hello-web")["Stacks"]
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    failed_id = stack["StackId"]

    # The next push: the stack is deleted and created anew, and the service runs the new revision.
    assert action.run(built(service_template(NEXT_COMMIT)), versions(NEXT_COMMIT)) == "Succeeded"
    [stack] = cfn.describe_stacks(StackName="demo-hello-web")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE" and stack["StackId"] != failed_id
    [service] = aws.raw("ecs").describe_services(cluster="demo", services=["hello-web-66f2a19c"])["services"]
    assert service["status"] == "ACTIVE"

    # A healthy stack is updated in place, never replaced.
    third = "e9d5f17a" + "1" * 32
    assert action.run(built(service_template(third)), versions(third)) == "Succeeded"
    [again] = cfn.describe_stacks(StackName="demo-hello-web")["Stacks"]
    assert (again["StackId"], again["StackStatus"]) == (stack["StackId"], "UPDATE_COMPLETE")


def test_app_mesh_a_version_whose_first_create_failed_deploys_when_run_again(aws: RecordingFactory) -> None:
    action = action_for(aws, pipeline("appmesh"))
    cfn = aws.raw("cloudformation")
    assert action.run(built(service_template(COMMIT, task_definition_exists=False)),
                      versions(COMMIT)).startswith("Failed")
    assert cfn.describe_stacks(StackName="demo-hello-web-0badc0de")["Stacks"][0]["StackStatus"] == "ROLLBACK_COMPLETE"
    # The same version again (a retried run, once the cause is fixed) replaces the failed stack.
    assert action.run(built(service_template(COMMIT)), versions(COMMIT)) == "Succeeded"
    assert cfn.describe_stacks(StackName="demo-hello-web-0badc0de")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_with_create_update_the_failed_stack_blocks_every_later_run(aws: RecordingFactory) -> None:
    # The control: the mode the pipeline used before. Every run after the failed first create fails.
    action = action_for(aws, pipeline("service-connect", mode="CREATE_UPDATE"))
    action.run(built(service_template(COMMIT, task_definition_exists=False)), versions(COMMIT))
    for commit in (NEXT_COMMIT, "e9d5f17a" + "1" * 32):
        outcome = action.run(built(service_template(commit)), versions(commit))
        assert outcome.startswith("Failed") and "ROLLBACK_COMPLETE" in outcome
    status = aws.raw("cloudformation").describe_stacks(StackName="demo-hello-web")["Stacks"][0]["StackStatus"]
    assert status == "ROLLBACK_COMPLETE"


@pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")
def test_meshpipe_replaces_an_environment_whose_first_create_rolled_back(aws: RecordingFactory) -> None:
    # The engine meets the same state when its own first env create failed: it deletes the empty stack and
    # creates it again instead of refusing.
    cfn = RollingBackCloudFormation(aws.raw("cloudformation"))
    broken = {"Resources": {"Service": service_template(COMMIT, task_definition_exists=False)["Resources"]["Service"]}}
    aws.raw("ecs").create_cluster(clusterName="demo")
    cfn.create_stack(StackName="demo-env", TemplateBody=json.dumps(broken))
    assert cfn.describe_stacks(StackName="demo-env")["Stacks"][0]["StackStatus"] == "ROLLBACK_COMPLETE"
    engine = make_engine(aws, FakeClock())

    info = engine.env_create("demo")

    assert info.status == "CREATE_COMPLETE"
    deletes = [c for c in aws.calls("cloudformation", "delete_stack")]
    creates = [c.params["StackName"] for c in aws.calls("cloudformation", "create_stack")]
    assert len(deletes) == 1 and creates[0] == "demo-env"
    assert not aws.calls("cloudformation", "update_stack")
