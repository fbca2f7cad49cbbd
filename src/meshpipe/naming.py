"""Names: the ones users give (service names, commits), checked once, and the mesh's names for a
service's parts, decided once: every engine and template derives them here.

The original sample's conventions: virtual node ``vn-<svc>-<ver>``, virtual router ``vr-<svc>`` and its
one route ``r-<svc>``.
"""

from __future__ import annotations

import re

from meshpipe.text import shorten
from meshpipe.validation.rules import ENVIRONMENT_NAME_RE, SERVICE_NAME_RE

COMMIT_RE = re.compile(r"^[0-9a-fA-F]{8,64}\Z")

VIRTUAL_NODE_PREFIX = "vn-"
VIRTUAL_ROUTER_PREFIX = "vr-"
ROUTE_PREFIX = "r-"


def virtual_node_name(service: str, version: str) -> str:
    return f"{VIRTUAL_NODE_PREFIX}{service}-{version}"


def virtual_router_name(service: str) -> str:
    return f"{VIRTUAL_ROUTER_PREFIX}{service}"


def route_name(service: str) -> str:
    return f"{ROUTE_PREFIX}{service}"


def version_in_node_name(service: str, virtual_node: str) -> str | None:
    """What follows ``vn-<service>-`` in a virtual node's name, or None when it is another service's."""
    prefix = virtual_node_name(service, "")
    return virtual_node[len(prefix):] if virtual_node.startswith(prefix) else None


def check_service_name(service: str, source: str = "service name", field: str = "SERVICE_NAME") -> None:
    if not SERVICE_NAME_RE.match(service):
        from meshpipe.errors import Problem, ValidationError  # a dataclass: read commands only name things

        raise ValidationError([Problem(source, None, field,
                                       f"{shorten(service)} is not a service name: 1-40 lowercase letters, digits "
                                       "or '-', starting with a letter", "A001")])


def check_commit(commit: str, source: str = "commit", field: str = "CONFIG_COMMIT_ID") -> None:
    if not COMMIT_RE.match(commit):
        from meshpipe.errors import Problem, ValidationError

        raise ValidationError([Problem(source, None, field,
                                       f"{shorten(commit)} is not a git commit id (8-64 hex characters)", "A002")])


def check_env_name(env: str) -> None:
    """Refuse an environment name that would not fit every name derived from it (stacks, DNS, files)."""
    if not isinstance(env, str) or not ENVIRONMENT_NAME_RE.match(env):
        from meshpipe.errors import UserError

        raise UserError(f"{env!r} is not an environment name",
                        hint="use 1-32 lowercase letters, digits or '-', starting with a letter, e.g. demo")


def header_route_name(service: str, header: str) -> str:
    """The extra route of a service that matches on header ``header``: ``r-<svc>-h-<header>``."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c == "-") else "-" for c in header.lower())
    return f"{ROUTE_PREFIX}{service}-h-{cleaned}"
