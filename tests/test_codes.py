"""Finding codes: every problem about a manifest or platform file carries a stable code that docs list."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from meshpipe.cli import main
from meshpipe.codes import CODES
from meshpipe.errors import ValidationError
from meshpipe.manifest import load_manifest, load_manifest_text
from meshpipe.platform import PlatformPolicy, settings_from_env, settings_from_mapping

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "manifest.md"
BROKEN = REPO / "examples" / "broken-manifest.yaml"


def problems_of(text: str, policy: PlatformPolicy | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        load_manifest_text(text, "manifest.yaml", policy)
    return [(p.path, p.code) for p in caught.value.problems]


def test_docs_list_every_code_with_its_meaning():
    rows = dict(re.findall(r"^\| `([YMPA]\d{3})` \| (.+?) \|$", DOC.read_text(), re.MULTILINE))
    assert rows == CODES


def test_every_problem_of_the_broken_example_has_a_known_code():
    with pytest.raises(ValidationError) as caught:
        load_manifest(BROKEN)
    codes = [p.code for p in caught.value.problems]
    assert codes and all(code in CODES for code in codes)
    assert codes == ["M001", "M012", "M013", "M003", "M001", "M003", "M017", "M018"]


@pytest.mark.parametrize(("text", "expected"), [
    ("Task:\n  Family: web\n", [("AppContainer", "M002")]),
    ("Task:\n  Family: web\n  Cpu: 300\nAppContainer:\n  Image: web:1\n  HealthCheckPath: /ping\n",
     [("Task.Cpu", "M011")]),
    ("Task:\n  Family: 'a b'\nAppContainer:\n  Image: web:1\n  HealthCheckPath: /ping\n", [("Task.Family", "M010")]),
    ("Task:\n  Family: web\nAppContainer:\n  Image: web:1\n  HealthCheckPath: '/a;b'\n",
     [("AppContainer.HealthCheckPath", "M015")]),
    ("Task:\n  Family: web\nAppContainer:\n  Image: web:1\n  HealthCheckPath: /ping\n  Port: 70000\n",
     [("AppContainer.Port", "M014")]),
    ("Task:\n  Family: web\nAppContainer:\n  Image: web:1\n  HealthCheckPath: /ping\n  Command: []\n",
     [("AppContainer.Command", "M016")]),
    ("Task:\n  Family: web\nAppContainer:\n  Image: web:1\n  HealthCheckPath: /ping\n  Port:\n",
     [("AppContainer.Port", "M004")]),
    ("Task:\n  Family: web\n  Family: api\nAppContainer:\n  Image: web:1\n  HealthCheckPath: /ping\n",
     [("Task.Family", "Y008")]),
    ("Task:\n  Family: !!python/name:os.system web\nAppContainer:\n  Image: web:1\n  HealthCheckPath: /ping\n",
     [("Task.Family", "Y007")]),
    ("Task:\n  Family: web\n  Cpu: 0x100\nAppContainer:\n  Image: web:1\n  HealthCheckPath: /ping\n",
     [("Task.Cpu", "Y009")]),
    ("- a\n- b\n", [("", "M006")]),
    ("Task: [\n", [("", "Y004")]),
    ("", [("", "Y006")]),
])
def test_codes_name_the_kind_of_finding(text, expected):
    assert problems_of(text) == expected


def test_policy_findings_have_codes_of_their_own():
    policy = PlatformPolicy(max_cpu=256, max_memory=512, allowed_registries=("registry.example.com",))
    text = "Task:\n  Family: web\n  Cpu: 512\n  Memory: 1024\nAppContainer:\n  Image: web:1\n  HealthCheckPath: /ping\n"
    assert sorted(problems_of(text, policy)) == [("AppContainer.Image", "M023"), ("Task.Cpu", "M020"),
                                                 ("Task.Memory", "M021")]


def test_platform_settings_findings_are_p_codes():
    with pytest.raises(ValidationError) as caught:
        settings_from_env({"ENVIRONMENT_NAME": "demo", "VPC_SUBNET_ONE": "not-a-subnet"})
    codes = {p.path: p.code for p in caught.value.problems}
    assert codes["VPC_SUBNET_ONE"] == "P010" and codes["AWS_REGION"] == "P002"
    assert all(code.startswith("P") and code in CODES for code in codes.values())
    with pytest.raises(ValidationError) as caught:
        settings_from_mapping({"environment_name": "demo", "polcy": {}}, "platform.yaml")
    assert {p.path: p.code for p in caught.value.problems}["polcy"] == "P001"


def test_validate_json_carries_the_codes(capsys):
    assert main(["validate", str(BROKEN), "--format", "json"]) == 2
    problems = json.loads(capsys.readouterr().out)[0]["problems"]
    assert [p["code"] for p in problems][:2] == ["M001", "M012"]
