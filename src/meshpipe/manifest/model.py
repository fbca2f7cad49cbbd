"""The service manifest: what an app team writes in ``manifest.yaml``.

Keys are spelled as in the seed's manifests (``Task``, ``AppContainer``, ``VirtualNode``), so those files
are accepted verbatim. Optional extensions, all off by default so the seed's output is reproduced:

* ``AppContainer.Environment``: environment variables for the app container (a mapping of strings).
* ``VirtualNode.Backends`` may be omitted or empty (a service that calls nothing).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from meshpipe.manifest import rules


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


class Task(_Strict):
    family: Annotated[StrictStr, Field(alias="Family", description="ECS task definition family.")]
    cpu: Annotated[StrictInt, Field(alias="Cpu", description="CPU units (Fargate: 256, 512, 1024, 2048, 4096, 8192, 16384).")] = 256
    memory: Annotated[StrictInt, Field(alias="Memory", description="Memory in MiB; must fit the CPU size on Fargate.")] = 512

    @field_validator("family")
    @classmethod
    def _family(cls, v: str) -> str:
        if not rules.FAMILY_RE.match(v):
            raise ValueError(f"{v!r} is not a task family: 1-255 letters, digits, '-' or '_'")
        return v

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: int) -> int:
        if v not in rules.FARGATE_SIZES:
            allowed = ", ".join(str(c) for c in rules.FARGATE_SIZES)
            raise ValueError(f"{v} is not a Fargate CPU size; allowed: {allowed}")
        return v


class AppContainer(_Strict):
    image: Annotated[StrictStr, Field(alias="Image", description="Container image with a tag or digest.")]
    port: Annotated[StrictInt, Field(alias="Port", description="Port the app listens on.")] = 80
    health_check_path: Annotated[StrictStr, Field(alias="HealthCheckPath", description="Plain URL path answered with 2xx when healthy.")]
    command: Annotated[list[StrictStr] | None, Field(alias="Command", description="Command and arguments; the image's default when absent.")] = None
    environment: Annotated[dict[StrictStr, StrictStr], Field(alias="Environment", description="Environment variables for the app container (extension).")] = {}

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        parsed = rules.parse_image(v)
        if parsed is None:
            raise ValueError(f"{v!r} is not an image reference: [registry[:port]/]name:tag or name@sha256:digest "
                             "(lowercase repository names)")
        if parsed[2] is None and parsed[3] is None:
            raise ValueError(f"{v!r} has neither a tag nor a digest: pin it, e.g. {v}:1.0 or {v}@sha256:...")
        return v

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        if not 1 <= v <= 65535:
            raise ValueError(f"{v} is not a port: 1-65535")
        return v

    @field_validator("health_check_path")
    @classmethod
    def _health_path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"{v!r} must start with '/'")
        if len(v) > rules.HEALTH_PATH_MAX:
            raise ValueError(f"is longer than {rules.HEALTH_PATH_MAX} characters")
        if not rules.HEALTH_PATH_RE.match(v):
            bad = sorted({c for c in v if not (c.isascii() and (c.isalnum() or c in "._/:@,+=-%"))})
            shown = " ".join(repr(c) for c in bad) or "a malformed %-escape"
            raise ValueError(f"{v!r} is not a plain URL path (it runs in a shell health check); not allowed: {shown}. "
                             "Allowed: letters, digits and . _ / : @ , + = - and %XX escapes")
        return v

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("must not be empty: leave Command out to use the image's default")
            for i, arg in enumerate(v):
                if "\x00" in arg:
                    raise ValueError(f"item {i} contains a NUL character")
        return v

    @field_validator("environment")
    @classmethod
    def _environment(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not rules.ENV_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not an environment variable name: letters, digits, '_', not starting with a digit")
            if name in rules.RESERVED_ENV:
                raise ValueError(f"{name!r} is set by the platform and cannot be overridden")
        return v


class VirtualNode(_Strict):
    backends: Annotated[list[StrictStr], Field(alias="Backends", description="DNS names of the virtual services this service calls.")] = []

    @field_validator("backends")
    @classmethod
    def _backends(cls, v: list[str]) -> list[str]:
        if len(v) > rules.MAX_BACKENDS:
            raise ValueError(f"has {len(v)} entries; App Mesh allows at most {rules.MAX_BACKENDS}")
        seen: set[str] = set()
        for name in v:
            if not rules.DNS_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a virtual service DNS name like 'hello-backend.demo.local' "
                                 "(lowercase labels of letters, digits and '-', joined by dots)")
            if name in seen:
                raise ValueError(f"{name!r} is listed twice")
            seen.add(name)
        return v


class ServiceManifest(_Strict):
    """A service's ``manifest.yaml``."""

    task: Annotated[Task, Field(alias="Task")]
    app_container: Annotated[AppContainer, Field(alias="AppContainer")]
    virtual_node: Annotated[VirtualNode, Field(alias="VirtualNode")] = VirtualNode()
