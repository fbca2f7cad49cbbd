"""Names of the AWS resources meshpipe manages, and how to tell which environment a stack belongs to."""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshpipe.model import VERSION_LEN

BUNDLE_KEY = "meshpipe-bundle.zip"
INGRESS_GATEWAY = "vg-ingress"
ENV_STACK_SUFFIX = "-env"
PIPELINE_STACK_SUFFIX = "-pipeline"
VERSION_SUFFIX_RE = re.compile(rf"^(?P<service>[a-z][a-z0-9-]*)-(?P<version>[0-9a-f]{{{VERSION_LEN}}})$")
PIPELINE_SUFFIX_RE = re.compile(r"^(?P<service>[a-z][a-z0-9-]*)-pipeline$")


def env_stack(env: str) -> str:
    return f"{env}-env"


def build_bucket_stack(env: str) -> str:
    return f"{env}-build-bucket"


def pipeline_stack(env: str, service: str) -> str:
    return f"{env}-{service}-pipeline"


def version_stack(env: str, service: str, version: str) -> str:
    return f"{env}-{service}-{version}"


def env_template_key(env: str) -> str:
    return f"{env}-env.template.json"


def build_bucket_template_key(env: str) -> str:
    return f"{env}-build-bucket.template.json"


PIPELINE_TEMPLATE_KEY = "service-pipeline.template.json"


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
