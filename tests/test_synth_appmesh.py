"""App Mesh version stack: every value comes from the manifest, the platform settings or the policy."""

from __future__ import annotations

from typing import Any

import pytest

from meshpipe.synth.appmesh import synth_appmesh
from support import synth_cases as cases


def web(**policy: Any) -> dict[str, Any]:
    return synth_appmesh(cases.sample_version("hello-web", settings=cases.platform(**policy)))


def props(tpl: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return tpl["Resources"][logical_id]["Properties"]


def containers(tpl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["Name"]: c for c in props(tpl, "TaskDefinition")["ContainerDefinitions"]}


def test_stack_holds_the_seed_resources_under_readable_ids() -> None:
    tpl = web()
    assert {k: v["Type"] for k, v in tpl["Resources"].items()} == {
        "VirtualNode": "AWS::AppMesh::VirtualNode",
        "ExecutionRolePolicy": "AWS::IAM::Policy",
        "TaskDefinition": "AWS::ECS::TaskDefinition",
        "Service": "AWS::ECS::Service",
        "CloudMapService": "AWS::ServiceDiscovery::Service",
        "ScalableTarget": "AWS::ApplicationAutoScaling::ScalableTarget",
        "ScalingPolicy": "AWS::ApplicationAutoScaling::ScalingPolicy",
    }
    assert "e9d5f17a" in tpl["Description"] and "hello-web" in tpl["Description"]
    assert all("Metadata" not in r for r in tpl["Resources"].values())


def test_virtual_node_is_named_after_the_version_and_listens_on_the_app_port() -> None:
    text = cases.EVERY_EXTENSION_MANIFEST
    version = cases.version_from_text(text, service="orders-api", commit="0badc0de" + "0" * 32)
    node = props(synth_appmesh(version), "VirtualNode")
    assert node["MeshName"] == "demo"
    assert node["VirtualNodeName"] == "vn-orders-api-0badc0de"
    assert node["Spec"]["Listeners"] == [{"PortMapping": {"Port": 8080, "Protocol": "http"}}]
    assert node["Spec"]["ServiceDiscovery"] == {"DNS": {"Hostname": "orders-api-0badc0de.demo.local"}}
    assert node["Spec"]["Logging"] == {"AccessLog": {"File": {"Path": "/dev/stdout"}}}
    assert "Backends" not in node["Spec"]  # an empty list is left out, as for hello-backend


def test_virtual_node_declares_one_backend_per_manifest_entry() -> None:
    text = cases.EVERY_EXTENSION_MANIFEST.replace(
        "Backends: []", 'Backends: ["hello-backend.demo.local", "payments.demo.local"]')
    node = props(synth_appmesh(cases.version_from_text(text)), "VirtualNode")
    assert node["Spec"]["Backends"] == [
        {"VirtualService": {"VirtualServiceName": "hello-backend.demo.local"}},
        {"VirtualService": {"VirtualServiceName": "payments.demo.local"}},
    ]


def test_namespace_and_environment_come_from_the_platform() -> None:
    settings = cases.platform().model_copy(update={"environment_name": "prod", "namespace_name": "prod.internal"})
    tpl = synth_appmesh(cases.sample_version("hello-web", settings=settings))
    assert props(tpl, "VirtualNode")["MeshName"] == "prod"
    assert props(tpl, "VirtualNode")["Spec"]["ServiceDiscovery"]["DNS"]["Hostname"] == "hello-web-e9d5f17a.prod.internal"
    assert tpl["Outputs"]["VirtualServiceName"]["Value"] == "hello-web.prod.internal"


def test_execution_role_policy_covers_the_log_group_and_is_unique_per_version() -> None:
    settings = cases.platform().model_copy(update={
        "task_exec_role_arn": "arn:aws:iam::123456789012:role/platform/demo-exec",
        "log_group_name": "/ecs/demo", "aws_region": "eu-west-1",
    })
    one = props(synth_appmesh(cases.sample_version("hello-web", settings=settings)), "ExecutionRolePolicy")
    other = props(synth_appmesh(cases.sample_version("hello-web", "0badc0de" * 5, settings)), "ExecutionRolePolicy")
    assert one["Roles"] == ["demo-exec"]  # a role name, not its ARN, and without the path
    statement = one["PolicyDocument"]["Statement"][0]
    assert statement["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert statement["Resource"]["Fn::Join"][1][2] == ":logs:eu-west-1:123456789012:log-group:/ecs/demo:*"
    assert one["PolicyName"] == "demo-hello-web-e9d5f17a-logs"
    assert other["PolicyName"] != one["PolicyName"]


def test_task_definition_takes_size_family_and_roles_from_manifest_and_platform() -> None:
    td = props(synth_appmesh(cases.version_from_text(cases.EVERY_EXTENSION_MANIFEST)), "TaskDefinition")
    assert (td["Family"], td["Cpu"], td["Memory"]) == ("orders-api", "512", "1024")
    assert td["ExecutionRoleArn"] == "arn:aws:iam::123456789012:role/demo-env-TaskExecutionRole-ABCDEF123456"
    assert td["TaskRoleArn"] == "arn:aws:iam::123456789012:role/demo-env-DefaultTaskIamRole-ABCDEF123456"
    assert td["NetworkMode"] == "awsvpc"
    assert td["RequiresCompatibilities"] == ["FARGATE"]


def test_proxy_configuration_follows_the_policy() -> None:
    tpl = web(proxy_ingress_port=16000, proxy_egress_port=16001, envoy_uid=2000,
              egress_ignored_ips=["169.254.170.2"])
    proxy = props(tpl, "TaskDefinition")["ProxyConfiguration"]
    assert proxy["Type"] == "APPMESH" and proxy["ContainerName"] == "envoy"
    assert {p["Name"]: p["Value"] for p in proxy["ProxyConfigurationProperties"]} == {
        "AppPorts": "80", "ProxyEgressPort": "16001", "ProxyIngressPort": "16000", "IgnoredUID": "2000",
        "EgressIgnoredIPs": "169.254.170.2",
    }
    assert containers(tpl)["envoy"]["User"] == "2000"


def test_app_container_from_the_seed_manifest() -> None:
    app = containers(web())["app"]
    assert app["Image"] == "wizriz/hello-web:66f2a19"
    assert app["Command"] == ["node", "server", "-b http://hello-backend.demo.local/data"]
    assert app["Essential"] is True
    assert app["PortMappings"] == [{"ContainerPort": 80, "Protocol": "tcp"}]
    assert app["DependsOn"] == [{"Condition": "HEALTHY", "ContainerName": "envoy"}]
    assert app["HealthCheck"]["Command"] == ["CMD-SHELL", "curl -f http://localhost:80/ping || exit 1"]
    assert app["LogConfiguration"] == {"LogDriver": "awslogs", "Options": {
        "awslogs-group": "demo-cluster", "awslogs-stream-prefix": "app-hello-web-e9d5f17a",
        "awslogs-region": "us-east-1"}}
    assert "Environment" not in app


def test_app_container_extensions_environment_and_no_command() -> None:
    app = containers(synth_appmesh(cases.version_from_text(cases.EVERY_EXTENSION_MANIFEST)))["app"]
    assert "Command" not in app  # the image's own command
    assert app["Environment"] == [
        {"Name": "GREETING", "Value": "Hello, it's a \"quoted\" $HOME & more"},
        {"Name": "LOG_LEVEL", "Value": "debug"},
    ]
    assert app["HealthCheck"]["Command"] == ["CMD-SHELL", "curl -f http://localhost:8080/health/ready || exit 1"]
    assert app["PortMappings"][0]["ContainerPort"] == 8080


def test_health_checks_stop_timeout_and_log_prefixes_follow_the_policy() -> None:
    tpl = web(health_check={"interval": 30, "timeout": 5, "retries": 5, "start_period": 60}, stop_timeout=30,
              app_log_prefix="application", envoy_log_prefix="proxy", envoy_admin_port=9902)
    app, envoy = containers(tpl)["app"], containers(tpl)["envoy"]
    for container in (app, envoy):
        hc = container["HealthCheck"]
        assert (hc["Interval"], hc["Timeout"], hc["Retries"], hc["StartPeriod"]) == (30, 5, 5, 60)
        assert container["StopTimeout"] == 30
    assert app["LogConfiguration"]["Options"]["awslogs-stream-prefix"] == "application-hello-web-e9d5f17a"
    assert envoy["LogConfiguration"]["Options"]["awslogs-stream-prefix"] == "proxy-hello-web-e9d5f17a"
    assert "localhost:9902/server_info" in envoy["HealthCheck"]["Command"][1]


def test_envoy_container_serves_this_versions_virtual_node() -> None:
    settings = cases.platform().model_copy(update={"envoy_image_uri": "registry.example.com/envoy:v1.30.0"})
    envoy = containers(synth_appmesh(cases.sample_version("hello-web", settings=settings)))["envoy"]
    assert envoy["Image"] == "registry.example.com/envoy:v1.30.0"
    assert envoy["Environment"] == [{"Name": "APPMESH_RESOURCE_ARN", "Value": {"Ref": "VirtualNode"}}]
    assert envoy["HealthCheck"]["Command"] == [
        "CMD-SHELL", "curl -s http://localhost:9901/server_info | grep state | grep -q LIVE"]
    assert "PortMappings" not in envoy


def test_ecs_service_runs_the_version_in_private_subnets() -> None:
    settings = cases.platform(deployment_maximum_percent=150, deployment_minimum_healthy_percent=100)
    settings = settings.model_copy(update={"cluster_name": "apps", "security_group_id": "sg-0aaaaaaaaaaaaaaaa",
                                           "subnets": ("subnet-0000000a", "subnet-0000000b", "subnet-0000000c")})
    tpl = synth_appmesh(cases.sample_version("hello-backend", settings=settings))
    service = tpl["Resources"]["Service"]
    p = service["Properties"]
    assert p["ServiceName"] == "hello-backend-e9d5f17a"
    assert p["Cluster"] == "apps"
    assert p["LaunchType"] == "FARGATE"
    assert p["DeploymentConfiguration"] == {"MaximumPercent": 150, "MinimumHealthyPercent": 100}
    assert p["NetworkConfiguration"]["AwsvpcConfiguration"] == {
        "AssignPublicIp": "DISABLED", "SecurityGroups": ["sg-0aaaaaaaaaaaaaaaa"],
        "Subnets": ["subnet-0000000a", "subnet-0000000b", "subnet-0000000c"]}
    assert p["TaskDefinition"] == {"Ref": "TaskDefinition"}
    assert p["ServiceRegistries"] == [{"RegistryArn": {"Fn::GetAtt": ["CloudMapService", "Arn"]}}]
    assert service["DependsOn"] == ["ExecutionRolePolicy"]
    assert "DesiredCount" not in p  # autoscaling owns the task count


def test_cloud_map_service_takes_ttl_from_the_policy() -> None:
    cm = props(web(dns_ttl=60), "CloudMapService")
    assert cm["Name"] == "hello-web-e9d5f17a"
    assert cm["NamespaceId"] == cm["DnsConfig"]["NamespaceId"] == "ns-abcdefgh12345678"
    assert cm["DnsConfig"]["DnsRecords"] == [{"TTL": 60, "Type": "A"}]
    assert cm["DnsConfig"]["RoutingPolicy"] == "MULTIVALUE"
    assert cm["HealthCheckCustomConfig"] == {"FailureThreshold": 1}


def test_autoscaling_follows_the_policy() -> None:
    tpl = web(autoscaling={"min_tasks": 3, "max_tasks": 12, "cpu_target_percent": 65})
    target, policy = props(tpl, "ScalableTarget"), props(tpl, "ScalingPolicy")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (3, 12)
    assert target["ResourceId"] == {"Fn::Join": ["", ["service/demo/", {"Fn::GetAtt": ["Service", "Name"]}]]}
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    assert target["RoleARN"]["Fn::Join"][1][2].startswith(":iam::123456789012:role/aws-service-role/")
    assert policy["ScalingTargetId"] == {"Ref": "ScalableTarget"}
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 65
    assert policy["PolicyName"] == "hello-web-e9d5f17a-cpu-tracking"


def test_outputs_name_what_later_steps_need() -> None:
    outputs = web()["Outputs"]
    assert outputs["VirtualNodeName"]["Value"] == {"Fn::GetAtt": ["VirtualNode", "VirtualNodeName"]}
    assert outputs["ServiceName"]["Value"] == {"Fn::GetAtt": ["Service", "Name"]}
    assert outputs["VersionId"]["Value"] == "e9d5f17a"
    assert outputs["CommitId"]["Value"] == cases.REFERENCE_COMMIT
    assert outputs["DnsName"]["Value"] == "hello-web-e9d5f17a.demo.local"


@pytest.mark.parametrize("commit", ["0123456789abcdef0123", "E9D5F17A3C4B5D6E"])
def test_names_use_the_first_eight_characters_of_the_commit(commit: str) -> None:
    tpl = synth_appmesh(cases.sample_version("hello-web", commit.lower()))
    assert props(tpl, "VirtualNode")["VirtualNodeName"] == f"vn-hello-web-{commit.lower()[:8]}"
