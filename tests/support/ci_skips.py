"""No silent skip under CI: when ``CI`` is set, every skipped or xfailed test fails the run unless the
allow-list (tests/allowed_skips.txt) names it with a reason. The run prints the allow-list and every
skip it saw, so what did not run is always on the page.

The allow-list has one entry a line, ``<node id or its prefix>  # <reason>``; blank lines and lines that
start with ``#`` are ignored. An entry without a reason is itself an error, so nothing is waved through
unexplained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ALLOW_LIST = Path(__file__).resolve().parent.parent / "allowed_skips.txt"


def ci_enabled(environ: dict[str, str] | None = None) -> bool:
    """CI services set ``CI`` (most to ``true``); an empty value, ``0`` or ``false`` means not CI."""
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Allowed:
    prefix: str
    reason: str


def read_allow_list(path: Path) -> tuple[list[Allowed], list[str]]:
    """The entries of ``path`` and the problems of its lines (an entry with no reason)."""
    entries: list[Allowed] = []
    problems: list[str] = []
    if not path.exists():
        return entries, problems
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        prefix, _, reason = text.partition("#")
        if not prefix.strip() or not reason.strip():
            problems.append(f"{path.name}:{number}: an entry is '<node id>  # <reason>', got {text!r}")
            continue
        entries.append(Allowed(prefix.strip(), reason.strip()))
    return entries, problems


@dataclass
class SkipWatch:
    """Collects the skipped and xfailed outcomes of a run and judges them against the allow-list."""

    enabled: bool
    allow_list: Path = ALLOW_LIST
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (node id, outcome, reason)
    failures: list[str] = field(default_factory=list)

    def note(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        wasxfail = getattr(report, "wasxfail", None)
        if wasxfail is not None:
            self.seen.append((report.nodeid, "xfail" if report.skipped else "xpass", str(wasxfail)))
        elif report.skipped:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
            self.seen.append((report.nodeid, "skipped", str(reason).removeprefix("Skipped: ")))

    def judge(self) -> list[str]:
        entries, problems = read_allow_list(self.allow_list)
        self.failures = list(problems)
        for nodeid, outcome, reason in self.seen:
            if not any(nodeid == e.prefix or nodeid.startswith((e.prefix + "::", e.prefix + "[")) for e in entries):
                self.failures.append(f"{nodeid} {outcome} ({reason}) and is not in {self.allow_list.name}")
        return self.failures

    def summary(self) -> list[str]:
        entries, _ = read_allow_list(self.allow_list)
        lines = [f"CI: skips allowed by {self.allow_list.name} ({len(entries)}):"]
        lines += [f"  {e.prefix}  # {e.reason}" for e in entries] or ["  (none)"]
        lines.append(f"CI: skipped or xfailed in this run ({len(self.seen)}):")
        lines += [f"  {nodeid} {outcome}: {reason}" for nodeid, outcome, reason in self.seen] or ["  (none)"]
        if self.failures:
            lines.append("CI: the run fails: a skip or xfail under CI must be in the allow-list with its reason:")
            lines += [f"  {f}" for f in self.failures]
        return lines
