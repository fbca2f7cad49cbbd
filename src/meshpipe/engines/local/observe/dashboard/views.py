"""What each dashboard page is sent: plain JSON documents built from the daemon's status, the latest scrape
of the proxies and the recorded time series (pure: no I/O here).

* :func:`topology` — the mesh as SVG (drawn by :mod:`meshpipe.mesh.graph`, so the dashboard, ``meshpipe
  graph --format svg`` and the README show one picture), request rates and error rates on the edges;
* :func:`service` — one service's versions, route, pipeline runs and rollout;
* :func:`series` — the time-series points a page has not had yet, and each version's request counter;
* :func:`event` — one event row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshpipe.engines.local.observe.metrics_view import Point, VersionFigures
from meshpipe.engines.local.observe.topology import topology_from
from meshpipe.mesh.graph import to_svg

MAX_RUNS = 10  # pipeline runs shown on a service page
MAX_LOG_CHARS = 2000  # of a failed stage's log


def rates_of(latest: Mapping[tuple[str, str], Point]) -> dict[str, dict[str, tuple[float, float]]]:
    """service -> version -> (requests/s, 5xx share) over the last interval, for versions that had traffic
    in it (the others get no rate label and a grey edge: nothing is known about their errors)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for (service, version), p in latest.items():
        if p.requests and p.success_rate is not None:
            out.setdefault(service, {})[version] = (p.rps, 1.0 - p.success_rate)
    return out


def nav(status: Mapping[str, Any]) -> dict[str, Any]:
    """What every page's header shows: the environment and its services."""
    return {"environment": status.get("environment", ""), "ingress_url": status.get("ingress_url"),
            "services": [s["name"] for s in status.get("services", [])]}


def topology(status: Mapping[str, Any], backends: Mapping[str, set[str]],
             latest: Mapping[tuple[str, str], Point]) -> dict[str, Any]:
    rates = rates_of(latest)
    topo = topology_from(status, backends, rates)
    return {
        "environment": topo.environment, "generation": status.get("generation"), "ingress_url": topo.ingress,
        "svg": to_svg(topo),
        "services": [{"name": s.name, "versions": [{"version": v.version, "weight": v.weight, "rps": v.rps,
                                                     "error_rate": v.error_rate} for v in s.versions]}
                     for s in topo.services],
        "gateway_routes": [{"name": g.name, "prefix": g.prefix, "service": g.service} for g in topo.gateway_routes],
    }


def _run(run: Mapping[str, Any]) -> dict[str, Any]:
    stages = []
    for s in run.get("stages", []):
        stage = {"name": s.get("name"), "status": s.get("status")}
        if s.get("status") == "Failed":
            stage["log"] = str(s.get("log") or "")[-MAX_LOG_CHARS:]
        stages.append(stage)
    return {k: run.get(k) for k in ("run_id", "status", "commit", "version", "ref", "started_at", "finished_at")} | {
        "stages": stages}


def service(status: Mapping[str, Any], name: str, runs: Iterable[Mapping[str, Any]],
            rollout: Mapping[str, Any] | None) -> dict[str, Any]:
    """The service page's document (without the time series); ``missing`` when the environment has no
    such service (it may be created later: the page keeps listening)."""
    found = next((s for s in status.get("services", []) if s["name"] == name), None)
    if found is None:
        return {"service": name, "missing": True}
    tasks: dict[str, list[dict[str, Any]]] = {}
    for t in status.get("tasks", []):
        if t.get("service") == name:
            tasks.setdefault(str(t.get("version")), []).append(
                {"task_id": t["task_id"], "actual": t.get("actual"), "restarts": t.get("restarts", 0)})
    versions = [{"version": v["version"], "commit": v.get("commit"), "status": v.get("status"),
                 "reason": v.get("reason") or "", "weight": v.get("weight", 0),
                 "healthy_tasks": v.get("healthy_tasks"), "desired_tasks": v.get("desired_tasks"),
                 "created_at": v.get("created_at"), "run_id": v.get("run_id"),
                 "tasks": tasks.get(v["version"], [])} for v in found.get("versions", [])]
    return {"service": name, "missing": False, "virtual_service": found.get("virtual_service"),
            "router": found.get("router"), "route": found.get("route"), "versions": versions,
            "runs": [_run(r) for r in list(runs)[:MAX_RUNS]], "rollout": dict(rollout) if rollout else None}


def point(p: Point) -> list[Any]:
    """A point as a short array: [at, requests, rps, success rate, p50 ms, p99 ms]."""
    return [round(p.at, 3), p.requests, round(p.rps, 3),
            None if p.success_rate is None else round(p.success_rate, 5), p.p50_ms, p.p99_ms]


def series(name: str, points: Mapping[str, list[Point]], totals: Mapping[tuple[str, str], VersionFigures],
           since: float, now: float) -> dict[str, Any]:
    """The points of ``name``'s versions newer than ``since``, and each version's counters as its callers'
    proxies count them (requests since those proxies started)."""
    return {
        "now": round(now, 3),
        "points": {ver: [point(p) for p in pts if p.at > since] for ver, pts in points.items()},
        "totals": {ver: {"requests": f.requests, "errors": f.errors, "5xx": f.by_class[5]}
                   for (svc, ver), f in sorted(totals.items()) if svc == name},
    }


def event(row: Any) -> dict[str, Any]:
    return {"id": row.id, "at": row.at, "kind": row.kind, "service": row.service, "version": row.version,
            "message": row.message}
