"""Topologies the graph tests draw (and tests/golden/regen_graph.py writes the expected pictures of)."""

from __future__ import annotations

from meshpipe.mesh.graph import GatewayRouteNode, ServiceNode, Topology, VersionNode


def demo() -> Topology:
    """The original sample at step 8: hello-web at 100 %, hello-backend split 90/10 during a canary."""
    return Topology(
        environment="demo",
        ingress="http://127.0.0.1:8080",
        gateway_routes=(GatewayRouteNode("r-ingress-hello-service", "/hello-service", "hello-web"),),
        services=(
            ServiceNode("hello-web", (VersionNode("66f2a19a", 100, "CREATE_COMPLETE", 2, 2, 20.0, 0.0),),
                        ("hello-backend",)),
            ServiceNode("hello-backend", (
                VersionNode("e9d5f17a", 90, "CREATE_COMPLETE", 2, 2, 18.0, 0.0),
                VersionNode("0badc0de", 10, "CREATE_COMPLETE", 2, 2, 2.0, 0.25),
                VersionNode("deadbeef", 0, "CREATE_FAILED", 0, 2),
            )),
        ),
    )


def big(services: int = 20, versions: int = 3) -> Topology:
    """``services`` services of ``versions`` versions each; every fifth one calls the next."""
    nodes = []
    for i in range(services):
        name = f"svc-{i:02d}"
        calls = (f"svc-{i + 1:02d}",) if i % 5 == 0 and i + 1 < services else ()
        weights = [100 - 10 * (versions - 1)] + [10] * (versions - 1)
        nodes.append(ServiceNode(name, tuple(VersionNode(f"{i:02d}{j:06x}", w, "CREATE_COMPLETE", 1, 1)
                                             for j, w in enumerate(weights)), calls))
    routes = tuple(GatewayRouteNode(f"r-svc-{i:02d}", f"/svc-{i:02d}", f"svc-{i:02d}") for i in range(0, services, 2))
    return Topology("big", tuple(nodes), routes, "http://127.0.0.1:9000")


CASES = {"demo": demo, "big": big}


def readme() -> Topology:
    """The README's picture: the walkthrough at step 7, without rates."""
    return Topology(
        environment="demo",
        ingress="http://127.0.0.1:8080",
        gateway_routes=(GatewayRouteNode("r-ingress-hello-service", "/hello-service", "hello-web"),),
        services=(
            ServiceNode("hello-web", (VersionNode("66f2a19a", 100, "CREATE_COMPLETE", 2, 2),), ("hello-backend",)),
            ServiceNode("hello-backend", (VersionNode("e9d5f17a", 90, "CREATE_COMPLETE", 2, 2),
                                          VersionNode("0badc0de", 10, "CREATE_COMPLETE", 2, 2))),
        ),
    )
