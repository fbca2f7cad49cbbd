"""Container images made from this machine's own files: no registry is needed to run a task as a container.

Two images are assembled here and imported into the Docker Engine (``docker import``):

* ``meshpipe-local/pause``: ``sleep`` and the libraries it loads. One runs per task and holds the task's
  network namespace (as ECS's pause container does for awsvpc), so the sidecar and the interception rules
  are in place before the app starts.
* ``meshpipe-local/python:3.11``: this machine's Python, its standard library, ``curl`` and ``sh`` (the
  task definition's health check is ``CMD-SHELL curl -f ...``) and the packages meshpipe's samples import.
  The bundled samples' Dockerfiles build ``FROM`` it.

A root filesystem is a list of host files (each program with the shared libraries ``ldd`` names for it)
written into a tar archive at the same paths. Building the list reads the file system; the archive is made
in memory.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from meshpipe.errors import UserError

PAUSE_IMAGE = "meshpipe-local/pause:1"
PYTHON_IMAGE = f"meshpipe-local/python:{sys.version_info.major}.{sys.version_info.minor}"
# What the samples import beyond the standard library (aiohttp and what it needs).
SAMPLE_DISTRIBUTIONS = ("aiohttp",)
# Folders of the standard library no program needs at run time.
_STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "__pycache__", "site-packages",
                "dist-packages"}
_LDD_PATH = re.compile(r"(/\S+) \(0x[0-9a-f]+\)")


def shared_libraries(binary: Path) -> set[Path]:
    """The shared libraries the dynamic linker loads for ``binary`` (and the linker itself)."""
    try:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        raise UserError("ldd is not installed: it lists the libraries a program needs in its image",
                        hint="apt-get install libc-bin") from None
    return {Path(m.group(1)) for m in _LDD_PATH.finditer(out)}


def program(name: str) -> Path:
    found = shutil.which(name)
    if found is None:
        raise UserError(f"{name} is not installed on this machine; the local base image needs it",
                        hint=f"apt-get install {name}")
    return Path(found)


def with_libraries(files: Iterable[Path]) -> set[Path]:
    """``files`` plus the shared libraries every ELF file among them loads."""
    out: set[Path] = set()
    for f in files:
        out.add(f)
        if f.suffix == ".so" or ".so." in f.name or os.access(f, os.X_OK):
            with open(f, "rb") as fh:
                if fh.read(4) != b"\x7fELF":
                    continue
            out |= shared_libraries(f)
    return out


def rootfs_archive(files: Iterable[Path], links: Mapping[str, str] | None = None,
                   texts: Mapping[str, str] | None = None) -> bytes:
    """A tar of ``files`` at their own paths (symlinks followed: each is stored as the file it names),
    ``links`` (path -> target) and small text files. Directories are made as needed."""
    buf = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_dirs(path: str) -> None:
            parts = Path(path).parent.parts[1:]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)

        for name in ("tmp", "etc", "proc", "sys", "dev"):
            add_dirs(f"/{name}/x")
        for f in sorted(set(files)):
            arc = str(f).lstrip("/")
            if arc in seen:
                continue
            add_dirs(str(f))
            seen.add(arc)
            tar.add(str(f.resolve()), arcname=arc, recursive=False)
        for path, target in (links or {}).items():
            if path.lstrip("/") in seen:
                continue
            seen.add(path.lstrip("/"))
            add_dirs(path)
            info = tarfile.TarInfo(path.lstrip("/"))
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
        for path, text in (texts or {}).items():
            add_dirs(path)
            data = text.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _etc_files() -> dict[str, str]:
    return {"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\nenvoy:x:1337:1337::/:/bin/sh\n",
            "/etc/group": "root:x:0:\nenvoy:x:1337:\n",
            "/etc/nsswitch.conf": "hosts: files dns\n"}


def pause_rootfs() -> bytes:
    sleep = program("sleep")
    return rootfs_archive(with_libraries([sleep]), links={"/bin/pause": str(sleep)}, texts=_etc_files())


def _stdlib_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for root, dirs, names in os.walk(stdlib):
        dirs[:] = [d for d in dirs if d not in _STDLIB_SKIP and not d.startswith("config-")]
        files += [Path(root) / n for n in names if not n.endswith((".pyc", ".exe"))]
    return files


def _distribution_files(names: Iterable[str]) -> list[Path]:
    """Every installed file of the named distributions and of what they require, recursively."""
    files: list[Path] = []
    todo, done = list(names), set()
    while todo:
        name = re.split(r"[ ;<>=!~\[]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if name in done:
            continue
        done.add(name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for req in dist.requires or ():
            if "extra ==" not in req:
                todo.append(req)
        for f in dist.files or ():
            path = Path(os.path.normpath(str(dist.locate_file(f))))
            # Only the importable files: not scripts installed elsewhere, not caches or metadata.
            inside = not str(f).startswith("..")
            if inside and path.is_file() and "__pycache__" not in path.parts and ".dist-info" not in str(f):
                files.append(path)
    return files


def python_rootfs() -> bytes:
    """This machine's Python with curl, sh and the samples' packages, all at their own paths, except the
    packages, which go into the image's site folder."""
    python = Path(sys.executable).resolve()
    curl, sh = program("curl"), program("sh")
    site = Path(sysconfig.get_paths()["purelib"])
    # Where the interpreter itself (outside any venv) looks for packages first.
    image_site = subprocess.run([str(python), "-I", "-c", "import site; print(site.getsitepackages()[0])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    packages = _distribution_files(SAMPLE_DISTRIBUTIONS)
    elf = with_libraries([python, curl, sh.resolve(), program("env").resolve(), *(p for p in _stdlib_files() if p.suffix == ".so"),
                          *(p for p in packages if p.suffix == ".so")])
    archive = rootfs_archive(
        [*elf, *_stdlib_files()],
        links={"/usr/local/bin/python": str(python), "/usr/local/bin/python3": str(python),
               "/bin/sh": str(sh.resolve()), "/usr/bin/curl": str(curl.resolve()),
               "/usr/bin/env": str(program("env").resolve())},
        texts=_etc_files())
    # The packages are added under the image's own site folder (the venv's path would mean nothing there).
    buf = io.BytesIO(archive)
    out = io.BytesIO()
    with tarfile.open(fileobj=buf) as src, tarfile.open(fileobj=out, mode="w") as dst:
        names = set()
        for member in src.getmembers():
            names.add(member.name)
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        for path in packages:
            arc = f"{image_site}/{path.relative_to(site)}".lstrip("/")
            parts = Path(arc).parent.parts
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in names:
                    names.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    dst.addfile(info)
            if arc not in names:
                names.add(arc)
                dst.add(str(path), arcname=arc, recursive=False)
    return out.getvalue()
