"""A version's rollout plan as ECS runs it on Service Connect: a native deployment strategy, and CloudWatch
alarms on the service's errors and latency that make ECS roll the deployment back. Pure.

ECS moves traffic between task-definition revisions itself, so the plan maps onto what ECS offers:

* ``canary``: ECS's CANARY has a single step: the first of ``steps``, held for as long as every step before
  100 % would have been (``interval`` each), then the rest;
* ``linear``: LINEAR with the plan's step (ECS moves at least 3 % per step) and ``interval`` per step;
* ``blue-green``: BLUE_GREEN, all at once once the new revision is healthy (the header preview is the
  local engine's: Service Connect has no header routes);
* after the shift ECS keeps the old revision for one ``interval`` (``BakeTimeInMinutes``), during which a
  rollback is immediate.

The alarms watch the metrics ECS publishes for Service Connect in ``AWS/ECS``, by the service's discovery
name (``TargetDiscoveryName``): the share of 5xx answers (``HTTPCode_Target_5XX_Count`` against all
answers) above ``100 - min_success_rate`` %, and, when the plan has ``max_p99_ms``, the average
``TargetResponseTime`` above it, each for ``failed_windows`` one-minute periods. They go in the service's
``DeploymentConfiguration.Alarms`` with rollback on. They see the whole service, both revisions together,
and cannot compare revisions: the relative latency check, ``min_requests`` and the webhooks are the local
engine's (see docs/rollouts.md).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from meshpipe.errors import UserError
from meshpipe.platform import MAX_PLANNED_DEPLOYMENT_MINUTES
from meshpipe.synth.cfn import Json, ref, resource

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


def _metric(metric_id: str, name: str, discovery_name: str, stat: str) -> Json:
    return {"Id": metric_id, "ReturnData": False, "MetricStat": {
        "Metric": {"Namespace": NAMESPACE, "MetricName": name,
                   "Dimensions": [{"Name": "TargetDiscoveryName", "Value": discovery_name}]},
        "Period": PERIOD_SECONDS, "Stat": stat}}


def alarms(version: ServiceVersion) -> Json:
    """The CloudWatch alarms a deployment of this version is watched by (none without a plan)."""
    plan = version.rollout
    if plan is None:
        return {}
    a = plan.analysis
    name = version.service  # the discovery name Service Connect publishes the metrics under
    periods = {"EvaluationPeriods": a.failed_windows, "DatapointsToAlarm": a.failed_windows}
    filled = {metric_id: f"FILL({metric_id}, 0)" for metric_id in ANSWER_METRICS}
    rate = f"100 * {filled['errors']} / ({' + '.join(filled.values())})"
    found: Json = {ERRORS_ALARM: resource("AWS::CloudWatch::Alarm", {
        "AlarmName": alarm_name(version.environment, name, "errors"),
        "AlarmDescription": f"meshpipe: more than {100 - a.min_success_rate:g} % of {name}'s answers are 5xx "
                            "(its ECS deployment rolls back)",
        "ComparisonOperator": "GreaterThanThreshold",
        "Metrics": [*(_metric(i, m, name, "Sum") for i, m in ANSWER_METRICS.items()),
                    {"Id": "rate", "Expression": rate, "Label": "5xx share of answers (%)", "ReturnData": True}],
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
            "Dimensions": [{"Name": "TargetDiscoveryName", "Value": name}],
            "MetricName": "TargetResponseTime",
            "Namespace": NAMESPACE,
            "Period": PERIOD_SECONDS,
            "Statistic": "Average",
            "Threshold": a.max_p99_ms,
            "TreatMissingData": "notBreaching",
            "Unit": "Milliseconds",
            **periods,
        })
    return found


def deployment_configuration(version: ServiceVersion, fallback: Json) -> Json:
    """The service's ``DeploymentConfiguration``: from the plan with its alarms (rollback on), else
    ``fallback`` (the platform's traffic shift, as before plans existed)."""
    plan = version.rollout
    if plan is None:
        return fallback
    config = deployment_strategy(plan, version.service)
    config["Alarms"] = {"AlarmNames": [ref(logical_id) for logical_id in alarms(version)], "Enable": True,
                        "Rollback": True}
    return config
