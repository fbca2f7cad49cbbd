"""Load and validate a manifest: every problem of a file, each with its line, at once."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from meshpipe.errors import Problem, ValidationError
from meshpipe.manifest import rules
from meshpipe.manifest.model import AppContainer, ServiceManifest, Task, VirtualNode
from meshpipe.manifest.yamlsafe import YamlDocument, join_path, read_yaml_file, read_yaml_text
from meshpipe.platform import PlatformPolicy

# Models by manifest path, to name the allowed keys of each section.
_SECTIONS: dict[str, type[BaseModel]] = {"": ServiceManifest, "Task": Task, "AppContainer": AppContainer,
                                         "VirtualNode": VirtualNode}

_TYPE_NAMES = {
    "int_type": "an integer", "string_type": "a string", "dict_type": "a mapping", "model_type": "a mapping",
    "tuple_type": "a list", "list_type": "a list", "model_attributes_type": "a mapping",
}


@dataclass(frozen=True)
class LoadedManifest:
    """A valid manifest and where it came from."""

    file: str
    manifest: ServiceManifest
    document: YamlDocument


def _aliases(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _path_of(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path = join_path(path, part)
    return path


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})" if len(value) < 40 else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _problem_of(err: Any, doc: YamlDocument) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    path = _path_of(loc)
    msg = err["msg"]
    if kind == "missing":
        section = _path_of(loc[:-1])
        msg = "is required"
        if section in _SECTIONS:
            msg += f" (keys of {section or 'the manifest'}: {', '.join(_aliases(_SECTIONS[section]))})"
        return Problem(doc.file, doc.line_of(section), path, msg)
    if kind == "extra_forbidden":
        section = _path_of(loc[:-1])
        allowed = _aliases(_SECTIONS[section]) if section in _SECTIONS else []
        key = str(loc[-1])
        msg = "is not a known key"
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6) or [
            a for a in allowed if a.lower() == key.lower()]
        if close:
            msg += f"; did you mean {close[0]!r}?"
        if allowed:
            msg += f"; allowed: {', '.join(allowed)}"
        return Problem(doc.file, doc.line_of(path), path, msg)
    if kind in _TYPE_NAMES:
        msg = f"must be {_TYPE_NAMES[kind]}, not {_describe(err.get('input'))}"
        if kind == "string_type" and isinstance(err.get("input"), int | float | bool):
            msg += " (quote it)"
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    return Problem(doc.file, doc.line_of(path), path, msg)


def _policy_problems(m: ServiceManifest, doc: YamlDocument, policy: PlatformPolicy) -> list[Problem]:
    problems: list[Problem] = []

    def add(path: str, message: str) -> None:
        problems.append(Problem(doc.file, doc.line_of(path), path, message))

    cpu, memory = m.task.cpu, m.task.memory
    if memory not in rules.FARGATE_SIZES[cpu]:
        add("Task.Memory", f"{memory} MiB does not fit Cpu {cpu} on Fargate; allowed: {rules.describe_memory_choices(cpu)}")
    if cpu > policy.max_cpu:
        add("Task.Cpu", f"{cpu} is above the platform's limit of {policy.max_cpu} CPU units")
    if memory > policy.max_memory:
        add("Task.Memory", f"{memory} MiB is above the platform's limit of {policy.max_memory} MiB")
    if m.app_container.port in policy.reserved_ports:
        owned = ", ".join(str(p) for p in sorted(policy.reserved_ports))
        add("AppContainer.Port", f"{m.app_container.port} belongs to the sidecar (it owns {owned}); choose another port")
    parsed = rules.parse_image(m.app_container.image)
    if parsed and not rules.registry_allowed(parsed[0], policy.allowed_registries):
        add("AppContainer.Image", f"registry {parsed[0]!r} is not allowed by the platform; allowed: "
                                  f"{', '.join(policy.allowed_registries)}")
    return problems


def validate_document(doc: YamlDocument, policy: PlatformPolicy | None = None) -> LoadedManifest:
    """Check parsed YAML against the manifest model and the platform policy."""
    policy = policy or PlatformPolicy()
    if not isinstance(doc.data, dict):
        raise ValidationError([Problem(doc.file, doc.line_of(""), "",
                                       f"a manifest must be a mapping with Task and AppContainer, not {_describe(doc.data)}")])
    try:
        manifest = ServiceManifest.model_validate(doc.data)
    except PydanticValidationError as exc:
        problems = [_problem_of(e, doc) for e in exc.errors()]
        raise ValidationError(problems) from None
    problems = _policy_problems(manifest, doc, policy)
    if problems:
        raise ValidationError(problems)
    return LoadedManifest(doc.file, manifest, doc)


def load_manifest_text(text: str | bytes, file: str = "manifest.yaml", policy: PlatformPolicy | None = None) -> LoadedManifest:
    return validate_document(read_yaml_text(text, file), policy)


def load_manifest(path: str | os.PathLike[str], policy: PlatformPolicy | None = None) -> LoadedManifest:
    """Read and validate ``manifest.yaml``; raise :class:`ValidationError` with every problem."""
    return validate_document(read_yaml_file(path), policy)


def manifest_schema() -> dict[str, Any]:
    schema = ServiceManifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "meshpipe service manifest"
    return schema
