"""Shared fakes for the AWS engine tests: a recording reporter, client factories that
record calls or hand out Stubber-backed clients, and stand-in templates moto's CloudFormation can deploy.

moto's CloudFormation does not create App Mesh, CodePipeline or CodeCommit resources, so the stand-ins
hold what moto can (buckets, roles, a cluster, ECS services) and the tests create the App Mesh objects
those stacks would hold (mesh, virtual gateway, virtual routers) through moto's App Mesh API. The real
templates are linted elsewhere.
"""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from botocore.stub import ANY, Stubber

from meshpipe.engines.aws.clients import SessionClientFactory
from meshpipe.engines.aws.engine import AwsEngine
from meshpipe.engines.aws.retry import Backoff
from meshpipe.synth.platform_render import platform_template_files, render_platform
from support.aws_calls import LEDGER
from support.clock import FakeClock

__all__ = ["ANY", "INGRESS", "REGION", "Call", "FakeClock", "RecordingFactory", "RecordingReporter", "StubFactory",
           "env_template", "existing_appmesh_environment", "fake_bundle", "make_engine", "pipeline_template", "service_connect_env_template",
           "service_connect_pipeline_template", "stand_in_templates", "stubbed", "use_fake_credentials",
           "version_template"]

REGION = "us-east-1"
ACCOUNT = "123456789012"
NOW = dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.UTC)


class EcsArns(NamedTuple):
    """hello-backend's ECS service in the demo cluster: one deployment from task definition revision 1 to 2."""

    service: str
    deployment: str
    old_td: str
    new_td: str
    old_rev: str
    new_rev: str


def ecs_arns(deployment_id: str) -> EcsArns:
    service = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/demo/hello-backend"
    return EcsArns(service=service,
                   deployment=f"arn:aws:ecs:{REGION}:{ACCOUNT}:service-deployment/demo/hello-backend/{deployment_id}",
                   old_td=f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/hello-backend:1",
                   new_td=f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/hello-backend:2",
                   old_rev=f"{service}-rev/1", new_rev=f"{service}-rev/2")


def service_connect_env_description() -> dict[str, Any]:
    """``describe_stacks`` of the demo environment's stack: a Service Connect environment on cluster demo."""
    return {"Stacks": [{"StackName": "demo-env", "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/demo-env/1",
                        "StackStatus": "CREATE_COMPLETE", "CreationTime": NOW,
                        "Outputs": [{"OutputKey": "MeshFlavour", "OutputValue": "service-connect"},
                                    {"OutputKey": "ClusterName", "OutputValue": "demo"}]}]}
INGRESS = "http://demo-ingress-0123456789.elb.us-east-1.amazonaws.com"
FAKE_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SECURITY_TOKEN": "testing",
            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials"}


def use_fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region: nothing in these tests can sign a request for a real account."""
    for name, value in FAKE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@dataclass
class RecordingReporter:
    steps: list[str] = field(default_factory=list)
    dones: list[str] = field(default_factory=list)

    def step(self, message: str) -> None:
        self.steps.append(message)

    def done(self, message: str) -> None:
        self.dones.append(message)

    @property
    def text(self) -> str:
        return "\n".join(self.steps + self.dones)


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    params: dict[str, Any]
    result: Any


class _RecordingClient:
    def __init__(self, service: str, client: Any, log: list[Call]) -> None:
        self._service = service
        self._client = client
        self._log = log

    @property
    def meta(self) -> Any:
        return self._client.meta

    def __getattr__(self, operation: str) -> Any:
        method = getattr(self._client, operation)

        def record(**params: Any) -> Any:
            try:
                result = method(**params)
            except Exception as exc:  # failed calls count too: "no App Mesh call" means none at all
                self._log.append(Call(self._service, operation, params, exc))
                raise
            self._log.append(Call(self._service, operation, params, result))
            return result

        return record


class RecordingFactory:
    """Clients from a moto-backed session (or the given overrides), recording every call and its result
    (the response, or the exception it raised)."""

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        # Every call the engine makes is recorded, for the operator policy's check.
        self.base = SessionClientFactory(region=REGION, observer=LEDGER.record)
        self.overrides = overrides or {}
        self.log: list[Call] = []

    def client(self, service: str) -> Any:
        return _RecordingClient(service, self.overrides.get(service) or self.base.client(service), self.log)

    def raw(self, service: str) -> Any:
        """An unrecorded client, for the test's own set-up and checks."""
        return self.base.client(service)

    def calls(self, service: str | None = None, operation: str | None = None, *,
              succeeded: bool = False) -> list[Call]:
        return [c for c in self.log if (service is None or c.service == service)
                and (operation is None or c.operation == operation)
                and not (succeeded and isinstance(c.result, Exception))]


class StubFactory:
    """Only the given (Stubber-backed or fake) clients; asking for any other service fails the test."""

    def __init__(self, **clients: Any) -> None:
        self.clients = clients

    def client(self, service: str) -> Any:
        assert service in self.clients, f"unexpected call to {service}"
        return self.clients[service]


def stubbed(service: str) -> tuple[Any, Stubber]:
    """A real botocore client whose responses come from a Stubber (it never opens a connection)."""
    client = SessionClientFactory(region=REGION, observer=LEDGER.record).client(service)
    stubber = Stubber(client)
    stubber.activate()
    return client, stubber


def make_engine(factory: Any, clock: FakeClock, reporter: RecordingReporter | None = None,
                **kwargs: Any) -> AwsEngine:
    settings: dict[str, Any] = {"templates": stand_in_templates, "bundle": fake_bundle, "poll_interval": 5.0,
                                "timeout": 600.0, "rand": lambda: 1.0,
                                "backoff": Backoff(attempts=4, base=1.0, cap=8.0)}
    settings.update(kwargs)
    return AwsEngine(reporter=reporter or RecordingReporter(), clients=factory, clock=clock, **settings)


def fake_bundle(out_dir: Path) -> Path:
    path = out_dir / "meshpipe-bundle.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("buildspec.yml", "version: 0.2\n")
    return path


def _env_param() -> dict[str, Any]:
    return {"EnvironmentName": {"Type": "String"}}


def env_template(padding: int = 0) -> dict[str, Any]:
    template: dict[str, Any] = {
        "Parameters": _env_param(),
        "Resources": {
            "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {"ClusterName": {"Ref": "EnvironmentName"}}},
            "LogGroup": {"Type": "AWS::Logs::LogGroup",
                         "Properties": {"LogGroupName": {"Fn::Sub": "${EnvironmentName}-cluster"}}},
        },
        "Outputs": {
            "MeshName": {"Value": {"Ref": "EnvironmentName"}},
            "ClusterName": {"Value": {"Ref": "Cluster"}},
            "NamespaceName": {"Value": {"Fn::Sub": "${EnvironmentName}.local"}},
            "VirtualGatewayName": {"Value": "vg-ingress"},
            "IngressEndpoint": {"Value": INGRESS},
        },
    }
    if padding:
        template["Metadata"] = {"Padding": "x" * padding}
    return template


def pipeline_template() -> dict[str, Any]:
    return {
        "Parameters": {"EnvironmentName": {"Type": "String"}, "ServiceName": {"Type": "String"}},
        "Resources": {
            "ArtifactBucket": {"Type": "AWS::S3::Bucket", "Properties": {}, "DeletionPolicy": "Retain"},
            "CloudFormationRole": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "cloudformation.amazonaws.com"},
                    "Action": "sts:AssumeRole"}]}}},
        },
        "Outputs": {
            "SourceRepoCloneUrlHttp": {"Value": {
                "Fn::Sub": "https://git-codecommit.${AWS::Region}.amazonaws.com/v1/repos/${ServiceName}-cfg"}},
            "PipelineName": {"Value": {"Fn::Sub": "${EnvironmentName}-${ServiceName}"}},
            "VirtualServiceName": {"Value": {"Fn::Sub": "${ServiceName}.${EnvironmentName}.local"}},
            "VirtualRouterName": {"Value": {"Fn::Sub": "vr-${ServiceName}"}},
        },
    }


def version_template(service: str, commit: str) -> dict[str, Any]:
    version = commit[:8]
    return {
        "Resources": {
            "TaskDefinition": {"Type": "AWS::ECS::TaskDefinition", "Properties": {
                "Family": service,
                "ContainerDefinitions": [{"Name": "app", "Image": f"example/{service}:1", "Memory": 512}]}},
            "Service": {"Type": "AWS::ECS::Service", "Properties": {
                "Cluster": "demo", "ServiceName": f"{service}-{version}", "DesiredCount": 2,
                "TaskDefinition": {"Ref": "TaskDefinition"}}},
        },
        "Outputs": {
            "ServiceName": {"Value": f"{service}-{version}"},
            "VersionId": {"Value": version},
            "CommitId": {"Value": commit},
        },
    }


def service_connect_env_template() -> dict[str, Any]:
    """What the Service Connect environment stack holds that moto can deploy, and the outputs the engine
    reads (its flavour above all)."""
    template = env_template()
    outputs = template["Outputs"]
    del outputs["MeshName"], outputs["VirtualGatewayName"]
    outputs["MeshFlavour"] = {"Value": "service-connect"}
    outputs["IngressListenerArn"] = {"Value": "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/"
                                              "demo-ingress/0123456789abcdef/fedcba9876543210"}
    return template


def service_connect_pipeline_template() -> dict[str, Any]:
    """The Service Connect pipeline stack's parameters and outputs, around what moto can deploy."""
    from meshpipe.synth.service_pipeline import render_service_pipeline

    real = render_service_pipeline("demo", mesh="service-connect")
    template = pipeline_template()
    template["Parameters"] = {k: v for k, v in real["Parameters"].items() if k != "BranchName"}
    template["Outputs"] = {k: v for k, v in template["Outputs"].items() if k != "VirtualRouterName"}
    return template


def with_platform_policy(stand_in: dict[str, Any], real: dict[str, Any]) -> dict[str, Any]:
    """The stand-in environment with the real template's platform policy: its parameter, the SSM
    parameter holding it, and that parameter's export (moto's CloudFormation creates SSM parameters)."""
    from meshpipe.synth import policy_parameter as pp

    stand_in["Parameters"][pp.POLICY_PARAMETER] = real["Parameters"][pp.POLICY_PARAMETER]
    stand_in["Resources"][pp.POLICY_RESOURCE] = real["Resources"][pp.POLICY_RESOURCE]
    stand_in["Outputs"][pp.POLICY_EXPORT] = real["Outputs"][pp.POLICY_EXPORT]
    return stand_in


def with_pipeline_source(stand_in: dict[str, Any], real: dict[str, Any]) -> dict[str, Any]:
    """The stand-in pipeline with the real template's source: its branch, and for a connection source
    its repository and connection parameters and outputs instead of a CodeCommit clone URL."""
    for key in ("BranchName", "ConnectionArn", "FullRepositoryId"):
        if key in real["Parameters"]:
            stand_in["Parameters"][key] = real["Parameters"][key]
    if "SourceRepoCloneUrlHttp" not in real["Outputs"]:
        del stand_in["Outputs"]["SourceRepoCloneUrlHttp"]
        for key in ("SourceRepository", "SourceConnectionArn"):
            stand_in["Outputs"][key] = real["Outputs"][key]
    return stand_in


def stand_in_templates(env: str, mesh: str = "appmesh", policy: Any = None, source: Any = None,
                       branch: str = "main") -> dict[str, dict[str, Any]]:
    """The real platform templates, with stand-ins for the two moto cannot deploy.

    The build-bucket template is deployed as it is; the environment and service-pipeline templates hold
    App Mesh (or load balancer), CodeCommit and CodePipeline resources moto's CloudFormation does not create.
    The environment's stand-in keeps the real template's platform policy parameter, the pipeline's its source.
    """
    rendered = render_platform(env, policy, mesh=mesh, source=source, branch=branch)
    env_key, bucket_key, pipeline_key = platform_template_files(env)
    assert set(rendered) == {env_key, bucket_key, pipeline_key}
    if mesh == "service-connect":
        return {env_key: with_platform_policy(service_connect_env_template(), rendered[env_key]),
                bucket_key: rendered[bucket_key],
                pipeline_key: with_pipeline_source(service_connect_pipeline_template(), rendered[pipeline_key])}
    return {env_key: with_platform_policy(env_template(), rendered[env_key]), bucket_key: rendered[bucket_key],
            pipeline_key: with_pipeline_source(pipeline_template(), rendered[pipeline_key])}


def existing_appmesh_environment(factory: RecordingFactory, env: str = "demo") -> str:
    """An App Mesh environment as ``env create`` made it before App Mesh's shutdown (it refuses App Mesh now):
    the environment and build-bucket stacks (stand-ins as above), the bundle in the bucket, and the mesh and
    ingress gateway the environment stack held. Returns the build bucket's name."""
    cfn = factory.raw("cloudformation")
    rendered = stand_in_templates(env)
    env_key, bucket_key, _ = platform_template_files(env)
    parameters = [{"ParameterKey": "EnvironmentName", "ParameterValue": env}]
    for stack, key in ((f"{env}-env", env_key), (f"{env}-build-bucket", bucket_key)):
        cfn.create_stack(StackName=stack, TemplateBody=json.dumps(rendered[key]), Parameters=parameters)
    [bucket] = [r["PhysicalResourceId"] for r in cfn.list_stack_resources(
        StackName=f"{env}-build-bucket")["StackResourceSummaries"] if r["ResourceType"] == "AWS::S3::Bucket"]
    factory.raw("s3").put_object(Bucket=bucket, Key="meshpipe-bundle.zip", Body=b"PK\x03\x04")
    appmesh = factory.raw("appmesh")
    appmesh.create_mesh(meshName=env)
    appmesh.create_virtual_gateway(meshName=env, virtualGatewayName="vg-ingress",
                                   spec={"listeners": [{"portMapping": {"port": 9080, "protocol": "http"}}]})
    return bucket
