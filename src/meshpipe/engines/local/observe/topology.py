"""The local environment as a :class:`~meshpipe.mesh.graph.Topology`, from the daemon's status, the
versions' declared backends, and (when sampled) the traffic between two stats readings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshpipe.mesh.graph import GatewayRouteNode, ServiceNode, Topology, VersionNode
from meshpipe.mesh.stats import ServiceStats


def traffic(before: ServiceStats, after: ServiceStats, seconds: float) -> dict[str, tuple[float, float]]:
    """version -> (requests/s, share answered 5xx) between two ``stats`` readings of one service."""
    out = {}
    for version, now in after.versions.items():
        then = before.of(version)
        requests = max(0, now.requests - then.requests)
        fives = max(0, now.responses.get("5xx", 0) - then.responses.get("5xx", 0))
        out[version] = (requests / seconds if seconds > 0 else 0.0, fives / requests if requests else 0.0)
    return out


def backends_from(resolved: Iterable[tuple[str, Mapping[str, Any]]], namespace: str) -> dict[str, set[str]]:
    """service -> the services its versions call, from (service, resolved model) pairs of its versions;
    names in the environment's namespace lose the namespace."""
    out: dict[str, set[str]] = {}
    for service, model in resolved:
        for name in model.get("backends", []):
            out.setdefault(service, set()).add(str(name).removesuffix(f".{namespace}"))
    return out


def topology_from(status: Mapping[str, Any], backends: Mapping[str, set[str]],
                  rates: Mapping[str, Mapping[str, tuple[float, float]]] | None = None) -> Topology:
    """``status``: the daemon's ``/v1/status``; ``backends``: service -> services its versions call;
    ``rates``: service -> version -> (requests/s, 5xx share), when sampled."""
    services = []
    for svc in status.get("services", []):
        name = svc["name"]
        versions = []
        for v in svc.get("versions", []):
            rps, errors = (rates or {}).get(name, {}).get(v["version"], (None, None))
            versions.append(VersionNode(version=v["version"], weight=int(v.get("weight") or 0),
                                        status=str(v.get("status") or ""), healthy_tasks=v.get("healthy_tasks"),
                                        desired_tasks=v.get("desired_tasks"), rps=rps, error_rate=errors))
        services.append(ServiceNode(name, tuple(versions), tuple(sorted(backends.get(name, set())))))
    routes = tuple(GatewayRouteNode(g["name"], g["prefix"], g["service"]) for g in status.get("gateway_routes", []))
    return Topology(environment=str(status.get("environment", "")), services=tuple(services),
                    gateway_routes=routes, ingress=str(status.get("ingress_url") or ""))
