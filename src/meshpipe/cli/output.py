"""Output for people (Rich) and for machines (JSON), and the reporter long operations talk to."""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.markup import escape

from meshpipe.cli.readouts import print_json as print_json
from meshpipe.cli.readouts import to_jsonable as to_jsonable
from meshpipe.errors import MeshpipeError, Problem, ValidationError


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped or captured output: never cut table cells to a pretend 80-column screen.
        console.width = 200
    return console


out = _console(stderr=False)
err = _console(stderr=True)


class Format(StrEnum):
    text = "text"
    json = "json"


def print_problems(problems: list[Problem] | tuple[Problem, ...]) -> None:
    """One line per problem, ``FILE:LINE: Field.Path: message``, on stderr."""
    for p in problems:
        err.print(f"[red]{escape(str(p))}[/red]")


def print_error(exc: MeshpipeError, env: str | None = None) -> None:
    """The error and its hint; ``env``: the ``--env`` the user gave, which the hint's commands then carry."""
    from meshpipe.cli.readouts import with_env

    if isinstance(exc, ValidationError):
        print_problems(exc.problems)
        err.print(f"[bold red]error:[/bold red] {len(exc.problems)} problem(s) found")
    else:
        err.print(f"[bold red]error:[/bold red] {escape(exc.message)}")
    if exc.hint:
        err.print(f"[dim]hint:[/dim] {escape(with_env(exc.hint, env))}")


class ConsoleReporter:
    """Shows what a long operation is doing: a spinner with the current step, a line per finished step."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or err
        self._status: Any = None

    def step(self, message: str) -> None:
        if self._status is None and self.console.is_terminal:
            self._status = self.console.status(escape(message))
            self._status.start()
        elif self._status is not None:
            self._status.update(escape(message))
        else:
            self.console.print(f"[dim]… {escape(message)}[/dim]")

    def done(self, message: str) -> None:
        self.console.print(f"[green]✓[/green] {escape(message)}")

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
