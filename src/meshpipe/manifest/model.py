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

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from meshpipe.delivery import policy as rollout_rules
from meshpipe.mesh import headers
from meshpipe.platform import checked_by
from meshpipe.validation import rules

Family = Annotated[StrictStr, checked_by(rules.family_problem)]
Cpu = Annotated[StrictInt, checked_by(rules.cpu_problem)]
Memory = Annotated[StrictInt, checked_by(rules.memory_problem)]
Image = Annotated[StrictStr, checked_by(rules.image_problem)]
Port = Annotated[StrictInt, checked_by(rules.port_problem)]
HealthCheckPath = Annotated[StrictStr, checked_by(rules.health_path_problem)]
CommandArg = Annotated[StrictStr, checked_by(rules.command_arg_problem)]
EnvName = Annotated[StrictStr, checked_by(rules.env_name_problem)]
EnvValue = Annotated[StrictStr, checked_by(rules.env_value_problem)]
BackendName = Annotated[StrictStr, checked_by(rules.backend_problem)]
WebhookName = Annotated[StrictStr, checked_by(rollout_rules.webhook_name_problem)]
WebhookUrl = Annotated[StrictStr, checked_by(rollout_rules.webhook_url_problem)]
HeaderName = Annotated[StrictStr, checked_by(headers.header_name_problem)]
HeaderValue = Annotated[StrictStr, checked_by(lambda value: headers.header_value_problem("exact", value))]
Percent = Annotated[float, Field(ge=0, le=100, strict=True)]


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


# --- Rollout (extension): how a new version takes traffic; keys left out take the platform's values --------

class RolloutAnalysis(_Strict):
    min_success_rate: Annotated[Percent | None, Field(
        alias="MinSuccessRate", description="Least percentage of the new version's answers that are not 5xx.")] = None
    max_p99_ms: Annotated[Annotated[float, Field(ge=1, le=600_000, strict=True)] | None, Field(
        alias="MaxP99Ms", description="Highest p99 latency of the new version in a window, milliseconds.")] = None
    max_p99_increase_percent: Annotated[Annotated[float, Field(ge=0, le=10_000, strict=True)] | None, Field(
        alias="MaxP99IncreasePercent",
        description="Highest p99 of the new version, in percent above the stable version's p99.")] = None
    min_requests: Annotated[Annotated[StrictInt, Field(ge=0, le=1_000_000)] | None, Field(
        alias="MinRequests", description="Requests to the new version a window needs to be judged.")] = None
    failed_windows: Annotated[Annotated[StrictInt, Field(ge=1, le=100)] | None, Field(
        alias="FailedWindows", description="Failed windows before the rollout rolls back.")] = None
    inconclusive_deadline: Annotated[Annotated[StrictInt, Field(ge=1, le=604_800)] | None, Field(
        alias="InconclusiveDeadline",
        description="Seconds a step may stay inconclusive (too few requests to judge) before OnInconclusive "
                    "decides; without it the step holds until traffic comes.")] = None
    on_inconclusive: Annotated[Literal["rollback", "promote"] | None, Field(
        alias="OnInconclusive", description="What the InconclusiveDeadline does: rollback or promote.")] = None


class PreviewHeader(_Strict):
    name: Annotated[HeaderName, Field(alias="Name", description="HTTP header that selects the preview.")]
    value: Annotated[HeaderValue, Field(alias="Value", description="Its value, matched exactly.")]


class Webhook(_Strict):
    name: Annotated[WebhookName, Field(alias="Name", description="Name of the check, unique in the list.")]
    type: Annotated[rollout_rules.WebhookType, Field(
        alias="Type", description="When it is called.")]
    url: Annotated[WebhookUrl, Field(alias="Url", description="http:// or https:// URL the JSON payload is POSTed to.")]
    timeout: Annotated[StrictInt, Field(alias="Timeout", ge=1, le=300,
                                        description="Seconds to wait for the answer.")] = rollout_rules.DEFAULT_WEBHOOK_TIMEOUT
    metadata: Annotated[dict[StrictStr, StrictStr], Field(
        alias="Metadata", description="Strings passed on in the payload.")] = {}


class Rollout(_Strict):
    enabled: Annotated[StrictBool | None, Field(
        alias="Enabled", description="false: deploy without a rollout; true (the default with this section).")] = None
    strategy: Annotated[rollout_rules.Strategy | None, Field(
        alias="Strategy", description="canary (explicit steps), linear (a step at a time) or blue-green.")] = None
    steps: Annotated[list[StrictInt] | None, Field(
        alias="Steps", description="canary: the new version's percentage at each step, ending at 100.")] = None
    step_percent: Annotated[Annotated[StrictInt, Field(ge=1, le=100)] | None, Field(
        alias="StepPercent", description="linear: percentage added per step.")] = None
    interval: Annotated[Annotated[StrictInt, Field(ge=1, le=rollout_rules.MAX_INTERVAL)] | None, Field(
        alias="Interval", description="Seconds each step holds before its window is judged.")] = None
    scale_down_delay: Annotated[Annotated[StrictInt, Field(ge=0, le=86_400)] | None, Field(
        alias="ScaleDownDelay", description="Seconds after a promotion before the versions left without weight "
                                            "are scaled to zero tasks (a rolled-back version: at once).")] = None
    analysis: Annotated[RolloutAnalysis | None, Field(alias="Analysis")] = None
    preview_header: Annotated[PreviewHeader | None, Field(
        alias="PreviewHeader", description="blue-green: the header that reaches the new version first.")] = None
    webhooks: Annotated[list[Webhook] | None, Field(alias="Webhooks", description="Checks called during the rollout.")] = None

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (problem := rollout_rules.steps_problem(v)):
            raise ValueError(problem)
        return v


class ServiceManifest(_Strict):
    """A service's ``manifest.yaml``."""

    task: Annotated[Task, Field(alias="Task")]
    app_container: Annotated[AppContainer, Field(alias="AppContainer")]
    virtual_node: Annotated[VirtualNode, Field(alias="VirtualNode")] = VirtualNode()
    rollout: Annotated[Rollout | None, Field(
        alias="Rollout", description="Progressive delivery of new versions (extension).")] = None
