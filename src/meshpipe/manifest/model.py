"""The service manifest: what an app team writes in ``manifest.yaml``.

Keys are spelled as in the original sample's manifests (``Task``, ``AppContainer``, ``VirtualNode``), so those files
are accepted verbatim. Optional extensions, all off by default so the original sample's output is reproduced:

* ``AppContainer.Environment``: environment variables for the app container (a mapping of strings).
* ``VirtualNode.Backends`` may be omitted or empty (a service that calls nothing).

Each value is checked on its own by the types below (so one bad list item or mapping value never hides
another problem); rules that span several values (Cpu with Memory, duplicate backends, counts, the
platform's policy) live in :mod:`meshpipe.manifest.checks`, which runs whether or not the model validates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from meshpipe.validation import rules

_Value = TypeVar("_Value", str, int)


def _rule(check: Callable[[_Value], str | None]) -> AfterValidator:
    def validate(value: _Value) -> _Value:
        problem = check(value)
        if problem:
            raise ValueError(problem)
        return value

    return AfterValidator(validate)


Family = Annotated[StrictStr, _rule(rules.family_problem)]
Cpu = Annotated[StrictInt, _rule(rules.cpu_problem)]
Memory = Annotated[StrictInt, _rule(rules.memory_problem)]
Image = Annotated[StrictStr, _rule(rules.image_problem)]
Port = Annotated[StrictInt, _rule(rules.port_problem)]
HealthCheckPath = Annotated[StrictStr, _rule(rules.health_path_problem)]
CommandArg = Annotated[StrictStr, _rule(rules.command_arg_problem)]
EnvName = Annotated[StrictStr, _rule(rules.env_name_problem)]
EnvValue = Annotated[StrictStr, _rule(rules.env_value_problem)]
BackendName = Annotated[StrictStr, _rule(rules.backend_problem)]


class _Strict(BaseModel):
    # populate_by_name lets Python code build manifests with field names; files are read by alias only
    # (see the loader), so `family:` in a file is a misspelling, not a synonym.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


class Task(_Strict):
    family: Annotated[Family, Field(
        alias="Family", description="ECS task definition family: 1-255 letters, digits, '-' or '_'.")]
    cpu: Annotated[Cpu, Field(
        alias="Cpu", description="CPU units (Fargate: 256, 512, 1024, 2048, 4096, 8192, 16384).")] = rules.DEFAULT_CPU
    memory: Annotated[Memory, Field(
        alias="Memory", description="Memory in MiB; must fit the CPU size on Fargate.")] = rules.DEFAULT_MEMORY


class AppContainer(_Strict):
    image: Annotated[Image, Field(alias="Image", description="Container image with a tag or digest.")]
    port: Annotated[Port, Field(
        alias="Port", description="Port the app listens on (not 15000, 15001 or 9901: the sidecar's).")] = rules.DEFAULT_PORT
    health_check_path: Annotated[HealthCheckPath, Field(
        alias="HealthCheckPath", description="Plain URL path answered with 2xx when healthy.")]
    command: Annotated[list[CommandArg] | None, Field(
        alias="Command", description="Command and arguments; the image's default when absent.")] = None
    environment: Annotated[dict[EnvName, EnvValue], Field(
        alias="Environment", description="Environment variables for the app container (extension).")] = {}

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str] | None) -> list[str] | None:
        # Runs only when every argument is valid; checks.py repeats the whole-list rules for the other case.
        if v is not None and (problem := rules.command_problem(v)):
            raise ValueError(problem)
        return v


class VirtualNode(_Strict):
    backends: Annotated[list[BackendName], Field(
        alias="Backends", description="DNS names of the virtual services this service calls.")] = []


class ServiceManifest(_Strict):
    """A service's ``manifest.yaml``."""

    task: Annotated[Task, Field(alias="Task")]
    app_container: Annotated[AppContainer, Field(alias="AppContainer")]
    virtual_node: Annotated[VirtualNode, Field(alias="VirtualNode")] = VirtualNode()
