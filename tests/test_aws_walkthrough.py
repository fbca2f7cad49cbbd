"""The original sample's walkthrough, steps 1-9 and the cleanup, through the AWS engine against moto."""

from __future__ import annotations

import json

import pytest

from meshpipe.engines.aws.engine import AwsEngine
from meshpipe.errors import ConflictError, UserError
from meshpipe.mesh.routing import WeightedTarget, make_gateway_route
from support.aws import (
    INGRESS,
    FakeClock,
    RecordingFactory,
    RecordingReporter,
    existing_appmesh_environment,
    make_engine,
    version_template,
)

WEB_COMMIT = "66f2a19c" + "0" * 32
OLD_BACKEND = "e9d5f17a" + "1" * 32
NEW_BACKEND = "0badc0de" + "2" * 32



def create_router(factory: RecordingFactory, env: str, service: str) -> None:
    """What the pipeline stack's virtual router would be."""
    factory.raw("appmesh").create_virtual_router(
        meshName=env, virtualRouterName=f"vr-{service}",
        spec={"listeners": [{"portMapping": {"port": 80, "protocol": "http"}}]})


def pipeline_deploys(factory: RecordingFactory, env: str, service: str, commit: str) -> str:
    """The Deploy stage of the service pipeline: one new stack per commit."""
    stack = f"{env}-{service}-{commit[:8]}"
    factory.raw("cloudformation").create_stack(StackName=stack,
                                               TemplateBody=json.dumps(version_template(service, commit)))
    return stack


def active_stacks(factory: RecordingFactory) -> list[str]:
    cfn = factory.raw("cloudformation")
    return sorted(s["StackName"] for s in cfn.list_stacks()["StackSummaries"]
                  if s["StackStatus"] != "DELETE_COMPLETE")


# moto's CloudFormation skips the build bucket's TLS-only policy; the template itself is linted elsewhere.
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")
def test_walkthrough_steps_1_to_9_and_cleanup(aws: RecordingFactory) -> None:
    clock = FakeClock()
    reporter = RecordingReporter()
    engine = make_engine(aws, clock, reporter)

    # Step 1: App Mesh was shut down, so an App Mesh environment is refused before any AWS call ...
    with pytest.raises(UserError, match="shut App Mesh down on 2026-09-30") as refused:
        engine.env_create("demo", mesh="appmesh")
    assert "meshpipe env create demo --engine aws" in (refused.value.hint or "")
    assert aws.log == []
    # ... and the walkthrough runs in one made before the shutdown: every other command keeps working there.
    bucket = existing_appmesh_environment(aws, "demo")
    info = engine.env_status("demo")
    assert (info.status, info.ingress_url, info.details["mesh flavour"]) == ("CREATE_COMPLETE", INGRESS, "appmesh")
    # Versioned bucket: an older bundle and a delete marker are left behind, which cleanup must remove too.
    s3 = aws.raw("s3")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="meshpipe-bundle.zip", Body=b"PK\x03\x04 newer")
    s3.put_object(Bucket=bucket, Key="notes.txt", Body=b"old")
    s3.delete_object(Bucket=bucket, Key="notes.txt")  # leaves a delete marker over the old version
    # Updating it in place is refused as well: it would become a Service Connect environment.
    with pytest.raises(ConflictError, match="exists on appmesh") as kept:
        engine.env_create("demo")
    assert "can no longer be created or updated" in (kept.value.hint or "")
    assert aws.calls("cloudformation", "update_stack") == []

    # Step 2: two service pipelines.
    web = engine.pipeline_create("demo", "hello-web")
    backend = engine.pipeline_create("demo", "hello-backend")
    assert web.clone_url == "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/hello-web-cfg"
    assert backend.virtual_service == "hello-backend.demo.local"
    for service in ("hello-web", "hello-backend"):
        create_router(aws, "demo", service)

    # Step 3: a push deploys one version of each service.
    pipeline_deploys(aws, "demo", "hello-web", WEB_COMMIT)
    pipeline_deploys(aws, "demo", "hello-backend", OLD_BACKEND)
    [backend_version] = engine.versions("demo", "hello-backend")
    assert (backend_version.version, backend_version.commit, backend_version.weight) == (
        "e9d5f17a", OLD_BACKEND, 0)
    assert backend_version.status == "CREATE_COMPLETE"

    # Step 4: the gateway route and a 100 % route per service.
    gateway = engine.gateway_route_set(
        "demo", make_gateway_route("r-ingress-hello-service", "/hello-service", "hello-web", "demo.local"))
    assert gateway.virtual_service == "hello-web.demo.local"
    assert [r.name for r in engine.gateway_routes("demo")] == ["r-ingress-hello-service"]
    engine.route_set("demo", "hello-web", (WeightedTarget("66f2a19c", 100),))
    engine.route_set("demo", "hello-backend", (WeightedTarget("e9d5f17a", 100),))
    spec = aws.raw("appmesh").describe_route(meshName="demo", virtualRouterName="vr-hello-backend",
                                             routeName="r-hello-backend")["route"]["spec"]
    assert spec["httpRoute"]["action"]["weightedTargets"] == [{"virtualNode": "vn-hello-backend-e9d5f17a",
                                                               "weight": 100}]
    assert spec["httpRoute"]["match"] == {"prefix": "/"}  # every method, as App Mesh matches without one

    # Step 5: the environment reports its ingress endpoint, pipelines and versions.
    status = engine.env_status("demo")
    assert (status.status, status.ingress_url) == ("CREATE_COMPLETE", INGRESS)
    assert (status.details["pipelines"], status.details["versions"]) == ("2", "2")

    # Step 6: a new backend version beside the old one.
    pipeline_deploys(aws, "demo", "hello-backend", NEW_BACKEND)
    assert sorted(v.version for v in engine.versions("demo", "hello-backend")) == ["0badc0de", "e9d5f17a"]

    # Step 7: canary 90/10; the old version cannot be deleted while it receives traffic.
    engine.route_set("demo", "hello-backend", (WeightedTarget("e9d5f17a", 90), WeightedTarget("0badc0de", 10)))
    route = engine.route_show("demo", "hello-backend")
    assert route is not None and (route.weight_of("e9d5f17a"), route.weight_of("0badc0de")) == (90, 10)
    weights = {v.version: v.weight for v in engine.versions("demo", "hello-backend")}
    assert weights == {"e9d5f17a": 90, "0badc0de": 10}
    with pytest.raises(ConflictError, match="90%"):
        engine.version_delete("demo", "hello-backend", "e9d5f17a")
    assert "demo-hello-backend-e9d5f17a" in active_stacks(aws)

    # Step 8: promote the new version.
    engine.route_set("demo", "hello-backend", (WeightedTarget("0badc0de", 100),))
    assert {v.version: v.weight for v in engine.versions("demo", "hello-backend")} == {
        "e9d5f17a": 0, "0badc0de": 100}

    # Step 9: the old version goes.
    engine.version_delete("demo", "hello-backend", "e9d5f17a")
    assert [v.version for v in engine.versions("demo", "hello-backend")] == ["0badc0de"]
    assert "demo-hello-backend-e9d5f17a" not in active_stacks(aws)

    # Cleanup: everything, in the order that works.
    artifact_buckets = [aws.raw("cloudformation").describe_stacks(StackName=f"demo-{svc}-pipeline")["Stacks"][0]
                        for svc in ("hello-web", "hello-backend")]
    artifact_bucket_names = [r["PhysicalResourceId"] for stack in artifact_buckets
                             for r in aws.raw("cloudformation").list_stack_resources(
                                 StackName=stack["StackId"])["StackResourceSummaries"]
                             if r["ResourceType"] == "AWS::S3::Bucket"]
    assert len(artifact_bucket_names) == 2
    s3.put_object(Bucket=artifact_bucket_names[0], Key="SourceArtifact/abc.zip", Body=b"artifact")
    listed = s3.list_object_versions(Bucket=bucket)
    assert listed.get("DeleteMarkers")
    in_build_bucket = len(listed.get("Versions", [])) + len(listed["DeleteMarkers"])
    aws.log.clear()
    engine.env_delete("demo")
    assert active_stacks(aws) == []
    assert_cleanup_order(aws, bucket, in_build_bucket)
    appmesh = aws.raw("appmesh")
    assert appmesh.list_gateway_routes(meshName="demo", virtualGatewayName="vg-ingress")["gatewayRoutes"] == []
    for service in ("hello-web", "hello-backend"):
        assert appmesh.list_routes(meshName="demo", virtualRouterName=f"vr-{service}")["routes"] == []
    remaining = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert bucket not in remaining
    assert not set(artifact_bucket_names) & set(remaining)
    # The pipeline template retains its artifact bucket; meshpipe deletes it once the stack is gone.
    assert sum("deleted retained bucket" in step for step in reporter.steps) == 2
    assert "environment demo deleted" in reporter.dones


def assert_cleanup_order(aws: RecordingFactory, build_bucket: str, in_build_bucket: int) -> None:
    log = aws.log
    deletes = [(i, c.params["StackName"]) for i, c in enumerate(log)
               if c.service == "cloudformation" and c.operation == "delete_stack"]
    stack_of = {s["StackId"]: s["StackName"]
                for c in aws.calls("cloudformation", "describe_stacks", succeeded=True) for s in c.result["Stacks"]}
    deleted = [(i, stack_of.get(sid, sid)) for i, sid in deletes]
    order = [name for _, name in deleted]
    assert order == ["demo-hello-backend-0badc0de", "demo-hello-web-66f2a19c", "demo-hello-backend-pipeline",
                     "demo-hello-web-pipeline", "demo-build-bucket", "demo-env"]
    first_delete = deleted[0][0]
    route_deletes = [i for i, c in enumerate(log) if c.operation in {"delete_route", "delete_gateway_route"}]
    assert len(route_deletes) == 3 and max(route_deletes) < first_delete

    def completed(stack: str) -> int:
        """Index of the first poll that saw ``stack`` DELETE_COMPLETE."""
        polls = [(i, c.result["Stacks"]) for i, c in enumerate(log)
                 if c.operation == "describe_stacks" and not isinstance(c.result, Exception)]
        return next(i for i, found in polls for s in found
                    if s["StackName"] == stack and s["StackStatus"] == "DELETE_COMPLETE")

    index = dict((name, i) for i, name in deleted)
    # Version stacks are gone before any pipeline stack (their deletion role) is deleted.
    assert max(completed("demo-hello-backend-0badc0de"), completed("demo-hello-web-66f2a19c")) < min(
        index["demo-hello-backend-pipeline"], index["demo-hello-web-pipeline"])
    # Buckets are emptied (every version and delete marker) before their stacks are deleted.
    empties = [(i, c.params["Bucket"], len(c.params["Delete"]["Objects"])) for i, c in enumerate(log)
               if c.operation == "delete_objects"]
    build_empty = [(i, n) for i, b, n in empties if b == build_bucket]
    assert build_empty and build_empty[0][0] < index["demo-build-bucket"]
    assert sum(n for _, n in build_empty) == in_build_bucket
    assert index["demo-env"] == max(index.values())


def test_default_engine_builds_without_touching_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    # No region, no credentials: building the engine must still work (the CLI builds it up front).
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    engine = AwsEngine()
    assert engine.name == "aws"
