"""A version's rollout plan as ECS runs it on Service Connect: a native deployment strategy, and CloudWatch
alarms on the service's errors and latency that make ECS roll the deployment back. Pure.

ECS moves traffic between task-definition revisions itself, so the plan maps onto what ECS offers:

* ``canary``: ECS's CANARY has a single step: the first of ``steps``, held for as long as every step before
  100 % would have been (``interval`` each), then the rest;
* ``linear``: LINEAR with the plan's step (ECS moves at least 3 % per step) and ``interval`` per step;
* ``blue-green``: BLUE_GREEN, all at once once the new revision is healthy; before that, callers' requests
  carrying the plan's preview header reach the new revision (Service Connect's test traffic rules);
* after the shift ECS keeps the old revision for one ``interval`` (``BakeTimeInMinutes``), during which a
  rollback is immediate.

Every deployment is judged, with or without a plan (without one, on the platform's default analysis):
CloudWatch alarms in the service's ``DeploymentConfiguration.Alarms``, rollback on, over
``failed_windows`` one-minute periods, on the share of 5xx answers above ``100 - min_success_rate`` % and,
with ``max_p99_ms``, the average response time above it. Their metrics name this environment's service:

* a service with a gateway route: the load balancer's, on the service's two target groups
  (``AWS/ApplicationELB``, ``TargetGroup`` and ``LoadBalancer``): its callers come through the load
  balancer, not through Service Connect;
* any other: Service Connect's, as the service's callers saw it (``AWS/ECS``, ``TargetDiscoveryName``: the
  service's discovery name, ``<env>_<svc>``, which no other environment's service has).

They see the whole service, both revisions together, and cannot compare revisions: the relative latency
check, ``min_requests`` and the webhooks are the local engine's (see docs/rollouts.md).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshpipe.delivery.policy import Analysis
from meshpipe.errors import UserError
from meshpipe.platform import MAX_PLANNED_DEPLOYMENT_MINUTES
from meshpipe.synth.cfn import Json, get_att, ref, resource

if TYPE_CHECKING:
    from meshpipe.delivery.policy import RolloutSpec
    from meshpipe.model import ServiceVersion

ERRORS_ALARM = "RolloutErrorsAlarm"
LATENCY_ALARM = "RolloutLatencyAlarm"
# Alarm names are fixed, so the service stack's deploy role can be limited to them (service_pipeline).
ALARM_NAME_PREFIX = "meshpipe-rollout-"


def alarm_name(environment: str, service: str, kind: str) -> str:
    """``meshpipe-rollout-<env>-<svc>-errors`` (CloudWatch alarm names may be up to 255 characters)."""
    return f"{ALARM_NAME_PREFIX}{environment}-{service}-{kind}"
NAMESPACE = "AWS/ECS"
ELB_NAMESPACE = "AWS/ApplicationELB"
PERIOD_SECONDS = 60
ECS_MIN_LINEAR_STEP = 3
STRATEGIES = {"canary": "CANARY", "linear": "LINEAR", "blue-green": "BLUE_GREEN"}
ANSWER_METRICS = {"ok2xx": "HTTPCode_Target_2XX_Count", "ok3xx": "HTTPCode_Target_3XX_Count",
                  "ok4xx": "HTTPCode_Target_4XX_Count", "errors": "HTTPCode_Target_5XX_Count"}


def minutes(seconds: float) -> int:
    """ECS counts bake times in whole minutes: a step of 30 s bakes for a minute."""
    return max(0, math.ceil(seconds / 60))


def strategy_of(version: ServiceVersion) -> str:
    """The ECS strategy a version's deployment uses: its plan's, else the platform's traffic shift."""
    plan = version.rollout
    return STRATEGIES[plan.strategy] if plan is not None else version.platform.policy.traffic_shift.strategy


def deployment_strategy(plan: RolloutSpec, service: str) -> Json:
    """``DeploymentConfiguration`` keys of the strategy (without the alarms)."""
    bake = minutes(plan.interval_s)
    config: Json = {"BakeTimeInMinutes": bake}
    planned = bake
    if plan.strategy == "canary":
        judged = len(plan.steps) - 1  # the steps before 100 %
        canary_bake = minutes(plan.interval_s * judged)
        config["CanaryConfiguration"] = {"CanaryBakeTimeInMinutes": canary_bake, "CanaryPercent": plan.steps[0]}
        planned += canary_bake
    elif plan.strategy == "linear":
        step = plan.steps[0]
        if step < ECS_MIN_LINEAR_STEP:
            raise UserError(f"{service}'s rollout moves {step} % per linear step; ECS moves at least "
                            f"{ECS_MIN_LINEAR_STEP} % per step on Service Connect",
                            hint=f"set Rollout.StepPercent to {ECS_MIN_LINEAR_STEP} or more")
        config["LinearConfiguration"] = {"StepBakeTimeInMinutes": bake, "StepPercent": step}
        planned += bake * (len(plan.steps) - 1)
    if planned > MAX_PLANNED_DEPLOYMENT_MINUTES:
        raise UserError(f"{service}'s rollout would bake for {planned} minutes on ECS; CloudFormation allows at most "
                        f"{MAX_PLANNED_DEPLOYMENT_MINUTES}", hint="shorten Rollout.Interval or use fewer steps")
    config["Strategy"] = STRATEGIES[plan.strategy]
    return config


def discovery_name(version: ServiceVersion) -> str:
    """The service's Service Connect discovery name, ``<env>_<svc>``: unique in the account and region (an
    environment's name is, and neither name can hold ``_``), because ECS publishes the callers' view of a
    service under this name alone (``TargetDiscoveryName``), across every cluster; a bare ``<svc>`` would
    add up every environment's service of that name. Cloud Map allows 64 characters: a longer pair keeps
    its start and a digest of the whole."""
    return discovery_name_of(version.environment, version.service)


def discovery_name_of(environment: str, service: str) -> str:
    """:func:`discovery_name` from the environment's and the service's names."""
    name = f"{environment}_{service}"
    if len(name) <= DISCOVERY_NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:DISCOVERY_NAME_MAX - 9]}_{digest}"


DISCOVERY_NAME_MAX = 64


@dataclass(frozen=True)
class Ingress:
    """How the service stack names its load-balancer side, when it has one: the condition that creates
    it, the logical ids of its two target groups, and the environment's export of the load balancer's
    full name (the ``LoadBalancer`` dimension)."""

    condition: str
    target_groups: tuple[str, str]
    load_balancer: Json


def _stat(metric_id: str, namespace: str, name: str, dimensions: list[Json], stat: str) -> Json:
    return {"Id": metric_id, "ReturnData": False, "MetricStat": {
        "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dimensions},
        "Period": PERIOD_SECONDS, "Stat": stat}}


def _service_connect_metrics(version: ServiceVersion, max_p99_ms: float | None) -> tuple[list[Json], list[Json]]:
    """What the service's callers saw through Service Connect (``TargetDiscoveryName``: this environment's
    service, every caller): the 5xx share of all answers, and the average response time in ms."""
    target = [{"Name": "TargetDiscoveryName", "Value": discovery_name(version)}]
    filled = {metric_id: f"FILL({metric_id}, 0)" for metric_id in ANSWER_METRICS}
    rate = f"100 * {filled['errors']} / ({' + '.join(filled.values())})"
    errors = [*(_stat(i, NAMESPACE, m, target, "Sum") for i, m in ANSWER_METRICS.items()),
              {"Id": "rate", "Expression": rate, "Label": "5xx share of answers (%)", "ReturnData": True}]
    latency = [_stat("latency", NAMESPACE, "TargetResponseTime", target, "Average"),
               {"Id": "ms", "Expression": "FILL(latency, 0)", "Label": "average response time (ms)",
                "ReturnData": True}] if max_p99_ms is not None else []
    return errors, latency


def _load_balancer_metrics(ingress: Ingress, max_p99_ms: float | None) -> tuple[list[Json], list[Json]]:
    """What the load balancer saw of the service, on both of its target groups (ECS moves traffic between
    them during a deployment): the 5xx share of the requests, and the slower group's average response time
    in ms (the load balancer reports seconds)."""
    def dims(group: str) -> list[Json]:
        return [{"Name": "TargetGroup", "Value": get_att(group, "TargetGroupFullName")},
                {"Name": "LoadBalancer", "Value": ingress.load_balancer}]

    groups = ingress.target_groups
    errors = [*(_stat(f"errors{i}", ELB_NAMESPACE, "HTTPCode_Target_5XX_Count", dims(g), "Sum") for i, g in enumerate(groups)),
              *(_stat(f"requests{i}", ELB_NAMESPACE, "RequestCount", dims(g), "Sum") for i, g in enumerate(groups)),
              {"Id": "rate", "Label": "5xx share of requests (%)", "ReturnData": True,
               "Expression": "100 * (FILL(errors0, 0) + FILL(errors1, 0)) / "
                             "(FILL(requests0, 0) + FILL(requests1, 0))"}]
    latency = [*(_stat(f"latency{i}", ELB_NAMESPACE, "TargetResponseTime", dims(g), "Average") for i, g in enumerate(groups)),
               {"Id": "ms", "Label": "average response time of the slower target group (ms)", "ReturnData": True,
                "Expression": "1000 * MAX([FILL(latency0, 0), FILL(latency1, 0)])"}] if max_p99_ms is not None else []
    return errors, latency


def analysis_of(version: ServiceVersion) -> Analysis:
    """How the version's deployment is judged: its plan's analysis, else the platform's default one (a
    deployment ECS shifts traffic for is judged even without a plan)."""
    if version.rollout is not None:
        return version.rollout.analysis
    d = version.platform.policy.rollout.analysis
    return Analysis(min_success_rate=d.min_success_rate, max_p99_ms=d.max_p99_ms,
                    max_p99_increase_percent=d.max_p99_increase_percent, min_requests=d.min_requests,
                    failed_windows=d.failed_windows)


def alarms(version: ServiceVersion, ingress: Ingress | None = None) -> Json:
    """The CloudWatch alarms every deployment of this version is watched by, on its plan's analysis or the
    platform's. With ``ingress`` the metrics are the load balancer's while the stack has a gateway route
    (a service reached only through the load balancer has no Service Connect callers), Service Connect's
    otherwise; one alarm resource either way, so a gateway route that comes or goes changes it in place."""
    a = analysis_of(version)
    name = version.service
    periods = {"EvaluationPeriods": a.failed_windows, "DatapointsToAlarm": a.failed_windows}
    errors, latency = _service_connect_metrics(version, a.max_p99_ms)
    errors_metrics: Any = errors
    latency_metrics: Any = latency
    if ingress is not None:
        lb_errors, lb_latency = _load_balancer_metrics(ingress, a.max_p99_ms)
        errors_metrics = {"Fn::If": [ingress.condition, lb_errors, errors]}
        latency_metrics = {"Fn::If": [ingress.condition, lb_latency, latency]}
    found: Json = {ERRORS_ALARM: resource("AWS::CloudWatch::Alarm", {
        "AlarmName": alarm_name(version.environment, name, "errors"),
        "AlarmDescription": f"meshpipe: more than {100 - a.min_success_rate:g} % of {name}'s answers are 5xx "
                            "(its ECS deployment rolls back)",
        "ComparisonOperator": "GreaterThanThreshold",
        "Metrics": errors_metrics,
        "Threshold": round(100 - a.min_success_rate, 3),
        "TreatMissingData": "notBreaching",
        **periods,
    })}
    if a.max_p99_ms is not None:
        found[LATENCY_ALARM] = resource("AWS::CloudWatch::Alarm", {
            "AlarmName": alarm_name(version.environment, name, "latency"),
            "AlarmDescription": f"meshpipe: {name}'s average response time above {a.max_p99_ms:g} ms "
                                "(its ECS deployment rolls back)",
            "ComparisonOperator": "GreaterThanThreshold",
            "Metrics": latency_metrics,
            "Threshold": a.max_p99_ms,
            "TreatMissingData": "notBreaching",
            **periods,
        })
    return found


def deployment_configuration(version: ServiceVersion, fallback: Json) -> Json:
    """The service's ``DeploymentConfiguration``: the plan's strategy, else ``fallback`` (the platform's
    traffic shift), with the alarms of :func:`alarms` and rollback on either way."""
    plan = version.rollout
    config = dict(fallback) if plan is None else deployment_strategy(plan, version.service)
    config["Alarms"] = {"AlarmNames": [ref(logical_id) for logical_id in alarms(version)], "Enable": True,
                        "Rollback": True}
    return config
