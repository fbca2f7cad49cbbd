"""No manifest, however malformed, makes validation fail in any way but a ValidationError whose problems
each name a file, a line (or none) and a message."""

from __future__ import annotations

import os
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpipe.errors import ValidationError
from meshpipe.manifest import LoadedManifest, load_manifest_text
from meshpipe.platform import PlatformPolicy
from support.seed_manifests import SEED_BACKEND_STEP_6, SEED_WEB

FILE = "svc/manifest.yaml"
SAMPLES = [SEED_WEB, SEED_BACKEND_STEP_6]
POLICY = PlatformPolicy(allowed_registries=("docker.io", "*.amazonaws.com"), max_cpu=4096)
# 300 examples per property keep the suite quick; MESHPIPE_FUZZ_EXAMPLES=5000 searches deeper.
BOUNDED = settings(max_examples=int(os.environ.get("MESHPIPE_FUZZ_EXAMPLES", "300")), deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])

KEYS = ["Task", "AppContainer", "VirtualNode", "Family", "Cpu", "Memory", "Image", "Port", "HealthCheckPath",
        "Command", "Environment", "Backends", "family", "Famly", "PORT", "<<", ""]
TOKENS = [*KEYS, ":", ": ", "- ", "\n", "  ", "[", "]", "{", "}", ",", "&a ", "*a", "!!python/object:os.system ",
                 "!!binary ", "!custom ", "'", '"', "#", "|", ">", "?", "~", "null", "on", "yes", "0x50", "010",
                 "1:20", "1e3", "256.0", "80", "15000", "-1", "/ping", "/a b", "\\0", "\t", "---\n", "...\n",
                 "%YAML 1.1\n", "wizriz/hello-web:66f2a19", "a.demo.local", "\x00", "\ufeff", "é", "\\"]


def assert_only_validation_errors(text: str | bytes, policy: PlatformPolicy | None = None) -> None:
    try:
        loaded = load_manifest_text(text, FILE, policy)
    except ValidationError as err:
        assert err.problems, "a ValidationError lists at least one problem"
        for problem in err.problems:
            assert problem.file == FILE
            assert problem.line is None or (isinstance(problem.line, int) and problem.line >= 1)
            assert isinstance(problem.path, str)
            assert isinstance(problem.message, str) and problem.message.strip()
            assert len(str(problem)) < 2000, "messages quote values in short"
        return
    assert isinstance(loaded, LoadedManifest)
    assert loaded.manifest.task.family


@BOUNDED
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    assert_only_validation_errors(text)


@BOUNDED
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    assert_only_validation_errors(data)


@BOUNDED
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map("".join))
def test_yaml_ish_text(text: str) -> None:
    assert_only_validation_errors(text, POLICY)


SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
           | st.sampled_from(["/ping", "wizriz/hello-web:1", "hello-backend.demo.local", "node", "PORT"]))
NESTED = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


@BOUNDED
@given(NESTED)
def test_random_structures_dumped_to_yaml(data: Any) -> None:
    assert_only_validation_errors(yaml.safe_dump(data, allow_unicode=True), POLICY)


@BOUNDED
@given(st.dictionaries(st.sampled_from(KEYS), NESTED, max_size=4),
       st.dictionaries(st.sampled_from(KEYS), NESTED, max_size=6))
def test_random_sections(task: dict[str, Any], app: dict[str, Any]) -> None:
    assert_only_validation_errors(yaml.safe_dump({"Task": task, "AppContainer": app}, allow_unicode=True))


@st.composite
def text_mutations(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SAMPLES))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["delete", "insert", "replace-line", "duplicate-line", "indent"]))
        at = draw(st.integers(min_value=0, max_value=len(text)))
        lines = text.split("\n")
        row = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(min_value=1, max_value=20)):]
        elif kind == "insert":
            text = text[:at] + draw(st.sampled_from(TOKENS) | st.text(max_size=5)) + text[at:]
        elif kind == "replace-line":
            lines[row] = draw(st.lists(st.sampled_from(TOKENS), max_size=6).map("".join))
            text = "\n".join(lines)
        elif kind == "duplicate-line":
            lines.insert(row, lines[row])
            text = "\n".join(lines)
        else:
            lines[row] = " " * draw(st.integers(min_value=0, max_value=6)) + lines[row].lstrip()
            text = "\n".join(lines)
    return text


@BOUNDED
@given(text_mutations())
def test_mutations_of_the_seed_manifests(text: str) -> None:
    assert_only_validation_errors(text, POLICY)


def _leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [path] + [p for k, v in node.items() for p in _leaf_paths(v, (*path, k))]
    if isinstance(node, list):
        return [path] + [p for i, v in enumerate(node) for p in _leaf_paths(v, (*path, i))]
    return [path]


@st.composite
def value_mutations(draw: st.DrawFn) -> Any:
    data = yaml.safe_load(draw(st.sampled_from(SAMPLES)))
    paths = _leaf_paths(data)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths))
        if not path:
            return draw(NESTED)
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
            paths = _leaf_paths(data)
            if not paths:
                break
        else:
            parent[path[-1]] = draw(NESTED)
            paths = _leaf_paths(data)
    return data


@BOUNDED
@given(value_mutations())
def test_value_mutations_of_the_seed_manifests(data: Any) -> None:
    assert_only_validation_errors(yaml.safe_dump(data, allow_unicode=True), POLICY)


def test_the_unmutated_samples_are_valid() -> None:
    for text in SAMPLES:
        assert load_manifest_text(text, FILE, POLICY).manifest.task.cpu == 256
