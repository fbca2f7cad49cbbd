"""The build bundle: the zip a service pipeline's Build stage installs meshpipe from.

Upload it to the environment's build bucket under the key :data:`BUNDLE_KEY`. Its layout::

    requirements.txt    meshpipe's runtime dependencies, pinned exactly as in pyproject.toml
    wheels/meshpipe-<version>-py3-none-any.whl
    wheels/*.whl        the dependencies' wheels for CodeBuild's Python (only with include_wheels)
    bundle.json         what the bundle holds

With ``include_wheels=True`` (the default) the bundle is self-contained: ``requirements.txt`` starts with
``--no-index`` and ``--find-links wheels``, so the build installs without any package index and always
gets the very files the platform team built and checked. ``include_wheels=False`` builds the bundle
offline: it carries only the pins, and the build fetches them from PyPI when it runs.

The meshpipe wheel is assembled here from the package's own files, so no build tool or network is
needed. Zips are deterministic: sorted entries, fixed timestamps and permissions.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from meshpipe.atomic import write_atomically
from meshpipe.errors import OperationError, UserError
from meshpipe.synth.build_bucket import BUNDLE_KEY
from meshpipe.synth.buildspec import BUILD_PYTHON, REQUIREMENTS_FILE, WHEELS_DIR

__all__ = ["BUNDLE_KEY", "Downloader", "ProjectInfo", "WheelTarget", "build_bundle", "build_meshpipe_wheel",
           "pip_download", "project_info"]

# Zip entries carry this date (the earliest a zip can hold) so the same files give the same bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644
PIN_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<extras>\[[A-Za-z0-9,._-]+\])?==(?P<version>[A-Za-z0-9.+!_-]+)$")
PACKAGE = "meshpipe"


@dataclass(frozen=True)
class WheelTarget:
    """The interpreter the Build stage runs: dependency wheels are downloaded for it, not for this machine."""

    python_version: str = BUILD_PYTHON
    # CodeBuild's Ubuntu 22.04 image runs glibc 2.35 on x86_64; older manylinux wheels run there too.
    platforms: tuple[str, ...] = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")
    implementation: str = "cp"

    @property
    def abi(self) -> str:
        return f"{self.implementation}{self.python_version.replace('.', '')}"


# (pinned requirements, destination folder, target) -> wheels in the folder. Tests pass a fake one.
Downloader = Callable[[Sequence[str], Path, WheelTarget], None]


@dataclass(frozen=True)
class ProjectInfo:
    """What the meshpipe wheel says about itself."""

    name: str
    version: str
    summary: str
    requires_python: str
    dependencies: tuple[str, ...]
    scripts: dict[str, str] = field(default_factory=dict)
    package_dir: Path = Path(__file__).resolve().parents[1]  # the meshpipe package


def _source_pyproject() -> Path | None:
    """pyproject.toml of the source tree this package runs from (src layout), if there is one."""
    candidate = Path(__file__).resolve().parents[3] / "pyproject.toml"
    return candidate if candidate.is_file() else None


def project_info(pyproject: Path | None = None) -> ProjectInfo:
    """meshpipe's name, version, pins and scripts: from ``pyproject.toml`` of the source tree when meshpipe
    runs from one, else from the installed distribution's metadata."""
    path = pyproject or _source_pyproject()
    if path is not None:
        try:
            project = tomllib.loads(Path(path).read_text(encoding="utf-8"))["project"]
        except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
            raise UserError(f"cannot read [project] from {path}: {exc}") from None
        info = ProjectInfo(
            name=project["name"],
            version=project["version"],
            summary=project.get("description", ""),
            requires_python=project.get("requires-python", ""),
            dependencies=tuple(project.get("dependencies", ())),
            scripts=dict(project.get("scripts", {})),
        )
    else:
        dist = metadata.distribution(PACKAGE)
        meta = dist.metadata
        info = ProjectInfo(
            name=meta["Name"],
            version=dist.version,
            summary=meta["Summary"] or "",
            requires_python=meta["Requires-Python"] or "",
            dependencies=tuple(r for r in (dist.requires or []) if "extra ==" not in r),
            scripts={ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"},
        )
    loose = [d for d in info.dependencies if not PIN_RE.match(d.replace(" ", ""))]
    if loose:
        raise UserError(f"dependencies must be pinned exactly (name==version) to go into a bundle: {', '.join(loose)}")
    return info


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            entry = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.create_system = 3  # unix, so the permission bits below are read
            entry.external_attr = _FILE_MODE << 16
            archive.writestr(entry, entries[name], compresslevel=9)
    return buffer.getvalue()


def _package_files(package_dir: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(package_dir.rglob("*")):
        rel = path.relative_to(package_dir.parent)
        if not path.is_file() or "__pycache__" in rel.parts or path.suffix in {".pyc", ".pyo"}:
            continue
        files[rel.as_posix()] = path.read_bytes()
    return files


def build_meshpipe_wheel(info: ProjectInfo | None = None) -> tuple[str, bytes]:
    """A pure-Python wheel of meshpipe from its package files: (file name, bytes)."""
    info = info or project_info()
    dist_info = f"{info.name}-{info.version}.dist-info"
    meta_lines = ["Metadata-Version: 2.1", f"Name: {info.name}", f"Version: {info.version}"]
    if info.summary:
        meta_lines.append(f"Summary: {info.summary}")
    if info.requires_python:
        meta_lines.append(f"Requires-Python: {info.requires_python}")
    meta_lines += [f"Requires-Dist: {d}" for d in info.dependencies]
    files = _package_files(info.package_dir)
    files[f"{dist_info}/METADATA"] = ("\n".join(meta_lines) + "\n").encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: meshpipe.pipeline.bundle\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    if info.scripts:
        scripts = "".join(f"{name} = {target}\n" for name, target in sorted(info.scripts.items()))
        files[f"{dist_info}/entry_points.txt"] = f"[console_scripts]\n{scripts}".encode()
    record = [f"{name},{_record_hash(data)},{len(data)}" for name, data in sorted(files.items())]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    return f"{info.name}-{info.version}-py3-none-any.whl", _zip_bytes(files)


def pip_download(requirements: Sequence[str], dest: Path, target: WheelTarget) -> None:
    """Download wheels of ``requirements`` and their dependencies for ``target`` with pip."""
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
               "--python-version", target.python_version, "--implementation", target.implementation,
               "--abi", target.abi, *[arg for p in target.platforms for arg in ("--platform", p)],
               "--dest", str(dest), *requirements]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OperationError(f"pip download did not run: {exc}",
                             hint="build the bundle without wheels (include_wheels=False)") from None
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise OperationError(f"pip download failed:\n{tail}",
                             hint="check the network, or build the bundle without wheels (include_wheels=False); "
                                  "the build then installs the pins from PyPI")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements_text(pins: Sequence[str], include_wheels: bool) -> str:
    lines = [f"--no-index\n--find-links {WHEELS_DIR}"] if include_wheels else []
    lines += sorted(p.replace(" ", "") for p in pins)
    return "\n".join(lines) + "\n"


def _downloaded_wheels(pins: Sequence[str], downloader: Downloader, target: WheelTarget) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory(prefix="meshpipe-wheels-") as tmp:
        dest = Path(tmp)
        downloader(list(pins), dest, target)
        wheels = {p.name: p.read_bytes() for p in sorted(dest.iterdir()) if p.suffix == ".whl"}
        others = sorted(p.name for p in dest.iterdir() if p.suffix != ".whl")
    if others:
        raise OperationError(f"the download gave files that are not wheels: {', '.join(others)}")
    have = {(_normalize(n.split("-")[0]), n.split("-")[1]) for n in wheels}
    missing = []
    for pin in pins:
        match = PIN_RE.match(pin.replace(" ", ""))
        assert match is not None  # project_info checked every pin
        if (_normalize(match["name"]), match["version"]) not in have:
            missing.append(pin)
    if missing:
        raise OperationError(f"no wheel was downloaded for {', '.join(missing)}")
    return wheels


def build_bundle(out_dir: Path | str, *, include_wheels: bool = True, downloader: Downloader | None = None,
                 pyproject: Path | None = None, target: WheelTarget | None = None) -> Path:
    """Build ``<out_dir>/meshpipe-bundle.zip`` and return its path; nothing is written if any step fails."""
    info = project_info(pyproject)
    target = target or WheelTarget()
    wheel_name, wheel = build_meshpipe_wheel(info)
    wheels = {wheel_name: wheel}
    if include_wheels:
        wheels.update(_downloaded_wheels(info.dependencies, downloader or pip_download, target))
    description = {
        "meshpipe": info.version,
        "requirements": sorted(d.replace(" ", "") for d in info.dependencies),
        "self_contained": include_wheels,
        "python": target.python_version,
        "platforms": list(target.platforms) if include_wheels else [],
        "wheels": sorted(wheels),
    }
    entries = {f"{WHEELS_DIR}/{name}": data for name, data in wheels.items()}
    entries[REQUIREMENTS_FILE] = _requirements_text(info.dependencies, include_wheels).encode()
    entries["bundle.json"] = (json.dumps(description, indent=1, sort_keys=True) + "\n").encode()
    data = _zip_bytes(entries)

    path = Path(out_dir) / BUNDLE_KEY
    _write_atomically(path, data)
    return path


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it: ``path`` is either whole or untouched."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data, mode=0o644)
    except OSError as exc:
        raise OperationError(f"cannot write {path}: {exc.strerror or exc}") from None
