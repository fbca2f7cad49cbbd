"""A YAML reader for untrusted input that keeps line numbers.

It accepts only plain data (mappings, sequences, scalars), one document, UTF-8, bounded in bytes, in
nodes, in nesting and in key length, with no duplicate keys, no NUL characters and no object-building
tags. Instead of PyYAML's constructor it walks the composed node graph itself, so an alias bomb is stopped
by a node budget instead of exhausting memory, and every value's line is known for error messages.

Integers must be written in plain decimal: YAML 1.1 reads ``0x50`` as 80, ``010`` as 8 and ``1:20`` as 80,
which is never what someone writing a port or a CPU size means.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from meshpipe.errors import Problem, ValidationError
from meshpipe.text import clip

MAX_BYTES = 256 * 1024
MAX_NODES = 20_000
MAX_DEPTH = 32
MAX_KEY_CHARS = 128
# Every value's path is remembered for its line; long paths cost budget too, so that deep nesting under
# long keys, multiplied by aliases, still stays within a few megabytes.
PATH_CHARS_PER_NODE = 256

try:  # the C parser is much faster; fall back when libyaml is absent
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"

# Plain scalar tags, each with the stateless constructor that turns its text into a value.
_SCALAR_BUILDERS: dict[str, Callable[[SafeConstructor, yaml.ScalarNode], Any]] = {
    STR_TAG: SafeConstructor.construct_yaml_str,
    "tag:yaml.org,2002:int": SafeConstructor.construct_yaml_int,
    "tag:yaml.org,2002:float": SafeConstructor.construct_yaml_float,
    "tag:yaml.org,2002:bool": SafeConstructor.construct_yaml_bool,
    "tag:yaml.org,2002:null": SafeConstructor.construct_yaml_null,
    "tag:yaml.org,2002:timestamp": SafeConstructor.construct_yaml_timestamp,
}
# Those constructors read nothing from the constructor they are bound to, so one shared instance serves.
_CONSTRUCTOR = SafeConstructor()
_DECIMAL_INT_RE = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)\Z")
# Numbers of YAML 1.2's core schema. A plain scalar that YAML 1.1 (PyYAML) keeps as text but YAML 1.2 reads
# as a number (`1e3`, `0o17`) means different things to different tools, so it must be quoted or rewritten.
_YAML12_NUMBER_RE = re.compile(
    r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z")


@dataclass
class YamlDocument:
    """Plain data read from a YAML file.

    ``lines`` holds the line (1-based) of every value by its path (``Task.Cpu``, ``Command[2]``);
    ``raw`` holds the source text of every scalar that YAML did not read as a string, so that messages can
    say ``'on' is read as a boolean``; ``problems`` are those found while reading that did not stop it.
    """

    file: str
    data: Any
    lines: dict[str, int] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def line_of(self, path: str) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        return nearest_line(self.lines, path)

    def raw_of(self, path: str) -> str | None:
        return self.raw.get(path)


def parent_path(path: str) -> str:
    """``Task.Cpu`` -> ``Task``; ``Command[2]`` -> ``Command``; ``Task`` -> ``""``."""
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def nearest_line(lines: Any, path: str) -> int | None:
    """Line of ``path`` in ``lines``, or of its nearest ancestor that has one."""
    while True:
        line = lines.get(path)
        if line is not None:
            return int(line)
        if not path:
            return None
        path = parent_path(path)


def join_path(parent: str, key: object) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def within_any(path: str, ancestors: set[str]) -> bool:
    """Whether ``path`` is one of ``ancestors`` or lies inside one (cost: the depth of ``path``)."""
    while True:
        if path in ancestors:
            return True
        if not path:
            return False
        path = parent_path(path)


class _TooBig(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


class _TooDeep(_TooBig):
    pass


class _Walker:
    """Turns a composed node graph into plain data, checking each node on the way."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[str, int] = {}
        self.raw: dict[str, str] = {}
        self.problems: list[Problem] = []
        self.budget = MAX_NODES

    def problem(self, node: yaml.Node, path: str, message: str, code: str = "Y009") -> None:
        self.problems.append(Problem(self.file, node.start_mark.line + 1, path, message, code))

    def walk(self, node: yaml.Node, path: str, depth: int) -> Any:
        self.budget -= 1 + len(path) // PATH_CHARS_PER_NODE
        if self.budget < 0:
            raise _TooBig(node)
        if depth > MAX_DEPTH:
            raise _TooDeep(node)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
            return self.walk_mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
            return [self.walk(item, join_path(path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode) and node.tag in _SCALAR_BUILDERS:
            return self.scalar(node, path)
        self.problem(node, path, f"YAML tag {shorten_tag(node.tag)} is not allowed: only plain strings, numbers, "
                                 "booleans, lists and mappings", "Y007")
        return None

    def walk_mapping(self, node: yaml.MappingNode, path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self.problem(key_node, path, "YAML merge keys ('<<') are not allowed: write the keys out", "Y007")
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SCALAR_BUILDERS:
                self.problem(key_node, path, "mapping keys must be plain strings", "Y007")
                continue
            # A key is a name, whatever YAML would read it as: `80: x` has the key "80".
            key = str(key_node.value)
            if len(key) > MAX_KEY_CHARS:
                self.problem(key_node, path, f"a key of {len(key)} characters: keys are names of at most "
                                             f"{MAX_KEY_CHARS} characters")
                continue
            if "\x00" in key:
                self.problem(key_node, path, "a key contains a NUL character")
                continue
            child = join_path(path, key)
            if key in out:
                first = self.lines.get(child)
                self.problem(key_node, child, f"duplicate key (first defined on line {first})", "Y008")
                continue
            self.lines[child] = key_node.start_mark.line + 1
            out[key] = self.walk(value_node, child, depth + 1)
        return out

    def scalar(self, node: yaml.ScalarNode, path: str) -> Any:
        if node.tag != STR_TAG:
            self.raw[path] = node.value
        try:
            value = _SCALAR_BUILDERS[node.tag](_CONSTRUCTOR, node)
        except (ValueError, OverflowError, yaml.YAMLError) as exc:
            self.problem(node, path, f"unreadable value {_short(node.value)}: {_short(str(exc), 80)}")
            return None
        if isinstance(value, str) and not node.style and node.tag == STR_TAG and _YAML12_NUMBER_RE.match(value):
            self.problem(node, path, f"{_short(value)} is text to YAML 1.1 but a number to YAML 1.2: quote it "
                                     f"(\"{_short(value)}\") if it is text, or write {_as_number(value)} if it is "
                                     "a number")
            return None
        if isinstance(value, str) and "\x00" in value:
            self.problem(node, path, "contains a NUL character (\\0), which no file name, command or "
                                     "environment variable can carry")
            return None
        if isinstance(value, int) and not isinstance(value, bool) and not _DECIMAL_INT_RE.match(node.value):
            self.problem(node, path, f"{node.value} is read by YAML as the number {_short(value)}: write it in plain "
                                     f"decimal ({_short(value)}), or in quotes if it is text")
            return None
        return value


def _as_number(text: str) -> str:
    """How a YAML 1.2 number is written plainly: ``1e3`` -> ``1000``, ``0o17`` -> ``15``."""
    try:
        number = float(int(text[2:], 8)) if text.startswith("0o") else float(text)
    except (ValueError, OverflowError):
        return "it in plain decimal"
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else _short(repr(number))


def _short(value: object, limit: int = 40) -> str:
    return clip(value if isinstance(value, str) else repr(value), limit)


def shorten_tag(tag: str) -> str:
    """A tag as it is usually written: ``!!python/object:os.system``, not its expanded URI."""
    return repr(_short(tag.replace("tag:yaml.org,2002:", "!!", 1), 60))


def _line_at(text: str, position: int) -> int:
    return text.count("\n", 0, max(position, 0)) + 1


def _decode(raw: str | bytes, file: str) -> str:
    if isinstance(raw, bytes):
        if len(raw) > MAX_BYTES:
            raise ValidationError([Problem(file, None, "", f"file is {len(raw)} bytes; the limit is {MAX_BYTES} "
                                                           f"({MAX_BYTES // 1024} KiB)", "Y002")])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            message = f"not valid UTF-8 (byte {exc.start} is {raw[exc.start]:#04x}): save the file as UTF-8"
            raise ValidationError([Problem(file, line, "", message, "Y003")]) from None
    else:
        try:
            size = len(raw.encode("utf-8"))
        except UnicodeEncodeError as exc:
            line = _line_at(raw, exc.start)
            raise ValidationError([Problem(file, line, "", "text with characters that UTF-8 cannot encode", "Y003")]) from None
        if size > MAX_BYTES:
            raise ValidationError([Problem(file, None, "", f"file is {size} bytes; the limit is {MAX_BYTES} "
                                                           f"({MAX_BYTES // 1024} KiB)", "Y002")])
        text = raw
    return text.removeprefix("\ufeff")


def _compose(text: str, file: str) -> yaml.Node | None:
    try:
        loader = _Loader(text)
        try:
            node: yaml.Node | None = loader.get_single_node()
            return node
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "invalid YAML"
        if "expected a single document" in str(exc):
            what = "only one YAML document is allowed ('---' starts a second one)"
        elif "nesting depth" in what:
            what = f"{what} (nesting is limited to {MAX_DEPTH} levels)"
        column = f" (column {mark.column + 1})" if mark is not None and line is not None else ""
        raise ValidationError([Problem(file, line, "", f"YAML syntax error: {_short(what, 200)}{column}", "Y004")]) from None
    except yaml.reader.ReaderError as exc:
        raise ValidationError([Problem(file, _line_at(text, exc.position), "",
                                       f"YAML error: character {exc.character!r} is not allowed in YAML "
                                       f"(position {exc.position})", "Y004")]) from None
    except yaml.YAMLError as exc:
        raise ValidationError([Problem(file, None, "", f"YAML error: {_short(str(exc), 200)}", "Y004")]) from None
    except RecursionError:
        raise ValidationError([Problem(file, None, "", f"nesting deeper than {MAX_DEPTH} levels", "Y005")]) from None


def parse_yaml_text(text: str | bytes, file: str) -> YamlDocument:
    """Parse ``text`` into plain data, keeping problems that let reading go on in ``problems``.

    Raises :class:`ValidationError` at once for what stops reading: size, encoding, syntax, too many
    values, too deep nesting. Problems with single values (a tag, a duplicate key, a NUL) are kept so that
    the caller can report them together with its own.
    """
    decoded = _decode(text, file)
    node = _compose(decoded, file)
    if node is None:
        raise ValidationError([Problem(file, 1, "", "the file is empty: expected a mapping", "Y006")])
    walker = _Walker(file)
    try:
        data = walker.walk(node, "", 0)
    except _TooDeep as exc:
        raise ValidationError([Problem(file, exc.node.start_mark.line + 1, "",
                                       f"nesting deeper than {MAX_DEPTH} levels", "Y005")]) from None
    except _TooBig as exc:
        message = f"more than {MAX_NODES} values (aliases are expanded): refusing to read"
        raise ValidationError([Problem(file, exc.node.start_mark.line + 1, "", message, "Y005")]) from None
    return YamlDocument(file, data, walker.lines, walker.raw, walker.problems)


def read_yaml_text(text: str | bytes, file: str) -> YamlDocument:
    """Parse ``text``; raise :class:`ValidationError` listing every problem with its line."""
    doc = parse_yaml_text(text, file)
    if doc.problems:
        raise ValidationError(doc.problems)
    return doc


def read_file_bytes(path: str | os.PathLike[str]) -> tuple[str, bytes]:
    """Read at most one byte more than the limit, so a huge file is refused without reading it all.

    The file is opened without blocking, so a named pipe nobody writes to reads as empty instead of
    hanging; a pipe with a writer (``<(...)``) is still read to its end.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
        try:
            os.set_blocking(fd, True)
            chunks: list[bytes] = []
            left = MAX_BYTES + 1
            while left > 0:
                chunk = os.read(fd, min(left, 65536))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            raw = b"".join(chunks)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise ValidationError([Problem(name, None, "", "no such file", "Y001")]) from None
    except IsADirectoryError:
        raise ValidationError([Problem(name, None, "", "is a directory, not a file", "Y001")]) from None
    except OSError as exc:
        raise ValidationError([Problem(name, None, "", f"cannot read: {exc.strerror or exc}", "Y001")]) from None
    if len(raw) > MAX_BYTES:
        raise ValidationError([Problem(name, None, "", f"file is larger than the limit of {MAX_BYTES} bytes "
                                                       f"({MAX_BYTES // 1024} KiB)", "Y002")])
    return name, raw


def parse_yaml_file(path: str | os.PathLike[str]) -> YamlDocument:
    name, raw = read_file_bytes(path)
    return parse_yaml_text(raw, name)


def read_yaml_file(path: str | os.PathLike[str]) -> YamlDocument:
    name, raw = read_file_bytes(path)
    return read_yaml_text(raw, name)
