"""Teardown of a Service Connect environment removes what ECS left in its Cloud Map namespace.

ECS registers a Cloud Map service per Service Connect service (and an instance per task) in the
environment's HTTP namespace; no stack owns them, and a namespace that still holds a service cannot be
deleted (botocore's own model says both, checked below). moto runs Cloud Map, but without three things
the teardown depends on, so :class:`CloudMap` adds them as the API documents them, every request and
response checked against botocore's model: ListServices honours its NAMESPACE_ID filter, DeregisterInstance
is asynchronous (its operation is PENDING when first asked about, and the instance stays until then), and
DeleteService refuses a service that still has instances (ResourceInUse).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters
from moto import mock_aws

from meshpipe.errors import OperationError
from support.aws import (
    REGION,
    FakeClock,
    RecordingFactory,
    RecordingReporter,
    make_engine,
    stand_in_templates,
    use_fake_credentials,
)
from support.aws_calls import LEDGER
from test_aws_service_connect import OLD, WEB, DeploymentsEcs, World

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")
MODEL = botocore.session.get_session().get_service_model("servicediscovery")


@dataclass
class CloudMap:
    moto: Any
    pending: dict[str, tuple[str, str]] = field(default_factory=dict)  # operation -> (service, instance)
    asked: set[str] = field(default_factory=set)
    ids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def meta(self) -> Any:
        return self.moto.meta

    def __getattr__(self, name: str) -> Any:
        # The engine's other calls go to moto as they are, counted as the engine's own.
        call = getattr(self.moto, name)
        operation = self.moto.meta.method_to_api_mapping.get(name)

        def counted(**params: Any) -> Any:
            if operation:
                LEDGER.record(f"servicediscovery:{operation}", params)
            return call(**params)

        return counted if operation else call

    def _checked(self, operation: str, params: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        # `moto` is a plain client: what this stand-in does inside (Cloud Map's own work, ECS's
        # registrations) is not the engine's, so only the operation the engine called is counted.
        LEDGER.record(f"servicediscovery:{operation}", params)
        model = MODEL.operation_model(operation)
        validate_parameters(params, model.input_shape)
        validate_parameters({k: v for k, v in response.items() if k != "ResponseMetadata"}, model.output_shape)
        return response

    def list_services(self, **params: Any) -> dict[str, Any]:
        services = self.moto.list_services()["Services"]
        for f in params.get("Filters", []):
            assert (f["Name"], f.get("Condition", "EQ")) == ("NAMESPACE_ID", "EQ")
            services = [s for s in services if self._namespace_of(s["Id"]) in f["Values"]]
        return self._checked("ListServices", params, {"Services": services})

    def _namespace_of(self, service_id: str) -> str:
        return str(self.moto.get_service(Id=service_id)["Service"]["NamespaceId"])

    def deregister_instance(self, **params: Any) -> dict[str, Any]:
        listed = self.moto.list_instances(ServiceId=params["ServiceId"])["Instances"]
        if params["InstanceId"] not in {i["Id"] for i in listed}:
            raise ClientError({"Error": {"Code": "InstanceNotFound", "Message": "no such instance"}},
                              "DeregisterInstance")
        operation = f"op-{next(self.ids):04d}"
        self.pending[operation] = (params["ServiceId"], params["InstanceId"])
        return self._checked("DeregisterInstance", params, {"OperationId": operation})

    def get_operation(self, **params: Any) -> dict[str, Any]:
        operation = params["OperationId"]
        status = "PENDING"
        if operation in self.asked:  # done the second time it is asked about
            service, instance = self.pending.pop(operation)
            self.moto.deregister_instance(ServiceId=service, InstanceId=instance)
            status = "SUCCESS"
        self.asked.add(operation)
        return self._checked("GetOperation", params, {"Operation": {
            "Id": operation, "Type": "DEREGISTER_INSTANCE", "Status": status}})

    def delete_service(self, **params: Any) -> dict[str, Any]:
        if self.moto.list_instances(ServiceId=params["Id"])["Instances"]:
            raise ClientError({"Error": {"Code": "ResourceInUse", "Message": "the service has instances"}},
                              "DeleteService")
        return self._checked("DeleteService", params, self.moto.delete_service(**params))

    # -- what ECS does, for the test's set-up --------------------------------------------------------------

    def ecs_registers(self, namespace: str, service: str, tasks: int) -> str:
        created = self.moto.create_service(Name=service, NamespaceId=namespace, Type="HTTP")["Service"]
        for n in range(tasks):
            self.moto.register_instance(ServiceId=created["Id"], InstanceId=f"{service}-task-{n}",
                                        Attributes={"AWS_INSTANCE_IPV4": f"10.0.0.{n + 10}"})
        return str(created["Id"])

    def services_in(self, namespace: str) -> list[str]:
        return sorted(s["Name"] for s in self.moto.list_services()["Services"]
                      if self._namespace_of(s["Id"]) == namespace)


@dataclass
class Setting:
    world: World
    cloudmap: CloudMap
    namespace: str
    other_namespace: str


@pytest.fixture
def setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Setting]:
    use_fake_credentials(monkeypatch)
    with mock_aws():
        base = RecordingFactory()
        cloudmap = CloudMap(boto3.client("servicediscovery", region_name=REGION))
        namespace = _http_namespace(cloudmap, "demo.local")
        other = _http_namespace(cloudmap, "prod.local")  # another environment's, in the same account

        def templates(env: str, mesh: str = "appmesh") -> dict[str, dict[str, Any]]:
            rendered = stand_in_templates(env, mesh)
            rendered[f"{env}-env.template.json"]["Outputs"]["NamespaceId"] = {"Value": namespace}
            return rendered

        ecs = DeploymentsEcs(base.base.client("ecs"))
        aws = RecordingFactory(overrides={"ecs": ecs, "servicediscovery": cloudmap})
        reporter = RecordingReporter()
        engine = make_engine(aws, FakeClock(), reporter, templates=templates)
        world = World(aws, ecs, engine, reporter)
        engine.env_create("demo")
        for service, commit in (("hello-web", WEB), ("hello-backend", OLD)):
            engine.pipeline_create("demo", service)
            world.deploy(service, commit)
        # What ECS registered for the two Service Connect services (and another environment's service).
        cloudmap.ecs_registers(namespace, "hello-web", tasks=2)
        cloudmap.ecs_registers(namespace, "hello-backend", tasks=1)
        cloudmap.ecs_registers(other, "hello-web", tasks=1)
        aws.log.clear()
        yield Setting(world, cloudmap, namespace, other)


def _http_namespace(cloudmap: CloudMap, name: str) -> str:
    cloudmap.moto.create_http_namespace(Name=name)
    return next(n["Id"] for n in cloudmap.moto.list_namespaces()["Namespaces"] if n["Name"] == name)


def test_botocore_documents_why_the_leftovers_block_the_namespace() -> None:
    # The claims this teardown rests on, in the API's own model (a later botocore that drops them fails here).
    assert "still contains one or more services, the request fails" in MODEL.operation_model(
        "DeleteNamespace").documentation
    assert "ResourceInUse" in [e.name for e in MODEL.operation_model("DeleteService").error_shapes]
    assert "can't delete a service that contains any instances" in MODEL.shape_for("ResourceInUse").documentation
    assert "NAMESPACE_ID" in MODEL.shape_for("ServiceFilterName").enum


def test_env_delete_removes_the_service_connect_leftovers_before_the_environment_stack(setting: Setting) -> None:
    world, cloudmap = setting.world, setting.cloudmap
    world.engine.env_delete("demo")

    assert world.active_stacks() == []
    assert cloudmap.services_in(setting.namespace) == []
    assert cloudmap.services_in(setting.other_namespace) == ["hello-web"]  # another environment's: untouched
    log = world.aws.log
    names = {s["StackId"]: s["StackName"] for c in world.aws.calls("cloudformation", "describe_stacks", succeeded=True)
             for s in c.result["Stacks"]}
    deletes = {names.get(c.params["StackName"], c.params["StackName"]): i for i, c in enumerate(log)
               if c.operation == "delete_stack"}
    gone = {s["StackName"]: i for i, c in enumerate(log)
            if c.operation == "describe_stacks" and not isinstance(c.result, Exception)
            for s in c.result["Stacks"] if s["StackStatus"] == "DELETE_COMPLETE"}
    cloud_map = [i for i, c in enumerate(log) if c.service == "servicediscovery"]
    # Only once the service stacks (and so the ECS services) are gone ...
    assert max(gone["demo-hello-web"], gone["demo-hello-backend"]) < min(cloud_map)
    # ... every instance is deregistered, and waited for, before its service is deleted ...
    deregistered = [c.params["InstanceId"] for c in world.aws.calls("servicediscovery", "deregister_instance")]
    assert sorted(deregistered) == ["hello-backend-task-0", "hello-web-task-0", "hello-web-task-1"]
    deleted = world.aws.calls("servicediscovery", "delete_service", succeeded=True)
    assert len(deleted) == 2
    assert world.aws.calls("servicediscovery", "delete_service") == deleted  # never refused: nothing was left
    assert all(op not in cloudmap.pending for op in cloudmap.asked)
    # ... and all of it before the environment stack (which holds the namespace) is deleted.
    last_cloud_map = max(i for i, c in enumerate(log) if c.operation == "delete_service")
    assert last_cloud_map < deletes["demo-env"]
    assert world.aws.calls("servicediscovery", "list_services")[0].params["Filters"] == [
        {"Name": "NAMESPACE_ID", "Values": [setting.namespace], "Condition": "EQ"}]
    assert "deleted Cloud Map service hello-web" in world.reporter.text


def test_an_instance_registered_during_teardown_is_deregistered_too(setting: Setting) -> None:
    world, cloudmap = setting.world, setting.cloudmap
    original = cloudmap.get_operation
    late: list[str] = []

    def get_operation(**params: Any) -> dict[str, Any]:
        # A task still stopping registers once more, while the first deregistrations run.
        if not late:
            web = next(s["Id"] for s in cloudmap.moto.list_services()["Services"]
                       if s["Name"] == "hello-backend" and cloudmap._namespace_of(s["Id"]) == setting.namespace)
            cloudmap.moto.register_instance(ServiceId=web, InstanceId="hello-backend-task-9", Attributes={})
            late.append(web)
        return original(**params)

    cloudmap.get_operation = get_operation  # type: ignore[method-assign]
    world.engine.env_delete("demo")
    assert cloudmap.services_in(setting.namespace) == []
    refused = [c for c in world.aws.calls("servicediscovery", "delete_service") if isinstance(c.result, Exception)]
    assert len(refused) == 1  # ResourceInUse once, then the late instance was deregistered and it went
    assert "hello-backend-task-9" in [c.params["InstanceId"]
                                      for c in world.aws.calls("servicediscovery", "deregister_instance")]


def test_pipeline_delete_removes_only_its_own_service_from_the_namespace(setting: Setting) -> None:
    world, cloudmap = setting.world, setting.cloudmap
    world.engine.pipeline_delete("demo", "hello-backend", force=True)
    assert cloudmap.services_in(setting.namespace) == ["hello-web"]
    assert cloudmap.services_in(setting.other_namespace) == ["hello-web"]
    assert "demo-env" in world.active_stacks()


def test_a_deregistration_that_never_finishes_is_reported_not_waited_for_forever(setting: Setting) -> None:
    world, cloudmap = setting.world, setting.cloudmap
    cloudmap.get_operation = lambda **params: cloudmap._checked(  # type: ignore[method-assign]
        "GetOperation", params, {"Operation": {"Id": params["OperationId"], "Status": "PENDING"}})
    with pytest.raises(OperationError, match="gave up waiting for Cloud Map service hello-backend"):
        world.engine.env_delete("demo")
    assert "demo-env" in world.active_stacks()  # the environment stack is left for the next try
