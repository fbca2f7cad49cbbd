"""The walkthrough's operations in an environment on App Mesh, the original sample's flavour.

AWS shut App Mesh down on 2026-09-30: no mesh, virtual node or gateway can be created since, so the engine
refuses to create an App Mesh environment (:func:`app_mesh_gone`). Environments made before keep working
here with every other operation: a version is an immutable stack ``<env>-<svc>-<version>`` with its own
virtual node, and routes and gateway routes are set through the App Mesh API (:mod:`.mesh_api`), outside
any stack.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from typing import Any, ClassVar

from meshpipe.engines.aws import names
from meshpipe.engines.aws.calls import AwsCalls
from meshpipe.engines.aws.env_context import EnvContext, require_pipeline
from meshpipe.engines.aws.errors import error_code
from meshpipe.engines.aws.mesh_api import MeshApi
from meshpipe.engines.aws.stacks import Stacks, StackState
from meshpipe.engines.aws.teardown import EnvironmentStacks, Teardown, environment_stacks
from meshpipe.engines.base import Reporter, VersionInfo
from meshpipe.engines.plan import Plan, execute
from meshpipe.errors import ConflictError, NotFoundError, UserError
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.mesh.routing import GatewayRoute, HeaderRoute, Route, make_route
from meshpipe.rollout import Move, targets_for

ECS_DESCRIBE_BATCH = 10  # DescribeServices takes at most this many services
VIRTUAL_NODE = "AWS::AppMesh::VirtualNode"


def app_mesh_gone(env: str) -> UserError:
    """Why ``env`` cannot be created (or updated) on App Mesh, and what to do instead."""
    return UserError(
        f"environment {env} cannot be created on App Mesh: AWS shut App Mesh down on {names.APPMESH_SHUTDOWN}, and "
        "its meshes, virtual nodes and gateways can no longer be created",
        hint=f"create it on ECS Service Connect, the default: `meshpipe env create {env} --engine aws`; "
             f"`meshpipe platform render --mesh {MeshFlavour.APPMESH}` and `meshpipe synth --mesh {MeshFlavour.APPMESH}` "
             "still write the App Mesh templates for reading and migration, and an App Mesh environment made before "
             "keeps working with every other command")


def backends_of(template: dict[str, Any], namespace: str) -> set[str]:
    """Services a version stack's virtual node declares as backends (``<svc>.<namespace>`` -> ``<svc>``)."""
    found = set()
    for res in (template.get("Resources") or {}).values():
        if not isinstance(res, dict) or res.get("Type") != VIRTUAL_NODE:
            continue
        for backend in ((res.get("Properties") or {}).get("Spec") or {}).get("Backends") or []:
            name = ((backend or {}).get("VirtualService") or {}).get("VirtualServiceName")
            if isinstance(name, str):
                found.add(name.removesuffix(f".{namespace}"))
    return found


class AppMeshOps:
    flavour: ClassVar[MeshFlavour] = MeshFlavour.APPMESH
    pipeline_holds: ClassVar[str] = ", with its virtual service and router"

    def __init__(self, calls: AwsCalls, stacks: Stacks, teardown: Teardown, reporter: Reporter) -> None:
        self.calls = calls
        self.stacks = stacks
        self.mesh = MeshApi(calls)
        self.teardown = teardown
        self.reporter = reporter

    # -- environments -----------------------------------------------------------------------------------

    def created_details(self, ctx: EnvContext) -> dict[str, str]:
        return {"mesh": ctx.mesh}

    def status_details(self, ctx: EnvContext, found: EnvironmentStacks) -> dict[str, str]:
        return {"mesh": ctx.mesh}

    def plan_env_delete(self, ctx: EnvContext, found: EnvironmentStacks) -> Plan:
        plan = self.teardown.begin(ctx)
        plan.add("appmesh:DeleteGatewayRoute,DeleteRoute", f"every gateway route and route in mesh {ctx.mesh}",
                 "they are in no stack, and virtual nodes, routers and services cannot go while routes "
                 "point at them", lambda: self._delete_all_routes(ctx))
        self.teardown.plan_service_stacks(plan, found, list(found.pipelines) + list(found.versions))
        self.teardown.plan_platform(plan, found)
        return plan

    def _delete_all_routes(self, ctx: EnvContext) -> None:
        """Every gateway route on the ingress gateway and every route of every virtual router."""
        if not self.mesh.mesh_exists(ctx.mesh):
            return
        for name in self.mesh.gateway_route_names(ctx.mesh, ctx.gateway):
            self.reporter.step(f"deleting gateway route {name}")
            self.mesh.delete_gateway_route(ctx.mesh, ctx.gateway, name)
        for router in self.mesh.virtual_routers(ctx.mesh):
            for route in self.mesh.route_names(ctx.mesh, router):
                self.reporter.step(f"deleting route {route} of {router}")
                self.mesh.delete_router_route(ctx.mesh, router, route)

    # -- pipelines --------------------------------------------------------------------------------------

    def check_pipeline_service(self, service: str) -> None:
        return None  # the version stacks' names cannot clash: they end in the version

    def kept_pipeline_values(self, existing: StackState | None) -> dict[str, str]:
        return {}  # the routes live in App Mesh, not in the pipeline stack's parameters

    def plan_pipeline_delete(self, ctx: EnvContext, found: EnvironmentStacks, service: str, stack: StackState,
                             force: bool) -> Plan:
        versions = found.version_stacks(service)
        gateway_routes = [r.name for r in self.mesh.gateway_routes(ctx.mesh, ctx.gateway)
                          if r.service == service] if self.mesh.mesh_exists(ctx.mesh) else []
        if not force and versions:
            raise ConflictError(
                f"{service} still has {len(versions)} version stack(s): {', '.join(versions)}; deleting its "
                "pipeline first would leave them undeletable (CloudFormation deletes them with the "
                "pipeline's service role)",
                hint=f"delete them first with `meshpipe version delete {service} VERSION --env {ctx.env} "
                     "--engine aws`, then delete the pipeline")
        if not force and gateway_routes:
            raise ConflictError(
                f"gateway route(s) {', '.join(gateway_routes)} still send traffic to {service}",
                hint=f"delete them first with `meshpipe route gateway-delete NAME --env {ctx.env} --engine aws`")
        plan = Plan(f"pipeline delete {service} --env {ctx.env}",
                    outcome=lambda: self.reporter.done(f"pipeline of {service} deleted"))
        for name in gateway_routes:
            plan.add("appmesh:DeleteGatewayRoute", name, f"it sends traffic to {service} (--force)",
                     partial(self._delete_gateway_route, ctx, name))
        if self.mesh.mesh_exists(ctx.mesh):
            plan.add("appmesh:DeleteRoute", f"r-{service} (when there is one)",
                     "its virtual router goes with the pipeline stack", lambda: self._delete_route(ctx, service))
        self.teardown.plan_service_stacks(plan, found, [service])
        self.teardown.plan_pipelines(plan, [stack.name])
        return plan

    def _delete_gateway_route(self, ctx: EnvContext, name: str) -> None:
        self.reporter.step(f"deleting gateway route {name}")
        self.mesh.delete_gateway_route(ctx.mesh, ctx.gateway, name)

    def _delete_route(self, ctx: EnvContext, service: str) -> None:
        if self.mesh.delete_route(ctx.mesh, service):
            self.reporter.step(f"deleted route r-{service}")

    # -- gateway routes ---------------------------------------------------------------------------------

    def gateway_route_set(self, ctx: EnvContext, route: GatewayRoute) -> GatewayRoute:
        require_pipeline(self.stacks, ctx.env, route.service, f"no virtual service {route.virtual_service}")
        clash = [r.name for r in self.mesh.gateway_routes(ctx.mesh, ctx.gateway)
                 if r.prefix == route.prefix and r.name != route.name]
        if clash:
            raise ConflictError(f"gateway route {clash[0]} already matches prefix {route.prefix}",
                                hint="choose another prefix, or update that gateway route instead")
        outcome = self.mesh.put_gateway_route(ctx.mesh, ctx.gateway, route)
        self.reporter.done(f"gateway route {route.name} {outcome}: {route.prefix} -> {route.virtual_service}")
        return route

    def gateway_route_delete(self, ctx: EnvContext, name: str) -> None:
        if not self.mesh.delete_gateway_route(ctx.mesh, ctx.gateway, name):
            raise NotFoundError(f"there is no gateway route {name} on {ctx.gateway} in {ctx.env}",
                                hint=f"list them with `meshpipe route gateways --env {ctx.env} --engine aws`")
        self.reporter.done(f"gateway route {name} deleted")

    def gateway_routes(self, ctx: EnvContext) -> list[GatewayRoute]:
        return self.mesh.gateway_routes(ctx.mesh, ctx.gateway)

    # -- service routes ---------------------------------------------------------------------------------

    def plan_route_set(self, ctx: EnvContext, route: Route) -> Plan:
        service = route.service
        require_pipeline(self.stacks, ctx.env, service, f"no virtual router {route.router}")
        for target in route.targets:
            self._require_version(ctx, service, target.version)
        weights = ", ".join(f"{t.virtual_node(service)}={t.weight}" for t in route.targets)

        def put() -> None:
            outcome = self.mesh.put_route(ctx.mesh, route)
            self.reporter.done(f"route {route.name} {outcome}: {weights}")

        plan = Plan(f"route set {service} --env {ctx.env}", outcome=lambda: route)
        plan.add("appmesh:CreateRoute|UpdateRoute", f"{route.name} on {route.router}", f"weights {weights}", put)
        return plan

    def _require_version(self, ctx: EnvContext, service: str, version: str) -> StackState:
        stack_name = names.version_stack(ctx.env, service, version)
        stack = self.stacks.describe(stack_name)
        if stack is None:
            raise NotFoundError(f"{service} has no version {version} in {ctx.env} (no stack {stack_name}, so no "
                                f"virtual node vn-{service}-{version})",
                                hint=f"list versions with `meshpipe versions {service} --env {ctx.env} --engine aws`")
        if not stack.usable:
            raise ConflictError(f"version {version} of {service} is not ready: stack {stack_name} is "
                                f"{stack.status}",
                                hint="wait for the pipeline's Deploy stage to finish, then retry"
                                if stack.status.endswith("_IN_PROGRESS")
                                else "route to a version whose stack is complete")
        return stack

    def route_show(self, ctx: EnvContext, service: str) -> Route | None:
        return self.mesh.describe_route(ctx.mesh, service)

    def route_delete(self, ctx: EnvContext, service: str) -> None:
        if not self.mesh.delete_route(ctx.mesh, service):
            raise NotFoundError(f"{service} has no route in {ctx.env}",
                                hint=f"set one with `meshpipe route set {service} VERSION=100 --env {ctx.env} "
                                     "--engine aws`")
        self.reporter.done(f"route r-{service} deleted")

    def header_route_set(self, ctx: EnvContext, route: HeaderRoute) -> HeaderRoute:
        """An extra route of the service's router for requests whose headers match."""
        require_pipeline(self.stacks, ctx.env, route.service, "no virtual router")
        for target in route.targets:
            self._require_version(ctx, route.service, target.version)
        outcome = self.mesh.put_header_route(ctx.mesh, route)
        self.reporter.done(f"header route {route.name} {outcome}: {route.describe()}")
        return route

    def header_route_delete(self, ctx: EnvContext, service: str, header: str) -> None:
        require_pipeline(self.stacks, ctx.env, service, "no virtual router")
        if not self.mesh.delete_header_route(ctx.mesh, service, header):
            raise NotFoundError(f"{service} has no header route for {header} in {ctx.env}")

    def header_routes(self, ctx: EnvContext, service: str) -> list[HeaderRoute]:
        return self.mesh.header_routes(ctx.mesh, service)

    # -- versions and rollouts --------------------------------------------------------------------------

    def versions(self, ctx: EnvContext, service: str) -> list[VersionInfo]:
        found = environment_stacks(self.stacks, ctx.env)
        route = self.mesh.describe_route(ctx.mesh, service)
        stacks = [s for s in (self.stacks.describe(n) for n in found.version_stacks(service)) if s is not None]
        # The version stack runs ECS service <svc>-<ver>; its ServiceName output says so when present.
        ecs_names = {s.name: s.outputs.get("ServiceName") or f"{service}-{_version_of(s)}" for s in stacks}
        tasks = self._task_counts(ctx, list(ecs_names.values()))
        infos = []
        for stack in stacks:
            version = _version_of(stack)
            ecs_name = ecs_names[stack.name]
            healthy, desired = tasks.get(ecs_name, (None, None))
            infos.append(VersionInfo(
                service=service, version=version, commit=stack.outputs.get("CommitId") or version,
                stack_name=stack.name, status=stack.status, weight=route.weight_of(version) if route else 0,
                created_at=stack.created_at, healthy_tasks=healthy, desired_tasks=desired))
        listed = {i.version for i in infos}
        for target in route.targets if route else ():
            if target.version not in listed:  # routed to, but its stack is gone
                infos.append(VersionInfo(service=service, version=target.version, commit=target.version,
                                         stack_name=names.version_stack(ctx.env, service, target.version),
                                         status="MISSING", weight=target.weight))
        return sorted(infos, key=lambda i: (i.created_at or "~", i.version))

    def _task_counts(self, ctx: EnvContext, ecs_services: list[str]) -> dict[str, tuple[int, int]]:
        """ECS service name -> (running tasks, desired tasks), for the services ECS knows."""
        counts: dict[str, tuple[int, int]] = {}
        for i in range(0, len(ecs_services), ECS_DESCRIBE_BATCH):
            batch = ecs_services[i:i + ECS_DESCRIBE_BATCH]
            page = self.calls.call_or_none("ecs", "describe_services", when=_cluster_missing,
                                           cluster=ctx.cluster, services=batch)
            for svc in (page or {}).get("services", []):
                counts[svc["serviceName"]] = (int(svc.get("runningCount", 0)), int(svc.get("desiredCount", 0)))
        return counts

    def plan_version_delete(self, ctx: EnvContext, service: str, version: str, force: bool) -> Plan:
        stack_name = names.version_stack(ctx.env, service, version)
        if self.stacks.describe(stack_name) is None:
            raise NotFoundError(f"{service} has no version {version} in {ctx.env} (no stack {stack_name})",
                                hint=f"list versions with `meshpipe versions {service} --env {ctx.env} --engine aws`")
        route = self.mesh.describe_route(ctx.mesh, service)
        weight = route.weight_of(version) if route else 0
        if weight > 0 and not force:
            raise ConflictError(f"version {version} of {service} still receives {weight}% of its traffic",
                                hint=f"move the traffic first, e.g. `meshpipe route set {service} OTHER=100 "
                                     f"--env {ctx.env} --engine aws`, or pass --force")
        plan = Plan(f"version delete {service} {version} --env {ctx.env}",
                    outcome=lambda: self.reporter.done(f"version {version} of {service} deleted"))
        if route is not None and any(t.version == version for t in route.targets):
            rest = [t for t in route.targets if t.version != version]
            plan.add("appmesh:UpdateRoute" if any(t.weight > 0 for t in rest) else "appmesh:DeleteRoute", route.name,
                     f"take {version} out of the route before its virtual node goes away",
                     lambda: self._drop_target(ctx, route, version))
        plan.add("cloudformation:DeleteStack", stack_name, f"version {version}: its ECS service, task definition "
                 "and virtual node", lambda: self.stacks.delete(stack_name))
        return plan

    def _drop_target(self, ctx: EnvContext, route: Route, version: str) -> None:
        """Take a version out of the route before its virtual node goes away."""
        rest = tuple(t for t in route.targets if t.version != version)
        if any(t.weight > 0 for t in rest):
            self.mesh.put_route(ctx.mesh, replace(route, targets=rest))
            self.reporter.step(f"removed {version} from route {route.name}")
        else:
            self.mesh.delete_route(ctx.mesh, route.service)
            self.reporter.step(f"deleted route {route.name}: no other version receives traffic")

    def rollout_shift(self, ctx: EnvContext, service: str, move: Move, version: str | None) -> Route:
        """Promote: the canary's route at 100 % (or ``version``'s); roll back: the stable version (or
        ``version``) at 100 %."""
        route = make_route(service, targets_for(self.route_show(ctx, service), move, version))
        done: Route = execute(self.plan_route_set(ctx, route))
        return done

    def rollout_status(self, ctx: EnvContext, service: str) -> dict[str, Any]:
        raise UserError(f"{ctx.env} runs App Mesh, where rollouts are driven from the command line",
                        hint=f"use `meshpipe rollout run {service} NEW --env {ctx.env} --engine aws`")

    # -- observability ----------------------------------------------------------------------------------

    def dashboard_url(self, ctx: EnvContext, region: str) -> str:
        raise UserError(f"environment {ctx.env} runs App Mesh: its template has no CloudWatch dashboard",
                        hint=f"environments created with --mesh {MeshFlavour.SERVICE_CONNECT} have one")

    def backends(self, ctx: EnvContext, found: EnvironmentStacks, service: str) -> set[str]:
        calls: set[str] = set()
        for stack in found.version_stacks(service):
            calls |= backends_of(self._template(stack), ctx.namespace)
        return calls

    def _template(self, stack: str) -> dict[str, Any]:
        body = self.calls("cloudformation", "get_template", StackName=stack).get("TemplateBody")
        if isinstance(body, str):
            try:
                body = json.loads(body)
            except ValueError:
                return {}  # a YAML template: not one meshpipe wrote
        return body if isinstance(body, dict) else {}


def _version_of(stack: StackState) -> str:
    return stack.name.rsplit("-", 1)[1]


def _cluster_missing(exc: BaseException) -> bool:
    return error_code(exc) in {"ClusterNotFoundException", "ServiceNotFoundException"}
