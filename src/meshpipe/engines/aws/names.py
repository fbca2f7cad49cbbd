"""Names of the AWS resources meshpipe manages, and how to tell which environment a stack belongs to."""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshpipe.model import VERSION_LEN
from meshpipe.synth.build_bucket import BUNDLE_KEY, build_bucket_stack_name, build_bucket_template_file
from meshpipe.synth.environment import (
    MESH_FLAVOUR_OUTPUT,
    VIRTUAL_GATEWAY_NAME,
    environment_stack_name,
    environment_template_file,
)
from meshpipe.synth.ingress_tls import CERTIFICATE_OUTPUT
from meshpipe.synth.service_pipeline import SERVICE_PIPELINE_TEMPLATE_FILE, pipeline_stack_name, service_stack_name

__all__ = ["APPMESH_SHUTDOWN", "BUNDLE_KEY", "CERTIFICATE_OUTPUT", "MESH_FLAVOUR_OUTPUT", "PIPELINE_TEMPLATE_KEY",
           "StackKinds", "build_bucket_stack", "build_bucket_template_key", "default_namespace", "env_stack",
           "env_template_key", "pipeline_stack", "service_connect_name_problem", "service_stack", "version_stack"]

INGRESS_GATEWAY = VIRTUAL_GATEWAY_NAME
# The day AWS shut App Mesh down: since then no mesh, virtual node or gateway can be created.
APPMESH_SHUTDOWN = "2026-09-30"
ENV_STACK_SUFFIX = "-env"
VERSION_SUFFIX_RE = re.compile(rf"^(?P<service>[a-z][a-z0-9-]*)-(?P<version>[0-9a-f]{{{VERSION_LEN}}})$")
PIPELINE_SUFFIX_RE = re.compile(r"^(?P<service>[a-z][a-z0-9-]*)-pipeline$")

# Stack and template names are the platform templates' own, so the engine deploys what they describe.
env_stack = environment_stack_name
env_template_key = environment_template_file
build_bucket_stack = build_bucket_stack_name
build_bucket_template_key = build_bucket_template_file
pipeline_stack = pipeline_stack_name
service_stack = service_stack_name
PIPELINE_TEMPLATE_KEY = SERVICE_PIPELINE_TEMPLATE_FILE
# Endings of stack names meshpipe gives other stacks: a Service Connect service stack <env>-<svc> must not
# end like them, or it would be taken for (or collide with) one of them.
RESERVED_ENDINGS = ("-env", "-build-bucket", "-pipeline")
RESERVED_SERVICES = ("env", "build-bucket")


def version_stack(env: str, service: str, version: str) -> str:
    return f"{env}-{service}-{version}"


def service_connect_name_problem(service: str) -> str | None:
    """Why ``service`` cannot be a Service Connect service (its stack ``<env>-<svc>`` would clash), or None."""
    if service in RESERVED_SERVICES or service.endswith(RESERVED_ENDINGS):
        return (f"its stack would be named like meshpipe's own stacks (<env>-env, <env>-build-bucket, "
                f"<env>-<svc>-pipeline); a service name may not be {' or '.join(RESERVED_SERVICES)} nor end in "
                f"{', '.join(RESERVED_ENDINGS)}")
    if VERSION_SUFFIX_RE.match(service):
        return ("its stack would look like an App Mesh version stack (<env>-<svc>-<8 hex digits>); a service "
                "name may not end in '-' and 8 hex digits")
    return None


def default_namespace(env: str) -> str:
    return f"{env}.local"


@dataclass(frozen=True)
class StackKinds:
    """Sorts stack names into an environment's pipelines and versions.

    Stack names are ``<env>-<service>-...`` and both parts may contain '-', so ``demo-x-hello-0badc0de``
    could be service ``x-hello`` of ``demo`` or service ``hello`` of ``demo-x``. A name is claimed by the
    longest environment (a stack ``<env>-env``) it starts with, so tearing down ``demo`` never touches
    ``demo-x``.
    """

    env: str
    other_envs: frozenset[str] = frozenset()

    @classmethod
    def from_stack_names(cls, env: str, names: list[str]) -> StackKinds:
        envs = {n[: -len(ENV_STACK_SUFFIX)] for n in names if n.endswith(ENV_STACK_SUFFIX)}
        return cls(env, frozenset(e for e in envs if e != env and e.startswith(env + "-")))

    def _rest(self, name: str) -> str | None:
        if not name.startswith(self.env + "-"):
            return None
        if any(name.startswith(other + "-") for other in self.other_envs):
            return None
        return name[len(self.env) + 1:]

    def version_of(self, name: str) -> tuple[str, str] | None:
        """(service, version) when ``name`` is a version stack of this environment."""
        rest = self._rest(name)
        match = VERSION_SUFFIX_RE.match(rest) if rest else None
        return (match["service"], match["version"]) if match else None

    def pipeline_of(self, name: str) -> str | None:
        """The service when ``name`` is a pipeline stack of this environment."""
        rest = self._rest(name)
        match = PIPELINE_SUFFIX_RE.match(rest) if rest else None
        return match["service"] if match else None
