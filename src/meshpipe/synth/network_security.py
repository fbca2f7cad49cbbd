"""Who may reach what inside an environment: the security groups of the ingress load balancer and of the tasks.

Tasks accept TCP from two sources only, never from the VPC at large:

* the ingress load balancer's security group, on the ports it forwards to: every port an app may listen on
  (Service Connect: the load balancer reaches each routed service's container port) or the gateway Envoy's
  listener (App Mesh: the load balancer reaches only the ingress tasks);
* the task security group itself: services reach each other through their proxies (Envoy sidecars, or
  Service Connect's), which connect to the other task's app port.

"Every port an app may listen on" is 1-65535 less the ports a manifest may not use (the sidecar's, see
``PlatformPolicy.reserved_ports``), so no task can reach another task's Envoy admin port.

The load balancer's own group admits the public listener ports and lets the load balancer connect to the
tasks only, on the same ports. Rules that name the task group as their source are separate
``AWS::EC2::SecurityGroupIngress`` resources: inline, a group could not name itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshpipe.synth.cfn import Json, checkov_skips, get_att, ref, resource

CONTAINER_SECURITY_GROUP = "ContainerSecurityGroup"
INGRESS_SECURITY_GROUP = "IngressSecurityGroup"
ANYWHERE = "0.0.0.0/0"
# A group's description cannot change without replacing the group, and the task group's id is exported to
# every pipeline: so it keeps the description it was created with (its sources are all inside the VPC).
TASK_GROUP_DESCRIPTION = "Tasks of the environment: TCP from inside the VPC"
MAX_PORT = 65535

# checkov's "no port 80 open to the world" check, and why an ingress that opens port 80 accepts it.
PORT_80_OPEN = "CKV_AWS_260"
REDIRECT_ONLY_REASON = ("Port 80 of the public ingress only answers with a redirect to HTTPS on port 443; "
                        "closing it would turn away clients that type the bare host name.")
PLAIN_HTTP_REASON = ("The environment was rendered without a TLS certificate (--certificate-arn), so port 80 "
                     "is its public HTTP ingress; give a certificate to serve HTTPS and redirect port 80.")


def app_port_ranges(reserved: Iterable[int]) -> list[tuple[int, int]]:
    """The TCP port ranges an app may listen on: 1-65535 without ``reserved`` (the manifest refuses those)."""
    ranges = []
    start = 1
    for port in sorted(set(reserved)):
        if port > start:
            ranges.append((start, port - 1))
        start = max(start, port + 1)
    if start <= MAX_PORT:
        ranges.append((start, MAX_PORT))
    return ranges


def _ports_text(low: int, high: int) -> str:
    return f"port {low}" if low == high else f"ports {low}-{high}"


def load_balancer_security_group(description: str, openings: list[tuple[int, str]],
                                 target_ranges: list[tuple[int, int]], target_purpose: str,
                                 skips: list[tuple[str, str]] | None = None) -> Json:
    """The ingress load balancer's group: ``openings`` (port, why) from anywhere; out to the tasks only, on
    ``target_ranges``. Giving egress rules replaces the default allow-all egress rule."""
    ingress = [{"CidrIp": ANYWHERE, "Description": why, "FromPort": port, "IpProtocol": "tcp", "ToPort": port}
               for port, why in openings]
    egress = [{"Description": f"{target_purpose}, {_ports_text(low, high)}",
               "DestinationSecurityGroupId": get_att(CONTAINER_SECURITY_GROUP, "GroupId"),
               "FromPort": low, "IpProtocol": "tcp", "ToPort": high} for low, high in target_ranges]
    extra: Json = {"Metadata": checkov_skips(*skips)} if skips else {}
    return resource("AWS::EC2::SecurityGroup", {
        "GroupDescription": description,
        "SecurityGroupEgress": egress,
        "SecurityGroupIngress": ingress,
        "VpcId": ref("Vpc"),
    }, **extra)


def _ingress_rule(source: str, low: int, high: int, description: str) -> Json:
    return resource("AWS::EC2::SecurityGroupIngress", {
        "Description": description,
        "FromPort": low,
        "GroupId": get_att(CONTAINER_SECURITY_GROUP, "GroupId"),
        "IpProtocol": "tcp",
        "SourceSecurityGroupId": get_att(source, "GroupId"),
        "ToPort": high,
    })


def task_security_group(from_load_balancer: list[tuple[int, int]], lb_purpose: str,
                        between_tasks: list[tuple[int, int]]) -> Json:
    """The task group and its ingress rules (resources keyed by logical id)."""
    res: Json = {
        CONTAINER_SECURITY_GROUP: resource("AWS::EC2::SecurityGroup", {
            "GroupDescription": TASK_GROUP_DESCRIPTION,
            "VpcId": ref("Vpc"),
        }),
    }
    for i, (low, high) in enumerate(from_load_balancer, start=1):
        res[f"ContainerIngressFromLoadBalancer{i}"] = _ingress_rule(
            INGRESS_SECURITY_GROUP, low, high, f"{lb_purpose}, {_ports_text(low, high)}")
    for i, (low, high) in enumerate(between_tasks, start=1):
        res[f"ContainerIngressFromTasks{i}"] = _ingress_rule(
            CONTAINER_SECURITY_GROUP, low, high,
            f"Task to task through the proxies, app {_ports_text(low, high)}")
    return res
