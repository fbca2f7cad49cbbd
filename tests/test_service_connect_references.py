"""The Service Connect templates against references that meshpipe did not write.

1. botocore's ``ecs`` model: each ECS resource's CloudFormation properties, translated to the API request
   CloudFormation makes from them (``CreateService``, ``RegisterTaskDefinition``, ``CreateCluster``), pass
   botocore's own parameter validator. The translation is guided by the model alone: a property name must
   match a member of the request's shape (CloudFormation spells them with a capital letter), a map's keys
   are kept, and intrinsic functions become values of the shape's type. A property with no member in the
   API fails the test, as does a missing required member, a wrong type, a value outside the model's enum
   or out of its range.
2. ECS's documentation: facts about Service Connect and the ECS deployment strategies, written down here by
   hand from the pages cited beside them (``DOCUMENTED``), checked field by field against the templates.

A negative control runs the same translation and validation on broken properties and sees them refused.
"""

from __future__ import annotations

import math
import re
from typing import Any

import botocore.session
import pytest
from botocore.model import Shape, StructureShape
from botocore.validate import ParamValidator

from meshpipe.synth.platform_render import render_platform
from meshpipe.synth.service_connect import synth_service_connect
from support import synth_cases as cases

ECS = botocore.session.get_session().get_service_model("ecs")
OPERATIONS = {"AWS::ECS::Service": "CreateService", "AWS::ECS::TaskDefinition": "RegisterTaskDefinition",
              "AWS::ECS::Cluster": "CreateCluster"}

# --- facts from ECS's documentation (written by hand; the URL is where each comes from) ------------------

API = "https://docs.aws.amazon.com/AmazonECS/latest/APIReference/"
CFN = "https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/"
DOCUMENTED = {
    "port_name_matches_a_port_mapping": (
        API + "API_ServiceConnectService.html",
        "portName is required and must match the name of one of the portMappings of the task definition's "
        "containers"),
    "discovery_name": (
        API + "API_ServiceConnectService.html",
        "discoveryName: up to 64 characters; lowercase letters, numbers, underscores and hyphens; not starting "
        "with a hyphen; unique in the Cloud Map namespace"),
    "client_aliases": (
        API + "API_ServiceConnectService.html",
        "clientAliases: at most 1; each with a port"),
    "client_alias": (
        API + "API_ServiceConnectClientAlias.html",
        "port: required, 0-65535; dnsName: up to 127 characters; lowercase letters, numbers, underscores, "
        "hyphens and periods; not starting with a hyphen"),
    "app_protocol": (
        API + "API_PortMapping.html",
        "appProtocol applies to Service Connect only: http, http2 or grpc (TCP when unset, without "
        "protocol-specific telemetry)"),
    "canary": (
        API + "API_CanaryConfiguration.html",
        "only with deploymentController ECS and strategy CANARY; canaryBakeTimeInMinutes 0-1440; canaryPercent "
        "a multiple of 0.1 from 0.1 to 100.0"),
    "linear": (
        API + "API_LinearConfiguration.html",
        "only with deploymentController ECS and strategy LINEAR; stepBakeTimeInMinutes 0-1440; stepPercent a "
        "multiple of 0.1 from 3.0 to 100.0"),
    "canary_cloudformation_limit": (
        CFN + "aws-properties-ecs-service-canaryconfiguration.html",
        "CloudFormation refuses a canary deployment when BakeTimeInMinutes + CanaryBakeTimeInMinutes exceeds "
        "33 hours"),
    "linear_cloudformation_limit": (
        CFN + "aws-properties-ecs-service-linearconfiguration.html",
        "CloudFormation refuses a linear deployment when BakeTimeInMinutes + StepBakeTimeInMinutes x steps "
        "exceeds 33 hours; steps = 100 / StepPercent - 1 when it divides 100 evenly, else floor(100 / "
        "StepPercent)"),
}
THIRTY_THREE_HOURS_MIN = 33 * 60
DISCOVERY_NAME = re.compile(r"^[a-z0-9_][a-z0-9_-]{0,63}$")
DNS_NAME = re.compile(r"^[a-z0-9_.][a-z0-9_.-]{0,126}$")
APP_PROTOCOLS = {"http", "http2", "grpc"}

SHIFTS = {
    "canary (default)": {},
    "canary": {"traffic_shift": {"strategy": "CANARY", "canary_percent": 25, "canary_bake_minutes": 30,
                                 "bake_minutes": 60}},
    "linear": {"traffic_shift": {"strategy": "LINEAR", "linear_step_percent": 20, "linear_step_bake_minutes": 3,
                                 "bake_minutes": 5}},
    "linear, uneven steps": {"traffic_shift": {"strategy": "LINEAR", "linear_step_percent": 11}},
    "blue/green": {"traffic_shift": {"strategy": "BLUE_GREEN", "bake_minutes": 0}},
    "rolling": {"traffic_shift": {"strategy": "ROLLING"}, "deployment_maximum_percent": 120,
                "deployment_minimum_healthy_percent": 100},
}


def version_templates() -> dict[str, dict[str, Any]]:
    out = {}
    for service in ("hello-web", "hello-backend"):
        for label, policy in SHIFTS.items():
            version = cases.sample_version(service, settings=cases.platform(**policy))
            out[f"{service}, {label}"] = synth_service_connect(version)
    return out


TEMPLATES = version_templates()
ENVIRONMENT = {name: tpl for name, tpl in render_platform("demo", mesh="service-connect").items()}


# --- CloudFormation properties -> an API request, by botocore's model -----------------------------------

INTRINSICS = ("Ref", "Fn::GetAtt", "Fn::Sub", "Fn::Join", "Fn::ImportValue", "Fn::Select", "Fn::FindInMap",
              "Fn::Split", "Fn::GetAZs", "Fn::Base64")


def resolve_conditions(value: Any, conditions: dict[str, bool]) -> Any:
    """``value`` with every ``Fn::If`` decided and every ``AWS::NoValue`` gone (as CloudFormation does)."""
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, then, otherwise = value["Fn::If"]
            return resolve_conditions(then if conditions[name] else otherwise, conditions)
        out = {}
        for k, v in value.items():
            resolved = resolve_conditions(v, conditions)
            if resolved != {"Ref": "AWS::NoValue"}:
                out[k] = resolved
        return out
    if isinstance(value, list):
        return [resolve_conditions(v, conditions) for v in value if v != {"Ref": "AWS::NoValue"}]
    return value


def placeholder(shape: Shape, intrinsic: dict[str, Any]) -> Any:
    """What CloudFormation would pass for ``intrinsic``: a value of the shape's type."""
    kind = shape.type_name
    if kind == "string":
        return f"resolved-{next(iter(intrinsic))}"
    if kind in ("integer", "long"):
        return 1
    if kind in ("double", "float"):
        return 1.0
    if kind == "boolean":
        return True
    if kind == "list":
        return [placeholder(shape.member, intrinsic)]  # type: ignore[attr-defined]
    raise AssertionError(f"an intrinsic function where the API takes a {kind}: {intrinsic}")


def to_request(value: Any, shape: Shape, path: str, unknown: list[str]) -> Any:
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in INTRINSICS:
        return placeholder(shape, value)
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), f"{path}: the API takes an object here, not {value!r}"
        members = {name.lower(): name for name in shape.members}  # type: ignore[attr-defined]
        out = {}
        for key, item in value.items():
            member = members.get(key.lower())
            if member is None:
                unknown.append(f"{path}.{key}")
                continue
            out[member] = to_request(item, shape.members[member], f"{path}.{key}", unknown)  # type: ignore[attr-defined]
        return out
    if kind == "map":
        assert isinstance(value, dict), f"{path}: the API takes a map here, not {value!r}"
        return {k: to_request(v, shape.value, f"{path}[{k}]", unknown) for k, v in value.items()}  # type: ignore[attr-defined]
    if kind == "list":
        assert isinstance(value, list), f"{path}: the API takes a list here, not {value!r}"
        return [to_request(v, shape.member, f"{path}[{i}]", unknown) for i, v in enumerate(value)]  # type: ignore[attr-defined]
    # botocore's validator checks types, required members and lower bounds; an enum's values and a
    # range's upper bound are checked here, from the same model.
    if kind == "string" and shape.enum and value not in shape.enum:
        unknown.append(f"{path}: {value!r} is not one of {shape.enum}")
    upper = shape.metadata.get("max")
    if kind in ("integer", "long", "double", "float") and upper is not None and isinstance(value, int | float) \
            and value > upper:
        unknown.append(f"{path}: {value!r} is over the model's maximum {upper}")
    return value


def request_of(resource_type: str, properties: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    shape = ECS.operation_model(OPERATIONS[resource_type]).input_shape
    assert isinstance(shape, StructureShape)
    unknown: list[str] = []
    return to_request(properties, shape, resource_type, unknown), unknown


def validation_errors(resource_type: str, request: dict[str, Any]) -> str:
    report = ParamValidator().validate(request, ECS.operation_model(OPERATIONS[resource_type]).input_shape)
    return report.generate_report() if report.has_errors() else ""


def ecs_resources(tpl: dict[str, Any], conditions: dict[str, bool]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(lid, r["Type"], resolve_conditions(r.get("Properties", {}), conditions))
            for lid, r in tpl["Resources"].items() if r["Type"] in OPERATIONS]


def condition_cases(tpl: dict[str, Any]) -> list[dict[str, bool]]:
    names = sorted(tpl.get("Conditions", {}))
    return [{n: True for n in names}, {n: False for n in names}]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_ecs_resource_is_a_valid_api_request(name: str) -> None:
    tpl = TEMPLATES[name]
    seen = set()
    for conditions in condition_cases(tpl):
        for lid, kind, props in ecs_resources(tpl, conditions):
            request, unknown = request_of(kind, props)
            assert not unknown, f"{name} {lid}: properties the ECS API has no field for: {unknown}"
            errors = validation_errors(kind, request)
            assert not errors, f"{name} {lid} ({conditions}):\n{errors}"
            seen.add(kind)
    assert seen == {"AWS::ECS::Service", "AWS::ECS::TaskDefinition"}


def test_the_environments_cluster_is_a_valid_api_request() -> None:
    found = 0
    for name, tpl in ENVIRONMENT.items():
        for conditions in condition_cases(tpl):
            for lid, kind, props in ecs_resources(tpl, conditions):
                request, unknown = request_of(kind, props)
                assert not unknown and not validation_errors(kind, request), (name, lid, unknown)
                found += 1
    assert found >= 2  # the cluster, with and without its conditions


@pytest.mark.parametrize(("kind", "props", "complaint"), [
    ("AWS::ECS::Service", {"ServiceName": "x", "DeploymentConfiguration": {"Strategy": "SOMETIMES"}}, "Strategy"),
    ("AWS::ECS::Service", {"ServiceName": "x", "ServiceConnectConfiguration": {"Services": [{"PortName": "http"}]}},
     "enabled"),
    ("AWS::ECS::Service", {"ServiceName": "x", "ServiceConnectConfiguration": {
        "Enabled": True, "Services": [{"PortName": "http", "ClientAliases": [{"Port": 70000}]}]}}, "70000"),
    ("AWS::ECS::Service", {"ServiceName": "x", "DeploymentConfiguration": {"CanaryConfiguration": {
        "CanaryPercent": "ten"}}}, "canaryPercent"),
    ("AWS::ECS::TaskDefinition", {"Family": "f", "ContainerDefinitions": [{"Name": "app", "PortMappings": [
        {"ContainerPort": 80, "AppProtocol": "https"}]}]}, "is not one of ['http', 'http2', 'grpc']"),
    ("AWS::ECS::TaskDefinition", {"ContainerDefinitions": []}, "family"),
    ("AWS::ECS::TaskDefinition", {"Family": "f", "ContainerDefinitions": [], "Colour": "blue"}, "Colour"),
])
def test_the_translation_and_the_validator_refuse_what_ecs_would(kind: str, props: dict[str, Any],
                                                                  complaint: str) -> None:
    request, unknown = request_of(kind, props)
    said = " ".join(unknown) + validation_errors(kind, request)
    assert complaint in said, said


# --- the documented facts, field by field -----------------------------------------------------------------

def props(tpl: dict[str, Any], lid: str) -> dict[str, Any]:
    return resolve_conditions(tpl["Resources"][lid]["Properties"], {n: True for n in tpl.get("Conditions", {})})


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_service_connect_follows_the_documented_rules(name: str) -> None:
    tpl = TEMPLATES[name]
    service, task = props(tpl, "Service"), props(tpl, "TaskDefinition")
    connect = service["ServiceConnectConfiguration"]
    assert connect["Enabled"] is True
    mappings = [m for c in task["ContainerDefinitions"] for m in c.get("PortMappings", [])]
    names = {m.get("Name") for m in mappings}
    for entry in connect["Services"]:
        assert entry["PortName"] in names, DOCUMENTED["port_name_matches_a_port_mapping"]
        assert DISCOVERY_NAME.match(entry["DiscoveryName"]), DOCUMENTED["discovery_name"]
        aliases = entry.get("ClientAliases", [])
        assert len(aliases) <= 1 and all("Port" in a for a in aliases), DOCUMENTED["client_aliases"]
        for alias in aliases:
            assert 0 <= alias["Port"] <= 65535 and DNS_NAME.match(alias["DnsName"]), DOCUMENTED["client_alias"]
    for mapping in mappings:
        if "AppProtocol" in mapping:
            assert mapping["AppProtocol"] in APP_PROTOCOLS, DOCUMENTED["app_protocol"]
    # The service's own name in the namespace is the service's: hello-web.demo.local, port 80.
    assert [a["DnsName"] for e in connect["Services"] for a in e["ClientAliases"]] == [
        f"{name.split(',')[0]}.demo.local"]


def linear_steps(step_percent: float) -> int:
    """The number of steps as the CloudFormation page counts them."""
    return int(100 / step_percent) - 1 if 100 % step_percent == 0 else math.floor(100 / step_percent)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_deployment_configuration_follows_the_documented_rules(name: str) -> None:
    service = props(TEMPLATES[name], "Service")
    config = service["DeploymentConfiguration"]
    strategy = config.get("Strategy", "ROLLING")
    if strategy in ("CANARY", "LINEAR", "BLUE_GREEN"):
        assert service["DeploymentController"] == {"Type": "ECS"}, DOCUMENTED["canary"]
    if strategy == "CANARY":
        canary = config["CanaryConfiguration"]
        assert 0 <= canary["CanaryBakeTimeInMinutes"] <= 1440, DOCUMENTED["canary"]
        assert 0.1 <= canary["CanaryPercent"] <= 100 and round(canary["CanaryPercent"] * 10) == \
            canary["CanaryPercent"] * 10, DOCUMENTED["canary"]
        total = config.get("BakeTimeInMinutes", 0) + canary["CanaryBakeTimeInMinutes"]
        assert total <= THIRTY_THREE_HOURS_MIN, DOCUMENTED["canary_cloudformation_limit"]
        assert "LinearConfiguration" not in config
    elif strategy == "LINEAR":
        linear = config["LinearConfiguration"]
        assert 0 <= linear["StepBakeTimeInMinutes"] <= 1440, DOCUMENTED["linear"]
        assert 3.0 <= linear["StepPercent"] <= 100, DOCUMENTED["linear"]
        total = config.get("BakeTimeInMinutes", 0) + linear["StepBakeTimeInMinutes"] * linear_steps(linear["StepPercent"])
        assert total <= THIRTY_THREE_HOURS_MIN, DOCUMENTED["linear_cloudformation_limit"]
        assert "CanaryConfiguration" not in config
    else:
        assert "CanaryConfiguration" not in config and "LinearConfiguration" not in config


def test_the_documented_step_count_matches_the_pages_examples() -> None:
    # The CloudFormation page's own example: StepPercent 11 makes 9 steps (not 9.1); 50 makes 1; 10 makes 9.
    assert (linear_steps(11), linear_steps(50), linear_steps(10)) == (9, 1, 9)
