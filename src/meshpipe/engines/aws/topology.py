"""An AWS environment as a :class:`~meshpipe.mesh.graph.Topology`, from its deployed stacks: the services
(pipeline, version and service stacks), their versions with route weights and task counts, the gateway
routes, and which services each version calls (its virtual node's backends, read from its stack's
template; a Service Connect client may call any service of the namespace, so there none are drawn)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from meshpipe.engines.aws.env_context import require_env
from meshpipe.mesh.graph import GatewayRouteNode, ServiceNode, Topology, VersionNode

if TYPE_CHECKING:
    from meshpipe.engines.aws.engine import AwsEngine

VIRTUAL_NODE = "AWS::AppMesh::VirtualNode"


def _template(engine: AwsEngine, stack: str) -> dict[str, Any]:
    body = engine.calls("cloudformation", "get_template", StackName=stack).get("TemplateBody")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return {}  # a YAML template: not one meshpipe wrote
    return body if isinstance(body, dict) else {}


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


def aws_topology(engine: AwsEngine, env: str) -> Topology:
    ctx = require_env(engine.stacks, env)
    stacks = engine.environment_stacks(env)
    names = sorted(set(stacks.pipelines) | set(stacks.versions) | set(stacks.service_stacks))
    services = []
    for name in names:
        versions = tuple(VersionNode(v.version, v.weight, v.status, v.healthy_tasks, v.desired_tasks)
                         for v in engine.versions(env, name))
        backends: set[str] = set()
        if not ctx.service_connect:
            for stack in stacks.version_stacks(name):
                backends |= backends_of(_template(engine, stack), ctx.namespace)
        services.append(ServiceNode(name, versions, tuple(sorted(backends))))
    routes = tuple(GatewayRouteNode(g.name, g.prefix, g.service) for g in engine.gateway_routes(env))
    return Topology(environment=env, services=tuple(services), gateway_routes=routes, ingress=ctx.ingress_url or "")
