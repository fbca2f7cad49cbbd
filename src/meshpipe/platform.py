"""Platform settings and policy: what the platform team decides, not the app team.

Settings say *where* a version goes (account, region, VPC, cluster, namespace, roles, log group).
Policy holds the conventions the seed's build script hard-codes, as settings whose defaults are the seed's
values, plus limits a platform may put on manifests (allowed registries, CPU and memory ceilings).

Settings come either from the seed's environment variables (as CodeBuild provides them) or from a
``platform.yaml``; every missing or malformed setting is reported at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from meshpipe.errors import Problem, ValidationError

ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$")


class HealthCheckTimings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: Annotated[int, Field(ge=5, le=300)] = 5
    timeout: Annotated[int, Field(ge=2, le=120)] = 2
    retries: Annotated[int, Field(ge=1, le=10)] = 3
    start_period: Annotated[int, Field(ge=0, le=300)] = 10


class Autoscaling(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_tasks: Annotated[int, Field(ge=1, le=1000)] = 2
    max_tasks: Annotated[int, Field(ge=1, le=1000)] = 6
    cpu_target_percent: Annotated[int, Field(ge=1, le=100)] = 80


# CloudFormation gives up on a stack operation after 36 hours and refuses ECS deployments whose planned
# bake times exceed 33 hours, so a traffic-shift policy must fit in that.
MAX_PLANNED_DEPLOYMENT_MINUTES = 33 * 60


class TrafficShift(BaseModel):
    """How ECS moves traffic to a new version inside one service (the Service Connect flavour).

    ECS-native deployment strategies: CANARY sends ``canary_percent`` first (the seed's walkthrough tries
    10 %), waits, then the rest; LINEAR moves ``linear_step_percent`` per step; BLUE_GREEN all at once;
    ROLLING replaces tasks without a traffic shift. ``bake_minutes`` keeps the old revision after the
    shift, for an instant rollback. Percentages are whole numbers: ECS would take tenths, but cfn-lint's
    check of tenths is unreliable (it rejects 0.3), and every template meshpipe writes must lint clean.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["CANARY", "LINEAR", "BLUE_GREEN", "ROLLING"] = "CANARY"
    canary_percent: Annotated[int, Field(ge=1, le=100)] = 10
    canary_bake_minutes: Annotated[int, Field(ge=0, le=1440)] = 10
    linear_step_percent: Annotated[int, Field(ge=3, le=100)] = 10
    linear_step_bake_minutes: Annotated[int, Field(ge=0, le=1440)] = 6
    bake_minutes: Annotated[int, Field(ge=0, le=1440)] = 15
    access_log_format: Literal["TEXT", "JSON"] = "TEXT"

    @property
    def linear_steps(self) -> int:
        """Bake periods of a linear shift (none after the step that reaches 100 %)."""
        step = self.linear_step_percent
        return 100 // step - 1 if 100 % step == 0 else 100 // step

    @property
    def planned_minutes(self) -> int:
        if self.strategy == "CANARY":
            return self.bake_minutes + self.canary_bake_minutes
        if self.strategy == "LINEAR":
            return self.bake_minutes + self.linear_step_bake_minutes * self.linear_steps
        return self.bake_minutes

    @model_validator(mode="after")
    def _fits_cloudformation(self) -> TrafficShift:
        if self.planned_minutes > MAX_PLANNED_DEPLOYMENT_MINUTES:
            raise ValueError(f"a {self.strategy} deployment would bake for {self.planned_minutes} minutes; "
                             f"CloudFormation allows at most {MAX_PLANNED_DEPLOYMENT_MINUTES}")
        return self


class PlatformPolicy(BaseModel):
    """Conventions applied to every version, and limits every manifest must respect."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    launch_type: Literal["FARGATE"] = "FARGATE"
    autoscaling: Autoscaling = Autoscaling()
    health_check: HealthCheckTimings = HealthCheckTimings()
    stop_timeout: Annotated[int, Field(ge=2, le=120)] = 10
    app_log_prefix: str = "app"
    envoy_log_prefix: str = "envoy"
    envoy_uid: Annotated[int, Field(ge=1, le=65535)] = 1337
    proxy_ingress_port: Annotated[int, Field(ge=1, le=65535)] = 15000
    proxy_egress_port: Annotated[int, Field(ge=1, le=65535)] = 15001
    envoy_admin_port: Annotated[int, Field(ge=1, le=65535)] = 9901
    egress_ignored_ips: tuple[str, ...] = ("169.254.170.2", "169.254.169.254")
    dns_ttl: Annotated[int, Field(ge=0, le=86400)] = 20
    deployment_maximum_percent: Annotated[int, Field(ge=100, le=200)] = 200
    deployment_minimum_healthy_percent: Annotated[int, Field(ge=0, le=100)] = 50
    traffic_shift: TrafficShift = TrafficShift()
    # Limits on manifests. An empty list of registries means any registry is allowed.
    allowed_registries: tuple[str, ...] = ()
    max_cpu: Annotated[int, Field(ge=256, le=16384)] = 16384
    max_memory: Annotated[int, Field(ge=512, le=122880)] = 122880

    @property
    def reserved_ports(self) -> frozenset[int]:
        """Ports the sidecar owns inside the task; the app may not listen on them."""
        return frozenset({self.proxy_ingress_port, self.proxy_egress_port, self.envoy_admin_port})


DEFAULT_ENVOY_IMAGE = "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.18.3.0-prod"


class PlatformSettings(BaseModel):
    """Where versions of an environment's services are deployed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    environment_name: str
    aws_account_id: Annotated[str, Field(pattern=r"^\d{12}$")]
    aws_region: Annotated[str, Field(pattern=r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")]
    vpc_id: Annotated[str, Field(pattern=r"^vpc-[0-9a-f]{8,17}$")]
    cluster_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,255}$")]
    envoy_image_uri: Annotated[str, Field(min_length=1)] = DEFAULT_ENVOY_IMAGE
    namespace_id: Annotated[str, Field(pattern=r"^ns-[a-z0-9]{16}$")]
    namespace_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:servicediscovery:[a-z0-9-]+:\d{12}:namespace/ns-[a-z0-9]{16}$")]
    namespace_name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,252}$")]
    log_group_name: Annotated[str, Field(pattern=r"^[\.\-_/#A-Za-z0-9]{1,512}$")]
    subnets: Annotated[tuple[str, ...], Field(min_length=1)]
    security_group_id: Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")]
    task_exec_role_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9_+=,.@/-]+$")]
    task_role_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9_+=,.@/-]+$")]
    policy: PlatformPolicy = PlatformPolicy()

    @field_validator("environment_name")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not ENV_NAME_RE.match(v):
            raise ValueError("must be 1-32 lowercase letters, digits or '-', starting with a letter")
        return v

    @field_validator("subnets")
    @classmethod
    def _subnets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for s in v:
            if not re.match(r"^subnet-[0-9a-f]{8,17}$", s):
                raise ValueError(f"{s!r} is not a subnet id (subnet-xxxxxxxx)")
        return v

    @property
    def partition(self) -> str:
        return self.task_role_arn.split(":")[1]


# The seed's environment variables, mapped to settings fields. SERVICE_NAME and CONFIG_COMMIT_ID are
# per-build inputs, read by :func:`build_inputs_from_env`, not settings.
ENV_VARS: dict[str, str] = {
    "ENVIRONMENT_NAME": "environment_name",
    "AWS_ACCOUNT_ID": "aws_account_id",
    "AWS_REGION": "aws_region",
    "VPC_ID": "vpc_id",
    "CLUSTER_NAME": "cluster_name",
    "ENVOY_IMAGE_URI": "envoy_image_uri",
    "NAMESPACE_ID": "namespace_id",
    "NAMESPACE_ARN": "namespace_arn",
    "NAMESPACE_NAME": "namespace_name",
    "LOG_GROUP_NAME": "log_group_name",
    "SECURITY_GROUP_ID": "security_group_id",
    "TASK_EXEC_ROLE_ARN": "task_exec_role_arn",
    "TASK_ROLE_ARN": "task_role_arn",
}
SUBNET_VARS = ("VPC_SUBNET_ONE", "VPC_SUBNET_TWO")
FIELD_TO_VAR = {v: k for k, v in ENV_VARS.items()}


def _problems_from_pydantic(exc: object, file: str, locate: Mapping[str, int | None] | None = None,
                            name_of: Mapping[str, str] | None = None) -> list[Problem]:
    from pydantic import ValidationError as PydanticValidationError

    assert isinstance(exc, PydanticValidationError)
    problems = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"]]
        field = loc[0] if loc else ""
        label = (name_of or {}).get(field, ".".join(loc))
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "is required but missing"
        elif err["type"] == "string_pattern_mismatch":
            msg = f"{err.get('input')!r} does not match {err['ctx']['pattern']}"
        elif err["type"] == "extra_forbidden":
            msg = "is not a known setting"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        problems.append(Problem(file, (locate or {}).get(".".join(loc)), label, msg))
    return problems


def settings_from_env(environ: Mapping[str, str], policy: PlatformPolicy | None = None) -> PlatformSettings:
    """Read the seed's environment variables; report every missing or malformed one at once."""
    data: dict[str, object] = {}
    for var, field in ENV_VARS.items():
        if var in environ and environ[var] != "":
            data[field] = environ[var]
    subnets = [environ[v] for v in SUBNET_VARS if environ.get(v)]
    problems: list[Problem] = []
    missing_subnets = [v for v in SUBNET_VARS if not environ.get(v)]
    if missing_subnets:
        problems.append(Problem("environment", None, ", ".join(missing_subnets), "is required but missing"))
    else:
        data["subnets"] = tuple(subnets)
    if policy is not None:
        data["policy"] = policy
    try:
        settings = PlatformSettings.model_validate(data)
    except Exception as exc:  # pydantic.ValidationError
        name_of = dict(FIELD_TO_VAR)
        name_of["subnets"] = "VPC_SUBNET_ONE/VPC_SUBNET_TWO"
        problems += [p for p in _problems_from_pydantic(exc, "environment", None, name_of)
                     if not (missing_subnets and p.path == name_of["subnets"])]
        settings = None
    if problems or settings is None:
        raise ValidationError(problems, hint="set the seed's environment variables or pass --platform platform.yaml")
    return settings


def settings_from_mapping(data: object, file: str, lines: Mapping[str, int | None] | None = None) -> PlatformSettings:
    """Build settings from a parsed ``platform.yaml`` (snake_case keys, ``policy`` section optional)."""
    if not isinstance(data, dict):
        raise ValidationError([Problem(file, 1, "", "a platform file must be a mapping of settings")])
    try:
        return PlatformSettings.model_validate(data)
    except Exception as exc:
        raise ValidationError(_problems_from_pydantic(exc, file, lines)) from None


def load_platform_file(path: str) -> PlatformSettings:
    """Load ``platform.yaml`` with the same safe YAML reader as manifests."""
    from meshpipe.manifest.yamlsafe import read_yaml_file

    doc = read_yaml_file(path)
    return settings_from_mapping(doc.data, path, doc.lines)


def build_inputs_from_env(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The per-build inputs CodeBuild passes: (SERVICE_NAME, CONFIG_COMMIT_ID)."""
    return environ.get("SERVICE_NAME") or None, environ.get("CONFIG_COMMIT_ID") or None


def local_settings(environment_name: str) -> PlatformSettings:
    """Settings for the local engine: placeholders shaped like AWS ids, so the same synth runs locally."""
    account = "000000000000"
    return PlatformSettings(
        environment_name=environment_name,
        aws_account_id=account,
        aws_region="us-east-1",
        vpc_id="vpc-00000000000000000",
        cluster_name=environment_name,
        namespace_id="ns-0000000000000000",
        namespace_arn=f"arn:aws:servicediscovery:us-east-1:{account}:namespace/ns-0000000000000000",
        namespace_name=f"{environment_name}.local",
        log_group_name=f"{environment_name}-cluster",
        subnets=("subnet-00000000000000001", "subnet-00000000000000002"),
        security_group_id="sg-00000000000000000",
        task_exec_role_arn=f"arn:aws:iam::{account}:role/{environment_name}-TaskExecutionRole",
        task_role_arn=f"arn:aws:iam::{account}:role/{environment_name}-TaskRole",
    )
