"""Image -> local command: how the local engine runs a container image as a process on this machine.

A task definition names an image and a command (``wizriz/hello-web:66f2a19`` with
``["node", "server", "-b http://hello-backend.demo.local/data"]``). Locally there is no container runtime,
so each image repository maps to a local argv prefix, and the first words of the task's command (the
image's own interpreter and entry point, e.g. ``node server``) are replaced by it; the remaining words are
the app's arguments and are passed on unchanged:

    ["node", "server", "-b http://..."]  ->  [python, "-m", "meshpipe.samples.hello_web", "-b http://..."]

Built in: the bundled samples (``meshpipe/hello-web``, ``meshpipe/hello-backend``), the original sample's images
(``wizriz/hello-web``, ``wizriz/hello-backend``) mapped to them so the original sample's manifests run verbatim, and
``local-exec/<anything>``, whose command is run as it is written.

More mappings go in ``<MESHPIPE_HOME>/images.yaml``; they are tried before the built-in ones::

    # <MESHPIPE_HOME>/images.yaml
    images:
      - match: "123456789012.dkr.ecr.us-east-1.amazonaws.com/orders"   # repository, any tag
        argv: ["{python}", "-m", "orders.server"]                     # local program and its first words
        drop: 2          # words of the task's Command to drop (the image's ["python", "server.py"])
      - match: "myteam/*"                                             # '*' and '?' wildcards
        argv: ["/opt/myteam/bin/run"]

``match`` is the image without its tag or digest (Docker Hub images without ``docker.io/``); ``argv`` may
be empty (the command is then run as it is) and ``{python}`` in it stands for this Python interpreter;
``drop`` defaults to 0. Until containers run locally, the tag can choose the code: ``{tag}`` in ``argv``,
``cwd`` (the working directory; relative paths are under MESHPIPE_HOME) and ``env`` (variables the image
would set; the manifest's Environment wins over them) stands for the image's tag (its digest when it has
none), so ``mycorp/orders:1.1`` and ``:1.2`` can run two checkouts::

      - match: "mycorp/orders"
        argv: ["{python}", "server.py"]
        drop: 2
        cwd: "/src/orders-{tag}"
        env: {ORDERS_VERSION: "{tag}"}

This module is pure apart from :func:`load_user_mappings` and :func:`local_command`, which read the file.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from meshpipe.errors import Problem, UserError, ValidationError
from meshpipe.validation.rules import DOCKER_HUB, parse_image

IMAGES_FILE = "images.yaml"
PYTHON = "{python}"
TAG = "{tag}"
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}\Z")
KEYS = ("match", "argv", "drop", "cwd", "env")


@dataclass(frozen=True)
class ImageMapping:
    """Images whose repository matches ``match`` run as ``argv`` + the command minus its first ``drop``
    words."""

    match: str
    argv: tuple[str, ...]
    drop: int = 0
    origin: str = "built-in"
    cwd: str | None = None  # the working directory ({tag} expanded); None: the daemon's
    env: tuple[tuple[str, str], ...] = ()  # variables the image would set ({tag} expanded)


@dataclass(frozen=True)
class LocalProgram:
    """How a task's app runs on this machine: its argv, working directory and the image's variables."""

    argv: list[str]
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()


def _sample(module: str) -> tuple[str, ...]:
    return (PYTHON, "-m", f"meshpipe.samples.{module}")


BUILTIN_MAPPINGS: tuple[ImageMapping, ...] = (
    # The bundled samples' images start the module themselves (ENTRYPOINT), so a command holds only arguments.
    ImageMapping("meshpipe/hello-web", _sample("hello_web"), 0),
    ImageMapping("meshpipe/hello-backend", _sample("hello_backend"), 0),
    # The original sample's Node.js images: their command starts with "node server".
    ImageMapping("wizriz/hello-web", _sample("hello_web"), 2),
    ImageMapping("wizriz/hello-backend", _sample("hello_backend"), 2),
    ImageMapping("local-exec/*", (), 0),
)


def repository_of(image: str) -> str:
    """``wizriz/hello-web:66f2a19`` -> ``wizriz/hello-web``; registries other than Docker Hub are kept."""
    parsed = parse_image(image)
    if parsed is None:
        raise UserError(f"{image!r} is not an image reference", hint="e.g. wizriz/hello-web:66f2a19")
    registry, name, _tag, _digest = parsed
    return name if registry == DOCKER_HUB else f"{registry}/{name}"


def _normalise_pattern(pattern: str) -> str:
    return pattern.removeprefix(f"{DOCKER_HUB}/")


def find_mapping(image: str, mappings: Sequence[ImageMapping]) -> ImageMapping | None:
    repo = repository_of(image)
    for mapping in mappings:
        if fnmatch.fnmatchcase(repo, _normalise_pattern(mapping.match)):
            return mapping
    return None


def tag_of(image: str) -> str:
    """What ``{tag}`` stands for: the image's tag, else its digest (``sha256:...``), else ``latest``."""
    parsed = parse_image(image)
    if parsed is None:
        raise UserError(f"{image!r} is not an image reference", hint="e.g. wizriz/hello-web:66f2a19")
    _registry, _name, tag, digest = parsed
    return tag or digest or "latest"


def suggested_drop(command: Sequence[str] | None) -> int:
    """How many first words of a Command are the image's own program (``node server``, ``python app.py``,
    ``./run``): the leading words that are not options, at most two; the rest are the app's arguments."""
    words = list(command or ())
    count = 0
    for word in words[:2]:
        if word.startswith("-") or " " in word:
            break
        count += 1
    return count


def _drop_example(command: Sequence[str] | None) -> str:
    words = list(command or ())
    drop = suggested_drop(words)
    if not words:
        return "drop: 0    # the manifest has no Command: argv is the whole command line"
    kept = words[drop:]
    return (f"drop: {drop}    # the Command it saw is {words!r}: {' '.join(words[:drop]) or 'nothing'} is the "
            f"image's own program, which argv replaces; {kept!r} is passed on")


def map_command(image: str, command: Sequence[str] | None, mappings: Sequence[ImageMapping],
                python: str = sys.executable, where: str = IMAGES_FILE) -> list[str]:
    """The local argv for ``image`` run with the task's ``command``. Pure."""
    return map_program(image, command, mappings, python, where).argv


def map_program(image: str, command: Sequence[str] | None, mappings: Sequence[ImageMapping],
                python: str = sys.executable, where: str = IMAGES_FILE) -> LocalProgram:
    """How ``image`` runs with the task's ``command``: argv, working directory, variables. Pure.

    ``mappings`` are tried in order (user mappings first, then :data:`BUILTIN_MAPPINGS`).
    """
    mapping = find_mapping(image, mappings)
    if mapping is None:
        repo = repository_of(image)
        raise UserError(
            f"the local engine does not know how to run image {image!r} as a local process",
            hint=f"add a mapping to {where}, e.g.\n"
                 f"images:\n  - match: \"{repo}\"\n    argv: [\"/path/to/program\"]\n"
                 f"    {_drop_example(command)}\n"
                 "or use an image named local-exec/<name>:<tag> whose Command is a local command line")
    words = list(command or ())
    if len(words) < mapping.drop:
        raise UserError(
            f"the command of image {image!r} has {len(words)} word(s), but its local mapping "
            f"({mapping.origin}) "
            f"replaces the first {mapping.drop} (the image's own program)",
            hint=f"write the full command as the image expects it, or for {mapping.match!r} use "
                 f"{_drop_example(command)}")
    tag = tag_of(image)

    def expand(word: str) -> str:
        return python if word == PYTHON else word.replace(TAG, tag)

    argv = [expand(word) for word in mapping.argv] + words[mapping.drop:]
    if not argv:
        raise UserError(f"image {image!r} runs its Command as it is, but the manifest has no Command",
                        hint="add AppContainer.Command with the program and its arguments")
    return LocalProgram(argv, None if mapping.cwd is None else expand(mapping.cwd),
                        tuple((name, expand(value)) for name, value in mapping.env))


def parse_user_mappings(data: object, lines: dict[str, int] | None = None,
                        file: str = IMAGES_FILE) -> tuple[ImageMapping, ...]:
    """Mappings from a parsed ``images.yaml``; every problem reported at once with its line. Pure."""
    lines = lines or {}

    def line(path: str) -> int | None:
        return lines.get(path)

    if data is None:
        return ()
    if not isinstance(data, dict) or set(data) - {"images"}:
        raise ValidationError([Problem(file, 1, "",
                                       "expected a mapping with one key, 'images': a list of mappings")])
    entries = data.get("images") or []
    if not isinstance(entries, list):
        raise ValidationError([Problem(file, line("images"), "images", "must be a list")])
    problems: list[Problem] = []
    out: list[ImageMapping] = []
    for i, entry in enumerate(entries):
        path = f"images[{i}]"
        if not isinstance(entry, dict):
            problems.append(Problem(file, line(path), path, "must be a mapping with match, argv and drop"))
            continue
        unknown = sorted(set(entry) - set(KEYS))
        for key in unknown:
            problems.append(Problem(file, line(f"{path}.{key}"), f"{path}.{key}",
                                    f"is not a known key; allowed: {', '.join(KEYS)}"))
        match, argv, drop = entry.get("match"), entry.get("argv", []), entry.get("drop", 0)
        cwd, env = entry.get("cwd"), entry.get("env") or {}
        if cwd is not None and (not isinstance(cwd, str) or not cwd):
            problems.append(Problem(file, line(f"{path}.cwd"), f"{path}.cwd",
                                    "must be a folder path ({tag} allowed); relative paths are under MESHPIPE_HOME"))
            cwd = None
        if not isinstance(env, dict) or not all(isinstance(k, str) and ENV_NAME_RE.match(k) and isinstance(v, str)
                                                for k, v in env.items()):
            problems.append(Problem(file, line(f"{path}.env"), f"{path}.env",
                                    "must map variable names (letters, digits, '_') to strings ({tag} allowed)"))
            env = {}
        if not isinstance(match, str) or not match:
            problems.append(Problem(file, line(f"{path}.match"), f"{path}.match",
                                    "is required: the image repository (without tag), '*' wildcards allowed"))
        if not isinstance(argv, list) or not all(isinstance(w, str) and w for w in argv):
            problems.append(Problem(file, line(f"{path}.argv"), f"{path}.argv",
                                    "must be a list of non-empty strings"))
        if isinstance(drop, bool) or not isinstance(drop, int) or drop < 0:
            problems.append(Problem(file, line(f"{path}.drop"), f"{path}.drop",
                                    "must be a whole number, 0 or more"))
        if not unknown and isinstance(match, str) and match and isinstance(argv, list) \
                and isinstance(drop, int) and not isinstance(drop, bool) and drop >= 0:
            out.append(ImageMapping(match, tuple(argv), drop, origin=f"{file}:{line(path) or '-'}", cwd=cwd,
                                    env=tuple(sorted(env.items()))))
    if problems:
        raise ValidationError(problems, hint="see the images.yaml format in 'meshpipe.engines.local.tasks.images'")
    return tuple(out)


def default_home() -> Path:
    return Path(os.environ.get("MESHPIPE_HOME") or Path.home() / ".meshpipe")


def load_user_mappings(home: Path | None = None) -> tuple[ImageMapping, ...]:
    """Read ``<home>/images.yaml`` when it exists (none is fine)."""
    from meshpipe.validation.yamlsafe import read_yaml_text

    path = (home or default_home()) / IMAGES_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not any(ln.strip() and not ln.lstrip().startswith(b"#") for ln in raw.splitlines()):
        return ()  # an empty file, or one with only comments, adds nothing
    doc = read_yaml_text(raw, str(path))
    return parse_user_mappings(doc.data, doc.lines, str(path))


def local_command(image: str, command: tuple[str, ...] | Sequence[str] | None, *, home: Path | None = None,
                  mappings: Sequence[ImageMapping] | None = None) -> list[str]:
    """The argv that runs ``image`` with ``command`` locally: the user's mappings, then the built-in ones.

    ``mappings`` replaces the user's file (for callers that loaded it once already).
    """
    return local_program(image, command, home=home, mappings=mappings).argv


def local_program(image: str, command: tuple[str, ...] | Sequence[str] | None, *, home: Path | None = None,
                  mappings: Sequence[ImageMapping] | None = None) -> LocalProgram:
    """As :func:`local_command`, with the working directory (relative: under the home) and variables."""
    base = home or default_home()
    user = load_user_mappings(home) if mappings is None else tuple(mappings)
    program = map_program(image, command, (*user, *BUILTIN_MAPPINGS), where=str(base / IMAGES_FILE))
    if program.cwd is not None:
        cwd = Path(program.cwd) if Path(program.cwd).is_absolute() else base / program.cwd
        if not cwd.is_dir():
            raise UserError(f"the working directory {cwd} of image {image!r} is not a folder on this machine",
                            hint=f"check 'cwd' of its mapping in {base / IMAGES_FILE} ({{tag}} is {tag_of(image)!r})")
        program = LocalProgram(program.argv, str(cwd), program.env)
    return program
