"""The AWS engine: the walkthrough's operations against CloudFormation, S3, App Mesh and CodePipeline.

Every operation reports progress through the Reporter and ends in a clear state: it returns what was
asked for, or raises a meshpipe error saying what happened and what to do.

An environment has one mesh flavour, chosen when it is created (``env_create(env, mesh=...)``, default the
engine's ``mesh``, itself ``service-connect`` by default) and recorded by its stack (the ``MeshFlavour``
output; none means App Mesh). Every other operation checks its input, reads the flavour from there and
hands over to that flavour's ops class (:mod:`.mesh_ops`): :mod:`.service_connect`, which never calls App
Mesh, or :mod:`.app_mesh`. App Mesh was shut down on 2026-09-30, so ``env_create`` refuses it before any
call; environments made before keep working with every other operation.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshpipe.clock import SYSTEM_CLOCK, Clock
from meshpipe.engines.aws import names
from meshpipe.engines.aws.app_mesh import AppMeshOps, app_mesh_gone
from meshpipe.engines.aws.buckets import Buckets
from meshpipe.engines.aws.calls import AwsCalls
from meshpipe.engines.aws.clients import ClientFactory, SessionClientFactory
from meshpipe.engines.aws.cloudmap_api import CloudMapApi
from meshpipe.engines.aws.ecs_api import EcsApi
from meshpipe.engines.aws.env_context import EnvContext, optional_env, pipeline_stack, require_env
from meshpipe.engines.aws.errors import is_not_found
from meshpipe.engines.aws.ingress_api import IngressApi
from meshpipe.engines.aws.mesh_ops import MeshOps
from meshpipe.engines.aws.pipeline_history import PipelineHistory
from meshpipe.engines.aws.retry import Backoff
from meshpipe.engines.aws.service_connect import ServiceConnectOps
from meshpipe.engines.aws.stacks import Stacks, StackState, TemplateUploader
from meshpipe.engines.aws.teardown import EnvironmentStacks, Teardown, environment_stacks
from meshpipe.engines.base import (
    EnvCreateOptions,
    EnvironmentInfo,
    EnvState,
    PipelineCreateOptions,
    PipelineInfo,
    Reporter,
    SilentReporter,
    VersionInfo,
)
from meshpipe.engines.plan import Plan, execute
from meshpipe.errors import ConflictError, Defect, NotFoundError, OperationError, UserError
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.mesh.graph import Topology
from meshpipe.mesh.headers import HeaderMatch
from meshpipe.mesh.routing import (
    GatewayRoute,
    HeaderRoute,
    Route,
    WeightedTarget,
    make_gateway_route,
    make_header_route,
    make_route,
    parse_version_ref,
)
from meshpipe.model import check_service_name
from meshpipe.pipeline.runs import PipelineRun
from meshpipe.platform import PlatformPolicy
from meshpipe.platform_policy import policy_from_text, policy_text
from meshpipe.rollout import Move
from meshpipe.synth import policy_parameter
from meshpipe.synth.pipeline_source import ConnectionSource, PipelineSource, parse_source
from meshpipe.synth.service_pipeline import check_branch

# env -> {file name: template}; called with ``mesh=`` as well for a flavour other than App Mesh, with
# ``certificate_arn=`` when the environment's ingress serves HTTPS, with ``policy=`` when the environment
# has a platform policy, and with ``source=`` and ``branch=`` when a pipeline reads a connection's
# repository or a branch other than main.
TemplateSource = Callable[..., dict[str, dict[str, Any]]]
BundleBuilder = Callable[[Path], Path]  # output folder -> path of the zip written there


def _render_platform(env: str, mesh: MeshFlavour = MeshFlavour.APPMESH, policy: PlatformPolicy | None = None,
                     source: PipelineSource = None, branch: str = "main",
                     certificate_arn: str | None = None) -> dict[str, dict[str, Any]]:
    from meshpipe.synth.environment import EnvironmentOptions
    from meshpipe.synth.platform_render import render_platform

    return render_platform(env, policy, mesh=mesh, source=source, branch=branch,
                           options=EnvironmentOptions(certificate_arn=certificate_arn))


def _build_bundle(out_dir: Path) -> Path:
    from meshpipe.pipeline.bundle import build_bundle

    return build_bundle(out_dir)


def _check_env(env: str) -> None:
    from meshpipe.synth.environment import check_env_name

    check_env_name(env)


def _check_certificate(arn: str) -> None:
    from meshpipe.synth.ingress_tls import check_certificate_arn

    check_certificate_arn(arn)


class AwsEngine:
    name = "aws"

    def __init__(self, reporter: Reporter | None = None, *, clients: ClientFactory | None = None,
                 region: str | None = None, profile: str | None = None,
                 clock: Clock = SYSTEM_CLOCK, poll_interval: float = 10.0,
                 timeout: float = 3600.0, backoff: Backoff | None = None,
                 rand: Callable[[], float] = random.random,
                 templates: TemplateSource | None = None, bundle: BundleBuilder | None = None,
                 mesh: MeshFlavour = MeshFlavour.SERVICE_CONNECT) -> None:
        self.reporter: Reporter = reporter or SilentReporter()
        self.mesh_flavour = MeshFlavour.parse(mesh)
        self.calls = AwsCalls(clients or SessionClientFactory(region=region, profile=profile),
                              clock=clock, backoff=backoff, rand=rand)
        self.stacks = Stacks(self.calls, self.reporter, clock=clock,
                             poll_interval=poll_interval, timeout=timeout)
        self.buckets = Buckets(self.calls)
        self.history = PipelineHistory(self.calls)
        teardown = Teardown(self.stacks, self.buckets, self.reporter)
        cloudmap = CloudMapApi(self.calls, clock=clock, poll_interval=poll_interval,
                               timeout=timeout)
        flavours: list[MeshOps] = [
            AppMeshOps(self.calls, self.stacks, teardown, self.reporter),
            ServiceConnectOps(self.stacks, EcsApi(self.calls), IngressApi(self.calls), cloudmap, teardown,
                              self.reporter, self._current_pipeline_template),
        ]
        self.flavours = {ops.flavour: ops for ops in flavours}
        self.templates = templates or _render_platform
        self.bundle = bundle or _build_bundle

    def ops_for(self, ctx: EnvContext) -> MeshOps:
        """The ops class of the environment's flavour: the one place an operation's flavour is chosen."""
        return self.flavours[ctx.flavour]

    # -- environments -----------------------------------------------------------------------------------

    def _rendered(self, env: str, mesh: MeshFlavour, policy: PlatformPolicy | None = None, source: PipelineSource = None,
                  branch: str | None = None, certificate_arn: str | None = None) -> dict[str, dict[str, Any]]:
        # A template source that knows only App Mesh over plain HTTP, the default policy, CodeCommit and main
        # takes the environment alone.
        options: dict[str, Any] = {}
        if mesh is not MeshFlavour.APPMESH:
            options["mesh"] = mesh
        if policy is not None and policy != PlatformPolicy():
            options["policy"] = policy
        if source is not None:
            options["source"] = source
        if branch not in (None, "main"):
            options["branch"] = branch
        if certificate_arn:
            options["certificate_arn"] = certificate_arn
        return self.templates(env, **options)

    def env_create(self, env: str, mesh: MeshFlavour | None = None, certificate_arn: str | None = None,
                   policy: PlatformPolicy | None = None) -> EnvironmentInfo:
        """Create (or update) the environment, as :meth:`plan_env_create` plans it."""
        info: EnvironmentInfo = execute(self.plan_env_create(env, mesh, certificate_arn, policy))
        return info

    def plan_env_create(self, env: str, mesh: MeshFlavour | None = None, certificate_arn: str | None = None,
                        policy: PlatformPolicy | None = None) -> Plan:
        """Plan to create (or update) the environment; ``mesh`` (default: the engine's) is its flavour, which an
        existing environment keeps. ``certificate_arn`` (ACM) makes the ingress serve HTTPS; an existing
        environment keeps the certificate it has when none is given. ``policy`` is the platform policy every
        build of the environment applies (kept in an SSM parameter of the environment stack); without it an
        existing environment keeps its policy and a new one gets the default policy."""
        _check_env(env)
        flavour = MeshFlavour.parse(mesh or self.mesh_flavour)
        if flavour is MeshFlavour.APPMESH:
            raise app_mesh_gone(env)
        if certificate_arn is not None:
            _check_certificate(certificate_arn)
        if policy is not None:
            policy_text(policy)  # too big to store: refused before any call

        def same_flavour(existing: StackState) -> None:
            if not existing.outputs:  # a first creation that rolled back has none: its flavour is unknown
                return
            found = EnvContext.of(env, existing).flavour
            if found != flavour:
                raise ConflictError(
                    f"environment {env} exists on {found}; it cannot become {flavour} in place (its services and "
                    "pipelines are built for its flavour)",
                    hint=f"App Mesh environments can no longer be created or updated: create a {flavour} "
                         f"environment under another name (`meshpipe env create NAME --engine aws`), create the "
                         f"services' pipelines there, then delete this one (`meshpipe env delete {env} --engine aws`)"
                    if found is MeshFlavour.APPMESH else
                    f"run `meshpipe env create {env} --engine aws --mesh {found}`, or delete it first")

        # One cheap call first, so a missing region, missing credentials or no network show before any work.
        self.reporter.step(f"checking AWS access for environment {env}")
        existing = self.stacks.describe(names.env_stack(env))
        kept = existing.outputs.get(names.CERTIFICATE_OUTPUT) if existing is not None else None
        if certificate_arn is None and kept:
            self.reporter.step(f"keeping the ingress's TLS certificate {kept}")
            certificate_arn = kept
        if policy is None:
            policy = _kept_policy(existing)
        text = policy_text(policy)
        rendered = self._rendered(env, flavour, policy, certificate_arn=certificate_arn)
        if existing is not None:
            same_flavour(existing)  # refused now, not after the bundle was built
        delete_hint = (f"delete what is left with `meshpipe env delete {env} --engine aws`, fix the cause "
                       "shown above and create the environment again")
        what = "cluster, Service Connect namespace, load balancer"  # the one flavour an environment is created on
        bucket_name = names.build_bucket_stack(env)
        made: dict[str, Any] = {}

        def build() -> None:
            self.reporter.step("building the build bundle")
            with tempfile.TemporaryDirectory(prefix="meshpipe-bundle-") as folder:
                made["bundle"] = self.bundle(Path(folder)).read_bytes()

        def deploy_env() -> None:
            self.reporter.step(f"deploying the environment {env} (network, {what})")
            made["env"] = self.stacks.deploy(names.env_stack(env), _template(rendered, names.env_template_key(env)),
                                             {"EnvironmentName": env, policy_parameter.POLICY_PARAMETER: text},
                                             delete_hint=delete_hint,
                                             uploader=self._stager(env), check_existing=same_flavour)

        def deploy_bucket() -> None:
            self.reporter.step(f"deploying the build bucket of {env}")
            made["bucket"] = self._build_bucket(self.stacks.deploy(
                bucket_name, _template(rendered, names.build_bucket_template_key(env)), {"EnvironmentName": env},
                delete_hint=delete_hint))

        def upload() -> None:
            self.reporter.step(f"uploading the build bundle to s3://{made['bucket']}/{names.BUNDLE_KEY}")
            self.buckets.put(made["bucket"], names.BUNDLE_KEY, made["bundle"], "application/zip")

        def info() -> EnvironmentInfo:
            ctx = EnvContext.of(env, made["env"])
            bucket = made["bucket"]
            self.reporter.done(f"environment {env} ready; ingress {ctx.ingress_url or '(no endpoint output)'}")
            details: dict[str, str] = {"mesh flavour": ctx.flavour, **self.ops_for(ctx).created_details(ctx)}
            details.update({"cluster": ctx.cluster, "namespace": ctx.namespace, "build bucket": bucket,
                            "bundle": f"s3://{bucket}/{names.BUNDLE_KEY}",
                            "platform policy": _policy_summary(policy, policy_parameter.parameter_name(env))})
            if certificate_arn:
                details["ingress certificate"] = certificate_arn
            return EnvironmentInfo(name=env, status=made["env"].status, ingress_url=ctx.ingress_url, details=details)

        plan = Plan(f"env create {env}", outcome=info)
        # The bundle is built before anything is deployed: if building fails, nothing is half-made.
        plan.add("local:build-bundle", "the build bundle (zip)", "the Build stage installs meshpipe from it; "
                 "built first, so that a failure leaves nothing half-made", build)
        # The environment goes first: the platform templates may import its exports.
        plan.add(_stack_call(existing), names.env_stack(env),
                 f"the environment ({flavour}: network, {what}), with the platform policy in its parameters; "
                 "first, since the other stacks import its exports", deploy_env)
        plan.add("cloudformation:CreateStack|UpdateStack", bucket_name,
                 "the bucket the builds read the bundle from and stage large templates in", deploy_bucket)
        plan.add("s3:PutObject", f"{names.BUNDLE_KEY} in the build bucket", "the bundle every build installs",
                 upload)
        return plan

    def env_create_with(self, env: str, options: EnvCreateOptions) -> EnvironmentInfo:
        return self.env_create(env, mesh=options.mesh, certificate_arn=options.certificate_arn, policy=options.policy)

    def _build_bucket(self, stack: StackState) -> str:
        return self._output_or_resource(stack, "BuildBucketName", "AWS::S3::Bucket",
                                        f"stack {stack.name} has no BuildBucketName output and no bucket")

    def _output_or_resource(self, stack: StackState, output: str, resource_type: str, missing: str) -> str:
        """The stack's ``output``, else the physical id of its first resource of ``resource_type``."""
        value = stack.outputs.get(output)
        if not value:
            found = self.stacks.resources(stack.name, resource_type)
            value = found[0] if found else None
        if not value:
            raise Defect(missing)
        return value

    def _stager(self, env: str) -> TemplateUploader:
        """Stages a template too big to send inline in the build bucket (which must exist by then)."""

        def stage(stack: str, body: bytes) -> str:
            existing = self.stacks.describe(names.build_bucket_stack(env))
            if existing is None or not existing.usable:
                raise Defect(
                    f"the template of {stack} is {len(body)} bytes, too big to send to CloudFormation inline, "
                    f"and the build bucket that would stage it ({names.build_bucket_stack(env)}) is not ready")
            bucket = self._build_bucket(existing)
            key = f"templates/{stack}.template.json"
            self.buckets.put(bucket, key, body, "application/json")
            return self.buckets.url(bucket, key)

        return stage

    def env_status(self, env: str) -> EnvironmentInfo:
        _check_env(env)
        ctx = optional_env(self.stacks, env)
        found = environment_stacks(self.stacks, env)
        bucket = self.stacks.describe(names.build_bucket_stack(env))
        details = {
            "environment stack": ctx.stack.status if ctx.stack else EnvState.NOT_FOUND,
            "build bucket stack": bucket.status if bucket else EnvState.NOT_FOUND,
            "pipelines": str(len(found.pipelines)),
            "versions": str(sum(len(v) for v in found.versions.values())),
        }
        if found.pipelines:
            details["services"] = ", ".join(sorted(found.pipelines))
        if ctx.stack:
            details["mesh flavour"] = ctx.flavour
            details.update(self.ops_for(ctx).status_details(ctx, found))
        return EnvironmentInfo(name=env, status=ctx.stack.status if ctx.stack else EnvState.NOT_FOUND,
                               ingress_url=ctx.ingress_url, details=details)

    def env_delete(self, env: str) -> None:
        execute(self.plan_env_delete(env))

    def plan_env_delete(self, env: str) -> Plan:
        """Tear the environment down in the order that works (see :mod:`.teardown`)."""
        _check_env(env)
        found = environment_stacks(self.stacks, env)
        if found.empty:
            raise NotFoundError(f"environment {env} does not exist on AWS (no stacks named {env}-...)",
                                hint="list environments with `aws cloudformation list-stacks` or check the region")
        ctx = optional_env(self.stacks, env)
        return self.ops_for(ctx).plan_env_delete(ctx, found)

    # -- pipelines --------------------------------------------------------------------------------------

    def pipeline_create(self, env: str, service: str, source: str | None = None, connection: str | None = None,
                        branch: str | None = None) -> PipelineInfo:
        """Create (or update) the service's pipeline, as :meth:`plan_pipeline_create` plans it."""
        info: PipelineInfo = execute(self.plan_pipeline_create(env, service, source, connection, branch))
        return info

    def plan_pipeline_create(self, env: str, service: str, source: str | None = None, connection: str | None = None,
                             branch: str | None = None) -> Plan:
        """Plan to create (or update) the service's pipeline. ``source`` is ``codecommit`` (a repo the stack creates)
        or ``github:OWNER/REPO``, ``gitlab:GROUP/PROJECT``, ``bitbucket:WORKSPACE/REPO`` read through the
        CodeConnections ``connection`` (an ARN); ``branch`` is the branch whose pushes start it. Left out, an
        existing pipeline keeps its own, and a new one gets CodeCommit and main."""
        _check_env(env)
        check_service_name(service)
        wanted = parse_source(source, connection) if source is not None or connection is not None else None
        if branch is not None:
            check_branch(branch)
        ctx = require_env(self.stacks, env)
        bucket = self.stacks.describe(names.build_bucket_stack(env))
        if bucket is None or not bucket.usable:  # pipelines import the bucket's name
            raise NotFoundError(f"environment {env} has no ready build bucket "
                                f"(stack {names.build_bucket_stack(env)} is "
                                f"{bucket.status if bucket else 'missing'})",
                                hint=f"run `meshpipe env create {env} --engine aws` again to finish it")
        values = {"EnvironmentName": env, "ServiceName": service}
        ops = self.ops_for(ctx)
        ops.check_pipeline_service(service)
        existing = found = self.stacks.describe(names.pipeline_stack(env, service))
        if existing is not None and existing.status == "ROLLBACK_COMPLETE":
            existing = None  # replaced by the deploy below; it holds nothing to keep
        had, had_branch = _source_of(existing)
        chosen = wanted if source is not None else had
        if existing is not None and (had is None) != (chosen is None):
            raise ConflictError(
                f"the pipeline of {service} reads {_describe_source(had, service)}; it cannot switch to "
                f"{_describe_source(chosen, service)} in place"
                + (" (its stack holds the CodeCommit repo, which would be deleted with its history)"
                   if had is None else ""),
                hint=f"delete the pipeline first (`meshpipe pipeline delete {service} --env {env} --engine aws`), "
                     "then create it with the new source")
        values.update(ops.kept_pipeline_values(existing))
        template = self._pipeline_template(ctx, chosen, branch or had_branch)
        made: dict[str, StackState] = {}

        def deploy() -> None:
            self.reporter.step(f"deploying the pipeline of {service} in {env} (source: "
                               f"{_describe_source(chosen, service)})")
            made["stack"] = self.stacks.deploy(
                names.pipeline_stack(env, service), template, values,
                delete_hint=f"delete it with `meshpipe pipeline delete {service} --env {env} --engine aws`, fix "
                            "the cause shown above and create the pipeline again")

        def info() -> PipelineInfo:
            found = self._pipeline_info(ctx, service, made["stack"])
            where = f"{found.repository}, branch {found.branch}" if found.repository else found.clone_url
            self.reporter.done(f"pipeline of {service} ready; push manifest.yaml to {where}")
            return found

        plan = Plan(f"pipeline create {service} --env {env}", outcome=info)
        plan.add(_stack_call(found), names.pipeline_stack(env, service),
                 f"the pipeline of {service} (source: {_describe_source(chosen, service)}, branch "
                 f"{branch or had_branch or 'main'}){ops.pipeline_holds}", deploy)
        return plan

    def _pipeline_template(self, ctx: EnvContext, source: PipelineSource = None,
                           branch: str | None = None) -> dict[str, Any]:
        """The pipeline template of the environment's flavour and policy, for ``source`` and ``branch``."""
        return _template(self._rendered(ctx.env, ctx.flavour, _kept_policy(ctx.stack), source, branch),
                         names.PIPELINE_TEMPLATE_KEY)

    def _current_pipeline_template(self, ctx: EnvContext, pipeline: StackState) -> dict[str, Any]:
        """The template a pipeline stack already has, rendered again: same source, same branch."""
        return self._pipeline_template(ctx, *_source_of(pipeline))

    def _pipeline_info(self, ctx: EnvContext, service: str, stack: StackState) -> PipelineInfo:
        source, branch = _source_of(stack)
        clone_url = source.clone_url if source is not None else stack.outputs.get("SourceRepoCloneUrlHttp")
        if not clone_url:
            raise Defect(f"stack {stack.name} has no SourceRepoCloneUrlHttp output")
        return PipelineInfo(service=service, environment=ctx.env, clone_url=clone_url,
                            virtual_service=stack.outputs.get("VirtualServiceName")
                            or f"{service}.{ctx.namespace}",
                            status=stack.status, repository=source.spec if source is not None else None,
                            branch=branch)

    def pipeline_create_with(self, env: str, service: str, options: PipelineCreateOptions) -> PipelineInfo:
        return self.pipeline_create(env, service, source=options.source, connection=options.connection,
                                    branch=options.branch)

    def pipeline_delete_forced(self, env: str, service: str) -> None:
        self.pipeline_delete(env, service, force=True)

    def pipeline_delete(self, env: str, service: str, force: bool = False) -> None:
        execute(self.plan_pipeline_delete(env, service, force))

    def plan_pipeline_delete(self, env: str, service: str, force: bool = False) -> Plan:
        _check_env(env)
        check_service_name(service)
        stack = pipeline_stack(self.stacks, env, service)
        ctx = optional_env(self.stacks, env)
        return self.ops_for(ctx).plan_pipeline_delete(ctx, environment_stacks(self.stacks, env), service, stack, force)

    def _pipeline_name(self, env: str, service: str) -> str:
        stack = pipeline_stack(self.stacks, env, service)
        return self._output_or_resource(stack, "PipelineName", "AWS::CodePipeline::Pipeline",
                                        f"stack {stack.name} holds no CodePipeline pipeline")

    def pipeline_runs(self, env: str, service: str) -> list[PipelineRun]:
        _check_env(env)
        check_service_name(service)
        return self.history.runs(self._pipeline_name(env, service), service)

    def pipeline_logs(self, env: str, service: str, run_id: str | None = None) -> PipelineRun:
        _check_env(env)
        check_service_name(service)
        return self.history.run(self._pipeline_name(env, service), service, run_id)

    # -- gateway routes ---------------------------------------------------------------------------------

    def gateway_route_set(self, env: str, route: GatewayRoute) -> GatewayRoute:
        _check_env(env)
        check_service_name(route.service)
        ctx = require_env(self.stacks, env)
        # The virtual service belongs to this environment, whatever namespace the caller assumed.
        route = make_gateway_route(route.name, route.prefix, route.service, ctx.namespace, route.rewrite_prefix)
        return self.ops_for(ctx).gateway_route_set(ctx, route)

    def gateway_route_delete(self, env: str, name: str) -> None:
        _check_env(env)
        ctx = require_env(self.stacks, env)
        self.ops_for(ctx).gateway_route_delete(ctx, name)

    def gateway_routes(self, env: str) -> list[GatewayRoute]:
        _check_env(env)
        ctx = require_env(self.stacks, env)
        return self.ops_for(ctx).gateway_routes(ctx)

    # -- service routes ---------------------------------------------------------------------------------

    def route_set(self, env: str, service: str, targets: tuple[WeightedTarget, ...]) -> Route:
        route: Route = execute(self.plan_route_set(env, service, targets))
        return route

    def plan_route_set(self, env: str, service: str, targets: tuple[WeightedTarget, ...]) -> Plan:
        _check_env(env)
        check_service_name(service)
        route = make_route(service, targets)  # App Mesh's limits, checked before any call
        ctx = require_env(self.stacks, env)
        return self.ops_for(ctx).plan_route_set(ctx, route)

    def route_show(self, env: str, service: str) -> Route | None:
        _check_env(env)
        check_service_name(service)
        ctx = require_env(self.stacks, env)
        return self.ops_for(ctx).route_show(ctx, service)

    def route_delete(self, env: str, service: str) -> None:
        _check_env(env)
        check_service_name(service)
        ctx = require_env(self.stacks, env)
        self.ops_for(ctx).route_delete(ctx, service)

    def header_route_set(self, env: str, service: str, headers: tuple[HeaderMatch, ...],
                         targets: tuple[WeightedTarget, ...]) -> HeaderRoute:
        """App Mesh: an extra route of the service's router for requests whose headers match."""
        _check_env(env)
        route = make_header_route(service, headers, targets)  # App Mesh's limits, checked before any call
        check_service_name(service)
        ctx = require_env(self.stacks, env)
        return self.ops_for(ctx).header_route_set(ctx, route)

    def header_route_delete(self, env: str, service: str, header: str) -> None:
        _check_env(env)
        check_service_name(service)
        ctx = require_env(self.stacks, env)
        self.ops_for(ctx).header_route_delete(ctx, service, header)

    def header_routes(self, env: str, service: str) -> list[HeaderRoute]:
        _check_env(env)
        ctx = require_env(self.stacks, env)
        return self.ops_for(ctx).header_routes(ctx, service)

    # -- versions ---------------------------------------------------------------------------------------

    def versions(self, env: str, service: str) -> list[VersionInfo]:
        _check_env(env)
        check_service_name(service)
        ctx = require_env(self.stacks, env)
        return self.ops_for(ctx).versions(ctx, service)

    def version_delete(self, env: str, service: str, version: str, force: bool = False) -> None:
        execute(self.plan_version_delete(env, service, version, force))

    def plan_version_delete(self, env: str, service: str, version: str, force: bool = False) -> Plan:
        _check_env(env)
        check_service_name(service)
        version = parse_version_ref(service, version)
        ctx = require_env(self.stacks, env)
        return self.ops_for(ctx).plan_version_delete(ctx, service, version, force)

    # -- rollouts ---------------------------------------------------------------------------------------

    def rollout_shift(self, env: str, service: str, move: Move, version: str | None = None) -> Route:
        """Promote: all traffic to the new version. App Mesh: the canary's route at 100 % (or ``version``'s);
        Service Connect: the running ECS deployment goes on (continued if paused at a lifecycle hook).
        Roll back: all traffic back. App Mesh: the stable version (or ``version``) at 100 %; Service Connect:
        ECS stops the running deployment and rolls back to the revision it replaces."""
        _check_env(env)
        check_service_name(service)
        named = parse_version_ref(service, version) if version else None
        ctx = require_env(self.stacks, env)
        return self.ops_for(ctx).rollout_shift(ctx, service, move, named)

    def deployed_template(self, stack: str) -> dict[str, Any]:
        """The template ``stack`` was last deployed with, as CloudFormation keeps it (GetTemplate)."""
        found = self.calls.call_or_none("cloudformation", "get_template", when=is_not_found, StackName=stack,
                                        TemplateStage="Original")
        if found is None:
            raise NotFoundError(f"there is no stack {stack} in this account and region",
                                hint="name a deployed stack, or pass the path of a template file")
        body = found.get("TemplateBody")
        # botocore hands a JSON template over already parsed; a YAML one stays text.
        template = json.loads(body) if isinstance(body, str) else body
        if not isinstance(template, dict):
            raise OperationError(f"the template of stack {stack} is not a JSON object")
        return dict(template)

    def rollout_status(self, env: str, service: str) -> dict[str, Any]:
        """Service Connect: the service's latest ECS deployment (ECS runs the rollout there). App Mesh has no
        rollout of its own: ``rollout run`` drives one from the CLI."""
        _check_env(env)
        check_service_name(service)
        ctx = require_env(self.stacks, env)
        return self.ops_for(ctx).rollout_status(ctx, service)

    def mesh_of(self, env: str) -> MeshFlavour:
        """The flavour of an existing environment."""
        _check_env(env)
        return require_env(self.stacks, env).flavour

    # -- observability ----------------------------------------------------------------------------------

    def topology(self, env: str, sample_seconds: float = 0.0) -> Topology:
        """The environment's mesh as its stacks, routes and ECS services have it (``meshpipe graph``)."""
        from meshpipe.engines.aws.topology import aws_topology

        _check_env(env)
        if sample_seconds:
            raise UserError("--rates is measured by the local engine's proxies",
                            hint=f"on AWS, traffic is on the environment's dashboard: meshpipe dashboard --env {env} "
                                 "--engine aws")
        return aws_topology(self, env)

    def dashboard_url(self, env: str) -> str:
        """The console URL of the environment's CloudWatch dashboard (Service Connect environments), in the
        region the engine's clients use."""
        _check_env(env)
        ctx = require_env(self.stacks, env)
        return self.ops_for(ctx).dashboard_url(ctx, self.calls.client("cloudwatch").meta.region_name)

    # -- shared -----------------------------------------------------------------------------------------

    def environment_stacks(self, env: str) -> EnvironmentStacks:
        return environment_stacks(self.stacks, env)


def _stack_call(existing: StackState | None) -> str:
    """The stack operation Stacks.deploy makes of a stack in this state."""
    if existing is None:
        return "cloudformation:CreateStack"
    if existing.status == "ROLLBACK_COMPLETE":  # a first creation that failed: deleted, then created again
        return "cloudformation:DeleteStack+CreateStack"
    return "cloudformation:UpdateStack"


def _template(rendered: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    if key not in rendered:
        raise Defect(f"the platform templates lack {key} (got {', '.join(sorted(rendered))})")
    return rendered[key]


def _source_of(stack: StackState | None) -> tuple[PipelineSource, str | None]:
    """A pipeline stack's source (None: CodeCommit) and branch, from its outputs and parameters."""
    if stack is None:
        return None, None
    branch = stack.parameters.get("BranchName") or None
    repository = stack.outputs.get("SourceRepository", "")
    provider, _, _ = repository.partition(":")
    if provider and "FullRepositoryId" in stack.parameters and "ConnectionArn" in stack.parameters:
        return ConnectionSource(provider, stack.parameters["FullRepositoryId"], stack.parameters["ConnectionArn"]), branch
    return None, branch


def _describe_source(source: PipelineSource, service: str) -> str:
    return source.spec if source is not None else f"the CodeCommit repo {service}-cfg"


def _kept_policy(stack: StackState | None) -> PlatformPolicy | None:
    """The policy an environment stack holds (its ``PlatformPolicy`` parameter), or None for none."""
    text = stack.parameters.get(policy_parameter.POLICY_PARAMETER) if stack is not None else None
    if not text or stack is None or stack.status == "ROLLBACK_COMPLETE":
        return None
    return policy_from_text(text, f"{stack.name} parameter {policy_parameter.POLICY_PARAMETER}")


def _policy_summary(policy: PlatformPolicy | None, parameter: str) -> str:
    changed = sorted((policy or PlatformPolicy()).model_dump(exclude_defaults=True))
    return f"{', '.join(changed) if changed else 'defaults'} (SSM parameter {parameter})"
