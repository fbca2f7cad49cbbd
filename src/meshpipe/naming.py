"""The mesh's names for a service's parts, decided once: every engine and template derives them here.

The original sample's conventions: virtual node ``vn-<svc>-<ver>``, virtual router ``vr-<svc>`` and its
one route ``r-<svc>``.
"""

from __future__ import annotations

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


def header_route_name(service: str, header: str) -> str:
    """The extra route of a service that matches on header ``header``: ``r-<svc>-h-<header>``."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c == "-") else "-" for c in header.lower())
    return f"{ROUTE_PREFIX}{service}-h-{cleaned}"
