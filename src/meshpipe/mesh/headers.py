"""HTTP header matches of routes, as App Mesh's ``HttpRouteHeader`` spells them. Pure, and a leaf module:
the manifest, the platform policy, the mesh model and the local data plane all check headers here.

A header match names one request header and how its value must look: ``exact``, ``prefix`` or
``regex`` (App Mesh also offers ``suffix`` and ``range``; meshpipe keeps to the three a preview or an
A/B test needs). App Mesh's limits: a name of 1-50 characters, a value of 1-255 characters, at most 10
header matches per route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from meshpipe.text import shorten

MATCH_KINDS = ("exact", "prefix", "regex")
MAX_NAME = 50  # App Mesh HttpRouteHeader.name
MAX_VALUE = 255  # App Mesh HeaderMatchMethod.exact / prefix / regex
MAX_HEADERS_PER_ROUTE = 10  # App Mesh HttpRouteMatch.headers
# An HTTP field name (RFC 9110 token); the mesh compares names lower-case, as HTTP/2 writes them.
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z", re.ASCII)
# Header names a route must not match on: hop-by-hop ones never reach the next proxy, and ':' pseudo
# headers are HTTP/2's.
UNMATCHABLE = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                         "upgrade", "proxy-authorization", "proxy-authenticate", "host"})


def header_name_problem(name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return "a header name must be a non-empty string"
    if len(name) > MAX_NAME:
        return f"{shorten(name)} is {len(name)} characters long; App Mesh matches header names of at most {MAX_NAME}"
    if not _TOKEN_RE.match(name):
        return (f"{shorten(name)} is not an HTTP header name: letters, digits and ! # $ % & ' * + - . ^ _ ` | ~, "
                "e.g. x-canary")
    if name.lower() in UNMATCHABLE:
        return f"{name!r} cannot be matched: the mesh does not route on hop-by-hop or Host headers"
    return None


def header_value_problem(kind: object, value: object) -> str | None:
    if kind not in MATCH_KINDS:
        return f"{shorten(kind)} is not a header match; allowed: {', '.join(MATCH_KINDS)}"
    if not isinstance(value, str) or not value:
        return "a header match needs a non-empty value"
    if len(value) > MAX_VALUE:
        return f"is {len(value)} characters long; App Mesh matches header values of at most {MAX_VALUE}"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return f"{shorten(value)} holds a control character, which no header value carries"
    if kind == "regex":
        try:
            re.compile(value)
        except re.error as exc:
            return f"{shorten(value)} is not a regular expression: {exc}"
    return None


@dataclass(frozen=True)
class HeaderMatch:
    """Requests whose header ``name`` has a value matching ``value`` (by ``kind``)."""

    name: str
    value: str
    kind: str = "exact"

    def problems(self) -> list[str]:
        return [p for p in (header_name_problem(self.name), header_value_problem(self.kind, self.value)) if p]

    @property
    def key(self) -> str:
        """The header name as the mesh compares it."""
        return self.name.lower()

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.kind == "exact":
            return value == self.value
        if self.kind == "prefix":
            return value.startswith(self.value)
        return re.fullmatch(self.value, value) is not None

    def describe(self) -> str:
        op = {"exact": "=", "prefix": "=^", "regex": "=~"}[self.kind]
        return f"{self.name}{op}{self.value}"

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "value": self.value}

    def to_appmesh(self) -> dict[str, Any]:
        """The ``HttpRouteHeader`` of App Mesh's route spec."""
        return {"name": self.key, "match": {self.kind: self.value}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeaderMatch:
        return cls(name=str(data["name"]), value=str(data["value"]), kind=str(data.get("kind", "exact")))


def parse_header_arg(arg: str) -> HeaderMatch:
    """``x-canary=always`` (exact), ``x-user=^beta-`` (prefix), ``x-user=~beta-[0-9]+`` (regex)."""
    name, sep, value = arg.partition("=")
    if not sep:
        raise ValueError(f"{shorten(arg)} is not NAME=VALUE (e.g. x-canary=always; =^ for a prefix, =~ for a regex)")
    kind = "exact"
    if value.startswith("^"):
        kind, value = "prefix", value[1:]
    elif value.startswith("~"):
        kind, value = "regex", value[1:]
    match = HeaderMatch(name.strip(), value, kind)
    problems = match.problems()
    if problems:
        raise ValueError("; ".join(problems))
    return match
