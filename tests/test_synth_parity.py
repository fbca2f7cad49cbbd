"""Parity with the original sample: for the reference inputs, the App Mesh flavour has the reference's resources and
property values, up to logical ids, CDK metadata and the differences listed here (and in docs/synth.md).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from meshpipe.manifest import load_manifest
from meshpipe.model import resolve
from meshpipe.platform import build_inputs_from_env, load_platform_file, settings_from_env
from meshpipe.synth.appmesh import synth_appmesh

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).resolve().parent / "reference"

# CDK's generated logical ids -> meshpipe's readable ones.
LOGICAL_IDS = {
    "VirtualNode99429281": "VirtualNode",
    "ExecutionRolePolicy79A7F477": "ExecutionRolePolicy",
    "TaskDefinitionB36D86D9": "TaskDefinition",
    "ServiceD69D759B": "Service",
    "ServiceCloudmapService046058A4": "CloudMapService",
    "ServiceTaskCountTarget23E25614": "ScalableTarget",
    "ServiceTaskCountTargetScalingPolicy381F2DAA": "ScalingPolicy",
}
CDK_ONLY_RESOURCES = {"CDKMetadata"}

# Every deliberate difference, as (logical id, property) -> why. Nothing else may differ.
ALLOWED_PROPERTY_DIFFERENCES = {
    ("ExecutionRolePolicy", "PolicyName"): "unique per version: every version attaches a policy to the same role",
    ("ScalingPolicy", "PolicyName"): "named after the version's ECS service instead of CDK's construct path",
}
# Resource attributes meshpipe adds: (logical id, attribute) -> value.
ADDED_ATTRIBUTES = {
    ("Service", "DependsOn"): ["ExecutionRolePolicy"],
}
# Template sections meshpipe adds (CDK wrote none of them).
ADDED_SECTIONS = {"AWSTemplateFormatVersion", "Description", "Outputs"}


def read_env_txt(path: Path, service: str) -> dict[str, str]:
    """env.txt as an environment; it lists SERVICE_NAME once per reference, so pick ``service``'s."""
    environ: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if key == "SERVICE_NAME" and value != service:
            continue
        environ[key] = value
    return environ


def renamed(value: Any) -> Any:
    """Replace CDK logical ids in Ref / Fn::GetAtt with meshpipe's."""
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in LOGICAL_IDS:
            return {"Ref": LOGICAL_IDS[value["Ref"]]}
        if set(value) == {"Fn::GetAtt"} and value["Fn::GetAtt"][0] in LOGICAL_IDS:
            return {"Fn::GetAtt": [LOGICAL_IDS[value["Fn::GetAtt"][0]], value["Fn::GetAtt"][1]]}
        return {k: renamed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [renamed(v) for v in value]
    return value


def reference_resources(service: str) -> dict[str, Any]:
    tpl = json.loads((REFERENCE / f"{service}.template.json").read_text())
    out = {}
    for logical_id, res in tpl["Resources"].items():
        if logical_id in CDK_ONLY_RESOURCES:
            continue
        res = {k: v for k, v in res.items() if k != "Metadata"}  # aws:cdk:path
        out[LOGICAL_IDS[logical_id]] = renamed(res)
    assert set(tpl) == {"Resources"}
    return out


def synthesized(service: str) -> dict[str, Any]:
    environ = read_env_txt(REFERENCE / "env.txt", service)
    settings = settings_from_env(environ)
    name, commit = build_inputs_from_env(environ)
    assert name == service and commit
    manifest = load_manifest(REPO / "examples" / f"{service}-cfg" / "manifest.yaml", settings.policy)
    return synth_appmesh(resolve(manifest, settings, name, commit))


@pytest.mark.parametrize("service", ["hello-web", "hello-backend"])
def test_same_resources_and_values_as_the_reference(service: str) -> None:
    ours = synthesized(service)
    assert set(ours) - {"Resources"} == ADDED_SECTIONS
    theirs = reference_resources(service)
    assert ours["Resources"].keys() == theirs.keys()
    for logical_id, resource in ours["Resources"].items():
        ref = copy.deepcopy(theirs[logical_id])
        mine = copy.deepcopy(resource)
        assert mine.pop("Type") == ref.pop("Type"), logical_id
        for (rid, prop), _why in ALLOWED_PROPERTY_DIFFERENCES.items():
            if rid == logical_id:
                # A listed difference must be real, or the list no longer says what differs.
                assert mine["Properties"].pop(prop) != ref["Properties"].pop(prop), (logical_id, prop)
        for (rid, attribute), value in ADDED_ATTRIBUTES.items():
            if rid == logical_id:
                assert attribute not in ref
                assert mine.pop(attribute) == value
        assert mine == ref, logical_id


def test_the_demo_platform_file_holds_the_reference_settings() -> None:
    from_env = settings_from_env(read_env_txt(REFERENCE / "env.txt", "hello-web"))
    assert load_platform_file(str(REPO / "examples" / "platform.yaml")) == from_env
