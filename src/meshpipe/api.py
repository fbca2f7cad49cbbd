"""The library API: the steps behind ``meshpipe validate`` and ``meshpipe synth``, callable from Python.

    loaded = load("manifest.yaml", policy=platform.policy)      # parse + validate (ValidationError)
    version = resolve(loaded, platform, service="hello-web", commit=sha)
    result = synthesize(version, mesh="appmesh")                # SynthResult: stack_name, template, json_text
    path = write_template(result, Path("out"))                  # atomic: all or nothing

The pipeline's Build stage and both engines go through these same functions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from meshpipe.atomic import write_atomically
from meshpipe.errors import OperationError, Problem, UserError, ValidationError
from meshpipe.manifest import LoadedManifest, load_manifest
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.model import ServiceVersion, check_commit, check_service_name, resolve
from meshpipe.platform import (
    PlatformPolicy,
    PlatformSettings,
    build_inputs_from_env,
    load_platform_file,
    settings_from_env,
)
from meshpipe.platform_policy import load_policy_file, policy_from_env

if TYPE_CHECKING:
    from meshpipe.synth import SynthResult

__all__ = [
    "ValidationReport",
    "load",
    "load_platform",
    "resolve",
    "synth_manifest",
    "synthesize",
    "validate_files",
    "write_template",
]


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating one file."""

    file: str
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def load(path: str | os.PathLike[str], policy: PlatformPolicy | None = None) -> LoadedManifest:
    """Read and validate a manifest; raise ValidationError with every problem."""
    return load_manifest(path, policy)


def validate_files(paths: Iterable[str | os.PathLike[str]], policy: PlatformPolicy | None = None) -> list[ValidationReport]:
    """Validate several manifests; never raises for bad input, one report per file."""
    reports = []
    for path in paths:
        try:
            load_manifest(path, policy)
        except ValidationError as exc:
            reports.append(ValidationReport(os.fspath(path), tuple(exc.problems)))
        else:
            reports.append(ValidationReport(os.fspath(path), ()))
    return reports


def load_platform(platform_file: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None, *,
                  policy_file: str | os.PathLike[str] | None = None) -> PlatformSettings:
    """Platform settings from ``platform.yaml`` when given, else from the original sample's environment variables.

    With the environment variables, the policy comes from ``policy_file`` (a platform file's ``policy:``
    section) when given, else from ``MESHPIPE_POLICY`` (the JSON an AWS environment hands its builds), else
    it is the default policy. A bad policy and bad settings are reported together.
    """
    if platform_file is not None:
        if policy_file is not None:
            raise UserError("--policy goes with settings from the environment variables, not with --platform",
                            hint="put the policy in the platform file's policy: section")
        return load_platform_file(os.fspath(platform_file))
    environ = os.environ if environ is None else environ
    problems: list[Problem] = []
    policy = None
    try:
        policy = load_policy_file(os.fspath(policy_file)) if policy_file is not None else policy_from_env(environ)
    except ValidationError as exc:
        problems += exc.problems
    try:
        settings = settings_from_env(environ, policy)
    except ValidationError as exc:
        raise ValidationError(problems + exc.problems, hint=exc.hint) from None
    if problems:
        raise ValidationError(problems, hint="see docs/platform.md for the policy's settings")
    return settings


def synthesize(version: ServiceVersion, mesh: str = MeshFlavour.APPMESH) -> SynthResult:
    from meshpipe.synth import synthesize as _synthesize

    return _synthesize(version, MeshFlavour.parse(mesh))


def synth_manifest(manifest_path: str | os.PathLike[str], *, commit: str | None, platform: PlatformSettings,
                   service: str | None = None, mesh: str = MeshFlavour.APPMESH,
                   environ: Mapping[str, str] | None = None) -> SynthResult:
    """Load, validate, resolve and synthesize in one call.

    The service name comes from ``service``, else ``SERVICE_NAME``, else the manifest's ``Task.Family``;
    the commit from ``commit``, else ``CONFIG_COMMIT_ID`` (as CodeBuild passes them).
    """
    env_service, env_commit = build_inputs_from_env(os.environ if environ is None else environ)
    # Name a bad value where it came from: the option, or CodeBuild's variable.
    if commit:
        check_commit(commit, "command line", "--commit")
    elif env_commit:
        check_commit(env_commit, "environment", "CONFIG_COMMIT_ID")
        commit = env_commit
    else:
        raise UserError("no commit given", hint="pass --commit SHA or set CONFIG_COMMIT_ID")
    if service:
        check_service_name(service, "command line", "--service")
    elif env_service:
        check_service_name(env_service, "environment", "SERVICE_NAME")
    loaded = load_manifest(manifest_path, platform.policy)
    service = service or env_service or loaded.manifest.task.family
    version = resolve(loaded, platform, service, commit)
    return synthesize(version, mesh)


def write_template(result: SynthResult, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``<out_dir>/<stack-name>.template.json`` atomically (a temp file renamed into place)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {out}: {exc.strerror}") from None
    try:
        return write_atomically(out / result.file_name, result.json_text, mode=0o644)
    except OSError as exc:
        raise OperationError(f"cannot write {out / result.file_name}: {exc.strerror or exc}") from None
