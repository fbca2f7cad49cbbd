"""Tearing an environment down in the only order that works.

1. App Mesh only (:mod:`.app_mesh`): gateway routes and routes, which are in no stack, and virtual routers,
   virtual services and virtual nodes cannot be deleted while routes point at them. (In a Service Connect
   environment a gateway route is a listener rule of its service stack, and App Mesh is never called.)
2. Version stacks of every service, and the wait for their deletion: CloudFormation deletes them with
   the service role that lives in the pipeline stack, so that role must outlive them.
   (Service Connect, :mod:`.service_connect`: then what ECS registered in the environment's Cloud Map
   namespace for those services, which no stack owns and which keeps the namespace from being deleted.)
3. Pipeline stacks, their artifact buckets emptied first and deleted after (the template retains them).
4. The build bucket, emptied of every object version and delete marker, then its stack.
5. The environment stack (network, cluster, mesh, ingress) last: everything above runs inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from meshpipe.engines.aws import names
from meshpipe.engines.aws.buckets import Buckets
from meshpipe.engines.aws.env_context import EnvContext
from meshpipe.engines.aws.stacks import Stacks, StackSummary
from meshpipe.engines.base import Reporter
from meshpipe.engines.plan import Plan

BUCKET_TYPE = "AWS::S3::Bucket"


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
    """The steps of a teardown every flavour shares; each flavour's ops class adds its own between them."""

    def __init__(self, stacks: Stacks, buckets: Buckets, reporter: Reporter) -> None:
        self.stacks = stacks
        self.buckets = buckets
        self.reporter = reporter

    def begin(self, ctx: EnvContext) -> Plan:
        """An empty plan to tear ``ctx``'s environment down. Planning reads nothing more than the stacks found."""
        return Plan(f"env delete {ctx.env}", outcome=lambda: self.reporter.done(f"environment {ctx.env} deleted"))

    def plan_platform(self, plan: Plan, found: EnvironmentStacks) -> None:
        """The steps after the services: the pipelines, the build bucket, and the environment stack last."""
        self.plan_pipelines(plan, [found.pipelines[s] for s in sorted(found.pipelines)])
        if found.build_bucket_stack:
            bucket_stack = found.build_bucket_stack
            plan.add("s3:DeleteObjects", f"the build bucket of {bucket_stack}",
                     "CloudFormation cannot delete a bucket that holds objects",
                     lambda: self.empty_stack_buckets(bucket_stack))
            plan.add("cloudformation:DeleteStack", bucket_stack, "the build bucket",
                     lambda: self.stacks.delete(bucket_stack))
        if found.env_stack:
            env_stack = found.env_stack
            plan.add("cloudformation:DeleteStack", env_stack,
                     "the network, cluster, mesh or namespace and ingress, last: everything above runs inside it",
                     lambda: self.stacks.delete(env_stack))

    def plan_service_stacks(self, plan: Plan, found: EnvironmentStacks, services: list[str],
                            retire: Callable[[str], None] | None = None) -> None:
        doomed = self._service_stacks_of(found, services)
        if doomed or retire is not None:
            plan.add("cloudformation:DeleteStack", ", ".join(doomed) or "(none)",
                     "the versions' and services' stacks first: CloudFormation deletes them with the service role "
                     "their pipeline stack holds", lambda: self.service_stacks(found, services, retire=retire))

    def plan_pipelines(self, plan: Plan, pipeline_stacks: list[str]) -> None:
        if pipeline_stacks:
            plan.add("cloudformation:DeleteStack", ", ".join(pipeline_stacks),
                     "the pipelines, their artifact buckets emptied first and deleted after (the template retains "
                     "them)", lambda: self.pipelines(pipeline_stacks))

    def service_stacks(self, found: EnvironmentStacks, services: list[str],
                       retire: Callable[[str], None] | None = None) -> None:
        """Version stacks (and per-service stacks) of ``services``, all deleted before this returns."""
        doomed = self._service_stacks_of(found, services)
        if doomed:
            self.reporter.step(f"deleting {len(doomed)} service stack(s): {', '.join(doomed)}")
            self.stacks.delete_all(doomed)
        if retire is not None:
            for service in sorted(set(services) & set(found.service_stacks)):
                retire(service)

    @staticmethod
    def _service_stacks_of(found: EnvironmentStacks, services: list[str]) -> list[str]:
        doomed: list[str] = []
        for service in sorted(set(services)):
            doomed += found.version_stacks(service)
            if service in found.service_stacks:
                doomed.append(found.service_stacks[service])
        return doomed

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
