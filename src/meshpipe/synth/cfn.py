"""Small typed helpers for CloudFormation templates as plain data, and their deterministic JSON.

Templates are built as dicts by pure functions; these helpers spell the intrinsic functions so builders
read like the template they produce.
"""

from __future__ import annotations

import json
from typing import Any

Json = dict[str, Any]


def ref(name: str) -> Json:
    return {"Ref": name}


def get_att(resource: str, attribute: str) -> Json:
    return {"Fn::GetAtt": [resource, attribute]}


def sub(text: str, variables: dict[str, Any] | None = None) -> Json:
    return {"Fn::Sub": [text, variables] if variables else text}


def join(parts: list[Any], sep: str = "") -> Json:
    return {"Fn::Join": [sep, parts]}


def import_value(name: Any) -> Json:
    return {"Fn::ImportValue": name}


def select(index: int, items: Any) -> Json:
    return {"Fn::Select": [index, items]}


def resource(type_: str, properties: Json, **extra: Any) -> Json:
    """A resource; ``extra`` holds DependsOn, Condition, DeletionPolicy, ... when needed."""
    out: Json = {"Type": type_, "Properties": properties}
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def checkov_skips(*skips: tuple[str, str]) -> Json:
    """A resource's ``Metadata`` that suppresses checkov checks: ``(check id, why it does not apply)`` pairs.

    checkov reads ``Metadata.checkov.skip``; every skip states its reason, so a reader of the template sees
    why a finding is accepted.
    """
    return {"checkov": {"skip": [{"id": check, "comment": reason} for check, reason in skips]}}


def output(value: Any, description: str | None = None, export: Any = None) -> Json:
    out: Json = {"Value": value}
    if description:
        out["Description"] = description
    if export is not None:
        out["Export"] = {"Name": export}
    return out


def template(resources: Json, *, description: str | None = None, parameters: Json | None = None,
             outputs: Json | None = None, conditions: Json | None = None,
             mappings: Json | None = None) -> Json:
    out: Json = {"AWSTemplateFormatVersion": "2010-09-09"}
    if description:
        out["Description"] = description
    for key, value in (("Parameters", parameters), ("Mappings", mappings), ("Conditions", conditions)):
        if value:
            out[key] = value
    out["Resources"] = resources
    if outputs:
        out["Outputs"] = outputs
    return out


def template_json(tpl: Json) -> str:
    """The template's bytes: same template, same text (keys keep the insertion order builders fix)."""
    return json.dumps(tpl, indent=1, ensure_ascii=False) + "\n"
