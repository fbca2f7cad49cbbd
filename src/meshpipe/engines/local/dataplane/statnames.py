"""The names App Mesh's Envoy gives its stats, so that dashboards written for App Mesh read ours unchanged.

App Mesh's Envoy calls the cluster of a virtual node it sends to ``cds_egress_<mesh>_<virtual node>_<protocol>_<port>``
and the cluster of its own app ``cds_ingress_<mesh>_<virtual node>_<protocol>_<port>``; with stats tags on
(``ENABLE_ENVOY_STATS_TAGS=1``) every series also carries ``appmesh_mesh`` and ``appmesh_virtual_node`` (or
``appmesh_virtual_gateway``). The HTTP connection manager of a virtual node's listener has the stat prefix
``ingress`` (the virtual gateway's too); its egress listener's is ``egress``.
"""

from __future__ import annotations

GATEWAY_NODE = "vg-ingress"  # the environment's virtual gateway (synth.environment names it the same)
PROTOCOL = "http"

# Our listener name -> the HTTP connection manager's stat prefix Envoy reports.
HTTP_PREFIX = {"ingress": "ingress", "egress": "egress", "gateway": "ingress"}


def cluster_name(direction: str, mesh: str, node: str, port: int | None) -> str:
    """``cds_egress_demo_vn-hello-backend-e9d5f17a_http_8080``; without a known port the suffix is left off."""
    base = f"cds_{direction}_{mesh}_{node}"
    return f"{base}_{PROTOCOL}_{port}" if port else base
