"""Load and validate a manifest: every problem of a file, each with its line, at once.

Three layers find problems, and all of them always run: the YAML reader (syntax, tags, duplicate keys,
YAML 1.1 number forms), the model (each value's type and format, unknown and missing keys), and the
checks between values and against the platform's policy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from meshpipe.codes import MANIFEST_FIELD_CODES
from meshpipe.errors import Problem, ValidationError
from meshpipe.manifest.checks import Finding, TrustedValues, cross_checks, policy_checks, rollout_checks
from meshpipe.manifest.model import ServiceManifest
from meshpipe.platform import PlatformPolicy
from meshpipe.validation.explain import Explainer, KeyMap, Source, describe
from meshpipe.validation.yamlsafe import YamlDocument, parse_yaml_file, parse_yaml_text, within_any

HINT = "see docs/manifest.md for every key and rule"

# What each field takes, in the words of the manifest reference.
_EXPECTED = {
    "Task": "a mapping with Family, Cpu, Memory",
    "AppContainer": "a mapping with Image, Port, HealthCheckPath, Command",
    "VirtualNode": "a mapping with Backends",
    "Task.Family": "a string (the task family name)",
    "AppContainer.Image": "a string (an image reference)",
    "AppContainer.HealthCheckPath": "a string (a URL path)",
    "AppContainer.Command": "a list of strings",
    "AppContainer.Command[]": "a string",
    "AppContainer.Environment": "a mapping of NAME: \"value\"",
    "VirtualNode.Backends": "a list of DNS names",
    "VirtualNode.Backends[]": "a string (a DNS name)",
    "Rollout": "a mapping with Strategy, Steps, Interval, ScaleDownDelay, Analysis, Webhooks",
    "Rollout.Steps": "a list of percentages such as [10, 25, 50, 100]",
    "Rollout.Steps[]": "an integer (a percentage)",
    "Rollout.Analysis": "a mapping with MinSuccessRate, MaxP99Ms, MaxP99IncreasePercent, MinRequests, FailedWindows, "
                          "InconclusiveDeadline, OnInconclusive",
    "Rollout.Webhooks": "a list of webhooks (Name, Type, Url)",
    "Rollout.Webhooks[]": "a mapping with Name, Type, Url, Timeout, Metadata",
    "Rollout.PreviewHeader": "a mapping with Name and Value",
}
KEYS = KeyMap.of(ServiceManifest, by_alias=True)
_EXPLAINER = Explainer(KEYS, _EXPECTED, code_prefix="M", rule_codes=MANIFEST_FIELD_CODES)


@dataclass(frozen=True)
class LoadedManifest:
    """A valid manifest and where it came from."""

    file: str
    manifest: ServiceManifest
    document: YamlDocument


def _source(doc: YamlDocument) -> Source:
    return Source(doc.file, doc.line_of, doc.raw_of)


def _findings_to_problems(findings: list[Finding], doc: YamlDocument) -> list[Problem]:
    return [Problem(doc.file, doc.line_of(f.path), f.path, f.message, f.code) for f in findings]


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _model_problems(doc: YamlDocument) -> tuple[ServiceManifest | None, list[Problem]]:
    try:
        return ServiceManifest.model_validate(doc.data, by_alias=True, by_name=False), []
    except PydanticValidationError as exc:
        problems = _EXPLAINER.problems(exc.errors(), _source(doc))
        # Where the reader already refused a value (a tag, a NUL, 0x50), the model's complaint about the
        # null left behind would only repeat it.
        refused = {p.path for p in doc.problems if p.path}
        return None, [p for p in problems if not within_any(p.path, refused)]


def check_document(doc: YamlDocument,
                   policy: PlatformPolicy | None = None) -> tuple[ServiceManifest | None, list[Problem]]:
    """Every problem of a parsed manifest, and the manifest when there are none. Pure."""
    policy = policy or PlatformPolicy()
    problems = list(doc.problems)
    if not isinstance(doc.data, dict):
        if not any(p.path == "" for p in problems):
            what = describe(doc.data)
            problems.append(Problem(doc.file, doc.line_of(""), "",
                                    f"a manifest must be a mapping with Task and AppContainer, not {what}", "M006"))
        return None, problems
    manifest, model_problems = _model_problems(doc)
    problems += model_problems
    values = TrustedValues(doc.data, [p.path for p in problems])
    problems += _findings_to_problems(cross_checks(values) + rollout_checks(values) + policy_checks(values, policy),
                                       doc)
    problems = _unique(problems)
    return (manifest if not problems else None), problems


def validate_document(doc: YamlDocument, policy: PlatformPolicy | None = None) -> LoadedManifest:
    """Check parsed YAML against the manifest model, the rules between values and the platform policy."""
    manifest, problems = check_document(doc, policy)
    if problems or manifest is None:
        raise ValidationError(problems, hint=HINT)
    return LoadedManifest(doc.file, manifest, doc)


def load_manifest_text(text: str | bytes, file: str = "manifest.yaml",
                       policy: PlatformPolicy | None = None) -> LoadedManifest:
    return validate_document(parse_yaml_text(text, file), policy)


def load_manifest(path: str | os.PathLike[str], policy: PlatformPolicy | None = None) -> LoadedManifest:
    """Read and validate ``manifest.yaml``; raise :class:`ValidationError` with every problem."""
    return validate_document(parse_yaml_file(path), policy)


def enforce_policy(loaded: LoadedManifest | ServiceManifest, policy: PlatformPolicy) -> None:
    """Check an already valid manifest against a platform's policy (it may be stricter than the one the
    manifest was loaded with); raise :class:`ValidationError` naming each broken policy setting."""
    if isinstance(loaded, LoadedManifest):
        doc = loaded.document
        data: Any = doc.data
    else:
        data = loaded.model_dump(by_alias=True)
        doc = YamlDocument("manifest", data)
    findings = policy_checks(TrustedValues(data, ()), policy)
    if findings:
        raise ValidationError(_findings_to_problems(findings, doc),
                              hint="the platform's policy is set in platform.yaml")


def check_family(loaded: LoadedManifest | ServiceManifest, service: str) -> None:
    """Refuse a manifest whose ``Task.Family`` is not the service it is deployed as.

    Every name of a version (task family, ECS service, virtual node, stack) comes from the service, except
    the task definition family, which comes from the manifest: a manifest copied from another service's repo
    would register that service's family under this one's name, and on AWS the two would overwrite each
    other's task definitions.
    """
    manifest = loaded.manifest if isinstance(loaded, LoadedManifest) else loaded
    family = manifest.task.family
    if family == service:
        return
    file, line = (loaded.file, loaded.document.line_of("Task.Family")) if isinstance(loaded, LoadedManifest) \
        else ("manifest", None)
    raise ValidationError([Problem(file, line, "Task.Family",
                                   f"{family!r} is not the name of the service this manifest deploys "
                                   f"({service!r}); write Family: \"{service}\"", "M019")],
                          hint=f"each service's task family is its own name: {family!r} belongs to another service")


def manifest_schema() -> dict[str, Any]:
    schema = ServiceManifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "meshpipe service manifest"
    return schema
