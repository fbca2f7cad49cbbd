"""The AWS side of seeing the mesh, against moto: the Service Connect environment's CloudWatch dashboard
(deployed by CloudFormation, its body read back), its console URL, and ``graph`` from the deployed stacks."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from moto import mock_aws

from meshpipe.engines.aws.app_mesh import backends_of
from meshpipe.errors import UserError
from meshpipe.mesh.graph import to_mermaid
from meshpipe.mesh.routing import WeightedTarget, make_gateway_route
from meshpipe.synth.cloudwatch_dashboard import dashboard_resources
from meshpipe.synth.environment import render_service_connect_environment
from support.aws import (
    FakeClock,
    RecordingFactory,
    existing_appmesh_environment,
    make_engine,
    use_fake_credentials,
    version_template,
)
from test_aws_walkthrough import create_router

pytestmark = [pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning"),
              # moto's CloudFormation keeps a virtual node in the template without creating it, as wanted here
              pytest.mark.filterwarnings("ignore:Tried to parse AWS..AppMesh..VirtualNode:UserWarning")]

WEB = "66f2a19c" + "0" * 32
OLD = "e9d5f17a" + "1" * 32
NEW = "0badc0de" + "2" * 32


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingFactory]:
    use_fake_credentials(monkeypatch)
    with mock_aws():
        yield RecordingFactory()


def _deploy(factory: RecordingFactory, service: str, commit: str, backends: tuple[str, ...] = ()) -> None:
    """A version stack as the pipeline deploys it; its virtual node (which moto's CloudFormation does not
    create, but keeps in the template) declares ``backends``."""
    template = version_template(service, commit)
    template["Resources"]["VirtualNode"] = {"Type": "AWS::AppMesh::VirtualNode", "Properties": {
        "MeshName": "demo", "VirtualNodeName": f"vn-{service}-{commit[:8]}",
        "Spec": {"Backends": [{"VirtualService": {"VirtualServiceName": f"{b}.demo.local"}} for b in backends]}}}
    factory.raw("cloudformation").create_stack(StackName=f"demo-{service}-{commit[:8]}",
                                               TemplateBody=json.dumps(template))


def test_the_dashboard_deploys_and_its_panels_read_service_connect_metrics(aws: RecordingFactory) -> None:
    # The resource exactly as the environment template holds it, deployed by (moto's) CloudFormation.
    assert render_service_connect_environment("demo")["Resources"]["Dashboard"] == dashboard_resources()["Dashboard"]
    cfn = aws.raw("cloudformation")
    cfn.create_stack(StackName="demo-env", TemplateBody=json.dumps({
        "Parameters": {"EnvironmentName": {"Type": "String"}}, "Resources": dashboard_resources()}),
        Parameters=[{"ParameterKey": "EnvironmentName", "ParameterValue": "demo"}])
    body = json.loads(aws.raw("cloudwatch").get_dashboard(DashboardName="meshpipe-demo")["DashboardBody"])
    metrics = {w["properties"]["title"]: w["properties"]["metrics"][0][0]["expression"]
               for w in body["widgets"] if w["type"] == "metric"}
    assert metrics["Requests per service (received)"] == (
        "SEARCH('{AWS/ECS,ClusterName,DiscoveryName,ServiceName} MetricName=\"RequestCount\" "
        "ClusterName=\"demo\"', 'Sum', 60)")
    assert "HTTPCode_Target_5XX_Count" in metrics["5xx answers per service (as its callers saw them)"]
    assert all("ClusterName=\"demo\"" in e and "${" not in e for e in metrics.values())
    assert {w["properties"]["region"] for w in body["widgets"] if w["type"] != "text"} == {"us-east-1"}
    (revisions,) = [w for w in body["widgets"] if w["type"] == "log"]
    query = revisions["properties"]["query"]
    assert query.startswith("SOURCE 'demo-cluster' | filter @logStream like /^app-/ ")
    assert 'parse @logStream "app-*/*/*" as version, container, task' in query
    # No Container Insights (billed per task): the versions come from the app containers' log streams.
    cluster = render_service_connect_environment("demo")["Resources"]["Cluster"]["Properties"]
    assert "ClusterSettings" not in cluster


def test_dashboard_url_is_the_console_in_the_clients_region(aws: RecordingFactory) -> None:
    engine = make_engine(aws, FakeClock())
    engine.env_create("demo", mesh="service-connect")
    assert engine.dashboard_url("demo") == ("https://us-east-1.console.aws.amazon.com/cloudwatch/home?"
                                            "region=us-east-1#dashboards/dashboard/meshpipe-demo")
    existing_appmesh_environment(aws, "other")  # App Mesh: no dashboard in its template
    with pytest.raises(UserError, match="runs App Mesh"):
        engine.dashboard_url("other")


def test_graph_from_the_deployed_stacks(aws: RecordingFactory) -> None:
    engine = make_engine(aws, FakeClock())
    existing_appmesh_environment(aws, "demo")
    for service in ("hello-web", "hello-backend"):
        engine.pipeline_create("demo", service)
        create_router(aws, "demo", service)
    _deploy(aws, "hello-web", WEB, backends=("hello-backend",))
    _deploy(aws, "hello-backend", OLD)
    _deploy(aws, "hello-backend", NEW)
    engine.gateway_route_set("demo", make_gateway_route("r-ingress-hello-service", "/hello-service", "hello-web",
                                                        "demo.local"))
    engine.route_set("demo", "hello-web", (WeightedTarget("66f2a19c", 100),))
    engine.route_set("demo", "hello-backend", (WeightedTarget("e9d5f17a", 90), WeightedTarget("0badc0de", 10)))

    topology = engine.topology("demo")
    assert [s.name for s in topology.services] == ["hello-backend", "hello-web"]
    web, backend = topology.service("hello-web"), topology.service("hello-backend")
    assert web is not None and backend is not None
    assert web.backends == ("hello-backend",) and backend.backends == ()
    assert {v.version: v.weight for v in backend.versions} == {"e9d5f17a": 90, "0badc0de": 10}
    assert [(g.prefix, g.service) for g in topology.gateway_routes] == [("/hello-service", "hello-web")]
    chart = to_mermaid(topology)
    assert 'svc_hello_backend -->|"90%"| vn_hello_backend_e9d5f17a' in chart
    assert 'vn_hello_web_66f2a19c -.->|"calls"| svc_hello_backend' in chart
    with pytest.raises(UserError, match="--rates"):
        engine.topology("demo", 5.0)


def test_backends_are_read_from_virtual_nodes_only() -> None:
    template = {"Resources": {
        "Node": {"Type": "AWS::AppMesh::VirtualNode", "Properties": {"Spec": {"Backends": [
            {"VirtualService": {"VirtualServiceName": "hello-backend.demo.local"}},
            {"VirtualService": {"VirtualServiceName": "elsewhere.other.local"}}]}}},
        "Other": {"Type": "AWS::ECS::Service", "Properties": {}}}}
    assert backends_of(template, "demo.local") == {"hello-backend", "elsewhere.other.local"}
    assert backends_of({}, "demo.local") == set()
