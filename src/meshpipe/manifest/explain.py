"""Turn pydantic's errors into problems a person can act on: where, what is wrong, what is allowed.

Shared by manifests and ``platform.yaml``: both are read by the same YAML reader, so every error can name
its line, quote what YAML actually read (``on`` is a boolean, ``256.0`` a number), and suggest the key a
misspelt one was meant to be, in its own section or in another one.
"""

from __future__ import annotations

import datetime
import difflib
import json
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from meshpipe.codes import field_code
from meshpipe.errors import Problem
from meshpipe.manifest.rules import shorten
from meshpipe.manifest.yamlsafe import join_path, parent_path


def _no_line(path: str) -> int | None:
    return None


def _no_raw(path: str) -> str | None:
    return None


@dataclass(frozen=True)
class Source:
    """Where the values being checked came from: a file with lines, or a set of environment variables."""

    file: str
    line_of: Callable[[str], int | None] = _no_line
    raw_of: Callable[[str], str | None] = _no_raw


def _normal(key: str) -> str:
    """Spelling-insensitive form of a key: ``HealthcheckPath``, ``health_check_path`` and ``VPC-ID``
    compare by letters and digits alone."""
    return re.sub(r"[^a-z0-9]", "", key.lower())


@dataclass(frozen=True)
class KeyMap:
    """The keys each section of a model allows (by section path), and the defaults of optional keys."""

    sections: dict[str, tuple[str, ...]]
    defaults: dict[str, Any] = field(default_factory=dict)
    # Keys from elsewhere that a user may write by habit, mapped to the key meant (e.g. env var names).
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, model: type[BaseModel], by_alias: bool, aliases: Mapping[str, str] | None = None) -> KeyMap:
        sections: dict[str, tuple[str, ...]] = {}
        defaults: dict[str, Any] = {}

        def visit(section: str, m: type[BaseModel]) -> None:
            keys = []
            for name, info in m.model_fields.items():
                key = (info.alias or name) if by_alias else name
                keys.append(key)
                path = join_path(section, key)
                if not info.is_required():
                    defaults[path] = info.get_default(call_default_factory=True)
                nested, listed = _nested_model(info.annotation)
                if nested is not None:
                    # Items of a list of mappings share one section, named with "[]".
                    visit(f"{path}[]" if listed else path, nested)
            sections[section] = tuple(keys)

        visit("", model)
        return cls(sections, defaults, {_normal(k): v for k, v in (aliases or {}).items()})

    def suggest(self, key: str, section: str) -> str | None:
        """The full path of the key ``key`` (found in ``section``) was probably meant to be, if any."""
        wanted = _normal(key)
        if wanted in self.aliases:
            return self.aliases[wanted]
        match = self._closest(wanted, self.sections.get(section_key(section), ()))
        if match:
            return join_path(section, match)
        # A key in the wrong section: `Port` under Task, `family` at the top.
        leaves = {join_path(s, k): k for s, keys in self.sections.items() if s != section_key(section) for k in keys}
        for path, leaf in leaves.items():
            if _normal(leaf) == wanted:
                return path
        close = difflib.get_close_matches(wanted, [_normal(leaf) for leaf in leaves.values()], n=1, cutoff=0.8)
        if close:
            return next(p for p, leaf in leaves.items() if _normal(leaf) == close[0])
        return None

    @staticmethod
    def _closest(wanted: str, keys: Sequence[str]) -> str | None:
        normal = {_normal(k): k for k in keys}
        if wanted in normal:
            return normal[wanted]
        close = difflib.get_close_matches(wanted, list(normal), n=1, cutoff=0.7)
        if close:
            return normal[close[0]]
        # An abbreviation: `Env` for Environment, `Health` for HealthCheckPath.
        starts = [key for norm, key in normal.items() if len(wanted) >= 3 and norm.startswith(wanted)]
        return starts[0] if len(starts) == 1 else None


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (also inside ``X | None`` and ``list[X]``), and whether it is a list of them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (list, tuple) and args:
        inner, _ = _nested_model(args[0])
        return inner, inner is not None
    if len(args) == 1 and origin is not None and origin not in (dict,):
        return _nested_model(args[0])
    return None, False


def section_key(section: str) -> str:
    """``Rollout.Webhooks[2]`` -> ``Rollout.Webhooks[]``: list items share their section's keys."""
    return _INDEX_RE.sub("[]", section)


def describe(value: Any, raw: str | None = None) -> str:
    """What a value is, in YAML's terms, with the text it was written as when YAML changed it."""
    written = f" {raw!r}" if raw not in (None, "") else ""
    if value is None:
        return "nothing (null)" if not raw or raw in ("~", "null", "Null", "NULL") else f"nothing (null{written})"
    if isinstance(value, bool):
        spelled = f", written{written}" if written and raw not in ("true", "false") else ""
        return f"a boolean ({str(value).lower()}{spelled})"
    if isinstance(value, int | float):
        return f"a number ({shorten(value, 30)})"
    if isinstance(value, datetime.date):
        return f"a date ({value.isoformat()})"
    if isinstance(value, str):
        return f"a string ({shorten(value, 40)})" if value else "an empty string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_GENERIC_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number",
    "string_type": "a string", "bool_type": "a boolean", "bool_parsing": "a boolean",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "list_type": "a list", "tuple_type": "a list",
}
_INDEX_RE = re.compile(r"\[\d+\]")


def _list_form(text: str) -> str:
    words = [w[:40] for w in text.split()[:8]] or [text[:40]]
    shown = json.dumps(words, ensure_ascii=False)
    return shown if len(text.split()) <= 8 else shown[:-1] + ", ...]"


def _integral(text: str) -> int | None:
    """``"1e3"`` -> 1000: a number YAML 1.1 kept as text because it lacks a dot."""
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() and abs(number) < 1e15 else None


class Explainer:
    """Builds :class:`Problem` lists from pydantic errors for one kind of file."""

    def __init__(self, keys: KeyMap, expected: Mapping[str, str] | None = None,
                 label: Callable[[str], str] | None = None, *, code_prefix: str = "M",
                 rule_codes: Mapping[str, str] | None = None, rule_fallback: str | None = None) -> None:
        self.keys = keys
        # Finding codes (meshpipe.codes): generic kinds are <prefix>001-005; a rule's own failure takes its
        # field's code from rule_codes, else rule_fallback.
        self.code_prefix = code_prefix
        self.rule_codes = dict(rule_codes or {})
        self.rule_fallback = rule_fallback or f"{code_prefix}005"
        # What a field takes, by path with list indices written as [] (e.g. "AppContainer.Command[]").
        self.expected = dict(expected or {})
        self.label = label or (lambda path: path)

    def problems(self, errors: Sequence[Any], source: Source) -> list[Problem]:
        out: list[Problem] = []
        suggested: set[str] = set()
        missing = []
        for err in errors:
            loc = [p for p in err["loc"]]
            if err["type"] == "missing":
                missing.append(err)
                continue
            problem, suggestion = self._problem(err, loc, source)
            if suggestion:
                suggested.add(suggestion)
            out.append(problem)
        for err in missing:
            path = _path(err["loc"])
            # `family: x` in Task already says "did you mean 'Family'"; "Family is required" adds nothing.
            if path in suggested:
                continue
            section = parent_path(path)
            keys = self.keys.sections.get(section_key(section))
            msg = "is required"
            if keys:
                msg += f" (keys of {section or 'the file'}: {', '.join(keys)})"
            out.append(Problem(source.file, source.line_of(section), self.label(path), msg, self._code("002")))
        return out

    def _code(self, number: str) -> str:
        return f"{self.code_prefix}{number}"

    def _problem(self, err: Any, loc: list[Any], source: Source) -> tuple[Problem, str | None]:
        kind = err["type"]
        is_key = bool(loc) and loc[-1] == "[key]"
        if is_key:
            loc = loc[:-1]
        path = _path(loc)
        value = err.get("input")
        raw = source.raw_of(path)
        suggestion = None

        def at(message: str, code: str) -> Problem:
            return Problem(source.file, source.line_of(path), self.label(path), message, code)

        if kind == "extra_forbidden":
            section = parent_path(path)
            allowed = self.keys.sections.get(section_key(section), ())
            msg = "is not a known key"
            suggestion = self.keys.suggest(str(loc[-1]), section)
            if suggestion:
                shown = suggestion.removeprefix(f"{section}.") if section else suggestion
                msg += f"; did you mean {shown!r}?"
            else:
                msg += "."
            if allowed:
                msg += f" Allowed in {section or 'the file'}: {', '.join(allowed)}"
            return at(msg, self._code("001")), suggestion
        if kind in _GENERIC_EXPECTED:
            return at(self._type_message(kind, path, value, raw), self._code("004" if value is None else "003")), None
        msg = str(err["msg"])
        ctx = err.get("ctx") or {}
        code = self._code("005")
        if kind == "value_error":
            msg = msg.removeprefix("Value error, ")
            code = field_code(path, self.rule_codes, self.rule_fallback)
        elif kind in ("greater_than_equal", "greater_than"):
            msg = f"{shorten(value)} is too small: the minimum is {ctx.get('ge', ctx.get('gt'))}"
        elif kind in ("less_than_equal", "less_than"):
            msg = f"{shorten(value)} is too large: the maximum is {ctx.get('le', ctx.get('lt'))}"
        elif kind == "literal_error":
            msg = f"{describe(value, raw)} is not allowed; allowed: {ctx.get('expected')}"
        elif kind in ("too_short", "string_too_short"):
            msg = "must not be empty" if not value else msg
        elif kind in ("too_long", "string_too_long"):
            limit = ctx.get("max_length")
            msg = f"is too long: at most {limit} {'items' if kind == 'too_long' else 'characters'}"
        elif kind == "string_pattern_mismatch":
            msg = f"{shorten(value)} does not have the expected form ({ctx.get('pattern')})"
        if is_key:
            msg = f"key {msg}" if not msg.startswith("'") else msg
        return at(msg, code), None

    def _type_message(self, kind: str, path: str, value: Any, raw: str | None) -> str:
        expected = self.expected.get(_INDEX_RE.sub("[]", path), _GENERIC_EXPECTED[kind])
        if value is None:
            default = self.keys.defaults.get(path, _REQUIRED)
            if default is _REQUIRED:
                return f"has no value (null): give {expected}"
            if default is None or isinstance(default, BaseModel):
                return f"has no value (null): give {expected}, or leave the key out"
            shown = "empty" if default in ({}, [], ()) else shorten(default)
            return f"has no value (null): give {expected}, or leave the key out for the default ({shown})"
        msg = f"must be {expected}, not {describe(value, raw)}"
        wants_text = expected.startswith("a string") or "name" in expected or "path" in expected
        if kind == "string_type" and wants_text and raw is not None and not isinstance(value, list | dict):
            msg += f"; quote it: {json.dumps(raw)}"
        elif kind in ("int_type", "int_parsing", "int_from_float"):
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                msg += f"; write it without quotes: {value.strip()}"
            elif isinstance(value, str) and _integral(value) is not None:
                msg += f"; write it as a plain integer: {_integral(value)}"
            elif isinstance(value, float) and value.is_integer():
                msg += f"; write {int(value)}"
            elif isinstance(value, bool) and raw not in (None, "true", "false"):
                msg += "; YAML reads it as a boolean"
        elif kind == "list_type" and isinstance(value, str):
            msg += f"; write one item per argument, e.g. {_list_form(value)}"
        return msg


class _Required:
    pass


_REQUIRED = _Required()


def _path(loc: Sequence[Any]) -> str:
    path = ""
    for part in loc:
        if part == "[key]":
            continue
        path = join_path(path, part)
    return path
