"""A YAML reader for untrusted input that keeps line numbers.

It accepts only plain data (mappings, sequences, scalars), one document, UTF-8, bounded in bytes and in
nodes, with no duplicate keys and no object-building tags. Instead of PyYAML's constructor it walks the
composed node graph itself, so an alias bomb is stopped by a node budget instead of exhausting memory,
and every value's line is known for error messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from meshpipe.errors import Problem, ValidationError

MAX_BYTES = 256 * 1024
MAX_NODES = 20_000
MAX_DEPTH = 32

try:  # the C parser is much faster; fall back when libyaml is absent
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:timestamp",
}


@dataclass
class YamlDocument:
    """Plain data read from a YAML file, with the line (1-based) of every value by its path."""

    file: str
    data: Any
    lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, path: str) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""


def join_path(parent: str, key: object) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


class _Walker:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[str, int] = {}
        self.problems: list[Problem] = []
        self.budget = MAX_NODES

    def problem(self, node: yaml.Node, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, node.start_mark.line + 1, path, message))

    def walk(self, node: yaml.Node, path: str, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _TooBig(node)
        if depth > MAX_DEPTH:
            raise _TooDeep(node)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if node.tag not in _PLAIN_TAGS:
            self.problem(node, path, f"YAML tag {node.tag!r} is not allowed: only plain strings, numbers, "
                                     "booleans, lists and mappings")
            return None
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.problem(key_node, path, "YAML merge keys ('<<') are not allowed")
                    continue
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _PLAIN_TAGS:
                    self.problem(key_node, path, "mapping keys must be plain strings")
                    continue
                key = _scalar(key_node)
                if not isinstance(key, str):
                    key = str(key_node.value)
                child = join_path(path, key)
                if key in out:
                    first = self.lines.get(child)
                    self.problem(key_node, child, f"duplicate key (first defined on line {first})")
                    continue
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self.walk(value_node, child, depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(item, join_path(path, i), depth + 1) for i, item in enumerate(node.value)]
        try:
            return _scalar(node)
        except (ValueError, yaml.YAMLError) as exc:
            self.problem(node, path, f"unreadable value {node.value!r}: {exc}")
            return None


class _TooBig(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


class _TooDeep(_TooBig):
    pass


_SCALAR_LOADER = yaml.SafeLoader("")


def _scalar(node: yaml.Node) -> Any:
    """Resolve a plain scalar with YAML 1.1 core rules (the same types PyYAML's safe_load gives)."""
    return _SCALAR_LOADER.construct_object(node, deep=False)


def read_yaml_text(text: str | bytes, file: str) -> YamlDocument:
    """Parse ``text``; raise :class:`ValidationError` listing every problem with its line."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise ValidationError([Problem(file, None, "", f"file is {len(text)} bytes; the limit is {MAX_BYTES}")])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = text[: exc.start].count(b"\n") + 1
            raise ValidationError([Problem(file, line, "", f"not valid UTF-8 (byte {exc.start})")]) from None
    elif len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise ValidationError([Problem(file, None, "", f"file is larger than the limit of {MAX_BYTES} bytes")])
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "invalid YAML"
        if "expected a single document" in str(exc):
            what = "only one YAML document is allowed ('---' starts a second one)"
        raise ValidationError([Problem(file, line, "", f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as exc:
        raise ValidationError([Problem(file, None, "", f"YAML error: {exc}")]) from None
    except RecursionError:
        raise ValidationError([Problem(file, None, "", f"nesting deeper than {MAX_DEPTH} levels")]) from None
    if node is None:
        raise ValidationError([Problem(file, 1, "", "the file is empty: expected a mapping")])
    walker = _Walker(file)
    try:
        data = walker.walk(node, "", 0)
    except _TooDeep as exc:
        raise ValidationError([Problem(file, exc.node.start_mark.line + 1, "",
                                       f"nesting deeper than {MAX_DEPTH} levels")]) from None
    except _TooBig as exc:
        raise ValidationError([Problem(file, exc.node.start_mark.line + 1, "",
                                       f"more than {MAX_NODES} values (aliases are expanded): refusing to read")]) from None
    if walker.problems:
        raise ValidationError(walker.problems)
    return YamlDocument(file, data, walker.lines)


def read_yaml_file(path: str | os.PathLike[str]) -> YamlDocument:
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ValidationError([Problem(name, None, "", "no such file")]) from None
    except IsADirectoryError:
        raise ValidationError([Problem(name, None, "", "is a directory, not a file")]) from None
    except OSError as exc:
        raise ValidationError([Problem(name, None, "", f"cannot read: {exc.strerror}")]) from None
    return read_yaml_text(raw, name)
