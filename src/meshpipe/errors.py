"""Errors a user can act on.

Anything raised as a :class:`MeshpipeError` is turned by the CLI into a clear message and exit status 2
(bad input, :class:`UserError`) or 1 (an operation that failed, :class:`OperationError`). A :class:`Defect`
is meshpipe's own fault: it goes through the CLI's bug boundary (exit status 70, traceback kept in a file).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with an input file: where it is and what is allowed instead."""

    file: str
    line: int | None
    path: str
    message: str
    # A stable code naming the kind of finding (see meshpipe.codes); empty where none applies.
    code: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message, "code": self.code}


class MeshpipeError(Exception):
    """Base of every error meshpipe raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UserError(MeshpipeError):
    """Bad input from the user: a file, an argument, a setting. Exit status 2."""

    exit_code = 2


class ValidationError(UserError):
    """One or more problems found in an input file; all of them are reported at once."""

    def __init__(self, problems: list[Problem], hint: str | None = None) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line or 0, p.path, p.message))
        summary = f"{len(self.problems)} problem(s) found"
        super().__init__(summary + ":\n" + "\n".join(str(p) for p in self.problems), hint)


class NotFoundError(UserError):
    """Something named by the user does not exist (environment, service, version, route)."""


class ConflictError(UserError):
    """The request is refused because of the current state (e.g. deleting a version that carries weight)."""


class OperationError(MeshpipeError):
    """An operation against an engine failed; the message says what happened and what to do. Exit 1."""


class Defect(Exception):
    """Meshpipe broke a promise of its own (not the user's input, not the engine's state), e.g. a template it
    rendered lacks what it always has. Deliberately not a :class:`MeshpipeError`: the CLI's bug boundary
    reports it in one line, keeps its traceback for the report and exits 70."""
