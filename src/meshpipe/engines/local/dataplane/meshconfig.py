"""The mesh configuration every proxy of an environment receives. Pure.

The daemon takes a snapshot of what state.db says (services, routes, gateway routes) and of what the
health checker knows (healthy endpoints), and this module turns it into the JSON document the gateway
and the sidecars apply atomically. The same snapshot always yields the same document, so a push can be
checked and tested without a single process running.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshpipe.mesh.routing import GatewayRoute, HeaderRoute, Route

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, order=True)
class Endpoint:
    """Where a healthy task of a version is reached: its sidecar's ingress listener."""

    host: str
    port: int


@dataclass(frozen=True)
class MeshSnapshot:
    generation: int
    environment: str
    namespace: str
    services: tuple[str, ...]
    routes: Mapping[str, Route] = field(default_factory=dict)
    # service -> version -> healthy endpoints
    endpoints: Mapping[str, Mapping[str, tuple[Endpoint, ...]]] = field(default_factory=dict)
    gateway_routes: tuple[GatewayRoute, ...] = ()
    # service -> version -> the version's declared app port (the virtual node's listener): proxies
    # name their Envoy clusters with it (cds_egress_<mesh>_<node>_http_<port>)
    listener_ports: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # service -> its header routes, in the order they are tried
    header_routes: Mapping[str, Sequence[HeaderRoute]] = field(default_factory=dict)


def virtual_service_name(service: str, namespace: str) -> str:
    return f"{service}.{namespace}"


def _route_json(route: Route) -> dict[str, Any]:
    return {
        "prefix": route.prefix,
        "method": route.method,
        "targets": [{"version": t.version, "weight": t.weight} for t in route.targets],
        "max_retries": route.max_retries,
        "per_retry_timeout_ms": route.per_retry_timeout_ms,
        "timeout_ms": route.timeout_ms,
    }


def _header_route_json(route: HeaderRoute) -> dict[str, Any]:
    return {
        "name": route.name, "priority": route.priority, "prefix": route.prefix, "method": route.method,
        "headers": [h.to_json() for h in route.headers],
        "targets": [{"version": t.version, "weight": t.weight} for t in route.targets],
        "max_retries": route.max_retries, "per_retry_timeout_ms": route.per_retry_timeout_ms,
        "timeout_ms": route.timeout_ms,
    }


def build_mesh_config(snapshot: MeshSnapshot) -> dict[str, Any]:
    """The config document for every proxy of the environment (see the data-plane contract)."""
    services: dict[str, Any] = {}
    for service in sorted(set(snapshot.services)):
        route = snapshot.routes.get(service)
        entry: dict[str, Any] = {
            "service": service,
            "route": _route_json(route) if route is not None and route.targets else None,
        }
        extra = [r for r in snapshot.header_routes.get(service, ()) if r.targets]
        if extra:  # left out when there are none, so a config without them reads as before
            entry["header_routes"] = [_header_route_json(r) for r in sorted(extra, key=lambda r: (r.priority, r.name))]
        services[virtual_service_name(service, snapshot.namespace)] = entry
    endpoints: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for service in sorted(snapshot.endpoints):
        if service not in snapshot.services:
            continue  # tasks of a service whose pipeline is gone are not part of the mesh
        by_version = snapshot.endpoints[service]
        endpoints[service] = {
            version: [{"host": e.host, "port": e.port} for e in sorted(set(by_version[version]))]
            for version in sorted(by_version) if by_version[version]
        }
    # Longest prefix first: the gateway takes the first match, as App Mesh picks the most specific route.
    gateway_routes = sorted(snapshot.gateway_routes, key=lambda g: (-len(g.prefix), g.name))
    document: dict[str, Any] = {
        "generation": snapshot.generation,
        "environment": snapshot.environment,
        "namespace": snapshot.namespace,
        "services": services,
        "endpoints": endpoints,
        "gateway_routes": [{"name": g.name, "prefix": g.prefix,
                            "virtual_service": virtual_service_name(g.service, snapshot.namespace),
                            "rewrite_prefix": g.rewrite_prefix}
                           for g in gateway_routes if g.service in snapshot.services],
    }
    ports = {service: {version: int(port) for version, port in sorted(by_version.items())}
             for service, by_version in sorted(snapshot.listener_ports.items())
             if service in snapshot.services and by_version}
    if ports:
        document["listener_ports"] = ports
    return document
