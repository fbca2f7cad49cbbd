"""synthesize(): flavour choice, stack and file names, deterministic bytes, purity."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from meshpipe.errors import UserError
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.synth import SynthResult, synthesize
from support import synth_cases as cases


def test_default_flavour_is_app_mesh_with_a_stack_per_version() -> None:
    result = synthesize(cases.sample_version("hello-web"))
    assert isinstance(result, SynthResult)
    assert (result.mesh, result.stack_name) == ("appmesh", "demo-hello-web-e9d5f17a")
    assert result.file_name == "demo-hello-web-e9d5f17a.template.json"
    assert "VirtualNode" in result.template["Resources"]


def test_service_connect_flavour_has_a_stack_per_service() -> None:
    result = synthesize(cases.sample_version("hello-web"), "service-connect")
    assert (result.mesh, result.stack_name) == ("service-connect", "demo-hello-web")
    assert result.file_name == "demo-hello-web.template.json"


@pytest.mark.parametrize("mesh", ["istio", "", "AppMesh", "service_connect"])
def test_unknown_flavour_is_a_user_error_naming_the_choices(mesh: str) -> None:
    with pytest.raises(UserError) as err:
        synthesize(cases.sample_version("hello-web"), mesh)
    assert repr(mesh) in err.value.message
    assert err.value.hint and all(f in err.value.hint for f in MeshFlavour)


@pytest.mark.parametrize("mesh", MeshFlavour)
def test_same_input_same_bytes(mesh: str) -> None:
    first = synthesize(cases.sample_version("hello-backend"), mesh).json_text
    second = synthesize(cases.sample_version("hello-backend"), mesh).json_text
    assert first == second
    assert first.endswith("}\n")
    assert json.loads(first) == synthesize(cases.sample_version("hello-backend"), mesh).template


def test_non_ascii_values_are_written_as_utf8_text() -> None:
    text = cases.EVERY_EXTENSION_MANIFEST.replace('LOG_LEVEL: "debug"', 'LOG_LEVEL: "débogage"')
    result = synthesize(cases.version_from_text(text))
    assert "débogage" in result.json_text


def test_synthesis_touches_no_cloud_sdk_and_no_linter() -> None:
    # Run in a fresh interpreter, so modules imported by other tests do not hide an import.
    script = (
        "import sys\n"
        "from meshpipe.manifest import load_manifest\n"
        "from meshpipe.model import resolve\n"
        "from meshpipe.platform import load_platform_file\n"
        "from meshpipe.synth import synthesize\n"
        f"p = load_platform_file({str(cases.PLATFORM_FILE)!r})\n"
        f"m = load_manifest({str(cases.SAMPLES['hello-web'])!r}, p.policy)\n"
        "v = resolve(m, p, 'hello-web', 'e9d5f17a3c4b5d6e')\n"
        "for mesh in ('appmesh', 'service-connect'):\n"
        "    synthesize(v, mesh).json_text\n"
        "loaded = sorted(n for n in sys.modules if n.split('.')[0] in {'boto3', 'botocore', 'cfnlint', 'subprocess'})\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
