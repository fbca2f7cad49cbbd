"""An AWS environment as a :class:`~meshpipe.mesh.graph.Topology`, from its deployed stacks: the services
(pipeline, version and service stacks), their versions with route weights and task counts, the gateway
routes, and which services each version calls (its virtual node's backends, read from its stack's
template; a Service Connect client may call any service of the namespace, so there none are drawn)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshpipe.engines.aws.env_context import require_env
from meshpipe.mesh.graph import GatewayRouteNode, ServiceNode, Topology, VersionNode

if TYPE_CHECKING:
    from meshpipe.engines.aws.engine import AwsEngine

def aws_topology(engine: AwsEngine, env: str) -> Topology:
    ctx = require_env(engine.stacks, env)
    stacks = engine.environment_stacks(env)
    names = sorted(set(stacks.pipelines) | set(stacks.versions) | set(stacks.service_stacks))
    services = []
    for name in names:
        versions = tuple(VersionNode(v.version, v.weight, v.status, v.healthy_tasks, v.desired_tasks)
                         for v in engine.versions(env, name))
        backends = engine.ops_for(ctx).backends(ctx, stacks, name)
        services.append(ServiceNode(name, versions, tuple(sorted(backends))))
    routes = tuple(GatewayRouteNode(g.name, g.prefix, g.service) for g in engine.gateway_routes(env))
    return Topology(environment=env, services=tuple(services), gateway_routes=routes, ingress=ctx.ingress_url or "")
