"""The safe YAML reader: plain data only, every value's line, bounded in size, nodes, depth and keys."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

import pytest

from meshpipe.errors import ValidationError
from meshpipe.validation import yamlsafe
from meshpipe.validation.yamlsafe import parse_yaml_text, read_yaml_file, read_yaml_text


def problems_of(text: str | bytes) -> list[str]:
    with pytest.raises(ValidationError) as err:
        read_yaml_text(text, "f.yaml")
    return [str(p) for p in err.value.problems]


def test_plain_data_and_the_line_of_every_value() -> None:
    doc = read_yaml_text("# comment\nTask:\n  Family: web\n  Cpu: 256\nList:\n  - a\n  - b: 1\n", "f.yaml")
    assert doc.data == {"Task": {"Family": "web", "Cpu": 256}, "List": ["a", {"b": 1}]}
    assert doc.lines["Task"] == 2
    assert doc.lines["Task.Family"] == 3
    assert doc.lines["Task.Cpu"] == 4
    assert doc.lines["List[0]"] == 6
    assert doc.lines["List[1].b"] == 7


def test_line_of_falls_back_to_the_nearest_ancestor() -> None:
    doc = read_yaml_text("a:\n  b:\n    c: 1\n", "f.yaml")
    assert doc.line_of("a.b.missing") == 2
    assert doc.line_of("a.b.c[3]") == 3
    assert doc.line_of("nothing.here") == 1


def test_raw_text_is_kept_for_values_yaml_did_not_read_as_strings() -> None:
    doc = read_yaml_text("a: on\nb: 'on'\nc: 1.0\nd: ~\n", "f.yaml")
    assert doc.data == {"a": True, "b": "on", "c": 1.0, "d": None}
    assert doc.raw == {"a": "on", "c": "1.0", "d": "~"}


def test_dates_are_read_as_dates() -> None:
    assert read_yaml_text("a: 2021-04-29\n", "f.yaml").data == {"a": datetime.date(2021, 4, 29)}


@pytest.mark.parametrize(("text", "read_as"), [
    ("p: 0x50\n", "80"),
    ("p: 010\n", "8"),
    ("p: 1:20\n", "80"),
    ("p: 1_000\n", "1000"),
    ("p: 0b101\n", "5"),
])
def test_yaml_1_1_integer_forms_are_refused_with_the_number_they_would_become(text: str, read_as: str) -> None:
    [problem] = problems_of(text)
    assert problem.startswith("f.yaml:1: p: ")
    assert f"the number {read_as}" in problem
    assert "plain decimal" in problem


@pytest.mark.parametrize(("text", "plainly"), [("p: 1e3\n", "1000"), ("p: 0o17\n", "15"), ("p: -.5\n", "-0.5")])
def test_text_that_yaml_1_2_reads_as_a_number_is_refused(text: str, plainly: str) -> None:
    [problem] = problems_of(text)
    assert "is text to YAML 1.1 but a number to YAML 1.2: quote it" in problem
    assert f"or write {plainly} if it is a number" in problem
    assert read_yaml_text(text.replace(": ", ': "').replace("\n", '"\n'), "f.yaml").data["p"] == text[3:-1]


@pytest.mark.parametrize("text", ["p: 80\n", "p: -3\n", "p: +7\n", "p: 0\n"])
def test_plain_decimal_integers_are_read(text: str) -> None:
    assert isinstance(read_yaml_text(text, "f.yaml").data["p"], int)


def test_duplicate_keys_name_both_lines() -> None:
    [problem] = problems_of("a: 1\nb: 2\na: 3\n")
    assert problem == "f.yaml:3: a: duplicate key (first defined on line 1)"


@pytest.mark.parametrize("text", [
    "a: !!python/object:os.system ls\n",
    "a: !!python/object/apply:os.system [ls]\n",
    "a: !!binary aGVsbG8=\n",
    "a: !!set {x, y}\n",
    "a: !custom thing\n",
    "a: !!omap [x: 1]\n",
])
def test_object_building_and_unknown_tags_are_refused(text: str) -> None:
    [problem] = problems_of(text)
    assert problem.startswith("f.yaml:1: a: YAML tag ")
    assert "not allowed" in problem


def test_merge_keys_are_refused() -> None:
    [problem] = problems_of("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert problem.startswith("f.yaml:3: other: YAML merge keys")


def test_complex_keys_are_refused() -> None:
    [problem] = problems_of("? [a, b]\n: 1\n")
    assert "mapping keys must be plain strings" in problem


def test_non_string_keys_become_their_text() -> None:
    assert read_yaml_text("80: x\ntrue: y\n", "f.yaml").data == {"80": "x", "true": "y"}


def test_long_keys_are_refused_without_echoing_them() -> None:
    key = "k" * 5000
    [problem] = problems_of(f"? {key}\n: 1\n")
    assert "5000 characters" in problem
    assert key not in problem


def test_escaped_nul_in_a_string_is_refused() -> None:
    [problem] = problems_of('a: "x\\0y"\n')
    assert problem.startswith("f.yaml:1: a: contains a NUL character")


def test_raw_nul_and_control_characters_are_a_reader_error_with_a_line() -> None:
    [problem] = problems_of("a: 1\nb: x\x00y\n")
    assert problem.startswith("f.yaml:2: ")
    [problem] = problems_of("a: \x07\n")
    assert "not allowed" in problem


def test_syntax_errors_carry_line_and_column() -> None:
    [problem] = problems_of("a: 1\nb: [1, 2\nc: 3\n")
    assert problem.startswith("f.yaml:")
    assert "YAML syntax error" in problem
    assert "column" in problem


def test_a_second_document_is_refused() -> None:
    [problem] = problems_of("a: 1\n---\nb: 2\n")
    assert "only one YAML document" in problem


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_an_empty_file_is_refused(text: str) -> None:
    assert problems_of(text) == ["f.yaml:1: the file is empty: expected a mapping"]


def test_non_utf8_bytes_name_the_line_and_byte() -> None:
    [problem] = problems_of(b"a: 1\nb: caf\xe9\n")
    assert problem.startswith("f.yaml:2: not valid UTF-8 (byte 11 is 0xe9)")


def test_a_utf8_byte_order_mark_is_accepted() -> None:
    assert read_yaml_text("\ufeffa: 1\n".encode(), "f.yaml").data == {"a": 1}


def test_unencodable_text_is_refused() -> None:
    [problem] = problems_of("a: \ud800\n")
    assert "UTF-8 cannot encode" in problem


def test_huge_input_is_refused_before_parsing() -> None:
    big = "a: " + "x" * yamlsafe.MAX_BYTES + "\n"
    [problem] = problems_of(big)
    assert "limit" in problem
    [problem] = problems_of(big.encode())
    assert "limit" in problem


def test_a_huge_single_line_under_the_limit_is_read_quickly() -> None:
    text = "a: " + "x" * (yamlsafe.MAX_BYTES - 100) + "\n"
    start = time.monotonic()
    assert len(read_yaml_text(text, "f.yaml").data["a"]) == yamlsafe.MAX_BYTES - 100
    assert time.monotonic() - start < 5


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.timeout(20)
def test_an_alias_bomb_is_stopped_by_the_node_budget() -> None:
    start = time.monotonic()
    [problem] = problems_of(BILLION_LAUGHS)
    assert f"more than {yamlsafe.MAX_NODES} values" in problem
    assert time.monotonic() - start < 5


def test_a_few_aliases_are_fine() -> None:
    doc = read_yaml_text("cmd: &c [node, server]\nagain: *c\n", "f.yaml")
    assert doc.data["again"] == ["node", "server"]
    assert doc.lines["again[1]"] == 1  # an alias's values live where the anchor is


def test_a_recursive_alias_is_stopped_by_the_depth_limit() -> None:
    [problem] = problems_of("a: &a [*a]\n")
    assert "nesting deeper than" in problem


@pytest.mark.parametrize("text", ["[" * 100_000, "- " * 50_000 + "x\n", "{a: " * 20_000 + "1" + "}" * 20_000])
@pytest.mark.timeout(20)
def test_deep_nesting_is_refused(text: str) -> None:
    [problem] = problems_of(text)
    assert "nesting" in problem


def test_nesting_just_within_the_limit_is_read() -> None:
    depth = yamlsafe.MAX_DEPTH
    data = read_yaml_text("[" * depth + "1" + "]" * depth, "f.yaml").data
    for _ in range(depth):
        data = data[0]
    assert data == 1


def test_long_paths_cost_budget_so_memory_stays_bounded() -> None:
    # 28 levels of 123-character keys, then a list expanded through aliases: the paths alone would be
    # gigabytes if every one were remembered at full price.
    keys = ["k" * 120 + f"{i:03d}" for i in range(28)]
    lines = [f"{'  ' * i}{k}:" for i, k in enumerate(keys)]
    indent = "  " * len(keys)
    lines.append(f"{indent}x: &x [{', '.join(['1'] * 100)}]")
    lines.append(f"{indent}y: [{', '.join(['*x'] * 150)}]")
    [problem] = problems_of("\n".join(lines) + "\n")
    assert "values (aliases are expanded)" in problem


def test_parse_keeps_recoverable_problems_for_the_caller() -> None:
    doc = parse_yaml_text("a: 1\na: 2\nb: !!binary aGk=\nc: ok\n", "f.yaml")
    assert doc.data == {"a": 1, "b": None, "c": "ok"}
    assert [p.path for p in doc.problems] == ["a", "b"]


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such file"):
        read_yaml_file(tmp_path / "absent.yaml")
    with pytest.raises(ValidationError, match="is a directory"):
        read_yaml_file(tmp_path)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: " + b"x" * (yamlsafe.MAX_BYTES + 10))
    with pytest.raises(ValidationError, match="larger than the limit"):
        read_yaml_file(big)


def test_a_named_pipe_nobody_writes_to_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "manifest.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ValidationError, match="the file is empty"):
        read_yaml_file(fifo)


def test_file_problems_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("a: 1\na: 2\n")
    with pytest.raises(ValidationError) as err:
        read_yaml_file(path)
    assert str(err.value.problems[0]).startswith(f"{path}:2: a: duplicate key")
