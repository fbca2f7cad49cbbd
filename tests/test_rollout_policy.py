"""Rollout policies: the manifest's Rollout section and the platform's default, validated like every other
field (file:line, codes), and merged into the plan the controller runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshpipe.codes import CODES
from meshpipe.delivery.policy import RolloutSpec, linear_steps, resolve_rollout_spec
from meshpipe.errors import ValidationError
from meshpipe.manifest import load_manifest_text
from meshpipe.mesh.headers import HeaderMatch
from meshpipe.model import resolve
from meshpipe.platform import PlatformPolicy, RolloutDefaults, load_platform_file, local_settings

EXAMPLE_PLATFORM = Path(__file__).resolve().parents[1] / "examples" / "platform.yaml"
BASE = "Task:\n  Family: web\nAppContainer:\n  Image: web:1\n  HealthCheckPath: /ping\n"


def problems(rollout: str, policy: PlatformPolicy | None = None) -> list[tuple[int | None, str, str, str]]:
    with pytest.raises(ValidationError) as caught:
        load_manifest_text(BASE + rollout, "manifest.yaml", policy)
    return [(p.line, p.path, p.code, p.message) for p in caught.value.problems]


def plan_of(rollout: str, policy: PlatformPolicy | None = None) -> RolloutSpec | None:
    policy = policy or PlatformPolicy()
    loaded = load_manifest_text(BASE + rollout, "manifest.yaml", policy)
    return resolve_rollout_spec(policy.rollout, loaded.manifest.rollout)


def test_no_section_and_the_default_platform_means_no_rollout() -> None:
    assert plan_of("") is None
    assert resolve(load_manifest_text(BASE), local_settings("demo"), "web", "ab" * 20).rollout is None


def test_a_section_turns_rollouts_on_with_the_platforms_defaults() -> None:
    plan = plan_of("Rollout: {}\n")
    assert plan is not None
    assert (plan.strategy, plan.steps, plan.interval_s) == ("canary", (10, 25, 50, 100), 60.0)
    a = plan.analysis
    assert (a.min_success_rate, a.max_p99_ms, a.max_p99_increase_percent, a.min_requests, a.failed_windows) == (
        99.0, None, 50.0, 20, 2)


def test_manifest_keys_override_the_platform_key_by_key() -> None:
    policy = PlatformPolicy(rollout=RolloutDefaults(interval=30, analysis={"min_requests": 50, "max_p99_ms": 800}))
    plan = plan_of("Rollout:\n  Steps: [5, 100]\n  Analysis:\n    MinRequests: 3\n", policy)
    assert plan is not None
    assert plan.steps == (5, 100) and plan.interval_s == 30.0
    assert plan.analysis.min_requests == 3 and plan.analysis.max_p99_ms == 800.0  # the rest stays the platform's


def test_linear_and_blue_green_plans() -> None:
    assert linear_steps(20) == (20, 40, 60, 80, 100)
    assert linear_steps(30) == (30, 60, 90, 100)
    plan = plan_of("Rollout:\n  Strategy: linear\n  StepPercent: 25\n  Interval: 5\n")
    assert plan is not None and plan.steps == (25, 50, 75, 100)
    plan = plan_of("Rollout:\n  Strategy: blue-green\n  PreviewHeader: {Name: X-Preview, Value: 'yes'}\n")
    assert plan is not None and plan.steps == (100,)
    assert plan.preview == HeaderMatch("X-Preview", "yes", "exact")
    plan = plan_of("Rollout:\n  Strategy: blue-green\n")
    assert plan is not None and plan.preview == HeaderMatch("x-canary", "always")


def test_platform_enabled_rolls_out_every_service_and_a_manifest_may_opt_out() -> None:
    policy = PlatformPolicy(rollout=RolloutDefaults(enabled=True, strategy="linear", step_percent=50))
    plan = plan_of("", policy)
    assert plan is not None and plan.steps == (50, 100)
    assert plan_of("Rollout:\n  Enabled: false\n", policy) is None
    # A rollout started by hand runs even where rollouts are off.
    assert resolve_rollout_spec(PlatformPolicy().rollout, None, force=True) is not None


def test_webhooks_add_up_platform_first() -> None:
    policy = PlatformPolicy(rollout=RolloutDefaults(webhooks=[
        {"name": "audit", "type": "post-rollout", "url": "https://audit.example.com/hook"}]))
    plan = plan_of("Rollout:\n  Webhooks:\n    - Name: smoke\n      Type: pre-rollout\n      Url: http://127.0.0.1:9/"
                   "\n      Timeout: 3\n      Metadata: {suite: fast}\n", policy)
    assert plan is not None
    assert [(h.name, h.type, h.timeout_s, h.metadata) for h in plan.webhooks] == [
        ("audit", "post-rollout", 10.0, ()), ("smoke", "pre-rollout", 3.0, (("suite", "fast"),))]
    assert [h.name for h in plan.webhooks_of("pre-rollout")] == ["smoke"]


def test_plan_survives_json_both_ways() -> None:
    plan = plan_of("Rollout:\n  Strategy: blue-green\n  Webhooks:\n    - {Name: gate, Type: confirm-promotion, "
                   "Url: 'http://127.0.0.1:1/ok', Metadata: {a: b}}\n")
    assert plan is not None
    assert RolloutSpec.from_json(plan.to_json()) == plan
    # The resolved version keeps it (as dataclasses.asdict writes it) and gives it back whole.
    import dataclasses

    assert RolloutSpec.from_json(dataclasses.asdict(plan)) == plan


def test_every_rollout_problem_at_once_with_lines_and_codes() -> None:
    found = problems("Rollout:\n"
                     "  Strategy: canery\n"                                    # 7
                     "  Steps: [10, 5]\n"                                      # 8
                     "  Intervall: 5\n"                                        # 9
                     "  Analysis:\n"
                     "    MinSucessRate: 99\n"                                 # 11
                     "    MaxP99Ms: null\n"                                    # 12
                     "    FailedWindows: 0\n"                                  # 13
                     "  Webhooks:\n"
                     "    - {Name: a, Type: rollout, Url: 'ftp://x'}\n"        # 15
                     "    - {Name: a, Type: later, Url: 'http://h/'}\n")       # 16
    assert [(line, path, code) for line, path, code, _ in found] == [
        (7, "Rollout.Strategy", "M005"),
        (8, "Rollout.Steps", "M030"),
        (9, "Rollout.Intervall", "M001"),
        (11, "Rollout.Analysis.MinSucessRate", "M001"),
        (12, "Rollout.Analysis.MaxP99Ms", "M004"),
        (13, "Rollout.Analysis.FailedWindows", "M005"),
        (15, "Rollout.Webhooks[0].Url", "M032"),
        (16, "Rollout.Webhooks[1]", "M032"),
        (16, "Rollout.Webhooks[1].Type", "M005"),
    ]
    messages = {path: message for _, path, _, message in found}
    assert "did you mean 'Interval'" in messages["Rollout.Intervall"]
    assert "did you mean 'MinSuccessRate'" in messages["Rollout.Analysis.MinSucessRate"]
    assert "must rise strictly" in messages["Rollout.Steps"]
    assert "also the name of webhook 0" in messages["Rollout.Webhooks[1]"]
    assert all(code in CODES for _, _, code, _ in found)


@pytest.mark.parametrize(("rollout", "path", "code", "words"), [
    ("Rollout:\n  Steps: [10, 50]\n", "Rollout.Steps", "M030", "must end at 100"),
    ("Rollout:\n  Steps: [0, 100]\n", "Rollout.Steps", "M030", "1-100"),
    ("Rollout:\n  Steps: []\n", "Rollout.Steps", "M030", "at least one step"),
    ("Rollout:\n  Steps: '10,100'\n", "Rollout.Steps", "M003", "a list of percentages"),
    ("Rollout:\n  Interval: 0\n", "Rollout.Interval", "M005", "minimum is 1"),
    ("Rollout:\n  Interval: '30s'\n", "Rollout.Interval", "M003", "integer"),
    ("Rollout:\n  Strategy: linear\n  Steps: [50, 100]\n", "Rollout.Steps", "M031", "canary strategy"),
    ("Rollout:\n  StepPercent: 10\n", "Rollout.StepPercent", "M031", "platform policy rollout.strategy"),
    ("Rollout:\n  PreviewHeader: {Name: x-a, Value: b}\n", "Rollout.PreviewHeader", "M031", "blue-green"),
    ("Rollout:\n  Strategy: blue-green\n  PreviewHeader: {Name: 'x a', Value: b}\n", "Rollout.PreviewHeader.Name",
     "M033", "not an HTTP header name"),
    ("Rollout:\n  Strategy: blue-green\n  PreviewHeader: {Name: Host, Value: b}\n", "Rollout.PreviewHeader.Name",
     "M033", "Host"),
    ("Rollout:\n  Strategy: blue-green\n  PreviewHeader: {Name: " + "x" * 51 + ", Value: b}\n",
     "Rollout.PreviewHeader.Name", "M033", "at most 50"),
    ("Rollout:\n  Analysis: {MinSuccessRate: 101}\n", "Rollout.Analysis.MinSuccessRate", "M005", "maximum is 100"),
    ("Rollout:\n  Analysis: {MinSuccessRate: '99'}\n", "Rollout.Analysis.MinSuccessRate", "M003", "number"),
    ("Rollout:\n  Enabled: 'false'\n", "Rollout.Enabled", "M003", "boolean"),
    ("Rollout:\n  Webhooks:\n    - {Name: a, Type: rollout, Url: 'http://u:p@h/'}\n", "Rollout.Webhooks[0].Url",
     "M032", "credentials"),
    ("Rollout:\n  Webhooks:\n    - {Name: 'a b', Type: rollout, Url: 'http://h/'}\n", "Rollout.Webhooks[0].Name",
     "M032", "webhook name"),
    ("Rollout:\n  Webhooks:\n    - {Name: a, Type: rollout, Url: 'http://h/', Timeout: 0}\n",
     "Rollout.Webhooks[0].Timeout", "M005", "minimum is 1"),
    ("Rollout:\n  Webhooks:\n    - {Name: a, Type: rollout, Url: 'http://h/', Metadata: {k: '" + "v" * 1025 + "'}}\n",
     "Rollout.Webhooks[0].Metadata", "M032", "at most 1024"),
    ("Rollout:\n  Webhooks:\n    - {Name: a, Type: rollout}\n", "Rollout.Webhooks[0].Url", "M002", "is required"),
])
def test_one_rollout_problem(rollout: str, path: str, code: str, words: str) -> None:
    [(_, got_path, got_code, message)] = problems(rollout)
    assert (got_path, got_code) == (path, code), message
    assert words in message


def test_platform_rollout_defaults_are_checked_with_lines(tmp_path: Path) -> None:
    text = EXAMPLE_PLATFORM.read_text().rstrip("\n") + "\n" + (
        "policy:\n  rollout:\n"
        "    steps: [50, 10]\n"
        "    interval: 0\n"
        "    strategy: rolling\n"
        "    preview_header: {name: x y}\n"
        "    webhooks:\n"
        "      - {name: a, type: rollout, url: 'http://h/'}\n"
        "      - {name: a, type: rollout, url: 'http://h/'}\n")
    path = tmp_path / "platform.yaml"
    path.write_text(text)
    first = len(EXAMPLE_PLATFORM.read_text().rstrip("\n").splitlines()) + 2
    with pytest.raises(ValidationError) as caught:
        load_platform_file(str(path))
    found = {p.path: (p.line, p.code) for p in caught.value.problems}
    assert found["policy.rollout.steps"] == (first + 1, "P010")
    assert found["policy.rollout.interval"] == (first + 2, "P005")
    assert found["policy.rollout.strategy"] == (first + 3, "P005")
    assert found["policy.rollout.preview_header.name"] == (first + 4, "P010")
    assert "each webhook once" in next(p.message for p in caught.value.problems if p.path == "policy.rollout.webhooks")


def test_the_example_platform_reads_with_its_default_rollout() -> None:
    assert load_platform_file(str(EXAMPLE_PLATFORM)).policy.rollout == RolloutDefaults()
