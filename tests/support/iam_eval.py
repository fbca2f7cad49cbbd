"""IAM's evaluation of one request against identity policies: action, concrete resource ARN, condition context.

No maintained PyPI package evaluates Resource and Condition the way IAM does (policyuniverse and
parliament match actions only; the simulators found there skip condition keys they do not know), so this
is the subset of IAM's documented logic that meshpipe's policies use:

* a request is allowed when some statement allows it and no statement denies it (explicit deny wins,
  nothing allowed is an implicit deny);
* ``Action``/``NotAction`` match case-insensitively with ``*`` and ``?``; ``Resource``/``NotResource``
  and the ``Arn*`` operators compare the six colon-separated parts of an ARN one by one (the resource
  part, the sixth, may hold colons), each part case-sensitively with ``*`` and ``?``;
* in a ``Condition`` every operator and every key must hold, and any one of a key's values may match;
* operators: ``String(Not)Equals(IgnoreCase)``, ``String(Not)Like``, ``Arn(Not)Equals``,
  ``Arn(Not)Like``, ``Bool``, ``Null``, each with ``IfExists``, and the set prefixes ``ForAnyValue:``
  and ``ForAllValues:``;
* a key missing from the request: a positive operator fails, a negated one (``...Not...``) holds,
  ``...IfExists`` holds, ``ForAllValues`` holds and ``ForAnyValue`` fails; ``Null`` tests exactly that.

Anything else in a policy (another operator, a policy variable ``${...}``) raises: a policy the evaluator
cannot read must not pass by accident.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY = "allowed", "explicitDeny", "implicitDeny"
ContextValue = str | list[str]


class UnsupportedPolicy(ValueError):
    """The policy uses something this evaluator does not implement."""


@dataclass(frozen=True)
class Request:
    """One authorization request: ``resource`` is a concrete ARN, or ``*`` for an action that takes no
    resource type. ``context`` maps condition keys (any case) to one value or a list of values."""

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)

    def value(self, key: str) -> list[str] | None:
        for k, v in self.context.items():
            if k.lower() == key.lower():
                return list(v) if isinstance(v, list) else [v]
        return None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, *, ignore_case: bool) -> bool:
    if "${" in pattern:
        raise UnsupportedPolicy(f"policy variable in {pattern!r}")
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    # fnmatch's [ ] classes are not IAM's: escape them so only * and ? are wildcards.
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def action_matches(pattern: str, action: str) -> bool:
    return _glob(pattern, action, ignore_case=True)


def arn_matches(pattern: str, arn: str) -> bool:
    """IAM's ARN matching: ``*`` alone matches everything; otherwise each of the six parts separately."""
    if pattern == "*":
        return True
    p_parts, a_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(p_parts) != 6 or len(a_parts) != 6:
        return False
    return all(_glob(p, a, ignore_case=False) for p, a in zip(p_parts, a_parts, strict=True))


def _string_op(base: str, pattern: str, value: str) -> bool:
    if base == "StringEquals":
        if "${" in pattern:
            raise UnsupportedPolicy(f"policy variable in {pattern!r}")
        return pattern == value
    if base == "StringEqualsIgnoreCase":
        return pattern.lower() == value.lower()
    if base == "StringLike":
        return _glob(pattern, value, ignore_case=False)
    if base in ("ArnEquals", "ArnLike"):
        return arn_matches(pattern, value)
    if base == "Bool":
        return pattern.lower() == value.lower()
    raise UnsupportedPolicy(f"condition operator {base}")


_NEGATED = {"StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
            "StringNotLike": "StringLike", "ArnNotEquals": "ArnEquals", "ArnNotLike": "ArnLike"}
_POSITIVE = {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike", "Bool"}


def _condition_holds(operator: str, key: str, wanted: list[Any], request: Request) -> bool:
    qualifier, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    base = op.removesuffix("IfExists")
    present = request.value(key)
    wanted = [str(w).lower() if isinstance(w, bool) else str(w) for w in wanted]
    if base == "Null":
        if qualifier:
            raise UnsupportedPolicy(f"{operator}")
        is_null = present is None or present == []
        return any((w.lower() == "true") == is_null for w in wanted)
    negated = base in _NEGATED
    positive = _NEGATED.get(base, base)
    if positive not in _POSITIVE:
        raise UnsupportedPolicy(f"condition operator {operator}")

    def one_matches(value: str) -> bool:
        return any(_string_op(positive, w, value) for w in wanted)

    if qualifier == "ForAnyValue":
        if not present:
            return False
        hits = [one_matches(v) for v in present]
        return any(not h for h in hits) if negated else any(hits)
    if qualifier == "ForAllValues":
        if not present:
            return True
        return all((not one_matches(v)) if negated else one_matches(v) for v in present)
    if qualifier:
        raise UnsupportedPolicy(f"set operator {qualifier}")
    if present is None:
        return if_exists or negated
    if len(present) != 1:
        raise UnsupportedPolicy(f"{key} has several values; use ForAnyValue/ForAllValues")
    hit = one_matches(present[0])
    return not hit if negated else hit


def conditions_hold(condition: Mapping[str, Mapping[str, Any]], request: Request) -> bool:
    return all(_condition_holds(op, key, _as_list(values), request)
               for op, block in condition.items() for key, values in block.items())


def statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    if "NotAction" in statement:
        if any(action_matches(p, request.action) for p in _as_list(statement["NotAction"])):
            return False
    elif not any(action_matches(p, request.action) for p in _as_list(statement["Action"])):
        return False
    if "NotResource" in statement:
        if any(arn_matches(p, request.resource) for p in _as_list(statement["NotResource"])):
            return False
    elif not any(arn_matches(p, request.resource) for p in _as_list(statement.get("Resource", []))):
        return False
    return conditions_hold(statement.get("Condition", {}), request)


def decide(statements: Iterable[Mapping[str, Any]], request: Request) -> str:
    """``allowed``, ``explicitDeny`` or ``implicitDeny``, as IAM's policy simulator names them."""
    allowed = False
    for s in statements:
        if not statement_applies(s, request):
            continue
        if s["Effect"] == "Deny":
            return EXPLICIT_DENY
        allowed = True
    return ALLOWED if allowed else IMPLICIT_DENY


def allows(statements: Iterable[Mapping[str, Any]], request: Request) -> bool:
    return decide(statements, request) == ALLOWED




def tag_context(request_tags: Mapping[str, str] | None = None,
                resource_tags: Mapping[str, str] | None = None) -> dict[str, ContextValue]:
    """The tag condition keys of a request: ``aws:RequestTag/k`` and ``aws:TagKeys`` for the tags a
    call sets, ``aws:ResourceTag/k`` for the tags the resource already has."""
    found: dict[str, ContextValue] = {}
    if request_tags:
        found.update({f"aws:RequestTag/{k}": v for k, v in request_tags.items()})
        found["aws:TagKeys"] = sorted(request_tags)
    for k, v in (resource_tags or {}).items():
        found[f"aws:ResourceTag/{k}"] = v
    return found
