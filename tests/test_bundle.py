"""The build bundle: meshpipe's wheel, its pinned requirements and (optionally) their wheels, in one zip.

No test downloads anything: bundles are built without wheels, or with a stand-in downloader.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import meshpipe
from meshpipe.errors import OperationError, UserError
from meshpipe.pipeline.bundle import BUNDLE_KEY, WheelTarget, build_bundle, build_meshpipe_wheel, project_info
from meshpipe.synth.buildspec import BUILD_PYTHON

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
PACKAGE_DIR = Path(meshpipe.__file__).resolve().parent


def pyproject_pins() -> list[str]:
    return tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]


def requirement_lines(text: str) -> tuple[list[str], list[str]]:
    """(pip options, requirements) of a requirements file."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [x for x in lines if x.startswith("-")], [x for x in lines if not x.startswith("-")]


def wheel_name_for(pin: str) -> str:
    name, version = pin.split("==")
    return f"{name.lower().replace('-', '_')}-{version}-py3-none-any.whl"


class FakeDownloader:
    """Writes a stand-in wheel per pin (and one transitive dependency) and records what it was asked."""

    def __init__(self, skip: str | None = None) -> None:
        self.calls: list[tuple[list[str], WheelTarget]] = []
        self.skip = skip

    def __call__(self, requirements, dest: Path, target: WheelTarget) -> None:
        self.calls.append((list(requirements), target))
        for pin in requirements:
            if pin != self.skip:
                (dest / wheel_name_for(pin)).write_bytes(f"wheel of {pin}".encode())
        (dest / "idna-3.20-py3-none-any.whl").write_bytes(b"transitive")


def test_bundle_without_wheels_holds_meshpipe_and_pyprojects_pins(tmp_path):
    path = build_bundle(tmp_path, include_wheels=False)
    assert path == tmp_path / BUNDLE_KEY == tmp_path / "meshpipe-bundle.zip"
    with zipfile.ZipFile(path) as bundle:
        names = bundle.namelist()
        options, pins = requirement_lines(bundle.read("requirements.txt").decode())
        described = json.loads(bundle.read("bundle.json"))
    assert names == sorted(names)
    assert names == ["bundle.json", "requirements.txt", f"wheels/meshpipe-{meshpipe.__version__}-py3-none-any.whl"]
    assert options == []  # the build installs the pins from the index
    assert sorted(pins) == sorted(pyproject_pins())
    assert described["self_contained"] is False


def test_meshpipe_wheel_holds_every_package_file_its_pins_and_the_cli(tmp_path):
    name, data = build_meshpipe_wheel()
    assert name == f"meshpipe-{meshpipe.__version__}-py3-none-any.whl"
    dist_info = f"meshpipe-{meshpipe.__version__}.dist-info"
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        names = set(wheel.namelist())
        sources = {p.relative_to(PACKAGE_DIR.parent).as_posix() for p in PACKAGE_DIR.rglob("*.py")
                   if "__pycache__" not in p.parts}
        assert sources <= names
        assert "meshpipe/py.typed" in names
        assert not any(n.endswith(".pyc") for n in names)
        meta = wheel.read(f"{dist_info}/METADATA").decode().splitlines()
        assert sorted(x.removeprefix("Requires-Dist: ") for x in meta if x.startswith("Requires-Dist:")) == \
            sorted(pyproject_pins())
        scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
        assert f"meshpipe = {scripts['meshpipe']}" in wheel.read(f"{dist_info}/entry_points.txt").decode()
        for line in wheel.read(f"{dist_info}/RECORD").decode().splitlines():
            file, digest, size = line.rsplit(",", 2)
            if file.endswith("RECORD"):
                continue
            content = wheel.read(file)
            expected = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={expected}", len(content)), file


def test_pip_installs_the_meshpipe_wheel_with_its_command(tmp_path):
    name, data = build_meshpipe_wheel()
    wheel = tmp_path / name
    wheel.write_bytes(data)
    target = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                             "--disable-pip-version-check", "--target", str(target), str(wheel)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (target / "meshpipe" / "__init__.py").is_file()
    assert (target / "bin" / "meshpipe").is_file()


def test_bundles_are_byte_for_byte_reproducible(tmp_path):
    first = build_bundle(tmp_path / "a", include_wheels=False).read_bytes()
    second = build_bundle(tmp_path / "b", include_wheels=False).read_bytes()
    assert first == second
    with zipfile.ZipFile(io.BytesIO(first)) as bundle:
        assert {i.date_time for i in bundle.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_a_self_contained_bundle_carries_the_wheels_and_tells_pip_to_use_only_them(tmp_path):
    downloader = FakeDownloader()
    path = build_bundle(tmp_path, downloader=downloader)
    [(asked, target)] = downloader.calls
    assert sorted(asked) == sorted(pyproject_pins())
    assert target.python_version == BUILD_PYTHON and target.abi == "cp" + BUILD_PYTHON.replace(".", "")
    with zipfile.ZipFile(path) as bundle:
        names = set(bundle.namelist())
        options, pins = requirement_lines(bundle.read("requirements.txt").decode())
        described = json.loads(bundle.read("bundle.json"))
    assert {f"wheels/{wheel_name_for(p)}" for p in pyproject_pins()} <= names
    assert "wheels/idna-3.20-py3-none-any.whl" in names
    assert options == ["--no-index", "--find-links wheels"]
    assert sorted(pins) == sorted(pyproject_pins())
    assert described["self_contained"] is True


def test_a_missing_wheel_fails_the_bundle_and_writes_nothing(tmp_path):
    skipped = pyproject_pins()[0]
    with pytest.raises(OperationError, match=skipped.split("==")[0]):
        build_bundle(tmp_path / "out", downloader=FakeDownloader(skip=skipped))
    assert not (tmp_path / "out").exists()


def test_a_failed_download_writes_nothing(tmp_path):
    def offline(requirements, dest, target):
        raise OperationError("pip download failed", hint="include_wheels=False")

    (tmp_path / BUNDLE_KEY).write_bytes(b"previous bundle")
    with pytest.raises(OperationError):
        build_bundle(tmp_path, downloader=offline)
    assert (tmp_path / BUNDLE_KEY).read_bytes() == b"previous bundle"
    assert sorted(p.name for p in tmp_path.iterdir()) == [BUNDLE_KEY]


def test_dependencies_must_be_pinned_exactly(tmp_path):
    loose = tmp_path / "pyproject.toml"
    loose.write_text('[project]\nname = "meshpipe"\nversion = "0.1.0"\ndependencies = ["pydantic>=2", "rich==15.0.0"]\n')
    with pytest.raises(UserError, match="pydantic>=2"):
        project_info(loose)
    assert project_info(PYPROJECT).dependencies == tuple(pyproject_pins())
