"""The Service Connect environment's CloudWatch dashboard: requests, 5xx and latency per service, and the
task-definition revisions running (pure).

Services come and go after the environment exists, so the panels do not list them: each metric panel is a
CloudWatch ``SEARCH`` over the environment's cluster, and every service that has traffic shows up as its
own line. The figures are the ones ECS Service Connect publishes in the ``AWS/ECS`` namespace:

* ``RequestCount`` on (``ClusterName``, ``DiscoveryName``, ``ServiceName``): requests a service received;
* ``HTTPCode_Target_5XX_Count`` and ``TargetResponseTime`` on (``ClusterName``, ``ServiceName``,
  ``TargetDiscoveryName``): answers from a service (the target) as each calling service saw them.

The versions running (a task-definition revision each) come from the environment's log group, at no extra
cost (Container Insights, which would list revisions directly, is billed per task and stays off): every
app container logs to streams named ``<app prefix>-<svc>-<version>/app/<task id>``, so a Logs Insights
table of the streams that logged lately, by version, shows which revisions run and on how many tasks.
"""

from __future__ import annotations

import json
from typing import Any

from meshpipe.synth.cfn import Json, resource, sub

DASHBOARD_LOGICAL_ID = "Dashboard"
NAMESPACE = "AWS/ECS"
PERIOD_S = 60


def dashboard_name(env: str) -> str:
    """The dashboard's name (also how ``meshpipe dashboard --engine aws`` finds it)."""
    return f"meshpipe-{env}"


def console_url(region: str, env: str) -> str:
    return (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#dashboards/dashboard/{dashboard_name(env)}")


def _search(dimensions: str, metric: str, stat: str, cluster: str) -> str:
    return (f"SEARCH('{{{NAMESPACE},{dimensions}}} MetricName=\"{metric}\" ClusterName=\"{cluster}\"', "
            f"'{stat}', {PERIOD_S})")


def _metric_panel(title: str, expression: str, x: int, y: int, label: str, stat: str) -> Json:
    return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6, "properties": {
        "title": title, "view": "timeSeries", "stacked": False, "region": "${AWS::Region}", "period": PERIOD_S,
        "stat": stat, "metrics": [[{"expression": expression, "id": "e1", "label": label}]],
        "yAxis": {"left": {"min": 0}}}}


def dashboard_body(cluster: str = "${EnvironmentName}", log_group: str = "${EnvironmentName}-cluster",
                   app_prefix: str = "app") -> dict[str, Any]:
    """The dashboard's widgets; ``cluster`` and ``log_group`` (``Fn::Sub`` references by default) name the
    ECS cluster and the environment's log group, ``app_prefix`` the platform's app log-stream prefix."""
    inbound = "ClusterName,DiscoveryName,ServiceName"
    by_target = "ClusterName,ServiceName,TargetDiscoveryName"
    revisions = (f"SOURCE '{log_group}' "
                 f"| filter @logStream like /^{app_prefix}-/ "
                 f"| parse @logStream \"{app_prefix}-*/*/*\" as version, container, task "
                 "| stats count_distinct(task) as tasks, max(@timestamp) as last_log by version "
                 "| sort version asc")
    return {"widgets": [
        {"type": "text", "x": 0, "y": 0, "width": 24, "height": 1, "properties": {
            "markdown": f"## meshpipe environment {cluster}: ECS Service Connect traffic per service"}},
        _metric_panel("Requests per service (received)", _search(inbound, "RequestCount", "Sum", cluster),
                      0, 1, "", "Sum"),
        _metric_panel("5xx answers per service (as its callers saw them)",
                      _search(by_target, "HTTPCode_Target_5XX_Count", "Sum", cluster), 12, 1, "", "Sum"),
        _metric_panel("Latency p99 per service (as its callers saw it)",
                      _search(by_target, "TargetResponseTime", "p99", cluster), 0, 7, "", "p99"),
        _metric_panel("Latency p50 per service (as its callers saw it)",
                      _search(by_target, "TargetResponseTime", "p50", cluster), 12, 7, "", "p50"),
        {"type": "log", "x": 0, "y": 13, "width": 24, "height": 6, "properties": {
            "title": "Versions running (tasks that logged in the period)", "region": "${AWS::Region}",
            "view": "table", "query": revisions}},
    ]}


def dashboard_resources(app_prefix: str = "app") -> Json:
    """The ``AWS::CloudWatch::Dashboard`` of a Service Connect environment (needs ``EnvironmentName``);
    ``app_prefix`` is the platform policy's ``app_log_prefix``."""
    body = json.dumps(dashboard_body(app_prefix=app_prefix), separators=(",", ":"))
    return {DASHBOARD_LOGICAL_ID: resource("AWS::CloudWatch::Dashboard", {
        "DashboardName": sub("meshpipe-${EnvironmentName}"),
        "DashboardBody": sub(body),
    })}
