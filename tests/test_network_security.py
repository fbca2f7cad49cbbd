"""The environment's security groups: who may reach the tasks, on which ports, and that every rule says why.

A small evaluator reads the rendered template's rules (inline and separate ``AWS::EC2::SecurityGroupIngress``
resources) and answers "does this group admit that source on that port"; the tests ask it the questions an
attacker or a broken deployment would.
"""

from __future__ import annotations

import gzip
import html
import ipaddress
import itertools
import json
import re
from pathlib import Path
from typing import Any

import botocore
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.platform import PlatformPolicy
from meshpipe.synth.environment import (
    GATEWAY_LISTENER_PORT,
    PRIVATE_SUBNET_CIDRS,
    PUBLIC_SUBNET_CIDRS,
    EnvironmentOptions,
    render_environment_for,
)
from meshpipe.synth.ingress_tls import CERTIFICATE_EXAMPLE
from meshpipe.synth.network_security import (
    CONTAINER_SECURITY_GROUP,
    INGRESS_SECURITY_GROUP,
    MAX_PORT,
    app_port_ranges,
)
from support.resource_schemas import resource_schema

TASKS, LOAD_BALANCER = CONTAINER_SECURITY_GROUP, INGRESS_SECURITY_GROUP
RESERVED = sorted(PlatformPolicy().reserved_ports)  # the sidecar's ports, which no app may use
CERTS = [None, CERTIFICATE_EXAMPLE]
VARIANTS = [(mesh, cert) for mesh in MeshFlavour for cert in CERTS]
IDS = [f"{mesh}-{'tls' if cert else 'plain'}" for mesh, cert in VARIANTS]


def env(mesh: str, cert: str | None = None, policy: PlatformPolicy | None = None) -> dict[str, Any]:
    return render_environment_for("demo", mesh, policy, EnvironmentOptions(certificate_arn=cert))


def group_of(value: Any) -> str | None:
    """The logical id of a security group named by ``Fn::GetAtt [X, GroupId]``."""
    if isinstance(value, dict) and "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "GroupId":
        return str(value["Fn::GetAtt"][0])
    return None


def ingress_rules(tpl: dict[str, Any], group: str) -> list[dict[str, Any]]:
    res = tpl["Resources"]
    rules = list(res[group]["Properties"].get("SecurityGroupIngress", []))
    rules += [r["Properties"] for r in res.values()
              if r["Type"] == "AWS::EC2::SecurityGroupIngress" and group_of(r["Properties"]["GroupId"]) == group]
    return rules


def egress_rules(tpl: dict[str, Any], group: str) -> list[dict[str, Any]]:
    res = tpl["Resources"]
    rules = list(res[group]["Properties"].get("SecurityGroupEgress", []))
    return rules + [r["Properties"] for r in res.values()
                    if r["Type"] == "AWS::EC2::SecurityGroupEgress" and group_of(r["Properties"]["GroupId"]) == group]


def _covers(rule: dict[str, Any], port: int) -> bool:
    if str(rule["IpProtocol"]) == "-1":
        return True
    return rule["IpProtocol"] == "tcp" and rule["FromPort"] <= port <= rule["ToPort"]


def admits(tpl: dict[str, Any], group: str, port: int, *, from_group: str | None = None,
           from_ip: str | None = None) -> bool:
    """Whether ``group`` lets in TCP on ``port`` from members of ``from_group`` or from the address ``from_ip``."""
    for rule in ingress_rules(tpl, group):
        if not _covers(rule, port):
            continue
        if from_group and group_of(rule.get("SourceSecurityGroupId")) == from_group:
            return True
        if from_ip and "CidrIp" in rule and ipaddress.ip_address(from_ip) in ipaddress.ip_network(rule["CidrIp"]):
            return True
    return False


def sends(tpl: dict[str, Any], group: str, port: int, to_group: str) -> bool:
    return any(_covers(r, port) and group_of(r.get("DestinationSecurityGroupId")) == to_group
               for r in egress_rules(tpl, group))


# ---- the port ranges ----

@given(st.sets(st.integers(min_value=1, max_value=MAX_PORT), max_size=6))
def test_app_port_ranges_are_every_port_but_the_reserved_ones(reserved: set[int]) -> None:
    ranges = app_port_ranges(reserved)
    assert all(1 <= low <= high <= MAX_PORT for low, high in ranges)
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(ranges))  # sorted, apart, merged
    covered = sum(high - low + 1 for low, high in ranges)
    assert covered == MAX_PORT - len(reserved)
    assert not any(low <= port <= high for port in reserved for low, high in ranges)


# ---- who reaches the tasks ----

@pytest.mark.parametrize(("mesh", "cert"), VARIANTS, ids=IDS)
def test_nothing_reaches_the_tasks_by_address(mesh: str, cert: str | None) -> None:
    tpl = env(mesh, cert)
    rules = ingress_rules(tpl, TASKS)
    assert rules and all(group_of(r.get("SourceSecurityGroupId")) in (TASKS, LOAD_BALANCER) for r in rules)
    assert all("CidrIp" not in r and "CidrIpv6" not in r for r in rules)
    for cidr in (*PUBLIC_SUBNET_CIDRS, *PRIVATE_SUBNET_CIDRS):
        address = str(next(ipaddress.ip_network(cidr).hosts()))
        assert not admits(tpl, TASKS, 80, from_ip=address)


@pytest.mark.parametrize("cert", CERTS)
def test_service_connect_tasks_admit_the_load_balancer_and_each_other_on_app_ports_only(cert: str | None) -> None:
    tpl = env(MeshFlavour.SERVICE_CONNECT, cert)
    for port in (1, 80, 8080, 9080, 9900, 9902, 14999, 15002, MAX_PORT):
        assert admits(tpl, TASKS, port, from_group=LOAD_BALANCER), port
        assert admits(tpl, TASKS, port, from_group=TASKS), port
        assert sends(tpl, LOAD_BALANCER, port, TASKS), port
    for port in RESERVED:  # e.g. another task's Envoy admin port
        assert not admits(tpl, TASKS, port, from_group=LOAD_BALANCER), port
        assert not admits(tpl, TASKS, port, from_group=TASKS), port
        assert not sends(tpl, LOAD_BALANCER, port, TASKS), port


@pytest.mark.parametrize("cert", CERTS)
def test_app_mesh_load_balancer_reaches_only_the_gateway_envoy(cert: str | None) -> None:
    tpl = env(MeshFlavour.APPMESH, cert)
    res = tpl["Resources"]
    assert admits(tpl, TASKS, GATEWAY_LISTENER_PORT, from_group=LOAD_BALANCER)
    assert not admits(tpl, TASKS, 80, from_group=LOAD_BALANCER)
    assert admits(tpl, TASKS, 80, from_group=TASKS)  # Envoy to Envoy, on the app's port
    assert not any(admits(tpl, TASKS, port, from_group=TASKS) for port in RESERVED)
    assert [r["FromPort"] for r in egress_rules(tpl, LOAD_BALANCER)] == [GATEWAY_LISTENER_PORT]
    # The gateway tasks run in the task group, behind a load balancer that is in the load balancer group...
    network = res["IngressService"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert [group_of(g) for g in network["SecurityGroups"]] == [TASKS]
    assert [group_of(g) for g in res["IngressLoadBalancer"]["Properties"]["SecurityGroups"]] == [LOAD_BALANCER]
    # ...and connects from its own addresses (client IP preservation off), for traffic and health checks.
    attributes = {a["Key"]: a["Value"] for a in res["IngressTargetGroup"]["Properties"]["TargetGroupAttributes"]}
    assert attributes["preserve_client_ip.enabled"] == "false"
    assert res["IngressTargetGroup"]["Properties"]["HealthCheckProtocol"] == "TCP"


def test_the_reserved_ports_follow_the_platform_policy() -> None:
    moved = PlatformPolicy(envoy_admin_port=9911)
    tpl = env(MeshFlavour.SERVICE_CONNECT, policy=moved)
    assert not admits(tpl, TASKS, 9911, from_group=TASKS)
    assert admits(tpl, TASKS, 9901, from_group=TASKS)


@pytest.mark.parametrize(("mesh", "cert"), VARIANTS, ids=IDS)
def test_the_load_balancer_is_open_to_the_world_only_on_its_listener_ports(mesh: str, cert: str | None) -> None:
    tpl = env(mesh, cert)
    listeners = {r["Properties"]["Port"] for r in tpl["Resources"].values()
                 if r["Type"] == "AWS::ElasticLoadBalancingV2::Listener"}
    open_ports = {r["FromPort"] for r in ingress_rules(tpl, LOAD_BALANCER)}
    assert all(r["FromPort"] == r["ToPort"] and r["CidrIp"] == "0.0.0.0/0" for r in ingress_rules(tpl, LOAD_BALANCER))
    assert open_ports == listeners
    assert open_ports == ({443, 80} if cert and mesh == MeshFlavour.SERVICE_CONNECT else {443} if cert else {80})


# ---- descriptions ----

def _botocore_ec2() -> dict[str, Any]:
    path = next(Path(botocore.__file__).parent.glob("data/ec2/2016-11-15/service-2.json*"))
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        return dict(json.load(f))


def _allowed_characters(documentation: str) -> re.Pattern[str]:
    """The character class EC2's API reference states for a description ("... spaces, and ._-:/...")."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", documentation))
    match = re.search(r"a-z, A-Z, 0-9, spaces, and (\S+)", text)
    assert match, text
    return re.compile("[a-zA-Z0-9 " + re.escape(match[1]) + "]{1,255}")


def test_every_rule_and_group_has_a_description_ec2_accepts() -> None:
    shapes = _botocore_ec2()["shapes"]
    # A rule naming a group is a UserIdGroupPair, whose set is the narrowest: every rule is held to it.
    rule_text = _allowed_characters(shapes["UserIdGroupPair"]["members"]["Description"]["documentation"])
    group_text = _allowed_characters(shapes["CreateSecurityGroupRequest"]["members"]["Description"]["documentation"])
    for mesh, cert in VARIANTS:
        tpl = env(mesh, cert)
        for group in (TASKS, LOAD_BALANCER):
            assert group_text.fullmatch(tpl["Resources"][group]["Properties"]["GroupDescription"])
            rules = ingress_rules(tpl, group) + egress_rules(tpl, group)
            assert rules, (mesh, group)
            for rule in rules:
                assert rule_text.fullmatch(rule.get("Description", "")), (mesh, group, rule)


def test_the_task_group_keeps_the_description_it_was_created_with() -> None:
    """GroupDescription is create-only (the registry schema says so): changing it would replace the group and
    change its exported id, which every pipeline imports, so an update of the environment would fail."""
    assert "/properties/GroupDescription" in resource_schema("AWS::EC2::SecurityGroup")["createOnlyProperties"]
    for mesh in MeshFlavour:
        description = env(mesh)["Resources"][TASKS]["Properties"]["GroupDescription"]
        assert description == "Tasks of the environment: TCP from inside the VPC"
