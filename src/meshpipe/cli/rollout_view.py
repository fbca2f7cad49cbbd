"""How a rollout looks on a terminal: ``rollout status`` prints it once, ``rollout watch`` keeps it live."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from meshpipe.status import RolloutPhase, RolloutStatus

STATUS_STYLE = {RolloutStatus.RUNNING: "yellow", RolloutStatus.PROMOTED: "green", RolloutStatus.ROLLED_BACK: "red",
                RolloutStatus.HALTED: "red", RolloutStatus.SUPERSEDED: "dim"}


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def where(s: dict[str, Any]) -> str:
    if s["status"] != RolloutStatus.RUNNING:
        return escape(s["status"])
    if s["phase"] == RolloutPhase.PRE_ROLLOUT:
        return "starting (pre-rollout checks)"
    if s["phase"] == RolloutPhase.PREVIEW:
        preview = s["preview"] or {}
        return f"preview: requests with {escape(preview.get('name', ''))}: {escape(preview.get('value', ''))}"
    if s["phase"] == RolloutPhase.CONFIRMING:
        return f"awaiting confirm-promotion at {s['candidate_weight']} %"
    return f"step {s['step']}/{s['steps']} ({s['candidate_weight']} %)"


def render_ecs(s: dict[str, Any]) -> RenderableType:
    """A deployment ECS runs (Service Connect)."""
    style = STATUS_STYLE.get(s["status"], "")
    alarms = s["alarms"]
    lines: list[RenderableType] = [
        Text.from_markup(f"ECS deployment of [bold]{escape(s['service'])}[/bold]: [bold]"
                         f"{escape(s['candidate'] or '?')}[/bold] from {escape(s['stable'] or 'nothing')}  "
                         f"[dim]({escape(s['describe'])}; started {escape(s['started_at'] or '')})[/dim]"),
        Text.from_markup(f"status: [{style}]{escape(s['status'])}[/{style}] ({escape(s['ecs_status'])}"
                         + (f", {escape(s['phase'])}" if s["phase"] else "") + ")"),
        Text.from_markup("weights: " + escape(", ".join(f"{v} {w:g}" for v, w in s["weights"].items()))),
        Text.from_markup(f"alarms ({escape(str(alarms['status']))}): " + escape(", ".join(alarms["names"]) or "none")
                         + (f"; [red]fired: {escape(', '.join(alarms['triggered']))}[/red]" if alarms["triggered"]
                            else "")),
    ]
    if s["reason"]:
        lines.append(Text.from_markup(f"reason: {escape(s['reason'])}"))
    return Group(*lines)


def render(s: dict[str, Any]) -> RenderableType:
    if s.get("engine") == "aws":
        return render_ecs(s)
    style = STATUS_STYLE.get(s["status"], "")
    lines: list[RenderableType] = []
    head = Text.from_markup(
        f"rollout of [bold]{escape(s['service'])}[/bold]: [bold]{escape(s['candidate'])}[/bold] "
        f"from {escape(', '.join(f'{v} {w} %' for v, w in s['base'].items()) or 'nothing')}  "
        f"[dim]({escape(s['describe'])}; started {escape(s['started_at'] or '')} {escape(s['started_by'])})[/dim]")
    lines.append(head)
    paused = " [yellow](paused)[/yellow]" if s["paused"] else ""
    lines.append(Text.from_markup(f"status: [{style}]{where(s)}[/{style}]{paused}; failed windows "
                                  f"{s['failed_windows']} of {s['failed_windows_allowed']} allowed"))
    weights = ", ".join(f"{v} {w}" for v, w in s["weights"].items())
    lines.append(Text.from_markup(f"weights: {escape(weights)}"
                                  + (f"; preview {escape(s['preview']['name'])}: {escape(s['preview']['value'])} "
                                     f"→ {escape(s['candidate'])}" if s.get("preview") else "")))
    if s.get("holding"):
        lines.append(Text.from_markup(f"[yellow]{escape(s['holding'])}[/yellow]"))
    if s["next_decision_at"]:
        lines.append(Text.from_markup(f"next decision: in {_num(s['next_decision_in_s'])} s "
                                      f"[dim]({escape(s['next_decision_at'])})[/dim]"))
    if s["status"] != RolloutStatus.RUNNING and s["reason"]:
        lines.append(Text.from_markup(f"[{style}]{escape(s['status'])}[/{style}] at {escape(s['finished_at'] or '')}: "
                                      f"{escape(s['reason'])}"))
    for c in s.get("confirmations") or []:
        lines.append(Text.from_markup(f"confirm-promotion {escape(c['name'])}: {escape(c['detail'])}"))
    if s["windows"]:
        table = Table("window", "step", "weight", "requests", "5xx", "success %", "p99 ms", "stable p99 ms",
                      "verdict", "decided (lag)", "why", box=None, padding=(0, 1))
        for w in s["windows"]:
            cand, stable = w["candidate"], w["stable"]
            verdict = {"passed": "[green]passed[/green]", "inconclusive": "[yellow]inconclusive[/yellow]"}.get(
                w["verdict"], "[red]FAILED[/red]")
            table.add_row(str(w["number"]), "preview" if w["phase"] == "preview" else str(w["step"]),
                          str(w["weight"]), str(cand["requests"]), str(cand["errors"]),
                          _num(cand["success_rate"], 2), _num(cand["p99_ms"]), _num(stable["p99_ms"]), verdict,
                          f"{(w['decided_at'] or '')[11:22]} ({w['decision_lag_s']:.3f} s)",
                          # A passed window's figures are in the columns; a failed one says what failed.
                          "" if w["verdict"] == "passed" else escape("; ".join(w["reasons"])))
        lines.append(table)
    return Group(*lines)
