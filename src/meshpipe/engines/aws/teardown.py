"""Tearing an environment down in the only order that works.

1. Gateway routes and routes (App Mesh API): they are in no stack, and virtual routers, virtual services
   and virtual nodes cannot be deleted while routes point at them. (Not in a Service Connect environment:
   there a gateway route is a listener rule of its service stack, and App Mesh is never called.)
2. Version stacks of every service, and the wait for their deletion: CloudFormation deletes them with
   the service role that lives in the pipeline stack, so that role must outlive them.
   (Service Connect: then what ECS registered in the environment's Cloud Map namespace for those
   services, which no stack owns and which keeps the namespace from being deleted.)
3. Pipeline stacks, their artifact buckets emptied first and deleted after (the template retains them).
4. The build bucket, emptied of every object version and delete marker, then its stack.
5. The environment stack (network, cluster, mesh, ingress) last: everything above runs inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from meshpipe.engines.aws import names
from meshpipe.engines.aws.buckets import Buckets
from meshpipe.engines.aws.cloudmap_api import CloudMapApi
from meshpipe.engines.aws.env_context import EnvContext
from meshpipe.engines.aws.mesh_api import MeshApi
from meshpipe.engines.aws.stacks import Stacks, StackSummary
from meshpipe.engines.base import Reporter

BUCKET_TYPE = "AWS::S3::Bucket"
HTTP_NAMESPACE_TYPE = "AWS::ServiceDiscovery::HttpNamespace"


@dataclass(frozen=True)
class EnvironmentStacks:
    """An environment's stacks, sorted by what they hold."""

    env: str
    env_stack: str | None
    build_bucket_stack: str | None
    pipelines: dict[str, str] = field(default_factory=dict)  # service -> stack name
    versions: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # service -> [(version, stack)]
    # One stack per service (the Service Connect flavour's ``<env>-<svc>``), deployed by the pipeline.
    service_stacks: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.env_stack or self.build_bucket_stack or self.pipelines or self.versions
                    or self.service_stacks)

    def version_stacks(self, service: str | None = None) -> list[str]:
        services = [service] if service else sorted(self.versions)
        return [stack for s in services for _, stack in sorted(self.versions.get(s, []))]

    @classmethod
    def from_summaries(cls, env: str, summaries: list[StackSummary]) -> EnvironmentStacks:
        all_names = [s.name for s in summaries]
        kinds = names.StackKinds.from_stack_names(env, all_names)
        pipelines: dict[str, str] = {}
        versions: dict[str, list[tuple[str, str]]] = {}
        for name in all_names:
            if (service := kinds.pipeline_of(name)) is not None:
                pipelines[service] = name
            elif (found := kinds.version_of(name)) is not None:
                versions.setdefault(found[0], []).append((found[1], name))
        reserved = {names.env_stack(env), names.build_bucket_stack(env)}
        service_stacks = {s: f"{env}-{s}" for s in pipelines
                          if f"{env}-{s}" in all_names and f"{env}-{s}" not in reserved}
        return cls(
            env=env,
            env_stack=names.env_stack(env) if names.env_stack(env) in all_names else None,
            build_bucket_stack=(names.build_bucket_stack(env)
                                if names.build_bucket_stack(env) in all_names else None),
            pipelines=pipelines,
            versions=versions,
            service_stacks=service_stacks,
        )


def environment_stacks(stacks: Stacks, env: str) -> EnvironmentStacks:
    return EnvironmentStacks.from_summaries(env, stacks.list_stacks(f"{env}-"))


class Teardown:
    def __init__(self, stacks: Stacks, mesh: MeshApi, buckets: Buckets, cloudmap: CloudMapApi,
                 reporter: Reporter) -> None:
        self.stacks = stacks
        self.mesh = mesh
        self.buckets = buckets
        self.cloudmap = cloudmap
        self.reporter = reporter

    def environment(self, ctx: EnvContext, found: EnvironmentStacks,
                    retire: Callable[[str], None] | None = None) -> None:
        """``retire(service)`` runs once a service stack is gone (Service Connect: its kept revisions)."""
        if not ctx.service_connect:
            self.routes(ctx)
        self.service_stacks(found, list(found.pipelines) + list(found.versions), retire=retire)
        self.namespace_leftovers(ctx)
        self.pipelines([found.pipelines[s] for s in sorted(found.pipelines)])
        if found.build_bucket_stack:
            self.empty_stack_buckets(found.build_bucket_stack)
            self.stacks.delete(found.build_bucket_stack)
        if found.env_stack:
            self.stacks.delete(found.env_stack)
        self.reporter.done(f"environment {ctx.env} deleted")

    def routes(self, ctx: EnvContext) -> None:
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

    def service_stacks(self, found: EnvironmentStacks, services: list[str],
                       retire: Callable[[str], None] | None = None) -> None:
        """Version stacks (and per-service stacks) of ``services``, all deleted before this returns."""
        doomed: list[str] = []
        for service in sorted(set(services)):
            doomed += found.version_stacks(service)
            if service in found.service_stacks:
                doomed.append(found.service_stacks[service])
        if doomed:
            self.reporter.step(f"deleting {len(doomed)} service stack(s): {', '.join(doomed)}")
            self.stacks.delete_all(doomed)
        if retire is not None:
            for service in sorted(set(services) & set(found.service_stacks)):
                retire(service)

    def namespace_leftovers(self, ctx: EnvContext, service: str | None = None) -> None:
        """Service Connect: the Cloud Map services (and their instances) ECS registered in the environment's
        namespace, all of them or only ``service``'s. Called once the service stacks are gone."""
        if not ctx.service_connect:
            return  # App Mesh: the version stacks own their Cloud Map services
        namespace = ctx.namespace_id
        if namespace is None and ctx.stack is not None:
            found = self.stacks.resources(ctx.stack.name, HTTP_NAMESPACE_TYPE)
            namespace = found[0] if found else None
        if namespace is None:
            return  # no namespace (an environment stack that never got that far): nothing can be in it
        for leftover in self.cloudmap.services(namespace):
            if service is not None and leftover.name != service:
                continue
            deregistered = self.cloudmap.remove(leftover)
            self.reporter.step(f"deleted Cloud Map service {leftover.name} ({leftover.id}) left by ECS, "
                               f"{deregistered} instance(s) deregistered first")

    def pipelines(self, pipeline_stacks: list[str]) -> None:
        """Delete pipeline stacks, and their artifact buckets, which the template retains on deletion."""
        buckets = [b for stack in pipeline_stacks for b in self.empty_stack_buckets(stack)]
        self.stacks.delete_all(pipeline_stacks)
        for bucket in buckets:
            if self.buckets.delete(bucket):
                self.reporter.step(f"deleted retained bucket {bucket}")

    def empty_stack_buckets(self, stack: str) -> list[str]:
        """Empty every bucket of the stack (CloudFormation cannot delete a bucket with objects in it)."""
        buckets = self.stacks.resources(stack, BUCKET_TYPE)
        for bucket in buckets:
            count = self.buckets.empty(bucket)
            self.reporter.step(f"emptied bucket {bucket} ({count} object version(s) and delete marker(s))")
        return buckets
