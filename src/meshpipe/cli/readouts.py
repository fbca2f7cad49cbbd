"""What the read commands print (``versions``, ``route show``, ``env status``, ``stats``), without Rich.

These commands answer in a few tens of milliseconds, and importing Rich alone would cost more than the
rest of such a command, so their text is built here: the same look as the Rich output of the other
commands (heavy-head box tables, bold headers and the same colours on a terminal, plain text when piped
or when ``NO_COLOR`` is set). Both ways in (the fast path in :mod:`meshpipe.cli.fast`, and the Typer
commands) print through these functions, so the output does not depend on the way.
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False  # typing's own flag would load typing, a tenth of a read command
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, TextIO

_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "cyan": "36"}


def to_jsonable(value: Any) -> Any:
    # What dataclasses.is_dataclass checks; that module (and inspect with it) is loaded only for one.
    if hasattr(type(value), "__dataclass_fields__"):
        import dataclasses

        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2) + "\n")


def colours(stream: TextIO) -> bool:
    """Whether ``stream`` gets ANSI styles: a terminal, unless NO_COLOR is set or TERM is dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Text:
    """Lines for one stream, styled only when that stream is a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.styled = colours(self.stream)
        self.lines: list[str] = []

    def style(self, text: str, *styles: str) -> str:
        if not self.styled or not styles:
            return text
        return f"\x1b[{';'.join(_SGR[s] for s in styles)}m{text}\x1b[0m"

    def line(self, text: str = "") -> None:
        self.lines.append(text)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
        self.line("┏" + "┳".join("━" * (w + 2) for w in widths) + "┓")
        self.line("┃" + "┃".join(self.style(" ", "bold") + self.style(h.ljust(w), "bold") + self.style(" ", "bold")
                                 for h, w in zip(headers, widths, strict=True)) + "┃")
        self.line("┡" + "╇".join("━" * (w + 2) for w in widths) + "┩")
        for row in rows:
            self.line("│" + "│".join(f" {c.ljust(w)} " for c, w in zip(row, widths, strict=True)) + "│")
        self.line("└" + "┴".join("─" * (w + 2) for w in widths) + "┘")

    def write(self) -> None:
        if self.lines:
            self.stream.write("\n".join(self.lines) + "\n")
            self.stream.flush()


def env_text(info: Any, out: Text) -> None:
    out.line(f"environment {out.style(info.name, 'bold')}: {info.status}")
    if info.ingress_url:
        out.line(f"ingress: {out.style(info.ingress_url, 'cyan')}")
    for key, value in info.details.items():
        out.line(f"  {key}: {value}")


def route_text(route: Any, service: str, out: Text) -> None:
    if route is None:
        out.line(f"{service}: no route yet (set one with: meshpipe route set {service} VERSION=100)")
        return
    out.line(f"route {out.style(route.name, 'bold')} on {route.router} "
             f"(match {route.method or '*'} {route.prefix}, priority {route.priority})")
    total = sum(t.weight for t in route.targets) or 1
    out.table(("version", "virtual node", "weight"),
              [(t.version, t.virtual_node(service), f"{t.weight} ({100 * t.weight / total:.0f} %)")
               for t in route.targets])


def route_view_text(view: tuple[Any, Sequence[Any]], service: str, out: Text) -> None:
    route, header_routes = view
    route_text(route, service, out)
    for r in header_routes:
        spread = ", ".join(f"{t.version}={t.weight}" for t in r.targets)
        out.line(f"header route {out.style(r.name, 'bold')} (priority {r.priority}): requests with "
                 f"{r.describe()} → {spread}")


def route_view_json(view: tuple[Any, Sequence[Any]]) -> Any:
    """What ``route show --format json`` prints: the route, or route and header routes when there are any."""
    route, header_routes = view
    return route if not header_routes else {"route": route, "header_routes": header_routes}


def versions_text(found: Sequence[Any], service: str, out: Text) -> None:
    if not found:
        out.line(f"no versions of {service} yet: push a manifest.yaml to its config repo")
        return
    rows = []
    for v in found:
        tasks = "" if v.desired_tasks is None else f"{v.healthy_tasks or 0}/{v.desired_tasks}"
        status = f"{v.status}, scaled down" if getattr(v, "scaled_down", False) else v.status
        rows.append((v.version, v.stack_name, status, str(v.weight), tasks, v.created_at or ""))
    out.table(("version", "stack", "status", "weight", "tasks", "created"), rows)
    for v in found:
        if v.reason:
            out.line(out.style(f"{v.version}: {v.reason}", "red"))


def stats_text(found: Any, out: Text) -> None:
    """``found``: a meshpipe.mesh.stats.ServiceStats."""
    window = getattr(found, "window_s", None)
    if window:
        out.line(f"{found.service}: the last {window:g} s")
    keys = ("requests", "errors", "retries", "timeouts", "p50_ms", "p99_ms")
    rows = [(ver, *(str(getattr(c, k)) if getattr(c, k) is not None else "" for k in keys))
            for ver, c in sorted(found.versions.items())]
    out.table(("version", "requests", "errors", "retries", "timeouts", "p50 ms", "p99 ms"), rows)


# Commands that take no --env (or name the environment themselves): hints about them are left as written.
_WITHOUT_ENV = ("validate", "schema", "synth", "platform", "load", "demo", "env", "--version")
_STOP_WORDS = ("or", "then", "and")
_STOP_CHARS = ")(,;'`\""


def with_env(hint: str, env: str | None) -> str:
    """``hint`` with ``--env ENV`` added to every meshpipe command it suggests that takes one, so that the
    suggestion acts on the environment the user named: "list versions with: meshpipe versions orders"
    becomes "... meshpipe versions orders --env shop"."""
    if not env:
        return hint
    out: list[str] = []
    rest = hint
    while (at := rest.find("meshpipe ")) >= 0:
        out.append(rest[:at])
        rest = rest[at:]
        end = len(rest)
        for i, ch in enumerate(rest):
            if ch in _STOP_CHARS:
                end = i
                break
        command = rest[:end]
        words = command.split()
        for n, word in enumerate(words[1:], 1):
            if word in _STOP_WORDS:
                command = " ".join(words[:n])
                break
        stripped = command.rstrip(" .:")
        args = stripped.split()[1:]
        if args and args[0] not in _WITHOUT_ENV and "--env" not in args:
            out.append(f"{stripped} --env {env}")
        else:
            out.append(stripped)
        rest = rest[len(stripped):]
    out.append(rest)
    return "".join(out)


def given_env(argv: Sequence[str]) -> str | None:
    """The ``--env`` value on a command line, if there is one (before a ``--``)."""
    for i, arg in enumerate(argv):
        if arg == "--":
            return None
        if arg == "--env" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--env="):
            return arg.partition("=")[2]
    return None


def error_text(message: str, hint: str | None, out: Text) -> None:
    """A failed command's message, as ``meshpipe.cli.output.print_error`` prints one."""
    out.line(f"{out.style('error:', 'bold', 'red')} {message}")
    if hint:
        out.line(f"{out.style('hint:', 'dim')} {hint}")
