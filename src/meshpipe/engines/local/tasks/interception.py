"""A task's APPMESH ``ProxyConfiguration`` as the netfilter rules of its network namespace. Pure.

On ECS the task definition says::

    AppPorts 80, ProxyIngressPort 15000, ProxyEgressPort 15001, IgnoredUID 1337,
    EgressIgnoredIPs 169.254.170.2,169.254.169.254

and the agent installs NAT rules in the task's namespace that make it so. The same rules here:

* inbound TCP to an app port, from anywhere but the task itself, goes to the sidecar's ingress port;
* outbound TCP to any address that is not the task's own goes to the sidecar's egress port, except
  traffic of the ignored user (the sidecar itself, so its own calls leave) and to the ignored addresses;
* everything else is left alone: the app's own health check to ``localhost`` reaches the app.

Docker keeps its own rules in the namespace (its DNS server at 127.0.0.11), so these are added in chains
of their own with ``iptables-restore --noflush`` rather than replacing the tables. A packet filter rule
then rejects anything the app sends that is not TCP (redirected above) or loopback, so UDP cannot go
around the sidecar either; and Docker's DNS server is refused too: the task's names are the
environment's, in its ``/etc/hosts`` (as Cloud Map answers for its namespace), and any other name fails
at once instead of waiting for a resolver that has no way out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

INGRESS_CHAIN = "MESHPIPE_INGRESS"
EGRESS_CHAIN = "MESHPIPE_EGRESS"
FILTER_CHAIN = "MESHPIPE_OUT"
# Docker's embedded DNS server inside a container on a user-defined network.
DOCKER_DNS = "127.0.0.11"


@dataclass(frozen=True)
class ProxyConfiguration:
    """The properties of an APPMESH proxy configuration (names as ECS spells them)."""

    app_ports: tuple[int, ...]
    proxy_ingress_port: int
    proxy_egress_port: int
    ignored_uid: int
    egress_ignored_ips: tuple[str, ...] = ()

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> ProxyConfiguration:
        """From ``[{"Name": ..., "Value": ...}]`` as the task definition lists them, made a mapping."""
        def split(value: str) -> tuple[str, ...]:
            return tuple(v.strip() for v in value.split(",") if v.strip())

        return cls(app_ports=tuple(int(p) for p in split(props["AppPorts"])),
                   proxy_ingress_port=int(props["ProxyIngressPort"]),
                   proxy_egress_port=int(props["ProxyEgressPort"]),
                   ignored_uid=int(props["IgnoredUID"]),
                   egress_ignored_ips=split(props.get("EgressIgnoredIPs", "")))

    @classmethod
    def of_resolved(cls, resolved: Mapping[str, object]) -> ProxyConfiguration:
        """From a version's resolved JSON (as the Deploy stage records it)."""
        app = resolved["app"]
        sidecar = resolved["sidecar"]
        assert isinstance(app, Mapping) and isinstance(sidecar, Mapping)
        return cls(app_ports=(int(app["port"]),), proxy_ingress_port=int(sidecar["ingress_port"]),
                   proxy_egress_port=int(sidecar["egress_port"]), ignored_uid=int(sidecar["ignored_uid"]),
                   egress_ignored_ips=tuple(sidecar["egress_ignored_ips"]))


def iptables_rules(cfg: ProxyConfiguration) -> str:
    """The ``iptables-restore --noflush`` input that installs ``cfg`` in a task's namespace."""
    ports = ",".join(str(p) for p in cfg.app_ports)
    nat: list[str] = [
        "*nat",
        f":{INGRESS_CHAIN} - [0:0]",
        f":{EGRESS_CHAIN} - [0:0]",
        f"-A {INGRESS_CHAIN} -p tcp -m multiport --dports {ports} -j REDIRECT --to-ports {cfg.proxy_ingress_port}",
        f"-A {EGRESS_CHAIN} -m owner --uid-owner {cfg.ignored_uid} -j RETURN",
        *(f"-A {EGRESS_CHAIN} -d {ip} -j RETURN" for ip in cfg.egress_ignored_ips),
        f"-A {EGRESS_CHAIN} -p tcp -j REDIRECT --to-ports {cfg.proxy_egress_port}",
        f"-A PREROUTING -p tcp -m addrtype ! --src-type LOCAL -j {INGRESS_CHAIN}",
        f"-A OUTPUT -p tcp -m addrtype ! --dst-type LOCAL -j {EGRESS_CHAIN}",
        "COMMIT",
    ]
    filt: list[str] = [
        "*filter",
        f":{FILTER_CHAIN} - [0:0]",
        f"-A {FILTER_CHAIN} -d {DOCKER_DNS} -j REJECT",
        f"-A {FILTER_CHAIN} -o lo -j RETURN",
        f"-A {FILTER_CHAIN} -m owner --uid-owner {cfg.ignored_uid} -j RETURN",
        f"-A {FILTER_CHAIN} -p tcp -j RETURN",
        *(f"-A {FILTER_CHAIN} -d {ip} -j RETURN" for ip in cfg.egress_ignored_ips),
        f"-A {FILTER_CHAIN} -j REJECT",
        f"-A OUTPUT -j {FILTER_CHAIN}",
        "COMMIT",
    ]
    return "\n".join([*nat, *filt]) + "\n"


def rules_summary(cfg: ProxyConfiguration) -> Sequence[str]:
    """The rules in words, for ``env status`` and the docs."""
    ports = ",".join(str(p) for p in cfg.app_ports)
    ignored = ", ".join(cfg.egress_ignored_ips) or "none"
    return (f"inbound tcp to {ports} -> {cfg.proxy_ingress_port}",
            f"outbound tcp -> {cfg.proxy_egress_port} (except uid {cfg.ignored_uid} and {ignored})")
