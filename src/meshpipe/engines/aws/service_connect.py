"""The walkthrough's operations in an environment on ECS Service Connect (the flavour after App Mesh).

What changes against App Mesh:

* a service has one stack, ``<env>-<svc>``, which its pipeline updates for every commit; a **version** is
  a task-definition revision of its ECS service, tagged with the version id;
* traffic moves **by ECS deployments**, with the strategy of the platform's policy (a 10 % canary by
  default): weights cannot be set by hand. ``route show`` reports the split of the running deployment,
  ``route set`` accepts only the split ECS already has, ``rollout rollback`` stops a running deployment
  and has ECS roll back, ``rollout promote`` lets a deployment paused at a lifecycle hook go on;
* a **gateway route** is the service's listener rule on the environment's load balancer, created by its
  service stack from the parameters ``IngressPathPrefix``/``IngressRulePriority``/``IngressRewritePrefix``.
  The pipeline stack keeps them (its Deploy stage passes them on with every commit); ``route gateway``
  sets them on both stacks. One gateway route per service.
* the rule's forward weights belong to ECS, which moves them during every deployment. They are the
  parameters ``IngressPrimaryWeight``/``IngressAlternateWeight`` of both stacks: ``route gateway`` reads
  them from the live rule, declares them on the service stack first (an update that changes no traffic),
  then applies the route; every commit passes the same values on, so CloudFormation never writes stale
  weights over ECS's. While a deployment runs the weights are moving, and the route is not changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from meshpipe.engines.aws import names
from meshpipe.engines.aws.cloudmap_api import CloudMapApi
from meshpipe.engines.aws.ecs_api import Deployment, EcsApi, Revision, ServiceState, family_of
from meshpipe.engines.aws.env_context import EnvContext, require_pipeline
from meshpipe.engines.aws.ingress_api import IngressApi
from meshpipe.engines.aws.stacks import Stacks, StackState
from meshpipe.engines.aws.teardown import EnvironmentStacks, Teardown, environment_stacks
from meshpipe.engines.base import Reporter, VersionInfo
from meshpipe.engines.plan import Plan
from meshpipe.errors import ConflictError, NotFoundError, OperationError, UserError
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.mesh.routing import GatewayRoute, HeaderRoute, Route, WeightedTarget
from meshpipe.rollout import Move
from meshpipe.synth import rollout_deploy
from meshpipe.synth import service_connect as sc
from meshpipe.synth.service_pipeline import INGRESS_ROUTE_NAME, INGRESS_ROUTE_NAME_PATTERN

PipelineTemplate = Callable[[], dict[str, Any]]
# The pipeline template a pipeline stack has now, rendered again for the environment (same source and branch).
PipelineTemplates = Callable[[EnvContext, StackState], dict[str, Any]]
HTTP_NAMESPACE_TYPE = "AWS::ServiceDiscovery::HttpNamespace"
DEFAULT_WEIGHTS = {k: str(v) for k, v in sc.DEFAULT_WEIGHTS.items()}
NO_INGRESS = {INGRESS_ROUTE_NAME: "", sc.INGRESS_PATH_PREFIX: "", sc.INGRESS_RULE_PRIORITY: "1",
              sc.INGRESS_REWRITE_PREFIX: "true", **DEFAULT_WEIGHTS}
PIPELINE_INGRESS_KEYS = tuple(NO_INGRESS)


def ingress_values(stack: StackState | None) -> dict[str, str]:
    """The gateway-route parameters a pipeline stack has now (kept when the stack is deployed again)."""
    if stack is None:
        return {}
    return {k: stack.parameters[k] for k in PIPELINE_INGRESS_KEYS if k in stack.parameters}


def describe_strategy(strategy: dict[str, Any]) -> str:
    """ECS's deployment configuration in words, e.g. 'CANARY: 10% for 10 min, then the rest; ...'."""
    kind = str(strategy.get("strategy") or "ROLLING")
    bake = strategy.get("bakeTimeInMinutes")
    kept = f"; the previous revision is kept {bake} min after the shift" if bake is not None else ""
    if kind == "CANARY":
        canary = strategy.get("canaryConfiguration", {})
        return (f"CANARY: {canary.get('canaryPercent', '?')}% for {canary.get('canaryBakeTimeInMinutes', '?')} min, "
                f"then the rest{kept}")
    if kind == "LINEAR":
        linear = strategy.get("linearConfiguration", {})
        return (f"LINEAR: {linear.get('stepPercent', '?')}% more every {linear.get('stepBakeTimeInMinutes', '?')} "
                f"min{kept}")
    if kind == "BLUE_GREEN":
        return f"BLUE_GREEN: all at once once the new revision is healthy{kept}"
    return "ROLLING: tasks are replaced, no traffic shift"


@dataclass
class ServiceConnectOps:
    flavour: ClassVar[MeshFlavour] = MeshFlavour.SERVICE_CONNECT
    pipeline_holds: ClassVar[str] = ""

    stacks: Stacks
    ecs: EcsApi
    ingress: IngressApi
    cloudmap: CloudMapApi
    teardown: Teardown
    reporter: Reporter
    templates: PipelineTemplates

    # -- environments -----------------------------------------------------------------------------------

    def created_details(self, ctx: EnvContext) -> dict[str, str]:
        return {}

    def status_details(self, ctx: EnvContext, found: EnvironmentStacks) -> dict[str, str]:
        return {"service stacks": str(len(found.service_stacks))}

    def plan_env_delete(self, ctx: EnvContext, found: EnvironmentStacks) -> Plan:
        plan = self.teardown.begin(ctx)
        self.teardown.plan_service_stacks(plan, found, list(found.pipelines) + list(found.versions),
                                          self._retirer(ctx, list(found.service_stacks)))
        plan.add("servicediscovery:DeleteService", f"what ECS registered in the namespace of {ctx.env}",
                 "no stack owns it, and it keeps the namespace from being deleted",
                 lambda: self.namespace_leftovers(ctx))
        self.teardown.plan_platform(plan, found)
        return plan

    def _retirer(self, ctx: EnvContext, services: list[str]) -> Callable[[str], None] | None:
        """What deregisters a service's kept revisions once its stack is gone (their family is read before,
        while the service and its stack still say it)."""
        if not services:
            return None
        families = {service: self.family(ctx, service) for service in services}
        return lambda service: self.retire_all(ctx, service, families.get(service))

    def namespace_leftovers(self, ctx: EnvContext, service: str | None = None) -> None:
        """The Cloud Map services (and their instances) ECS registered in the environment's namespace, all of
        them or only ``service``'s. Called once the service stacks are gone."""
        namespace = ctx.namespace_id
        if namespace is None and ctx.stack is not None:
            found = self.stacks.resources(ctx.stack.name, HTTP_NAMESPACE_TYPE)
            namespace = found[0] if found else None
        if namespace is None:
            return  # no namespace (an environment stack that never got that far): nothing can be in it
        # ECS registers a service under its discovery name (<env>_<svc>); one deployed before discovery names
        # were that registered under the bare service name.
        wanted = None if service is None else {service, rollout_deploy.discovery_name_of(ctx.env, service)}
        for leftover in self.cloudmap.services(namespace):
            if wanted is not None and leftover.name not in wanted:
                continue
            deregistered = self.cloudmap.remove(leftover)
            self.reporter.step(f"deleted Cloud Map service {leftover.name} ({leftover.id}) left by ECS, "
                               f"{deregistered} instance(s) deregistered first")

    # -- pipelines --------------------------------------------------------------------------------------

    def check_pipeline_service(self, service: str) -> None:
        problem = names.service_connect_name_problem(service)
        if problem:
            raise UserError(f"{service!r} cannot be a service on Service Connect: {problem}",
                            hint="choose another service name")

    def kept_pipeline_values(self, existing: StackState | None) -> dict[str, str]:
        return ingress_values(existing)  # deploying again keeps the service's gateway route

    def plan_pipeline_delete(self, ctx: EnvContext, found: EnvironmentStacks, service: str, stack: StackState,
                             force: bool) -> Plan:
        service_stack = found.service_stacks.get(service)
        if service_stack and not force:
            raise ConflictError(
                f"{service} still has its service stack {service_stack}; deleting its pipeline first would leave it "
                "undeletable (CloudFormation deletes it with the pipeline's service role)",
                hint=f"pass --force to delete the service (its ECS service, gateway route and versions) and then "
                     f"the pipeline: `meshpipe pipeline delete {service} --env {ctx.env} --engine aws --force`")
        plan = Plan(f"pipeline delete {service} --env {ctx.env}",
                    outcome=lambda: self.reporter.done(f"pipeline of {service} deleted"))
        self.teardown.plan_service_stacks(plan, found, [service],
                                          self._retirer(ctx, [service] if service_stack else []))
        plan.add("servicediscovery:DeleteService", f"what ECS registered for {service} in the namespace",
                 "no stack owns it", lambda: self.namespace_leftovers(ctx, service))
        self.teardown.plan_pipelines(plan, [stack.name])
        return plan

    # -- gateway routes ---------------------------------------------------------------------------------

    def gateway_routes(self, ctx: EnvContext, found: EnvironmentStacks | None = None) -> list[GatewayRoute]:
        found = found or environment_stacks(self.stacks, ctx.env)
        routes = []
        for service, stack_name in sorted(found.pipelines.items()):
            stack = self.stacks.describe(stack_name)
            route = _route_of(stack, service, ctx.namespace) if stack else None
            if route is not None:
                routes.append(route)
        return sorted(routes, key=lambda r: r.name)

    def gateway_route_set(self, ctx: EnvContext, route: GatewayRoute) -> GatewayRoute:
        pipeline = require_pipeline(self.stacks, ctx.env, route.service, "no stack to hold its gateway route")
        _check_ingress_route(route)
        found = environment_stacks(self.stacks, ctx.env)
        others = [r for r in self.gateway_routes(ctx, found) if r.service != route.service]
        mine = _route_of(pipeline, route.service, ctx.namespace)
        if any(r.name == route.name for r in others):
            other = next(r for r in others if r.name == route.name)
            raise ConflictError(f"gateway route {route.name} already sends {other.prefix} to {other.service}",
                                hint="choose another name, or delete that gateway route first")
        clash = next((r for r in others if r.prefix == route.prefix), None)
        if clash is not None:
            raise ConflictError(f"gateway route {clash.name} already matches prefix {route.prefix}",
                                hint="choose another prefix, or delete that gateway route first")
        if mine is not None and mine.name != route.name:
            raise ConflictError(
                f"{route.service} already has gateway route {mine.name} ({mine.prefix}); on Service Connect a "
                "service has one gateway route (its listener rule)",
                hint=f"update it by its name (`meshpipe route gateway {mine.name} --prefix {route.prefix} "
                     f"--service {route.service} --env {ctx.env} --engine aws`), or delete it first")
        taken = {int(p) for r in others
                 if (p := self._pipeline_parameter(found, r.service, sc.INGRESS_RULE_PRIORITY)) and p.isdigit()}
        current = pipeline.parameters.get(sc.INGRESS_RULE_PRIORITY, "")
        priority = int(current) if mine is not None and current.isdigit() and int(current) not in taken \
            else next(n for n in range(1, sc.MAX_RULE_PRIORITY + 1) if n not in taken)
        values = {INGRESS_ROUTE_NAME: route.name, sc.INGRESS_PATH_PREFIX: route.prefix,
                  sc.INGRESS_RULE_PRIORITY: str(priority),
                  sc.INGRESS_REWRITE_PREFIX: "true" if route.rewrite_prefix else "false"}
        self._apply(ctx, route.service, pipeline, lambda: self.templates(ctx, pipeline), values, keep_weights=True)
        self.reporter.done(f"gateway route {route.name}: {route.prefix} -> {route.service} "
                           f"(listener rule priority {priority})")
        return GatewayRoute(name=route.name, prefix=route.prefix, service=route.service, namespace=ctx.namespace,
                            rewrite_prefix=route.rewrite_prefix)

    def gateway_route_delete(self, ctx: EnvContext, name: str) -> None:
        found = environment_stacks(self.stacks, ctx.env)
        route = next((r for r in self.gateway_routes(ctx, found) if r.name == name), None)
        if route is None:
            raise NotFoundError(f"there is no gateway route {name} in {ctx.env}",
                                hint=f"list them with `meshpipe route gateways --env {ctx.env} --engine aws`")
        pipeline = self.stacks.describe(found.pipelines[route.service])
        assert pipeline is not None
        self._apply(ctx, route.service, pipeline, lambda: self.templates(ctx, pipeline), dict(NO_INGRESS))
        self.reporter.done(f"gateway route {name} deleted: {route.prefix} no longer reaches {route.service}")

    def _apply(self, ctx: EnvContext, service: str, pipeline: StackState, template: PipelineTemplate,
               values: dict[str, str], *, keep_weights: bool = False) -> None:
        """The route on the pipeline stack (for the commits to come), then on the service stack (for now).

        With ``keep_weights`` the listener rule's weights are what ECS last set on it (see
        :meth:`_live_weights`), declared on the service stack before anything else of the rule changes, so
        neither the update nor its rollback can put back weights ECS has moved away from. Without (the route
        goes, and the rule with it), they return to 100/0 for the next rule.
        """
        service_stack = self.stacks.describe(names.service_stack(ctx.env, service))
        if service_stack is not None and service_stack.status.endswith("_IN_PROGRESS"):
            self.reporter.step(f"{service_stack.name} is {service_stack.status}; waiting for that to finish first")
            service_stack = self.stacks.settle(service_stack)
        if service_stack is not None and service_stack.status == "DELETE_COMPLETE":
            service_stack = None
        self._refuse_while_deploying(ctx, service, service_stack)
        live = self._live_weights(service_stack) if keep_weights and service_stack is not None else None
        values = {**values, **(live or DEFAULT_WEIGHTS)}
        self.reporter.step(f"recording the gateway route of {service} on {pipeline.name}")
        self.stacks.deploy(pipeline.name, template(), {"EnvironmentName": ctx.env, "ServiceName": service, **values})
        if service_stack is None:
            self.reporter.step(f"{service} has no stack yet: its first deployment creates the listener rule")
            return
        hint = f"the pipeline stack {pipeline.name} holds the route; the next commit of {service} applies it"
        if live is not None and any(service_stack.parameters.get(k) != v for k, v in live.items()):
            self.reporter.step(f"declaring on {service_stack.name} the weights ECS left on its listener rule "
                               f"({_weights_text(live)}); traffic does not change")
            self.stacks.update_parameters(service_stack.name, live, hint=hint)
        self._announce_deployment(ctx, service, service_stack.name)
        route = {k: values[k] for k in sc.INGRESS_PARAMETERS}
        if not (keep_weights and self._attaches(service_stack)):
            self.stacks.update_parameters(service_stack.name, route, hint=hint)
            return
        # The first attach: a rule forwarding at once would answer 503 until ECS has registered healthy
        # tasks (and with a canary, 90 % of requests during its bake); the rule is held until then.
        self.reporter.step(f"{values[sc.INGRESS_PATH_PREFIX]} keeps the listener's default answer until the "
                           f"deployment has finished (requests with {sc.HOLD_HEADER}: {sc.HOLD_HEADER_VALUE} reach "
                           "the new rule already)")
        attached = self.stacks.update_parameters(service_stack.name, {**route, sc.INGRESS_OPEN: "false"}, hint=hint)
        weights = self._live_weights(attached) or DEFAULT_WEIGHTS
        # The pipeline recorded 100/0 before the rule existed; ECS has moved them since, and the next commit
        # must pass on what ECS left.
        self.reporter.step(f"recording the weights ECS left ({_weights_text(weights)}) on {pipeline.name}")
        self.stacks.deploy(pipeline.name, template(),
                           {"EnvironmentName": ctx.env, "ServiceName": service, **values, **weights})
        self.reporter.step(f"opening {values[sc.INGRESS_PATH_PREFIX]} on the listener rule")
        self.stacks.update_parameters(service_stack.name, {**weights, sc.INGRESS_OPEN: "true"}, hint=hint)

    def _attaches(self, service_stack: StackState) -> bool:
        """Whether the update creates the service's listener rule (and so registers its running tasks with the
        load balancer for the first time), on a template that can hold the rule closed meanwhile."""
        return sc.INGRESS_OPEN in service_stack.parameters \
            and sc.INGRESS_RULE not in self.stacks.physical_ids(service_stack.name)

    def _announce_deployment(self, ctx: EnvContext, service: str, stack: str) -> None:
        """Say, before the long wait, that the update is an ECS deployment of the service and how long its
        strategy takes: the stack update ends only when that deployment does."""
        state = self.ecs.service(ctx.cluster, service)
        strategy = describe_strategy(state.strategy) if state is not None else "the service's strategy"
        self.reporter.step(
            f"{stack}: ECS attaches {service} to the load balancer with a new deployment ({strategy}); this "
            f"waits until it has finished. Interrupting leaves it running: follow it with `meshpipe rollout "
            f"status {service} --env {ctx.env} --engine aws`")

    def _refuse_while_deploying(self, ctx: EnvContext, service: str, service_stack: StackState | None) -> None:
        if service_stack is None:
            return
        deployment = self.ecs.running_deployment(ctx.cluster, service)
        if deployment is not None:
            raise ConflictError(
                f"a deployment of {service} is running ({deployment.stage or deployment.status}): ECS is moving the "
                "load balancer's weights on its listener rule, so its gateway route cannot change now",
                hint=f"wait until it has finished (`meshpipe versions {service} --env {ctx.env} --engine aws` shows "
                     "it), or roll it back, then run the command again")

    def _live_weights(self, service_stack: StackState) -> dict[str, str] | None:
        """The weights ECS left on the service's listener rule, as the stack's weight parameters; None when
        the stack has no rule yet (the rule it creates starts at 100/0)."""
        ids = self.stacks.physical_ids(service_stack.name)
        rule = ids.get(sc.INGRESS_RULE)
        live = self.ingress.forward_weights(rule) if rule else None
        if rule is None or live is None:
            return None
        primary, alternate = ids.get(sc.INGRESS_TARGET_GROUP), ids.get(sc.INGRESS_ALTERNATE_TARGET_GROUP)
        strangers = sorted(set(live) - {primary, alternate})
        if strangers:
            raise OperationError(
                f"the listener rule of {service_stack.name} forwards to target group(s) its stack does not hold: "
                f"{', '.join(strangers)}",
                hint="someone changed the rule by hand; make it forward to the stack's two target groups again "
                     "(the EC2 console's load balancer page, or `aws elbv2 modify-rule`), then retry")
        weights = {sc.INGRESS_PRIMARY_WEIGHT: str(live.get(primary or "", 0)),
                   sc.INGRESS_ALTERNATE_WEIGHT: str(live.get(alternate or "", 0))}
        # An earlier template declares 100/0: changing its rule is safe only while ECS routes the same way.
        all_to_primary = weights[sc.INGRESS_ALTERNATE_WEIGHT] == "0" and weights[sc.INGRESS_PRIMARY_WEIGHT] != "0"
        if not all(k in service_stack.parameters for k in sc.INGRESS_WEIGHTS) and not all_to_primary:
            raise ConflictError(
                f"{service_stack.name} was deployed by an earlier meshpipe whose listener rule declares fixed "
                f"weights 100/0, but ECS has left {_weights_text(weights)}: changing the rule now would send all "
                "traffic to a target group without tasks",
                hint=f"deploy the service once more with this meshpipe (push a commit to its config repo, or "
                     f"`aws codepipeline start-pipeline-execution --name {service_stack.name}`), then retry")
        return weights

    def _pipeline_parameter(self, found: EnvironmentStacks, service: str, key: str) -> str | None:
        stack = self.stacks.describe(found.pipelines[service])
        return stack.parameters.get(key) if stack else None

    # -- traffic ----------------------------------------------------------------------------------------

    def route_show(self, ctx: EnvContext, service: str) -> Route | None:
        state = self.ecs.service(ctx.cluster, service)
        if state is None:
            return None
        revisions = self._revisions(ctx, service, state)
        deployment = self.ecs.running_deployment(ctx.cluster, service)
        weights = _weights(state, deployment)
        by_arn = {r.arn: r for r in revisions}
        targets = tuple(WeightedTarget(by_arn[arn].version, weight) for arn, weight in weights.items()
                        if arn in by_arn)
        return Route(service=service, targets=targets)

    def plan_route_set(self, ctx: EnvContext, route: Route) -> Plan:
        """ECS moves traffic itself: the split it already has is nothing to do, another is refused (while
        planning, so ``--dry-run`` says so too)."""
        require_pipeline(self.stacks, ctx.env, route.service, "no service stack")
        current = self.route_set(ctx, route.service, route.targets)
        return Plan(f"route set {route.service} --env {ctx.env}", outcome=lambda: current)

    def route_set(self, ctx: EnvContext, service: str, targets: tuple[WeightedTarget, ...]) -> Route:
        state = self._require_service(ctx, service)
        current = self.route_show(ctx, service)
        have = {t.version: t.weight for t in (current.targets if current else ()) if t.weight > 0}
        want = {t.version: t.weight for t in targets if t.weight > 0}
        if current is not None and have == want:
            self.reporter.done(f"{service} already serves {_split(have)}; nothing to change")
            return current
        raise ConflictError(
            f"{service} runs on ECS Service Connect in {ctx.env}: ECS moves traffic between task-definition "
            f"revisions itself, with the platform's strategy ({describe_strategy(state.strategy)}); weights cannot "
            f"be set by hand (it serves {_split(have) or 'nothing yet'})",
            hint=f"a push to {service}-cfg deploys a new version this way; while it deploys, "
                 f"`meshpipe rollout rollback {service} --env {ctx.env} --engine aws` sends all traffic back, and "
                 f"`meshpipe versions {service} --env {ctx.env} --engine aws` shows the split")

    def route_delete(self, ctx: EnvContext, service: str) -> None:
        raise UserError(f"{service} has no route of its own on ECS Service Connect: its ECS service always "
                        "serves its current task-definition revision",
                        hint=f"to stop traffic from outside, delete its gateway route (`meshpipe route gateways "
                             f"--env {ctx.env} --engine aws` lists them)")

    def header_route_set(self, ctx: EnvContext, route: HeaderRoute) -> HeaderRoute:
        raise self._no_header_routes(ctx)

    def header_route_delete(self, ctx: EnvContext, service: str, header: str) -> None:
        raise self._no_header_routes(ctx)

    def header_routes(self, ctx: EnvContext, service: str) -> list[HeaderRoute]:
        return []

    @staticmethod
    def _no_header_routes(ctx: EnvContext) -> UserError:
        return UserError(f"{ctx.env} runs on ECS Service Connect, which routes by service, not by request header",
                         hint="header routes are App Mesh's (and the local engine's)")

    # -- rollouts ---------------------------------------------------------------------------------------

    def rollout_shift(self, ctx: EnvContext, service: str, move: Move, version: str | None) -> Route:
        """Promote: the running ECS deployment goes on (continued if paused at a lifecycle hook). Roll back:
        ECS stops the running deployment and rolls back to the revision it replaces."""
        require_pipeline(self.stacks, ctx.env, service, "no service stack")
        own = self.rollout_promote if move is Move.PROMOTE else self.rollout_rollback
        return own(ctx, service, version)

    def rollout_status(self, ctx: EnvContext, service: str) -> dict[str, Any]:
        """The service's latest ECS deployment (ECS runs the rollout there)."""
        from meshpipe.engines.aws.rollout_status import ecs_rollout_status

        state = self.ecs.service(ctx.cluster, service)
        if state is None:
            raise NotFoundError(f"{service} has no ECS service in {ctx.env} yet",
                                hint=f"push a manifest to {service}-cfg first")
        return ecs_rollout_status(self.ecs, ctx.cluster, ctx.env, service, self._revisions(ctx, service, state),
                                  describe_strategy)

    def rollout_rollback(self, ctx: EnvContext, service: str, to: str | None = None) -> Route:
        state = self._require_service(ctx, service)
        deployment = self.ecs.running_deployment(ctx.cluster, service)
        if deployment is None:
            raise ConflictError(
                f"no deployment of {service} is running, so ECS has nothing to roll back: its current revision "
                "serves all traffic",
                hint=f"ECS rolls back only a deployment that still runs (until its bake time ends); to go back to "
                     f"an earlier version now, revert its commit in {service}-cfg and push: the pipeline deploys it "
                     "as a new revision")
        if deployment.rolling_back:
            self.reporter.done(f"{service} is already rolling back ({deployment.status})")
            return self._route(ctx, service)
        if to is not None:
            sources = {r.arn: r.version for r in self._revisions(ctx, service, state)}
            back_to = [sources[arn] for arn in deployment.sources if arn in sources]
            if to not in back_to:
                raise ConflictError(f"the running deployment of {service} would roll back to "
                                    f"{', '.join(back_to) or 'its previous revision'}, not to {to}",
                                    hint="leave out --to, or deploy that version by pushing its commit")
        self.ecs.roll_back(deployment.arn)
        self.reporter.done(f"asked ECS to roll back the deployment of {service} ({deployment.stage or deployment.status})")
        return self._route(ctx, service)

    def rollout_promote(self, ctx: EnvContext, service: str, version: str | None = None) -> Route:
        state = self._require_service(ctx, service)
        deployment = self.ecs.running_deployment(ctx.cluster, service)
        if deployment is None:
            raise ConflictError(f"no deployment of {service} is running: its current revision already serves all "
                                "traffic",
                                hint=f"push a commit to {service}-cfg to deploy a new version")
        if deployment.rolling_back:
            raise ConflictError(f"the deployment of {service} is rolling back ({deployment.status})",
                                hint="push a commit to deploy again once the rollback has finished")
        if version is not None:
            target = {r.arn: r.version for r in self._revisions(ctx, service, state)}.get(deployment.target or "")
            if target != version:
                raise ConflictError(f"the running deployment of {service} deploys {target or 'another revision'}, "
                                    f"not {version}", hint="leave out the version to promote the running deployment")
        if deployment.paused_lifecycle_hook:
            self.ecs.continue_paused(deployment.arn, deployment.paused_lifecycle_hook)
            self.reporter.done(f"the deployment of {service} goes on from {deployment.stage or 'its pause'}")
        else:
            self.reporter.done(f"the deployment of {service} is at {deployment.stage or deployment.status} and "
                               f"goes on by itself ({describe_strategy(state.strategy)}); ECS has no call to "
                               "shorten its bake times")
        return self._route(ctx, service)

    def _route(self, ctx: EnvContext, service: str) -> Route:
        return self.route_show(ctx, service) or Route(service=service, targets=())

    # -- versions ---------------------------------------------------------------------------------------

    def versions(self, ctx: EnvContext, service: str) -> list[VersionInfo]:
        stack_name = names.service_stack(ctx.env, service)
        state = self.ecs.service(ctx.cluster, service)
        if state is None:
            return []
        revisions = self._revisions(ctx, service, state)
        deployment = self.ecs.running_deployment(ctx.cluster, service)
        weights = _weights(state, deployment)
        infos = []
        for revision in revisions:
            status, running, desired = _status(revision, state, deployment)
            infos.append(VersionInfo(
                service=service, version=revision.version, commit=revision.commit, stack_name=stack_name,
                status=status, weight=weights.get(revision.arn, 0), created_at=revision.registered_at,
                healthy_tasks=running, desired_tasks=desired))
        return infos

    def plan_version_delete(self, ctx: EnvContext, service: str, version: str, force: bool = False) -> Plan:
        """The plan to delete a version: deregister its task-definition revisions (refused while one serves)."""
        state = self.ecs.service(ctx.cluster, service)
        revisions = [r for r in self._revisions(ctx, service, state) if r.version == version]
        if not revisions:
            raise NotFoundError(f"{service} has no version {version} in {ctx.env} (no task-definition revision "
                                "tagged with it)",
                                hint=f"list versions with `meshpipe versions {service} --env {ctx.env} --engine aws`")
        deployment = self.ecs.running_deployment(ctx.cluster, service) if state else None
        serving = [r for r in revisions if state is not None and _serves(r, state, deployment)]
        if serving:
            raise ConflictError(
                f"version {version} of {service} is in use ({serving[0].name} runs in its ECS service"
                + (", which --force does not change: its tasks would go on running it" if force else "") + ")",
                hint=f"deploy another version first (push a commit to {service}-cfg) and wait until the "
                     "deployment has finished")
        plan = Plan(f"version delete {service} {version}",
                    outcome=lambda: self.reporter.done(f"version {version} of {service} deleted"))
        for revision in revisions:
            plan.add("ecs:DeregisterTaskDefinition", revision.name, f"a revision of version {version}, serving no "
                     "task", partial(self._deregister, revision.arn, revision.name))
        return plan

    def _deregister(self, arn: str, name: str) -> None:
        self.ecs.deregister(arn)
        self.reporter.step(f"deregistered {name}")

    def retire_all(self, ctx: EnvContext, service: str, family: str | None) -> None:
        """Deregister every revision of the service kept by its stack (after the stack is gone)."""
        if not family:
            return
        for revision in self.ecs.revisions(family, ctx.env, service):
            self.ecs.deregister(revision.arn)
            self.reporter.step(f"deregistered {revision.name}")

    def _revisions(self, ctx: EnvContext, service: str, state: ServiceState | None = None) -> list[Revision]:
        family = _family(state) if state else self._family_from_stack(ctx, service)
        return self.ecs.revisions(family, ctx.env, service) if family else []

    def _family_from_stack(self, ctx: EnvContext, service: str) -> str | None:
        stack = self.stacks.describe(names.service_stack(ctx.env, service))
        arn = stack.outputs.get("TaskDefinitionArn") if stack else None
        return _family_of(arn) if arn else None

    def family(self, ctx: EnvContext, service: str) -> str | None:
        state = self.ecs.service(ctx.cluster, service)
        return _family(state) if state else self._family_from_stack(ctx, service)

    # -- observability ----------------------------------------------------------------------------------

    def dashboard_url(self, ctx: EnvContext, region: str) -> str:
        from meshpipe.synth.cloudwatch_dashboard import console_url

        return console_url(region, ctx.env)

    def backends(self, ctx: EnvContext, found: EnvironmentStacks, service: str) -> set[str]:
        return set()  # a Service Connect client may call any service of the namespace: none is declared

    def _require_service(self, ctx: EnvContext, service: str) -> ServiceState:
        state = self.ecs.service(ctx.cluster, service)
        if state is None:
            raise NotFoundError(f"{service} has no ECS service in {ctx.env} yet",
                                hint=f"push a manifest.yaml to {service}-cfg; its pipeline creates the service")
        return state


def _family(state: ServiceState) -> str:
    return _family_of(state.task_definition)


def _family_of(arn: str) -> str:
    return family_of(arn)[0]


def _weights(state: ServiceState, deployment: Deployment | None) -> dict[str, int]:
    """Task definition -> percent of production traffic."""
    if deployment is not None and deployment.shares:
        return {s.task_definition: round(s.weight) for s in deployment.shares}
    return {state.task_definition: 100}


def _serves(revision: Revision, state: ServiceState, deployment: Deployment | None) -> bool:
    if revision.arn == state.task_definition or revision.arn in state.deployments:
        return True
    return deployment is not None and deployment.share_of(revision.arn) is not None


def _status(revision: Revision, state: ServiceState, deployment: Deployment | None) -> tuple[str, int | None, int | None]:
    """A revision's place in the service: PRIMARY (current), ACTIVE (still running beside it), or
    REGISTERED (kept, not running); with the running deployment's stage while one runs."""
    running = state.deployments.get(revision.arn)
    counts = (running[2], running[3]) if running else (None, None)
    share = deployment.share_of(revision.arn) if deployment else None
    if deployment is not None and share is not None:
        if deployment.rolling_back:
            stage = "ROLLING_BACK" if share.role == "target" else "ROLLBACK_TARGET"
        else:
            stage = deployment.stage or deployment.status
        role = "PRIMARY" if share.role == "target" else "ACTIVE"
        return f"{role} {stage} ({revision.name})", *counts
    if running is not None:
        return f"{running[0] or 'ACTIVE'} ({revision.name})", *counts
    if revision.arn == state.task_definition:
        return f"PRIMARY ({revision.name})", *counts
    return f"REGISTERED ({revision.name})", None, None


def _route_of(stack: StackState, service: str, namespace: str) -> GatewayRoute | None:
    prefix = stack.parameters.get(sc.INGRESS_PATH_PREFIX, "")
    if not prefix:
        return None
    return GatewayRoute(name=stack.parameters.get(INGRESS_ROUTE_NAME) or f"r-ingress-{service}", prefix=prefix,
                        service=service, namespace=namespace,
                        rewrite_prefix=stack.parameters.get(sc.INGRESS_REWRITE_PREFIX, "true") != "false")


def _check_ingress_route(route: GatewayRoute) -> None:
    if not re.match(INGRESS_ROUTE_NAME_PATTERN, route.name) or not route.name:
        raise UserError(f"{route.name!r} is too long for a gateway route name on Service Connect",
                        hint="use at most 100 letters, digits, '-', '_' or '.'")
    if len(route.prefix) > sc.INGRESS_PREFIX_MAX or not re.match(sc.INGRESS_PREFIX_PATTERN, route.prefix) \
            or not route.prefix:
        raise UserError(
            f"{route.prefix!r} cannot be a gateway route on Service Connect: the load balancer's rule matches the "
            "prefix literally and rewrites it away",
            hint=f"use '/'-separated segments of letters, digits, '.', '_', '~' or '-', without a trailing '/', at "
                 f"most {sc.INGRESS_PREFIX_MAX} characters, e.g. /hello-service")


def _weights_text(weights: dict[str, str]) -> str:
    return (f"primary target group {weights[sc.INGRESS_PRIMARY_WEIGHT]}, "
            f"alternate {weights[sc.INGRESS_ALTERNATE_WEIGHT]}")


def _split(weights: dict[str, int]) -> str:
    return ", ".join(f"{v}={w}%" for v, w in sorted(weights.items(), key=lambda kv: -kv[1]))
