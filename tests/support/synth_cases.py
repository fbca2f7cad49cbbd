"""The inputs the synth tests share, and the golden version-stack templates they are checked against.

The goldens are the two sample manifests (examples/*-cfg) x both mesh flavours, resolved against
examples/platform.yaml at the reference commit, byte for byte as ``meshpipe synth`` writes them.
tests/golden/regen.py rewrites them after a deliberate change to synthesis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshpipe.manifest import load_manifest, load_manifest_text
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.model import ServiceVersion, resolve
from meshpipe.platform import PlatformSettings, load_platform_file
from meshpipe.synth import SynthResult, synthesize

REPO = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO / "tests" / "golden"
EXAMPLES = REPO / "examples"
PLATFORM_FILE = EXAMPLES / "platform.yaml"
# The commit the reference templates were built for (tests/reference/env.txt).
REFERENCE_COMMIT = "e9d5f17a3c4b5d6e7f8091a2b3c4d5e6f7a8b9c0"
SAMPLES = {
    "hello-web": EXAMPLES / "hello-web-cfg" / "manifest.yaml",
    "hello-backend": EXAMPLES / "hello-backend-cfg" / "manifest.yaml",
}

# Every manifest extension at once: app environment variables, no Command (the image's default), an
# empty backends list; plus a non-default port, size and registry.
EVERY_EXTENSION_MANIFEST = """\
Task:
  Family: "orders-api"
  Cpu: 512
  Memory: 1024

AppContainer:
  Image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/orders-api:2.4.1"
  Port: 8080
  HealthCheckPath: "/health/ready"
  Environment:
    LOG_LEVEL: "debug"
    GREETING: "Hello, it's a \\"quoted\\" $HOME & more"

VirtualNode:
  Backends: []
"""


def platform(**policy_updates: Any) -> PlatformSettings:
    """The demo platform, with policy fields replaced (validated like a platform file would be)."""
    base = load_platform_file(str(PLATFORM_FILE))
    if not policy_updates:
        return base
    data = base.model_dump()
    data["policy"] = {**data["policy"], **policy_updates}
    return PlatformSettings.model_validate(data)


def version_from_text(text: str, service: str = "orders-api", commit: str = REFERENCE_COMMIT,
                      settings: PlatformSettings | None = None) -> ServiceVersion:
    settings = settings or platform()
    return resolve(load_manifest_text(text, "manifest.yaml", settings.policy), settings, service, commit)


def sample_version(service: str, commit: str = REFERENCE_COMMIT,
                   settings: PlatformSettings | None = None) -> ServiceVersion:
    settings = settings or platform()
    return resolve(load_manifest(SAMPLES[service], settings.policy), settings, service, commit)


def golden_path(result: SynthResult) -> Path:
    return GOLDEN_DIR / result.mesh / result.file_name


# synth --diff goldens: the second hello-backend (other greeting, examples/hello-backend-cfg-v2) at another
# commit, against the golden template of the first, in each flavour.
DIFF_COMMIT = "0badc0de" + "2" * 32
DIFF_MANIFEST = EXAMPLES / "hello-backend-cfg-v2" / "manifest.yaml"


def diff_argv(mesh: str) -> list[str]:
    """The ``meshpipe synth --diff`` command line of a diff golden, its paths relative to the repository."""
    previous = golden_path(synthesize(sample_version("hello-backend"), mesh)).relative_to(REPO)
    return ["synth", str(DIFF_MANIFEST.relative_to(REPO)), "--commit", DIFF_COMMIT, "--service", "hello-backend",
            "--platform", str(PLATFORM_FILE.relative_to(REPO)), "--mesh", mesh, "--diff", str(previous)]


def diff_golden_path(mesh: str) -> Path:
    return GOLDEN_DIR / "diff" / f"{mesh}-hello-backend-v2.txt"


def diff_golden_text(mesh: str) -> str:
    import json

    from meshpipe.synth.diff import diff_lines, diff_templates

    argv = diff_argv(mesh)
    previous = argv[argv.index("--diff") + 1]
    old = json.loads((REPO / previous).read_text(encoding="utf-8"))
    new = synthesize(resolve(load_manifest(DIFF_MANIFEST, platform().policy), platform(), "hello-backend",
                             DIFF_COMMIT), mesh)
    return "\n".join(diff_lines(diff_templates(old, new.template), previous, f"{new.stack_name} (new)")) + "\n"


def golden_results() -> list[SynthResult]:
    return [synthesize(sample_version(service), mesh) for service in SAMPLES for mesh in MeshFlavour]
