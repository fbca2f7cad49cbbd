"""cfn-lint, run in-process on a template's text.

Every template meshpipe writes must lint with no errors and no warnings, except App Mesh's shutdown
notice (W3696), which the App Mesh flavour cannot avoid. cfn-lint is a development dependency and slow
to import, so it is imported only when a lint is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshpipe.errors import OperationError

# App Mesh resources are flagged because the service shuts down on 2026-09-30; that is known and said.
ALLOWED_RULES = frozenset({"W3696"})


@dataclass(frozen=True)
class LintFinding:
    rule: str  # e.g. E3002, W3696
    severity: str  # error | warning | informational
    message: str
    line: int
    path: str  # e.g. Resources/Service/Properties

    def __str__(self) -> str:
        return f"{self.rule} line {self.line} {self.path}: {self.message}"


def lint_template(json_text: str, region: str = "us-east-1") -> list[LintFinding]:
    """Every finding cfn-lint has for the template, for ``region``'s resource schemas."""
    try:
        from cfnlint.api import ManualArgs, lint
    except ImportError:  # pragma: no cover - depends on the installation
        raise OperationError("cfn-lint is not installed", hint="install meshpipe's dev extra") from None
    matches = lint(json_text, config=ManualArgs(regions=[region]))
    findings = [
        LintFinding(
            rule=m.rule.id,
            severity=str(getattr(m.rule, "severity", "error")),
            message=m.message,
            line=m.linenumber,
            path="/".join(str(p) for p in (getattr(m, "path", None) or [])),
        )
        for m in matches
    ]
    return sorted(findings, key=lambda f: (f.line, f.rule, f.message))


def blocking_findings(findings: list[LintFinding]) -> list[LintFinding]:
    """Findings a template must not have: all errors and warnings except the allowed ones."""
    return [f for f in findings if f.severity != "informational" and f.rule not in ALLOWED_RULES]
