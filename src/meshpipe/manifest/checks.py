"""Rules that span several manifest values, and the platform's policy.

They read the manifest as parsed YAML, not as a validated model, so they run even when other parts of
the file are wrong: a value counts as soon as it is present and nothing was reported about it (or, when
absent, its default applies). That way a file with a misspelt key and a Cpu/Memory mismatch reports both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshpipe.delivery.policy import metadata_problem, webhooks_problems
from meshpipe.validation import rules
from meshpipe.validation.trusted import TrustedValues
from meshpipe.validation.yamlsafe import join_path

if TYPE_CHECKING:
    from meshpipe.platform import PlatformPolicy

@dataclass(frozen=True)
class Finding:
    """A problem at a manifest path; the loader adds file and line."""

    path: str
    message: str
    code: str  # see meshpipe.codes


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def cross_checks(values: TrustedValues) -> list[Finding]:
    """Rules between values of one manifest: they hold on every platform."""
    found: list[Finding] = []
    cpu = _int(values.get("Task.Cpu", rules.DEFAULT_CPU))
    memory = _int(values.get("Task.Memory", rules.DEFAULT_MEMORY))
    if cpu is not None and memory is not None and (problem := rules.memory_fit_problem(cpu, memory)):
        found.append(Finding("Task.Memory", problem, "M012"))

    command = values.items_of("AppContainer.Command")
    if command is None and "Command" in (values.items_of("AppContainer") or {}):
        # The model takes None as "the image's default", but a key written with no value is a slip.
        found.append(Finding("AppContainer.Command", "has no value (null): give a list of strings, or leave the "
                                                     "key out to use the image's default command", "M004"))
    if isinstance(command, list) and (problem := rules.command_problem(command)):
        found.append(Finding("AppContainer.Command", problem, "M016"))

    environment = values.items_of("AppContainer.Environment")
    if isinstance(environment, dict) and len(environment) > rules.ENV_VARS_MAX:
        found.append(Finding("AppContainer.Environment",
                             f"has {len(environment)} variables; at most {rules.ENV_VARS_MAX} are allowed", "M017"))

    backends = values.items_of("VirtualNode.Backends")
    if isinstance(backends, list):
        if len(backends) > rules.MAX_BACKENDS:
            found.append(Finding("VirtualNode.Backends",
                                 f"has {len(backends)} entries; App Mesh allows at most {rules.MAX_BACKENDS}", "M018"))
        first_at: dict[str, int] = {}
        for i, name in enumerate(backends):
            path = join_path("VirtualNode.Backends", i)
            if not isinstance(name, str) or values.is_bad(path):
                continue
            if name in first_at:
                found.append(Finding(path, f"{rules.shorten(name)} is listed twice (first as item {first_at[name]}); "
                                           "each backend once", "M018"))
            else:
                first_at[name] = i
    return found


ROLLOUT_SECTIONS = ("Rollout", "Rollout.Analysis", "Rollout.PreviewHeader")
# Keys of the Rollout section that belong to one strategy only.
STRATEGY_KEYS = {"Steps": "canary", "StepPercent": "linear", "PreviewHeader": "blue-green"}


def rollout_checks(values: TrustedValues) -> list[Finding]:
    """Rules on the Rollout section that hold on every platform: no nulls, each webhook once."""
    found: list[Finding] = []
    for section in ROLLOUT_SECTIONS:
        written = values.items_of(section)
        if not isinstance(written, dict):
            continue
        for key, value in written.items():
            if value is None and isinstance(key, str):
                found.append(Finding(join_path(section, key), "has no value (null): give a value, or leave the key "
                                                               "out to take the platform's", "M004"))
    webhooks = values.items_of("Rollout.Webhooks")
    if isinstance(webhooks, list):
        for index, problem in webhooks_problems(webhooks):
            found.append(Finding("Rollout.Webhooks" if index < 0 else join_path("Rollout.Webhooks", index), problem,
                                 "M032"))
        for i, webhook in enumerate(webhooks):
            path = f"Rollout.Webhooks[{i}].Metadata"
            metadata = webhook.get("Metadata") if isinstance(webhook, dict) and not values.is_bad(path) else None
            if isinstance(metadata, dict) and (wrong := metadata_problem(metadata)):
                found.append(Finding(path, wrong, "M032"))
    return found


def _rollout_strategy_checks(values: TrustedValues, policy: PlatformPolicy) -> list[Finding]:
    """Keys that only one strategy reads, written for a service whose strategy is another."""
    section = values.items_of("Rollout")
    if not isinstance(section, dict):
        return []
    written = _str(values.get("Rollout.Strategy", None))
    strategy = written or policy.rollout.strategy
    source = "its Strategy" if written else "the platform policy rollout.strategy"
    found = []
    for key, wanted in STRATEGY_KEYS.items():
        if key in section and section[key] is not None and strategy != wanted:
            found.append(Finding(f"Rollout.{key}", f"applies to the {wanted} strategy, but this service's strategy is "
                                                   f"{strategy} ({source}); remove it or set Strategy: {wanted}",
                                 "M031"))
    return found


def policy_checks(values: TrustedValues, policy: PlatformPolicy) -> list[Finding]:
    """The platform's limits on manifests; every message names the policy setting it breaks."""
    found: list[Finding] = []
    cpu = _int(values.get("Task.Cpu", rules.DEFAULT_CPU))
    memory = _int(values.get("Task.Memory", rules.DEFAULT_MEMORY))
    if cpu is not None and cpu > policy.max_cpu:
        found.append(Finding("Task.Cpu", f"{cpu} CPU units break the platform policy max_cpu: "
                                         f"at most {policy.max_cpu}", "M020"))
    if memory is not None and memory > policy.max_memory:
        found.append(Finding("Task.Memory", f"{memory} MiB breaks the platform policy max_memory: "
                                            f"at most {policy.max_memory} MiB", "M021"))
    port = _int(values.get("AppContainer.Port", rules.DEFAULT_PORT))
    if port is not None and port in policy.reserved_ports:
        owned = ", ".join(str(p) for p in sorted(policy.reserved_ports))
        found.append(Finding("AppContainer.Port",
                             f"{port} belongs to the Envoy sidecar (it owns {owned}: policy proxy_ingress_port, "
                             "proxy_egress_port, envoy_admin_port); choose another port", "M022"))
    image = _str(values.get("AppContainer.Image"))
    parsed = rules.parse_image(image) if image is not None else None
    if parsed and not rules.registry_allowed(parsed[0], policy.allowed_registries):
        found.append(Finding("AppContainer.Image",
                             f"registry {parsed[0]!r} breaks the platform policy allowed_registries; allowed: "
                             f"{', '.join(policy.allowed_registries)}", "M023"))
    found += _rollout_strategy_checks(values, policy)
    return found
