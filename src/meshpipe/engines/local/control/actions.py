"""The daemon's side of the control API: what each operation does, one method per row of
``operations.OPERATIONS``, named as the row, taking its request and returning its result.

``httpapi.make_control_app`` turns HTTP requests into these calls. A call reads state.db, or changes it
(each change one transaction) and then publishes the mesh config; it returns only once every live proxy
answered the publish, so a CLI command that returns has reached the mesh.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from meshpipe.delivery.policy import RolloutSpec, resolve_rollout_spec
from meshpipe.engines.base import PipelineInfo, VersionInfo
from meshpipe.engines.local.control import operations as ops
from meshpipe.engines.local.control.operations import (
    HeaderRouteChanged,
    PushReport,
    RouteChanged,
    RouteView,
    gateway_route_to_json,
    route_to_json,
    run_from_json,
    version_from_json,
)
from meshpipe.engines.local.control.publisher import Publisher
from meshpipe.engines.local.delivery.rollouts import ROLLOUT_OWNER, RolloutController
from meshpipe.engines.local.delivery.runs import RunQueue
from meshpipe.engines.local.observe import metrics_view
from meshpipe.engines.local.observe.topology import backends_from
from meshpipe.engines.local.state import store as st
from meshpipe.engines.local.state.home import EnvPaths
from meshpipe.engines.local.state.options import LocalOptions, runtime_text
from meshpipe.engines.local.state.store import EnvironmentRow, StateStore
from meshpipe.engines.local.tasks.deploy import Deployer
from meshpipe.engines.local.tasks.supervisor import Supervisor
from meshpipe.errors import ConflictError, MeshpipeError, NotFoundError, UserError
from meshpipe.mesh.routing import (
    GatewayRoute,
    HeaderRoute,
    Route,
    check_service,
    make_gateway_route,
    make_header_route,
    make_route,
)
from meshpipe.mesh.stats import ServiceStats
from meshpipe.model import COMMIT_RE, check_service_name
from meshpipe.naming import header_route_name, virtual_node_name, virtual_router_name
from meshpipe.pipeline.runs import PipelineRun, StartedRun
from meshpipe.platform import RolloutDefaults
from meshpipe.status import RunStatus, TaskGoal, VersionStatus

# The longest window `stats --window` measures over (the command waits for it).
MAX_STATS_WINDOW_S = 300.0
# The most tasks a version may be scaled to on one machine.
MAX_TASKS = 20
# A git ref as a push reports it: printable, no spaces, not endless.
REF_RE = re.compile(r"^refs/[\x21-\x7e]{1,250}\Z")


class DaemonActions:
    """One method per control-API call; mixed into ``Daemon``, whose parts it uses are declared below."""

    env: EnvironmentRow
    paths: EnvPaths
    options: LocalOptions
    store: StateStore
    supervisor: Supervisor
    publisher: Publisher
    deployer: Deployer
    runs: RunQueue
    rollouts: RolloutController
    pipelines_lock: asyncio.Lock  # pipeline create and delete, one at a time
    started_at: str
    control_port: int | None
    _stop_requested: asyncio.Event

    # -- environment --

    async def status(self, request: ops.Nothing) -> dict[str, Any]:
        return self.status_document()

    def status_document(self) -> dict[str, Any]:
        gateway = self.supervisor.gateway
        weights_by_service = {s: {t.version: t.weight for t in r.targets} for s, r in self.store.routes().items()}
        services = []
        for svc in self.store.services():
            services.append({
                "name": svc.name, "virtual_service": svc.virtual_service, "router": svc.router,
                "clone_url": Path(svc.repo_path).as_uri(),
                "route": route_to_json(self.store.route(svc.name)),
                "versions": self._versions_json(svc.name, weights_by_service.get(svc.name, {})),
            })
        return {
            "environment": self.env.name, "namespace": self.env.namespace,
            "runtime": runtime_text(self.options),
            "daemon": {"pid": os.getpid(), "started_at": self.started_at, "control_port": self.control_port},
            "ingress_url": f"http://127.0.0.1:{gateway.port}" if gateway else None,
            "gateway": {"port": gateway.port if gateway else None, "live": bool(gateway and gateway.live.is_set()),
                        "restarts": gateway.restarts if gateway else 0},
            "generation": self.publisher.current["generation"] if self.publisher.current else None,
            "proxies": len(self.publisher.proxies),
            "services": services,
            "gateway_routes": [gateway_route_to_json(g) for g in self.store.gateway_routes()],
            "tasks": [{"task_id": t.task_id, "service": t.service, "version": t.version, "actual": t.actual,
                       "restarts": t.restarts, "last_error": t.last_error,
                       "ingress_port": t.ports.ingress if t.ports else None,
                       "app_port": t.ports.app if t.ports else None}
                      for t in self.supervisor.task_statuses()],
            "runs_in_progress": [r.run_id for r in self.store.runs(status=RunStatus.IN_PROGRESS)],
        }

    async def shutdown(self, request: ops.Nothing) -> dict[str, Any]:
        # Answer first; the stop runs once the reply is on its way.
        asyncio.get_running_loop().call_soon(self._stop_requested.set)
        return {"stopping": True}

    async def mesh_config(self, request: ops.Nothing) -> dict[str, Any] | None:
        return self.publisher.current

    async def backends(self, request: ops.Nothing) -> dict[str, tuple[str, ...]]:
        found = backends_from(((v.service, v.resolved) for v in self.store.versions()), self.env.namespace)
        return {service: tuple(sorted(calls)) for service, calls in found.items()}

    # -- pipelines --

    async def pipeline_create(self, request: ops.OfService) -> PipelineInfo:
        service = request.service
        from meshpipe.engines.local.source.gitrepo import create_bare_repo, has_commits, install_post_receive_hook
        from meshpipe.engines.local.source.hook import hook_argv

        check_service_name(service, "service")
        async with self.pipelines_lock:
            if self.store.service(service) is not None:
                raise ConflictError(f"a pipeline for {service!r} already exists in {self.env.name}")
            repo = self.paths.repo(service)
            kept = repo.exists() and await asyncio.to_thread(has_commits, repo)
            if kept:
                # A repo kept by an earlier pipeline delete: its history stays, its hook is the new pipeline's.
                await asyncio.to_thread(install_post_receive_hook, repo,
                                        hook_argv(self.paths.root, service, sys.executable))
            else:
                if repo.exists():
                    # An interrupted create leaves an empty repo without its service: it was never used.
                    shutil.rmtree(repo)
                await asyncio.to_thread(create_bare_repo, repo, hook_argv(self.paths.root, service, sys.executable))
            try:
                row = self.store.add_service(service, f"{service}.{self.env.namespace}", virtual_router_name(service), str(repo))
            except BaseException:
                if not kept:
                    shutil.rmtree(repo, ignore_errors=True)
                raise
        await self.publisher.publish(f"virtual service {row.virtual_service} created")
        return PipelineInfo(service=service, environment=self.env.name, clone_url=repo.as_uri(),
                            virtual_service=row.virtual_service, status=VersionStatus.CREATE_COMPLETE, repo_kept=kept)

    async def pipeline_delete(self, request: ops.DeletePipeline) -> None:
        """The service's virtual service, router, pipeline and its runs go; its config repo stays (its
        history is the app team's), unless ``delete_repo``. A push to a kept repo is answered with what to do."""
        service, delete_repo = request.service, request.delete_repo
        async with self.pipelines_lock:
            self.store.require_service(service)
            busy = [r.run_id for r in self.store.runs(service, status=RunStatus.IN_PROGRESS)]
            if busy:
                raise ConflictError(f"pipeline run(s) {', '.join(busy)} of {service} are in progress",
                                    hint="wait for them: meshpipe pipeline wait " + service)
            self.store.delete_service(service)
            self.runs.forget(service)
            if delete_repo:
                shutil.rmtree(self.paths.repo(service), ignore_errors=True)
        await self.publisher.publish(f"virtual service of {service} deleted")

    async def pipeline_runs(self, request: ops.OfService) -> tuple[PipelineRun, ...]:
        self.store.require_service(request.service)
        return tuple(run_from_json(_run_json(r)) for r in self.store.runs(request.service))

    async def pipeline_run(self, request: ops.OfRun) -> PipelineRun:
        service, run_id = request.service, request.run_id
        self.store.require_service(service)
        if run_id == ops.LATEST:
            runs = self.store.runs(service)
            if not runs:
                raise NotFoundError(f"{service} has no pipeline runs yet",
                                    hint="push a manifest.yaml to its config repo")
            return run_from_json(_run_json(runs[0]))
        run = self.store.run(run_id)
        if run is None or run.service != service:
            raise NotFoundError(f"{service} has no pipeline run {run_id!r}",
                                hint=f"list runs with: meshpipe pipeline runs {service}")
        return run_from_json(_run_json(run))

    async def push(self, request: ops.Push) -> StartedRun:
        service, ref, old, new = request.service, request.ref, request.old, request.new
        check_service(service)
        if not REF_RE.match(ref):
            raise UserError(f"{ref[:80]!r} is not a branch ref like refs/heads/main")
        if old is not None and not COMMIT_RE.match(old):
            old = None  # only said for the record; a hook may send anything there
        self.store.require_service(service)
        if not COMMIT_RE.match(new) or not new.strip("0"):
            raise UserError(f"{new[:80]!r} is not a commit id")
        return StartedRun(self.runs.submit(service, ref, old, new), service, new)

    # -- routes --

    async def route_show(self, request: ops.OfService) -> Route | None:
        self.store.require_service(request.service)
        return self.store.route(request.service)

    async def route_view(self, request: ops.OfService) -> RouteView:
        self.store.require_service(request.service)
        return RouteView(self.store.route(request.service),
                         tuple(self.store.header_routes(request.service).get(request.service, [])))

    async def route_set(self, request: ops.SetRoute) -> RouteChanged:
        service, targets = request.service, request.targets
        route = make_route(service, targets)
        self._refuse_during_rollout(service, "set its route")
        # Weight to a scaled-down version brings it back first, as rolling back in Argo Rollouts scales the
        # old ReplicaSet up again: its tasks are healthy before it takes a request.
        for t in targets:
            row = self.store.version(service, t.version) if t.weight > 0 else None
            if row is not None and row.scaled_down:
                await self.deployer.scale(service, t.version, row.desired_tasks or 1,
                                          "to take the weight route set gives it")
        self.store.set_route(route)
        pushed = await self.publisher.publish(f"route {route.name} set")
        return RouteChanged(route, push_report(pushed))

    async def route_delete(self, request: ops.OfService) -> None:
        service = request.service
        self._refuse_during_rollout(service, "delete its route")
        self.store.delete_route(service)
        await self.publisher.publish(f"route r-{service} deleted")

    def _refuse_during_rollout(self, service: str, what: str) -> None:
        if self.rollouts.running(service):
            raise ConflictError(f"a rollout of {service} is running: it owns the route, so this would not "
                                f"{what} for long", hint=f"promote or abort it first: meshpipe rollout promote|abort "
                                                          f"{service} (meshpipe rollout status {service} shows it)")

    async def header_routes(self, request: ops.OfService) -> tuple[HeaderRoute, ...]:
        self.store.require_service(request.service)
        return tuple(self.store.header_routes(request.service).get(request.service, []))

    async def header_route_set(self, request: ops.SetHeaderRoute) -> HeaderRouteChanged:
        service = request.service
        route = make_header_route(service, request.headers, request.targets)
        if self.store.header_route_owner(service, route.name) == ROLLOUT_OWNER and self.rollouts.running(service):
            raise ConflictError(f"header route {route.name} is the preview of the running rollout of {service}",
                                hint=f"promote or abort it first: meshpipe rollout promote|abort {service}")
        self.store.set_header_route(route)
        pushed = await self.publisher.publish(f"header route {route.name} set")
        return HeaderRouteChanged(route, push_report(pushed))

    async def header_route_delete(self, request: ops.OfHeaderRoute) -> None:
        service = request.service
        name = header_route_name(service, request.header)
        if self.store.header_route_owner(service, name) == ROLLOUT_OWNER and self.rollouts.running(service):
            raise ConflictError(f"header route {name} is the preview of the running rollout of {service}",
                                hint=f"promote or abort it first: meshpipe rollout promote|abort {service}")
        self.store.delete_header_route(service, name)
        await self.publisher.publish(f"header route {name} deleted")

    # -- rollouts --

    async def deployed(self, service: str, version: str, run_id: str) -> None:
        """A pipeline run deployed ``version``: its rollout starts when its plan asks for one."""
        row = self.store.version(service, version)
        plan_json = (row.resolved.get("rollout") if row is not None else None) or None
        if plan_json is None:
            return
        try:
            await self.rollouts.start(service, version, RolloutSpec.from_json(plan_json), f"by a push (run {run_id})")
        except MeshpipeError as exc:
            self.store.add_event("rollout", f"no rollout of {version}: {exc.message}", service, version)

    async def rollout_start(self, request: ops.StartRollout) -> dict[str, Any]:
        """Start a rollout by hand: the version's own plan, else the platform's default."""
        service, version = request.service, request.version
        self.store.require_service(service)
        row = self.store.version(service, version)
        if row is None:
            raise NotFoundError(f"version {version} of {service} does not exist",
                                hint=f"list versions with: meshpipe versions {service}")
        plan_json = row.resolved.get("rollout")
        if plan_json:
            plan: RolloutSpec | None = RolloutSpec.from_json(plan_json)
        else:
            platform = row.resolved.get("platform", {}).get("policy", {}).get("rollout")
            defaults = RolloutDefaults.model_validate(platform) if platform else RolloutDefaults()
            plan = resolve_rollout_spec(defaults, None, force=True)
        assert plan is not None
        if row.scaled_down:
            # A version a rollout scaled down (an aborted candidate, say) comes back before it takes traffic.
            await self.deployer.scale(service, version, row.desired_tasks or 1, "to be rolled out again")
        return await self.rollouts.start(service, version, plan, "by hand")

    async def rollout_status(self, request: ops.OfService) -> dict[str, Any]:
        self.store.require_service(request.service)
        return self.rollouts.status(request.service)

    async def rollout_control(self, request: ops.ControlRollout) -> dict[str, Any]:
        self.store.require_service(request.service)
        if request.action not in ("pause", "resume", "abort", "promote"):
            raise UserError(f"{request.action!r} is not a rollout control: pause, resume, abort or promote")
        return await self.rollouts.control(request.service, request.action)

    async def gateway_routes(self, request: ops.Nothing) -> tuple[GatewayRoute, ...]:
        return tuple(self.store.gateway_routes())

    async def gateway_route_set(self, request: ops.SetGatewayRoute) -> GatewayRoute:
        gr = make_gateway_route(request.name, request.prefix, request.service, self.env.namespace,
                                request.rewrite_prefix)
        self.store.put_gateway_route(gr)
        await self.publisher.publish(f"gateway route {gr.name} set")
        return gr

    async def gateway_route_delete(self, request: ops.OfGatewayRoute) -> None:
        self.store.delete_gateway_route(request.name)
        await self.publisher.publish(f"gateway route {request.name} deleted")

    # -- versions --

    def _versions_json(self, service: str, weights: dict[str, int]) -> list[dict[str, Any]]:
        out = []
        desired_by_version: dict[str, int] = {}
        for task in self.store.tasks(service):
            if task.desired == TaskGoal.RUNNING:
                desired_by_version[task.version] = desired_by_version.get(task.version, 0) + 1
        for row in self.store.versions(service):
            health = self.supervisor.version_health(service, row.version)
            out.append({"service": service, "version": row.version, "commit": row.commit,
                        "stack_name": row.stack_name, "status": row.status, "reason": row.reason,
                        "weight": weights.get(row.version, 0), "created_at": row.created_at,
                        "healthy_tasks": health.healthy, "desired_tasks": desired_by_version.get(row.version, 0),
                        "scaled_down": row.scaled_down,
                        "virtual_node": virtual_node_name(service, row.version), "run_id": row.run_id})
        return out

    async def versions(self, request: ops.OfService) -> tuple[VersionInfo, ...]:
        service = request.service
        self.store.require_service(service)
        return tuple(version_from_json(v) for v in self._versions_json(service, self.store.weights(service)))

    async def version_scale(self, request: ops.ScaleVersion) -> dict[str, Any]:
        service, version, tasks = request.service, request.version, request.tasks
        self.store.require_service(service)
        if not 0 <= tasks <= MAX_TASKS:
            raise UserError(f"--tasks {tasks} is not 0-{MAX_TASKS}")
        said = await self.deployer.scale(service, version, tasks, "by hand")
        return {"service": service, "version": version, "tasks": tasks, "message": said}

    async def version_delete(self, request: ops.OfVersion) -> None:
        self.store.require_service(request.service)
        await self.deployer.delete(request.service, request.version, request.force)
        self.rollouts.wake(request.service)

    # -- stats and metrics --

    def _proxy_names(self) -> dict[int, str]:
        """Live proxies by admin port: ``gateway``, or the task id of a sidecar."""
        names: dict[int, str] = {}
        gateway = self.supervisor.gateway
        if gateway is not None and gateway.admin_port is not None:
            names[gateway.admin_port] = "gateway"
        for task in self.supervisor.task_statuses():
            if task.ports is not None:
                names[task.ports.admin] = task.task_id
        return {port: names.get(port, f"admin-{port}") for port in self.publisher.proxies}

    async def scrape(self) -> list[metrics_view.ProxyScrape]:
        """Every live proxy's raw stats, now (the dashboard's data too)."""
        return await metrics_view.scrape(await self.publisher.session(), self._proxy_names())

    async def stats(self, request: ops.StatsOf) -> ServiceStats:
        """Per-version counters for the service summed over every proxy that sent it traffic, and latency
        quantiles of the merged histograms: since each proxy started, or over the next ``window_s`` seconds
        (two scrapes, the second less the first)."""
        self.store.require_service(request.service)
        window = request.window_s
        if window is not None and not 0 < window <= MAX_STATS_WINDOW_S:
            raise UserError(f"--window {window:g} is not between 0 and {MAX_STATS_WINDOW_S:g} seconds")
        proxies = len(self.publisher.proxies)
        scrapes = await self.scrape()
        if window:
            await asyncio.sleep(window)
            scrapes = metrics_view.since(scrapes, await self.scrape())
        found = metrics_view.service_stats(scrapes, request.service, proxies)
        return ServiceStats.from_json({**found, "window_s": window} if window else found)

    def control_figures(self) -> metrics_view.ControlFigures:
        weights = {(svc, t.version): t.weight for svc, route in self.store.routes().items() for t in route.targets}
        healthy: dict[tuple[str, str], int] = {}
        for svc, by_version in self.supervisor.endpoints().items():
            for ver, endpoints in by_version.items():
                healthy[(svc, ver)] = len(endpoints)
        return metrics_view.ControlFigures(
            pipeline_runs=self.store.run_counts(), route_changes=dict(self.store.route_changes),
            rollout_decisions=dict(self.rollouts.decisions),
            task_restarts={(t.service, t.version, t.task_id): t.restarts for t in self.store.tasks()},
            weights=weights, healthy_tasks=healthy,
            config_generation=self.publisher.current["generation"] if self.publisher.current else None)

    async def metrics(self, request: ops.Nothing) -> bytes:
        """The environment's Prometheus page (``GET /metrics``)."""
        scrapes = await self.scrape()
        return await asyncio.to_thread(metrics_view.exposition, scrapes, self.control_figures())


def _run_json(run: st.RunRow) -> dict[str, Any]:
    return {"run_id": run.run_id, "service": run.service, "ref": run.ref, "commit": run.commit,
            "status": run.status, "version": run.version, "started_at": run.started_at,
            "finished_at": run.finished_at,
            "stages": [{"name": s.name, "status": s.status, "log": s.log} for s in run.stages]}


def push_report(pushed: dict[str, Any]) -> PushReport:
    """The report of what ``Publisher.publish`` answered."""
    return PushReport(pushed.get("generation"), int(pushed.get("proxies") or 0), int(pushed.get("applied") or 0),
                      {str(k): str(v) for k, v in (pushed.get("failed") or {}).items()}, float(pushed.get("ms") or 0.0))
