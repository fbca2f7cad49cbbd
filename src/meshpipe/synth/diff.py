"""What a new template changes against an earlier one, resource by resource: the "what will this push do"
view of ``meshpipe synth --diff``.

Resources are matched by logical id. A resource present only in the new template is added, one only in
the old is removed (CloudFormation deletes it), and one in both whose type or properties differ is
modified, with each changed value named by its path. Parameters and Outputs are compared the same way.
The result is data (:class:`Change`), and :func:`diff_lines` writes it for people.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SECTIONS = ("Parameters", "Resources", "Outputs")
VALUE_WIDTH = 80  # a changed value longer than this is shown cut, with its length


@dataclass(frozen=True)
class ValueChange:
    path: str  # e.g. Properties.ContainerDefinitions[0].Image
    old: Any  # None with ``added``
    new: Any  # None with ``removed``
    added: bool = False
    removed: bool = False


@dataclass(frozen=True)
class Change:
    section: str  # Parameters | Resources | Outputs
    name: str  # the logical id
    kind: str  # added | removed | modified
    type: str | None = None  # a resource's type
    values: tuple[ValueChange, ...] = field(default_factory=tuple)


def _walk(path: str, old: Any, new: Any, found: list[ValueChange]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                found.append(ValueChange(sub, None, new[key], added=True))
            elif key not in new:
                found.append(ValueChange(sub, old[key], None, removed=True))
            else:
                _walk(sub, old[key], new[key], found)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            _walk(f"{path}[{index}]", a, b, found)
    elif old != new:
        found.append(ValueChange(path, old, new))


def diff_templates(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """The changes from ``old`` to ``new``, section by section, logical ids sorted."""
    changes: list[Change] = []
    for section in SECTIONS:
        before, after = old.get(section) or {}, new.get(section) or {}
        for name in sorted(set(before) | set(after)):
            a, b = before.get(name), after.get(name)
            kind_of = (b or a or {}).get("Type") if section == "Resources" else None
            if a is None:
                changes.append(Change(section, name, "added", kind_of))
            elif b is None:
                changes.append(Change(section, name, "removed", kind_of))
            elif a != b:
                found: list[ValueChange] = []
                _walk("", a, b, found)
                changes.append(Change(section, name, "modified", kind_of, tuple(found)))
    return changes


def _shown(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= VALUE_WIDTH else f"{text[:VALUE_WIDTH - 1]}… ({len(text)} characters)"


_MARK = {"added": "+", "removed": "-", "modified": "~"}


def diff_lines(changes: list[Change], old_label: str, new_label: str) -> list[str]:
    """The changes for people: one line per resource (+ added, - removed, ~ modified), its changed values
    indented below it, and a count at the end."""
    lines = [f"--- {old_label}", f"+++ {new_label}"]
    for change in changes:
        kind = f" ({change.type})" if change.type else ""
        lines.append(f"{_MARK[change.kind]} {change.section}.{change.name}{kind}")
        for value in change.values:
            if value.added:
                lines.append(f"    + {value.path}: {_shown(value.new)}")
            elif value.removed:
                lines.append(f"    - {value.path}: {_shown(value.old)}")
            else:
                lines.append(f"    ~ {value.path}: {_shown(value.old)} -> {_shown(value.new)}")
    counts = {kind: sum(1 for c in changes if c.kind == kind) for kind in _MARK}
    lines.append(f"{counts['added']} added, {counts['removed']} removed, {counts['modified']} modified"
                 if changes else "no changes")
    return lines
