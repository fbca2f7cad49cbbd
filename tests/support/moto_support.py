"""Which resource types of the templates meshpipe emits moto's CloudFormation cannot create, in one place.

The AWS engine's tests run on moto. Every emitted template holds at least one type below, so none of them
can be deployed whole on moto: the tests deploy stand-ins (support.aws.stand_in_templates, the ingress
part of the service stack) and check the real templates offline (registry schemas, IAM evaluation,
cfn-lint, checkov). tests/test_moto_support.py recomputes the table from moto's own model map: when a
moto upgrade adds one of these types the test fails, and the stand-in it forced can give way to the real
template.
"""

from __future__ import annotations

# moto 5.2.5: type -> the emitted templates that hold it.
MOTO_LACKS: dict[str, str] = {
    "AWS::AppMesh::Mesh": "App Mesh environment",
    "AWS::AppMesh::VirtualGateway": "App Mesh environment",
    "AWS::AppMesh::VirtualNode": "App Mesh version stacks",
    "AWS::AppMesh::VirtualRouter": "App Mesh pipelines",
    "AWS::AppMesh::VirtualService": "App Mesh pipelines",
    "AWS::ApplicationAutoScaling::ScalableTarget": "version and service stacks",
    "AWS::ApplicationAutoScaling::ScalingPolicy": "version and service stacks",
    "AWS::CloudWatch::Alarm": "service stacks (rollback alarms)",
    "AWS::CodeBuild::Project": "pipelines",
    "AWS::CodeCommit::Repository": "pipelines reading CodeCommit",
    "AWS::CodePipeline::Pipeline": "pipelines",
    "AWS::S3::BucketPolicy": "build bucket and pipelines",
    "AWS::ServiceDiscovery::HttpNamespace": "Service Connect environment",
    "AWS::ServiceDiscovery::Instance": "App Mesh pipelines",
    "AWS::ServiceDiscovery::PrivateDnsNamespace": "App Mesh environment",
    "AWS::ServiceDiscovery::Service": "App Mesh pipelines and version stacks",
}
