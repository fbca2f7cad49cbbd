"""The Prometheus text exposition of proxies' stats, in Envoy's metric names (``GET /stats/prometheus``).

Built with ``prometheus_client`` from the :meth:`DataPlane.raw_stats` form, so the same code writes one
proxy's page and the daemon's ``/metrics`` for a whole environment (every proxy's series, with extra
labels saying which proxy, service and version). This module is imported only when someone asks for the
exposition: a proxy that is never scraped never loads ``prometheus_client``.

Names and labels are Envoy's (see ``statnames``). Envoy declares counters such as ``upstream_rq_xx``
without a ``_total`` suffix; ``prometheus_client`` appends ``_total`` to every counter it writes, so those
are written untyped under Envoy's exact sample names (what queries and dashboards refer to), and the
counters whose Envoy names end in ``_total`` are written as counters. Histograms are in milliseconds with
Envoy's default bucket bounds, so they add up across proxies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from meshpipe.engines.local.dataplane.metrics import BUCKET_BOUNDS_MS, histogram_of
from meshpipe.engines.local.dataplane.statnames import GATEWAY_NODE, HTTP_PREFIX
from meshpipe.status import ProxyState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CLASSES = ("1", "2", "3", "4", "5")


class Exposition(Collector):
    """Families of samples, filled from proxies' raw stats, written by :meth:`render`."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def family(self, name: str, doc: str, kind: str) -> Metric:
        metric = self._families.get(name)
        if metric is None:
            metric = self._families[name] = Metric(name, doc, kind)
        return metric

    def counter(self, name: str, doc: str, labels: Mapping[str, str], value: float) -> None:
        """A counter under its full sample name: counter type when it ends in ``_total``, else untyped."""
        if name.endswith("_total"):
            self.family(name[: -len("_total")], doc, "counter").add_sample(name, dict(labels), value)
        else:
            self.family(name, doc, "unknown").add_sample(name, dict(labels), value)

    def gauge(self, name: str, doc: str, labels: Mapping[str, str], value: float) -> None:
        self.family(name, doc, "gauge").add_sample(name, dict(labels), value)

    def histogram(self, name: str, doc: str, labels: Mapping[str, str], raw: Mapping[str, Any]) -> None:
        """Envoy's buckets (``le`` in ms), ``_sum`` (ms) and ``_count`` from a raw latency histogram."""
        hist = histogram_of(raw)
        metric = self.family(name, doc, "histogram")
        for bound, cumulative in hist.envoy_buckets():
            metric.add_sample(f"{name}_bucket", {**labels, "le": floatToGoString(bound)}, cumulative)
        metric.add_sample(f"{name}_bucket", {**labels, "le": "+Inf"}, hist.count)
        metric.add_sample(f"{name}_count", dict(labels), hist.count)
        metric.add_sample(f"{name}_sum", dict(labels), hist.sum_ms)

    def collect(self) -> Iterator[Metric]:
        yield from self._families.values()

    def render(self) -> bytes:
        from prometheus_client.exposition import generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)

    # ---- one proxy's stats ----

    def add_proxy(self, raw: Mapping[str, Any], extra: Mapping[str, str] | None = None,
                  cluster_extra: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """Every series of one proxy. ``extra`` labels go on each series; ``cluster_extra[name]`` goes
        on the series of that cluster instead (the daemon labels clusters by the version they reach)."""
        if raw.get("bucket_count") not in (None, len(BUCKET_BOUNDS_MS)):
            return  # a proxy of another meshpipe release: its buckets do not line up with ours
        node = str(raw.get("node") or "")
        base = {"appmesh_mesh": str(raw.get("mesh") or ""),
                ("appmesh_virtual_gateway" if node == GATEWAY_NODE else "appmesh_virtual_node"): node}
        own = {**base, **(extra or {})}
        self.gauge("envoy_server_live", "1 while the proxy is live (not draining).", own,
                   1.0 if raw.get("state") == ProxyState.LIVE else 0.0)
        self.gauge("envoy_server_uptime", "Seconds since the proxy started.", own, float(raw.get("uptime_s") or 0))
        for cluster in raw.get("clusters", []):
            labels = {**base, **(extra or {}), **((cluster_extra or {}).get(cluster["name"], {})),
                      "envoy_cluster_name": cluster["name"]}
            self._cluster(labels, cluster)
        for name, listener in raw.get("listeners", {}).items():
            self._listener(own, name, listener)

    def _cluster(self, labels: Mapping[str, str], c: Mapping[str, Any]) -> None:
        self.counter("envoy_cluster_upstream_rq_total", "Requests sent to the cluster (each try counts).",
                     labels, c["requests"])
        for i, cls in enumerate(CLASSES, start=1):
            self.counter("envoy_cluster_upstream_rq_xx", "Tries by response class (a try failed without an "
                         "answer counts as 5xx).", {**labels, "envoy_response_code_class": cls}, c["by_class"][i])
        self.counter("envoy_cluster_upstream_rq_retry", "Retries.", labels, c["retries"])
        self.counter("envoy_cluster_upstream_rq_timeout", "Tries that timed out.", labels, c["timeouts"])
        self.histogram("envoy_cluster_upstream_rq_time", "Time of a try until its response was complete, in ms.",
                       labels, c["latency"])

    def _listener(self, own: Mapping[str, str], name: str, s: Mapping[str, Any]) -> None:
        http = {**own, "envoy_http_conn_manager_prefix": HTTP_PREFIX.get(name, name)}
        self.counter("envoy_http_downstream_rq_total", "Requests the listener answered.", http, s["requests"])
        for i, cls in enumerate(CLASSES, start=1):
            self.counter("envoy_http_downstream_rq_xx", "Answers by response class.",
                         {**http, "envoy_response_code_class": cls}, s["by_class"][i])
        self.counter("envoy_http_downstream_rq_rx_reset", "Requests the client gave up before the answer.",
                     http, s["downstream_resets"])
        self.counter("envoy_http_downstream_cx_total", "Client connections accepted.", http, s["connections_total"])
        self.gauge("envoy_http_downstream_cx_active", "Client connections open.", http, s["connections_active"])
        self.histogram("envoy_http_downstream_rq_time", "Time from a request's head to its answer's end, in ms.",
                       http, s["latency"])
        if s.get("port"):
            address = {**own, "envoy_listener_address": f"127.0.0.1_{s['port']}"}
            self.counter("envoy_listener_downstream_cx_total", "Connections accepted.", address,
                         s["connections_total"])
            self.gauge("envoy_listener_downstream_cx_active", "Connections open.", address, s["connections_active"])


def proxy_exposition(raw: Mapping[str, Any]) -> bytes:
    """One proxy's ``/stats/prometheus`` page."""
    exposition = Exposition()
    exposition.add_proxy(raw)
    return exposition.render()
