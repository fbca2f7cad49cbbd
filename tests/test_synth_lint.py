"""cfn-lint on every template meshpipe emits: no errors, no warnings but App Mesh's shutdown notice."""

from __future__ import annotations

import functools

import pytest

from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.synth import synthesize
from meshpipe.synth.lint import LintFinding, blocking_findings, lint_template
from support import synth_cases as cases

# Linting takes a few hundred milliseconds per template: each distinct text is linted once per session.
lint_once = functools.lru_cache(maxsize=None)(lint_template)

TRAFFIC_SHIFTS = [
    {"strategy": "LINEAR", "linear_step_percent": 33, "linear_step_bake_minutes": 1},
    {"strategy": "BLUE_GREEN", "access_log_format": "JSON"},
    {"strategy": "ROLLING"},
    {"strategy": "CANARY", "canary_percent": 1, "canary_bake_minutes": 0, "bake_minutes": 0},
]


def sample_templates() -> list[tuple[str, str]]:
    out = []
    for service in cases.SAMPLES:
        for mesh in MeshFlavour:
            out.append((f"{service}/{mesh}", synthesize(cases.sample_version(service), mesh).json_text))
    return out


def extension_templates() -> list[tuple[str, str]]:
    every = cases.version_from_text(cases.EVERY_EXTENSION_MANIFEST)
    backends = cases.version_from_text(cases.EVERY_EXTENSION_MANIFEST.replace(
        "Backends: []", 'Backends: ["hello-backend.demo.local", "payments.demo.local"]'))
    return [(f"every-extension/{mesh}", synthesize(every, mesh).json_text) for mesh in MeshFlavour] + [
        ("two-backends/appmesh", synthesize(backends).json_text)]


def policy_templates() -> list[tuple[str, str]]:
    out = []
    for shift in TRAFFIC_SHIFTS:
        version = cases.sample_version("hello-backend", settings=cases.platform(traffic_shift=shift))
        out.append((f"service-connect/{shift['strategy']}", synthesize(version, "service-connect").json_text))
    return out


ALL = sample_templates() + extension_templates() + policy_templates()


@pytest.mark.parametrize(("name", "text"), ALL, ids=[name for name, _ in ALL])
def test_template_lints_clean(name: str, text: str) -> None:
    findings = lint_once(text)
    assert blocking_findings(findings) == [], "\n".join(str(f) for f in findings)
    # App Mesh's shutdown warning appears exactly where App Mesh is used.
    shutdown = [f for f in findings if f.rule == "W3696"]
    assert bool(shutdown) == ("AWS::AppMesh::" in text), name


def test_lint_reports_an_error_in_a_broken_template() -> None:
    text = synthesize(cases.sample_version("hello-web"), "service-connect").json_text
    broken = text.replace('"Strategy": "CANARY"', '"Strategy": "SOMETIMES"')
    assert broken != text
    rules = {f.rule for f in blocking_findings(lint_once(broken))}
    assert rules and all(r.startswith("E") for r in rules)


def test_only_the_app_mesh_shutdown_warning_is_allowed() -> None:
    allowed = LintFinding("W3696", "warning", "App Mesh shuts down", 1, "Resources/VirtualNode")
    warning = LintFinding("W3005", "warning", "obsolete DependsOn", 1, "Resources/Service")
    info = LintFinding("I3011", "informational", "no deletion policy", 1, "Resources/Service")
    assert blocking_findings([allowed, warning, info]) == [warning]
