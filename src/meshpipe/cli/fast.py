"""The fast path of the commands people run most: the read commands ``versions``, ``route show``,
``env status`` and ``stats`` on the local engine, answered without loading Typer, Rich or pydantic, and
``synth``, without Typer and Rich (the build step runs it once per version).

A read command is one request to the environment's running daemon; loading the full command line
would cost ten times that. :func:`run` takes the plain forms of these commands (their arguments and the
``--env``, ``--engine`` and ``--format`` options, also from ``MESHPIPE_ENV`` and ``MESHPIPE_ENGINE``;
synth's own options) and answers them through :mod:`meshpipe.cli.readouts`, exactly as the Typer
commands do. Anything else (``--help``, another engine, an option it does not know, a daemon that is
not running and must be started) returns None, and the full command line handles it.

A read takes the daemon's JSON through ``meshpipe.engines.daemon_read`` and prints it from that JSON, so it
loads neither the engine's operation table and types nor typing, dataclasses or pathlib (each costs a
read about as much as starting Python); only header routes are decoded to the routing types to be shown.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

TYPE_CHECKING = False  # typing's own flag would load typing, a tenth of a read command
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

# command words -> (positional argument name, takes --env)
READS: dict[tuple[str, ...], bool] = {
    ("versions",): True, ("route", "show"): True, ("env", "status"): True, ("stats",): True,
}
# Commands whose one argument may be left out (env status: --env, $MESHPIPE_ENV or demo name it instead).
OPTIONAL_ARGUMENT = (("env", "status"),)
OPTIONS = ("--env", "--engine", "--format")
# command words -> what meshpipe.engines.daemon_read asks the daemon
READ_NAMES = {("versions",): "versions", ("route", "show"): "route_view", ("env", "status"): "env_status",
              ("stats",): "stats"}


def parse(argv: Sequence[str]) -> tuple[tuple[str, ...], str, dict[str, str]] | None:
    """(command words, the one positional argument, options) for a plain read command, else None."""
    words = next((w for w in READS if tuple(argv[:len(w)]) == w), None)
    if words is None:
        return None
    options: dict[str, str] = {}
    positional: list[str] = []
    rest = list(argv[len(words):])
    while rest:
        arg = rest.pop(0)
        if arg.startswith("-"):
            name, eq, value = arg.partition("=")
            if name not in OPTIONS or (name == "--env" and not READS[words]) or name in options:
                return None
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
            options[name] = value
        else:
            positional.append(arg)
    if words in OPTIONAL_ARGUMENT:
        if positional and "--env" in options and positional != [options["--env"]]:
            return None  # two different names: the full command line says so
        if not positional:
            positional.append("")
    if len(positional) != 1 or options.get("--format", "text") not in ("text", "json"):
        return None
    return words, positional[0], options


SYNTH_OPTIONS = {"--commit": "commit", "--service": "service", "--platform": "platform", "--mesh": "mesh",
                 "-o": "output_dir", "--output-dir": "output_dir"}


def parse_synth(argv: Sequence[str]) -> tuple[str, dict[str, str]] | None:
    """(manifest, options) of a plain ``synth`` command line, else None."""
    if not argv or argv[0] != "synth":
        return None
    options: dict[str, str] = {}
    positional: list[str] = []
    rest = list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
            key = SYNTH_OPTIONS.get(name)
            if key is None or key in options:
                return None
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
            options[key] = value
        else:
            positional.append(arg)
    return (positional[0], options) if len(positional) == 1 else None


def synth(manifest: str, options: dict[str, str]) -> int:
    """``meshpipe synth``, as ``core_cmds.synth`` does it."""
    # pydantic looks for plugins in the entry points of every installed distribution when it builds its
    # first model; meshpipe uses none, and the scan is a tenth of a synth. A user's own setting wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from pathlib import Path

    from meshpipe.cli import readouts
    from meshpipe.errors import MeshpipeError, ValidationError

    try:
        from meshpipe.api import load_platform, synth_manifest, write_template
        from meshpipe.mesh.flavour import MeshFlavour

        platform = options.get("platform")
        settings = load_platform(Path(platform) if platform is not None else None)
        result = synth_manifest(Path(manifest), commit=options.get("commit"), platform=settings,
                                service=options.get("service"), mesh=options.get("mesh", MeshFlavour.SERVICE_CONNECT))
        path = write_template(result, Path(options.get("output_dir", ".")))
    except MeshpipeError as exc:
        err = readouts.Text(sys.stderr)
        if isinstance(exc, ValidationError):
            for problem in exc.problems:
                err.line(err.style(str(problem), "red"))
            readouts.error_text(f"{len(exc.problems)} problem(s) found", exc.hint, err)
        else:
            readouts.error_text(exc.message, exc.hint, err)
        err.write()
        return exc.exit_code
    sys.stdout.write(result.stack_name + "\n")
    sys.stdout.flush()
    err = readouts.Text(sys.stderr)
    err.line(err.style(f"wrote {path}", "dim"))
    err.write()
    return 0


def run(argv: Sequence[str]) -> int | None:
    """Answer a plain read or synth command and return its exit status; None: not one, use the full
    command line."""
    synth_args = parse_synth(argv)
    if synth_args is not None:
        return synth(*synth_args)
    parsed = parse(argv)
    if parsed is None:
        return None
    words, arg, options = parsed
    if options.get("--engine", os.environ.get("MESHPIPE_ENGINE") or "local") != "local":
        return None
    env = options.get("--env", os.environ.get("MESHPIPE_ENV") or "demo")
    if words == ("env", "status"):
        arg = arg or env
    as_json = options.get("--format") == "json"

    from meshpipe.cli import readouts
    from meshpipe.engines import daemon_read

    read = READ_NAMES[words]
    try:
        found = daemon_read("local", env, read, arg)
    except Exception as exc:
        from meshpipe.errors import MeshpipeError  # only when the daemon said no

        if not isinstance(exc, MeshpipeError):
            raise
        err = readouts.Text(sys.stderr)
        readouts.error_text(exc.message, readouts.with_env(exc.hint, options.get("--env")) if exc.hint else None, err)
        err.write()
        return exc.exit_code
    if found is None:
        return None  # no daemon answering: the full command line starts it, saying so
    if read == "route_view":
        if found["header_routes"]:
            # Header routes are printed from the routing types (their JSON and description): decoded here.
            from meshpipe.engines import route_view_typed

            try:
                view = route_view_typed(found)
            except (KeyError, TypeError, ValueError):
                return None  # an answer this meshpipe does not read: the full command line says so
            if as_json:
                readouts.print_json(readouts.route_view_json(view))
            else:
                out = readouts.Text(sys.stdout)
                readouts.route_view_text(view, arg, out)
                out.write()
            return 0
        found = found["route"]
    if as_json:
        readouts.print_json(found)
        return 0
    out = readouts.Text(sys.stdout)
    if read == "versions":
        readouts.versions_text([SimpleNamespace(**v) for v in found], arg, out)
    elif read == "route_view":
        readouts.route_view_text((_route(found), ()), arg, out)
    elif read == "env_status":
        readouts.env_text(SimpleNamespace(**found), out)
    else:
        readouts.stats_text(SimpleNamespace(versions={v: SimpleNamespace(**c) for v, c in found["versions"].items()}),
                            out)
    out.write()
    return 0


def _route(found: dict[str, Any] | None) -> Any:
    """A route's JSON as ``readouts.route_text`` reads a ``meshpipe.mesh.routing.Route``."""
    if found is None:
        return None
    from meshpipe import naming

    targets = [SimpleNamespace(version=t["version"], weight=t["weight"],
                               virtual_node=lambda svc, version=t["version"]: naming.virtual_node_name(svc, version))
               for t in found["targets"]]
    return SimpleNamespace(**{**found, "targets": targets, "name": naming.route_name(found["service"]),
                              "router": naming.virtual_router_name(found["service"])})
