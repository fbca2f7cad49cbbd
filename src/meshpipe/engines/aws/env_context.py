"""Facts about a deployed environment, read from its stack's outputs (defaults follow the naming scheme)."""

from __future__ import annotations

from dataclasses import dataclass

from meshpipe.engines.aws import names
from meshpipe.engines.aws.stacks import Stacks, StackState
from meshpipe.errors import ConflictError, NotFoundError, OperationError
from meshpipe.mesh.flavour import MeshFlavour


@dataclass(frozen=True)
class EnvContext:
    env: str
    stack: StackState | None
    mesh: str
    gateway: str
    namespace: str
    cluster: str
    flavour: MeshFlavour = MeshFlavour.APPMESH

    @property
    def namespace_id(self) -> str | None:
        """The Cloud Map namespace's id, as the stack's ``NamespaceId`` output says."""
        return (self.stack.outputs.get("NamespaceId") or None) if self.stack else None

    @property
    def ingress_url(self) -> str | None:
        return self.stack.outputs.get("IngressEndpoint") if self.stack else None

    @classmethod
    def of(cls, env: str, stack: StackState | None) -> EnvContext:
        outputs = stack.outputs if stack else {}
        return cls(
            env=env,
            stack=stack,
            mesh=outputs.get("MeshName") or env,
            gateway=outputs.get("VirtualGatewayName") or names.INGRESS_GATEWAY,
            namespace=outputs.get("NamespaceName") or names.default_namespace(env),
            cluster=outputs.get("ClusterName") or env,
            # The App Mesh environment template records no flavour: it predates the Service Connect one.
            flavour=MeshFlavour.parse(outputs.get(names.MESH_FLAVOUR_OUTPUT) or MeshFlavour.APPMESH),
        )


def optional_env(stacks: Stacks, env: str) -> EnvContext:
    """The environment as far as it exists (for status and teardown, which must work on partial ones)."""
    return EnvContext.of(env, stacks.describe(names.env_stack(env)))


def require_env(stacks: Stacks, env: str) -> EnvContext:
    """The environment, which must exist and be usable."""
    ctx = optional_env(stacks, env)
    if ctx.stack is None:
        raise NotFoundError(f"environment {env} does not exist on AWS (no stack {names.env_stack(env)})",
                            hint=f"create it with `meshpipe env create {env} --engine aws`")
    if not ctx.stack.usable:
        raise OperationError(f"environment {env} is not ready: stack {ctx.stack.name} is {ctx.stack.status}",
                             hint=f"wait for it, or delete it with `meshpipe env delete {env} --engine aws` "
                                  "and create it again")
    return ctx


def pipeline_stack(stacks: Stacks, env: str, service: str) -> StackState:
    """The service's pipeline stack, which must exist."""
    stack = stacks.describe(names.pipeline_stack(env, service))
    if stack is None:
        raise NotFoundError(f"{service} has no pipeline in environment {env} "
                            f"(no stack {names.pipeline_stack(env, service)})",
                            hint=f"create it with `meshpipe pipeline create {service} --env {env} "
                                 "--engine aws`")
    return stack


def require_pipeline(stacks: Stacks, env: str, service: str, consequence: str) -> StackState:
    """The service's pipeline stack, which must be usable; ``consequence`` says what is missing otherwise."""
    stack = pipeline_stack(stacks, env, service)
    if not stack.usable:
        raise ConflictError(f"the pipeline stack of {service} is {stack.status}, so there is {consequence}",
                            hint=f"wait for it, or recreate it with `meshpipe pipeline create {service} "
                                 f"--env {env} --engine aws`")
    return stack
