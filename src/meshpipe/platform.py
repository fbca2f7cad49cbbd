"""Platform settings and policy: what the platform team decides, not the app team.

Settings say *where* a version goes (account, region, VPC, cluster, namespace, roles, log group).
Policy holds the conventions the original sample's build script hard-codes, as settings whose defaults are the original sample's
values, plus limits a platform may put on manifests (allowed registries, CPU and memory ceilings).

Settings come either from the original sample's environment variables (as CodeBuild provides them) or from a
``platform.yaml``; every missing or malformed setting is reported at once, with its variable name or its
file and line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from meshpipe.delivery import policy as rollout_rules
from meshpipe.delivery.policy import steps_problem, webhook_name_problem, webhook_url_problem, webhooks_problems
from meshpipe.errors import Problem, ValidationError
from meshpipe.mesh.headers import header_name_problem, header_value_problem
from meshpipe.naming import check_env_name as check_env_name
from meshpipe.text import shorten
from meshpipe.validation import rules
from meshpipe.validation.explain import Explainer, KeyMap, Source, describe
from meshpipe.validation.trusted import TrustedValues
from meshpipe.validation.yamlsafe import nearest_line, parse_yaml_file, within_any

# Defined with the other name rules, which load without pydantic (the CLI's read path checks it).
ENV_NAME_RE = rules.ENVIRONMENT_NAME_RE


def _matching(pattern: str, what: str) -> AfterValidator:
    """A format check whose message says what is expected instead of quoting a regular expression."""
    compiled = re.compile(pattern, re.ASCII)

    def check(value: str) -> str:
        if not compiled.match(value):
            shown = shorten(value)
            raise ValueError(f"{shown} is not {what}")
        return value

    return AfterValidator(check)


def checked_by(check: Callable[[Any], str | None]) -> AfterValidator:
    """A pydantic validator that refuses a value ``check`` finds a problem in, with that problem as the
    message (the rule functions of meshpipe.validation.rules and meshpipe.delivery.policy say it)."""

    def run(value: Any) -> Any:
        problem = check(value)
        if problem:
            raise ValueError(problem)
        return value

    return AfterValidator(run)


def _image_problem(value: str) -> str | None:
    return rules.image_problem(value)


def _registry_problem(value: str) -> str | None:
    if not rules.REGISTRY_PATTERN_RE.match(value):
        return (f"{value[:60]!r} is not a registry host: e.g. docker.io, public.ecr.aws, localhost:5000, "
                "or *.dkr.ecr.us-east-1.amazonaws.com for every host under it (lowercase)")
    return None


def _ipv4_problem(value: str) -> str | None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return f"{value[:60]!r} is not an IPv4 address"
    return None


Port = Annotated[StrictInt, Field(ge=1, le=65535)]
LogPrefix = Annotated[StrictStr, _matching(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z",
                                            "a log stream prefix: 1-64 letters, digits, '.', '_' or '-'")]
RegistryPattern = Annotated[StrictStr, checked_by(_registry_problem)]
IPv4 = Annotated[StrictStr, checked_by(_ipv4_problem)]
ImageRef = Annotated[StrictStr, checked_by(_image_problem)]


class HealthCheckTimings(BaseModel):
    """ECS container health-check timings, in seconds, with ECS's own limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: Annotated[StrictInt, Field(ge=5, le=300)] = 5
    timeout: Annotated[StrictInt, Field(ge=2, le=60)] = 2
    retries: Annotated[StrictInt, Field(ge=1, le=10)] = 3
    start_period: Annotated[StrictInt, Field(ge=0, le=300)] = 10



class Autoscaling(BaseModel):
    """Task count bounds and the CPU target of target-tracking scaling."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_tasks: Annotated[StrictInt, Field(ge=1, le=1000)] = 2
    max_tasks: Annotated[StrictInt, Field(ge=1, le=1000)] = 6
    cpu_target_percent: Annotated[StrictInt, Field(ge=1, le=100)] = 80

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Autoscaling:
        if self.min_tasks > self.max_tasks:
            raise ValueError(f"min_tasks ({self.min_tasks}) is above max_tasks ({self.max_tasks})")
        return self


# CloudFormation gives up on a stack operation after 36 hours and refuses ECS deployments whose planned
# bake times exceed 33 hours, so a traffic-shift policy must fit in that.
MAX_PLANNED_DEPLOYMENT_MINUTES = 33 * 60


class TrafficShift(BaseModel):
    """How ECS moves traffic to a new version inside one service (the Service Connect flavour).

    ECS-native deployment strategies: CANARY sends ``canary_percent`` first (the original sample's walkthrough tries
    10 %), waits, then the rest; LINEAR moves ``linear_step_percent`` per step; BLUE_GREEN all at once;
    ROLLING replaces tasks without a traffic shift. ``bake_minutes`` keeps the old revision after the
    shift, for an instant rollback. Percentages are whole numbers: ECS would take tenths, but cfn-lint's
    check of tenths is unreliable (it rejects 0.3), and every template meshpipe writes must lint clean.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["CANARY", "LINEAR", "BLUE_GREEN", "ROLLING"] = "CANARY"
    canary_percent: Annotated[StrictInt, Field(ge=1, le=100)] = 10
    canary_bake_minutes: Annotated[StrictInt, Field(ge=0, le=1440)] = 10
    linear_step_percent: Annotated[StrictInt, Field(ge=3, le=100)] = 10
    linear_step_bake_minutes: Annotated[StrictInt, Field(ge=0, le=1440)] = 6
    bake_minutes: Annotated[StrictInt, Field(ge=0, le=1440)] = 15
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


def _steps_problem(value: Any) -> str | None:
    return steps_problem(list(value))


def _header_value_problem(value: str) -> str | None:
    return header_value_problem("exact", value)


class RolloutAnalysisDefaults(BaseModel):
    """How a rollout window is judged, unless a manifest says otherwise (see meshpipe.delivery)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_success_rate: Annotated[float, Field(ge=0, le=100, strict=True)] = rollout_rules.DEFAULT_MIN_SUCCESS_RATE
    max_p99_ms: Annotated[float, Field(ge=1, le=600_000, strict=True)] | None = None
    max_p99_increase_percent: Annotated[float, Field(ge=0, le=10_000, strict=True)] | None = (
        rollout_rules.DEFAULT_MAX_P99_INCREASE_PERCENT)
    min_requests: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = rollout_rules.DEFAULT_MIN_REQUESTS
    failed_windows: Annotated[StrictInt, Field(ge=1, le=100)] = rollout_rules.DEFAULT_FAILED_WINDOWS
    # Seconds a step may stay inconclusive before on_inconclusive decides; None: it holds.
    inconclusive_deadline: Annotated[StrictInt, Field(ge=1, le=604_800)] | None = None
    on_inconclusive: Literal["rollback", "promote"] = "rollback"


class PreviewHeaderSetting(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[StrictStr, checked_by(header_name_problem)] = rollout_rules.DEFAULT_PREVIEW_HEADER[0]
    value: Annotated[StrictStr, checked_by(_header_value_problem)] = rollout_rules.DEFAULT_PREVIEW_HEADER[1]


class WebhookSetting(BaseModel):
    """A Flagger-style webhook: a POST of the rollout's figures; a non-2xx answer is a failed check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[StrictStr, checked_by(webhook_name_problem)]
    type: rollout_rules.WebhookType
    url: Annotated[StrictStr, checked_by(webhook_url_problem)]
    timeout: Annotated[StrictInt, Field(ge=1, le=rollout_rules.MAX_WEBHOOK_TIMEOUT)] = rollout_rules.DEFAULT_WEBHOOK_TIMEOUT
    metadata: dict[StrictStr, Annotated[StrictStr, Field(max_length=rollout_rules.MAX_METADATA_VALUE)]] = {}


class RolloutDefaults(BaseModel):
    """The platform's rollout policy: the default of every service (see meshpipe.delivery.policy)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: StrictBool = False  # every service rolled out, not only those whose manifest has a Rollout section
    strategy: rollout_rules.Strategy = rollout_rules.DEFAULT_STRATEGY
    steps: Annotated[tuple[StrictInt, ...], checked_by(_steps_problem)] = rollout_rules.DEFAULT_STEPS
    step_percent: Annotated[StrictInt, Field(ge=1, le=100)] = rollout_rules.DEFAULT_STEP_PERCENT
    interval: Annotated[StrictInt, Field(ge=1, le=rollout_rules.MAX_INTERVAL)] = rollout_rules.DEFAULT_INTERVAL
    # Seconds after a promotion before the versions left without weight are scaled to zero (Argo Rollouts'
    # scaleDownDelaySeconds); a rolled-back or halted candidate goes at once.
    scale_down_delay: Annotated[StrictInt, Field(ge=0, le=rollout_rules.MAX_INTERVAL)] = int(
        rollout_rules.DEFAULT_SCALE_DOWN_DELAY)
    analysis: RolloutAnalysisDefaults = RolloutAnalysisDefaults()
    preview_header: PreviewHeaderSetting = PreviewHeaderSetting()
    webhooks: Annotated[tuple[WebhookSetting, ...], Field(max_length=rollout_rules.MAX_WEBHOOKS)] = ()

    @field_validator("webhooks")
    @classmethod
    def _unique_webhooks(cls, webhooks: tuple[WebhookSetting, ...]) -> tuple[WebhookSetting, ...]:
        for _, problem in webhooks_problems(webhooks):
            raise ValueError(problem)
        return webhooks


class PlatformPolicy(BaseModel):
    """Conventions applied to every version, and limits every manifest must respect."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    launch_type: Literal["FARGATE"] = "FARGATE"
    autoscaling: Autoscaling = Autoscaling()
    health_check: HealthCheckTimings = HealthCheckTimings()
    stop_timeout: Annotated[StrictInt, Field(ge=2, le=120)] = 10
    app_log_prefix: LogPrefix = "app"
    envoy_log_prefix: LogPrefix = "envoy"
    envoy_uid: Annotated[StrictInt, Field(ge=1, le=65535)] = 1337
    proxy_ingress_port: Port = 15000
    proxy_egress_port: Port = 15001
    envoy_admin_port: Port = 9901
    egress_ignored_ips: tuple[IPv4, ...] = ("169.254.170.2", "169.254.169.254")
    dns_ttl: Annotated[StrictInt, Field(ge=0, le=86400)] = 20
    deployment_maximum_percent: Annotated[StrictInt, Field(ge=100, le=200)] = 200
    deployment_minimum_healthy_percent: Annotated[StrictInt, Field(ge=0, le=100)] = 50
    traffic_shift: TrafficShift = TrafficShift()
    rollout: RolloutDefaults = RolloutDefaults()
    # Limits on manifests. An empty list of registries means any registry is allowed.
    allowed_registries: tuple[RegistryPattern, ...] = ()
    max_cpu: Annotated[StrictInt, Field(ge=256, le=16384)] = 16384
    max_memory: Annotated[StrictInt, Field(ge=512, le=122880)] = 122880

    @property
    def reserved_ports(self) -> frozenset[int]:
        """Ports the sidecar owns inside the task; the app may not listen on them."""
        return frozenset({self.proxy_ingress_port, self.proxy_egress_port, self.envoy_admin_port})


DEFAULT_ENVOY_IMAGE = "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.18.3.0-prod"

_ROLE_ARN = _matching(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}\Z",
                      "an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
SubnetId = Annotated[StrictStr, _matching(r"^subnet-[0-9a-f]{8,17}\Z", "a subnet id (subnet-0123456789abcdef0)")]


class PlatformSettings(BaseModel):
    """Where versions of an environment's services are deployed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    environment_name: Annotated[StrictStr, _matching(
        ENV_NAME_RE.pattern, "an environment name: 1-32 lowercase letters, digits or '-', starting with a letter")]
    aws_account_id: Annotated[StrictStr, _matching(r"^\d{12}\Z", "an AWS account id (12 digits)")]
    aws_region: Annotated[StrictStr, _matching(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d\Z",
                                               "an AWS region like us-east-1")]
    vpc_id: Annotated[StrictStr, _matching(r"^vpc-[0-9a-f]{8,17}\Z", "a VPC id (vpc-0123456789abcdef0)")]
    cluster_name: Annotated[StrictStr, _matching(r"^[A-Za-z0-9_-]{1,255}\Z",
                                                 "an ECS cluster name: 1-255 letters, digits, '-' or '_'")]
    envoy_image_uri: ImageRef = DEFAULT_ENVOY_IMAGE
    namespace_id: Annotated[StrictStr, _matching(r"^ns-[a-z0-9]{16}\Z", "a Cloud Map namespace id (ns- and 16 "
                                                                       "lowercase letters or digits)")]
    namespace_arn: Annotated[StrictStr, _matching(
        r"^arn:aws[a-z-]*:servicediscovery:[a-z0-9-]+:\d{12}:namespace/ns-[a-z0-9]{16}\Z",
        "a Cloud Map namespace ARN (arn:aws:servicediscovery:<region>:<account>:namespace/<id>)")]
    namespace_name: Annotated[StrictStr, _matching(
        r"^(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\Z",
        "a DNS namespace name like demo.local")]
    log_group_name: Annotated[StrictStr, _matching(r"^[\.\-_/#A-Za-z0-9]{1,512}\Z",
                                                   "a log group name: 1-512 letters, digits, '.', '-', '_', '/', '#'")]
    # ECS takes at most 16 subnets for a task's awsvpc network configuration.
    subnets: Annotated[tuple[SubnetId, ...], Field(min_length=1, max_length=16)]
    security_group_id: Annotated[StrictStr, _matching(r"^sg-[0-9a-f]{8,17}\Z",
                                                      "a security group id (sg-0123456789abcdef0)")]
    task_exec_role_arn: Annotated[StrictStr, _ROLE_ARN]
    task_role_arn: Annotated[StrictStr, _ROLE_ARN]
    policy: PlatformPolicy = PlatformPolicy()

    @property
    def partition(self) -> str:
        return self.task_role_arn.split(":")[1]


# The original sample's environment variables, mapped to settings fields. SERVICE_NAME and CONFIG_COMMIT_ID are
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
# Settings with a default: their variables may be left unset.
OPTIONAL_VARS = frozenset({"ENVOY_IMAGE_URI"})


def _cross_checks(data: Any, bad_paths: list[str]) -> list[tuple[str, str]]:
    """Rules between settings, on whatever values are themselves valid: ARNs must name the account, region
    and namespace given; the sidecar's ports must differ."""
    values = TrustedValues(data, bad_paths)
    found: list[tuple[str, str]] = []
    account, region = values.get("aws_account_id", None), values.get("aws_region", None)
    namespace_arn, namespace_id = values.get("namespace_arn", None), values.get("namespace_id", None)
    if isinstance(namespace_arn, str):
        parts = namespace_arn.split(":")
        if isinstance(region, str) and parts[3] != region:
            found.append(("namespace_arn", f"is in region {parts[3]!r}, but aws_region is {region!r}"))
        if isinstance(account, str) and parts[4] != account:
            found.append(("namespace_arn", f"is in account {parts[4]!r}, but aws_account_id is {account!r}"))
        if isinstance(namespace_id, str) and parts[5] != f"namespace/{namespace_id}":
            found.append(("namespace_arn", f"names {parts[5].split('/')[-1]!r}, but namespace_id is {namespace_id!r}"))
    for role in ("task_exec_role_arn", "task_role_arn"):
        arn = values.get(role, None)
        if isinstance(arn, str) and isinstance(account, str) and arn.split(":")[4] != account:
            found.append((role, f"is in account {arn.split(':')[4]!r}, but aws_account_id is {account!r}: "
                                "ECS task roles must be in the task's account"))
    return found + cross_check_policy(data.get("policy") if isinstance(data, dict) else None, bad_paths)


def cross_check_policy(policy: Any, bad_paths: list[str]) -> list[tuple[str, str]]:
    """Rules between policy values (paths ``policy.<key>``): the sidecar's ports must differ."""
    values = TrustedValues({"policy": policy} if isinstance(policy, dict) else {}, bad_paths)
    found: list[tuple[str, str]] = []
    ports = {key: values.get(f"policy.{key}", default) for key, default in
             (("proxy_ingress_port", 15000), ("proxy_egress_port", 15001), ("envoy_admin_port", 9901))}
    written = values.items_of("policy")
    written = written if isinstance(written, dict) else {}
    seen: dict[object, str] = {}
    # Defaults first, so that a clash is reported on the port the file sets, at its line.
    for key, port in sorted(ports.items(), key=lambda item: item[0] in written):
        if not isinstance(port, int) or isinstance(port, bool):
            continue
        if port in seen:
            found.append((f"policy.{key}", f"{port} is also policy.{seen[port]}: the sidecar needs distinct ports"))
        seen[port] = key
    return found


def _subnet_problem(value: str) -> str | None:
    """A subnet variable's own problem, so that it is reported even when the other one is unset."""
    try:
        TypeAdapter(SubnetId).validate_python(value)
    except PydanticValidationError as exc:
        return str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
    return None


def _explainer(label: Callable[[str], str] | None = None) -> Any:
    habits = {var: field for var, field in ENV_VARS.items()}
    habits.update({var: "subnets" for var in SUBNET_VARS})
    expected = {"subnets": "a list of subnet ids", "subnets[]": "a string (a subnet id)",
                "policy.allowed_registries": "a list of registry hosts",
                "policy.egress_ignored_ips": "a list of IPv4 addresses"}
    return Explainer(KeyMap.of(PlatformSettings, by_alias=False, aliases=habits), expected, label,
                     code_prefix="P", rule_fallback="P010")


def _env_label(path: str) -> str:
    """Problems with settings read from the environment are named by their variable."""
    match = re.fullmatch(r"subnets\[(\d+)\]", path)
    if match and int(match.group(1)) < len(SUBNET_VARS):
        return SUBNET_VARS[int(match.group(1))]
    if path == "subnets":
        return "/".join(SUBNET_VARS)
    return FIELD_TO_VAR.get(path, path)


def settings_from_env(environ: Mapping[str, str], policy: PlatformPolicy | None = None) -> PlatformSettings:
    """Read the original sample's environment variables; report every missing or malformed one at once."""
    source = "environment"
    problems: list[Problem] = []
    data: dict[str, object] = {}
    for var, field in ENV_VARS.items():
        value = environ.get(var, "")
        if value != "":
            data[field] = value
        elif var not in OPTIONAL_VARS:
            problems.append(Problem(source, None, var, "is required but not set", "P002"))
    subnets = []
    for var in SUBNET_VARS:
        value = environ.get(var, "")
        if value == "":
            problems.append(Problem(source, None, var, "is required but not set", "P002"))
        elif (wrong := _subnet_problem(value)) is not None:
            problems.append(Problem(source, None, var, wrong, "P010"))
        subnets.append(value)
    if all(subnets):
        data["subnets"] = tuple(subnets)
    if policy is not None:
        data["policy"] = policy
    settings = None
    bad: list[str] = []
    try:
        settings = PlatformSettings.model_validate(data)
    except PydanticValidationError as exc:
        # Unset variables and subnet ids were reported above, one by one.
        errors = [e for e in exc.errors() if e["type"] != "missing" and e["loc"][0] != "subnets"]
        found = _explainer(_env_label).problems(errors, Source(source))
        problems += found
        bad = [".".join(str(part) for part in e["loc"][:1]) for e in exc.errors()]
    problems += [Problem(source, None, _env_label(path), msg, "P011") for path, msg in _cross_checks(data, bad)]
    if problems or settings is None:
        raise ValidationError(problems, hint="set the platform's environment variables (docs/platform.md) or pass --platform platform.yaml")
    return settings


def settings_from_mapping(data: object, file: str, lines: Mapping[str, int | None] | None = None,
                          raw: Mapping[str, str] | None = None) -> PlatformSettings:
    """Build settings from a parsed ``platform.yaml`` (snake_case keys, ``policy`` section optional).

    ``lines`` maps each value's path (``policy.max_cpu``, ``subnets[1]``) to its line, as the YAML reader
    records them; ``raw`` holds the source text of non-string scalars, for messages such as "quote it".
    """
    line_map: Mapping[str, int | None] = lines or {}

    def line_of(path: str) -> int | None:
        return nearest_line(line_map, path)

    if not isinstance(data, dict):
        raise ValidationError([Problem(file, line_of(""), "",
                                       f"a platform file must be a mapping of settings, not {describe(data)}", "P006")])
    raw_map: Mapping[str, str] = raw or {}
    source = Source(file, line_of, raw_map.get)
    problems: list[Problem] = []
    settings = None
    try:
        settings = PlatformSettings.model_validate(data)
    except PydanticValidationError as exc:
        problems = _explainer().problems(exc.errors(), source)
    cross = _cross_checks(data, [p.path for p in problems])
    problems += [Problem(file, line_of(path), path, msg, "P011") for path, msg in cross]
    if problems or settings is None:
        raise ValidationError(problems, hint="see docs/platform.md for every setting")
    return settings


def load_platform_file(path: str) -> PlatformSettings:
    """Load ``platform.yaml`` with the same safe YAML reader as manifests; report all problems at once."""
    doc = parse_yaml_file(path)
    try:
        settings = settings_from_mapping(doc.data, doc.file, doc.lines, doc.raw)
    except ValidationError as exc:
        if not doc.problems:
            raise
        # Where the reader refused a value (a tag, a duplicate, 0x50), the model's complaint about what was
        # left behind would only repeat it.
        refused = {p.path for p in doc.problems if p.path}
        kept = [p for p in exc.problems if not within_any(p.path, refused)]
        raise ValidationError(doc.problems + kept, hint=exc.hint) from None
    if doc.problems:
        raise ValidationError(doc.problems, hint="see docs/platform.md for every setting")
    return settings


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
