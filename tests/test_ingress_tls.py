"""TLS on the ingress: the certificate option, the listeners it gives, and how it reaches AWS.

AWS facts are checked against offline sources that could say otherwise: the registry schemas cfn-lint ships
(which listener properties force a replacement), botocore's ELB and ACM models (attribute keys, ARN shape)
and moto's copy of the ELB security policies (which TLS versions a policy allows).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import boto3
import botocore
import pytest
from moto import mock_aws

from meshpipe.cli import main
from meshpipe.errors import UserError
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.synth import synthesize
from meshpipe.synth.cfn import template_json
from meshpipe.synth.environment import EnvironmentOptions, render_environment_for
from meshpipe.synth.ingress_tls import (
    CERTIFICATE_EXAMPLE,
    CERTIFICATE_OUTPUT,
    LISTENER,
    REDIRECT_LISTENER,
    TLS_POLICY,
    check_certificate_arn,
)
from meshpipe.synth.lint import blocking_findings, lint_template
from meshpipe.synth.platform_render import platform_template_files
from meshpipe.synth.service_connect import LISTENER_EXPORT
from support import synth_cases as cases
from support.aws import (
    FakeClock,
    RecordingFactory,
    make_engine,
    stand_in_templates,
    use_fake_credentials,
)
from support.resource_schemas import resource_schema

LISTENER_TYPE = "AWS::ElasticLoadBalancingV2::Listener"
GOOD = [
    CERTIFICATE_EXAMPLE,
    "arn:aws:acm:eu-central-2:000000000000:certificate/ffffffff-0000-4000-8000-123456789abc",
    "arn:aws-us-gov:acm:us-gov-west-1:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
    "arn:aws-cn:acm:cn-north-1:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
]
BAD = [
    "",
    "nope",
    "arn:aws:iam::123456789012:server-certificate/demo",  # an IAM server certificate, not ACM
    "arn:aws:acm:us-east-1:123456789012:certificate/0A1B2C3D-4E5F-6A7B-8C9D-0E1F2A3B4C5D",
    "arn:aws:acm:us-east-1:12345678901:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
    "arn:aws:acm::123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
    "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d",
    f" {CERTIFICATE_EXAMPLE}",
    f"{CERTIFICATE_EXAMPLE}\n",
]


def env(mesh: str, cert: str | None = None) -> dict[str, Any]:
    return render_environment_for("demo", mesh, options=EnvironmentOptions(certificate_arn=cert))


def listeners(tpl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in tpl["Resources"].items() if r["Type"] == LISTENER_TYPE}


def _botocore_model(service: str) -> dict[str, Any]:
    path = next(Path(botocore.__file__).parent.glob(f"data/{service}/*/service-2.json*"))
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        return dict(json.load(f))


# ---- the certificate option ----

@pytest.mark.parametrize("arn", GOOD)
def test_acm_certificate_arns_are_accepted_and_match_acms_own_pattern(arn: str) -> None:
    assert check_certificate_arn(arn) == arn
    acm_arn = _botocore_model("acm")["shapes"]["Arn"]
    assert re.fullmatch(acm_arn["pattern"], arn) and acm_arn["min"] <= len(arn) <= acm_arn["max"]


@pytest.mark.parametrize("arn", BAD)
def test_anything_else_is_refused_with_the_expected_shape(arn: str) -> None:
    with pytest.raises(UserError, match="is not an ACM certificate ARN") as caught:
        check_certificate_arn(arn)
    assert "--certificate-arn" in caught.value.message and "arn:aws:acm:REGION:ACCOUNT:certificate/" in caught.value.message
    with pytest.raises(UserError, match="certificate_arn"):
        env(MeshFlavour.SERVICE_CONNECT, arn)


# ---- the application load balancer (Service Connect) ----

def test_with_a_certificate_the_routed_listener_is_https_and_port_80_redirects() -> None:
    tpl = env(MeshFlavour.SERVICE_CONNECT, CERTIFICATE_EXAMPLE)
    found = listeners(tpl)
    assert set(found) == {LISTENER, REDIRECT_LISTENER}
    https = found[LISTENER]["Properties"]
    assert (https["Port"], https["Protocol"], https["SslPolicy"]) == (443, "HTTPS", TLS_POLICY)
    assert https["Certificates"] == [{"CertificateArn": CERTIFICATE_EXAMPLE}]
    assert https["DefaultActions"][0]["Type"] == "fixed-response"  # unrouted paths: 404, as before
    redirect = found[REDIRECT_LISTENER]
    assert (redirect["Properties"]["Port"], redirect["Properties"]["Protocol"]) == (80, "HTTP")
    [action] = redirect["Properties"]["DefaultActions"]
    assert action == {"RedirectConfig": {"Port": "443", "Protocol": "HTTPS", "StatusCode": "HTTP_301"}, "Type": "redirect"}
    # When TLS is turned on in place, the routed listener leaves port 80 before the redirect takes it.
    assert redirect["DependsOn"] == LISTENER
    outputs = tpl["Outputs"]
    assert outputs["IngressEndpoint"]["Value"] == {"Fn::Sub": "https://${IngressLoadBalancer.DNSName}"}
    assert outputs[CERTIFICATE_OUTPUT]["Value"] == CERTIFICATE_EXAMPLE and "Export" not in outputs[CERTIFICATE_OUTPUT]


def test_without_a_certificate_the_routed_listener_is_plain_http_on_80() -> None:
    tpl = env(MeshFlavour.SERVICE_CONNECT)
    found = listeners(tpl)
    assert set(found) == {LISTENER}
    props = found[LISTENER]["Properties"]
    assert (props["Port"], props["Protocol"]) == (80, "HTTP") and "SslPolicy" not in props
    assert tpl["Outputs"]["IngressEndpoint"]["Value"] == {"Fn::Sub": "http://${IngressLoadBalancer.DNSName}"}
    assert CERTIFICATE_OUTPUT not in tpl["Outputs"]


@pytest.mark.parametrize("cert", [None, CERTIFICATE_EXAMPLE])
def test_gateway_routes_attach_to_the_routed_listener_whatever_its_protocol(cert: str | None) -> None:
    tpl = env(MeshFlavour.SERVICE_CONNECT, cert)
    assert tpl["Outputs"][LISTENER_EXPORT]["Value"] == {"Ref": LISTENER}
    infra = [s for p in tpl["Resources"]["EcsInfrastructureRole"]["Properties"]["Policies"]
             for s in p["PolicyDocument"]["Statement"] if "elasticloadbalancing:ModifyListener" in s["Action"]]
    assert [s["Resource"] for s in infra] == [{"Ref": LISTENER}]
    # The service stacks import that export for their listener rule.
    version = cases.sample_version("hello-web")
    rule = synthesize(version, MeshFlavour.SERVICE_CONNECT).template["Resources"]["IngressRule"]["Properties"]
    assert rule["ListenerArn"] == {"Fn::ImportValue": f"demo:{LISTENER_EXPORT}"}


def test_turning_tls_on_updates_the_routed_listener_in_place() -> None:
    """Only LoadBalancerArn of a listener is create-only, so the port and protocol change without a new
    listener: its ARN, the export and the listener rules on it stay."""
    assert resource_schema(LISTENER_TYPE)["createOnlyProperties"] == ["/properties/LoadBalancerArn"]
    for mesh in MeshFlavour:
        plain, tls = listeners(env(mesh))[LISTENER], listeners(env(mesh, CERTIFICATE_EXAMPLE))[LISTENER]
        assert plain["Properties"]["LoadBalancerArn"] == tls["Properties"]["LoadBalancerArn"]


def test_the_load_balancer_drops_invalid_header_fields() -> None:
    res = env(MeshFlavour.SERVICE_CONNECT)["Resources"]
    attributes = {a["Key"]: a["Value"] for a in res["IngressLoadBalancer"]["Properties"]["LoadBalancerAttributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"


@pytest.mark.parametrize("mesh", MeshFlavour)
def test_the_tls_templates_lint_clean(mesh: str) -> None:
    findings = lint_template(template_json(env(mesh, CERTIFICATE_EXAMPLE)))
    assert [str(f) for f in blocking_findings(findings)] == []
    # Service Connect: no finding at all; App Mesh: only the notices of its shutdown.
    noted = {f.rule for f in findings if f.severity != "informational"}
    assert noted == (set() if mesh == MeshFlavour.SERVICE_CONNECT else {"W3696"})


# ---- the network load balancer (App Mesh) ----

def test_app_mesh_with_a_certificate_terminates_tls_on_443_and_closes_80() -> None:
    tpl = env(MeshFlavour.APPMESH, CERTIFICATE_EXAMPLE)
    [(lid, listener)] = listeners(tpl).items()
    props = listener["Properties"]
    assert (lid, props["Port"], props["Protocol"], props["SslPolicy"]) == (LISTENER, 443, "TLS", TLS_POLICY)
    assert props["DefaultActions"] == [{"TargetGroupArn": {"Ref": "IngressTargetGroup"}, "Type": "forward"}]
    assert tpl["Resources"]["IngressTargetGroup"]["Properties"]["Protocol"] == "TCP"  # plain to the gateway Envoy
    assert tpl["Outputs"]["IngressEndpoint"]["Value"] == {"Fn::Sub": "https://${IngressLoadBalancer.DNSName}"}
    plain = listeners(env(MeshFlavour.APPMESH))[LISTENER]["Properties"]
    assert (plain["Port"], plain["Protocol"]) == (80, "TCP")


# ---- AWS's side of it, offline ----

def test_the_tls_policy_allows_tls_1_2_and_1_3_only() -> None:
    with mock_aws():
        elb = boto3.client("elbv2", region_name="us-east-1")
        [policy] = elb.describe_ssl_policies(Names=[TLS_POLICY])["SslPolicies"]
    protocols = set(policy["SslProtocols"])
    assert "TLSv1.3" in protocols and protocols <= {"TLSv1.2", "TLSv1.3"}


@pytest.mark.parametrize("mesh", MeshFlavour)
def test_every_load_balancer_and_target_group_attribute_is_one_elb_documents(mesh: str) -> None:
    shapes = _botocore_model("elbv2")["shapes"]
    documented = {
        "LoadBalancerAttributes": shapes["LoadBalancerAttribute"]["members"]["Key"]["documentation"],
        "TargetGroupAttributes": shapes["TargetGroupAttribute"]["members"]["Key"]["documentation"],
    }
    tpl = env(mesh, CERTIFICATE_EXAMPLE)
    used = [(prop, a["Key"]) for r in tpl["Resources"].values() for prop in documented
            for a in r.get("Properties", {}).get(prop, [])]
    assert ("LoadBalancerAttributes", "routing.http.drop_invalid_header_fields.enabled") in used or mesh == MeshFlavour.APPMESH
    assert used
    for prop, key in used:
        assert f"<code>{key}</code>" in documented[prop], key


# ---- the command line ----

def test_platform_render_writes_the_https_ingress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tpl"
    assert main(["platform", "render", "--env", "demo", "--mesh", MeshFlavour.SERVICE_CONNECT, "-o", str(out),
                 "--certificate-arn", CERTIFICATE_EXAMPLE]) == 0
    env_file = platform_template_files("demo")[0]
    written = json.loads((out / env_file).read_text(encoding="utf-8"))
    assert written == env(MeshFlavour.SERVICE_CONNECT, CERTIFICATE_EXAMPLE)


def test_a_bad_certificate_arn_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tpl"
    assert main(["platform", "render", "--env", "demo", "-o", str(out), "--certificate-arn", "arn:aws:acm:x"]) == 2
    assert "is not an ACM certificate ARN" in capsys.readouterr().err
    assert not out.exists()


def test_env_create_checks_the_certificate_before_any_aws_call(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # No moto: any AWS call would fail with a connection error, not this message.
    use_fake_credentials(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert main(["env", "create", "demo", "--engine", "aws", "--certificate-arn", "demo.example.com"]) == 2
    assert "'demo.example.com' is not an ACM certificate ARN" in capsys.readouterr().err


def test_the_local_engine_refuses_a_certificate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "create", "demo", "--certificate-arn", CERTIFICATE_EXAMPLE]) == 2
    assert "--certificate-arn applies to --engine aws" in capsys.readouterr().err


# ---- the aws engine ----

@pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")
def test_env_create_renders_with_the_certificate_and_a_later_update_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_credentials(monkeypatch)
    asked: list[str | None] = []

    def templates(env_name: str, mesh: str = MeshFlavour.APPMESH, certificate_arn: str | None = None) -> dict[str, Any]:
        """The stand-ins moto can deploy, carrying the real template's certificate output (what the engine reads
        back from the stack)."""
        asked.append(certificate_arn)
        stand_in = stand_in_templates(env_name, mesh)
        env_file = platform_template_files(env_name)[0]
        real = render_environment_for(env_name, mesh, options=EnvironmentOptions(certificate_arn=certificate_arn))
        stand_in[env_file]["Outputs"].update({k: v for k, v in real["Outputs"].items() if k == CERTIFICATE_OUTPUT})
        return stand_in

    with mock_aws():
        aws = RecordingFactory()
        engine = make_engine(aws, FakeClock(), templates=templates, mesh=MeshFlavour.SERVICE_CONNECT)
        first = engine.env_create("demo", certificate_arn=CERTIFICATE_EXAMPLE)
        assert first.details["ingress certificate"] == CERTIFICATE_EXAMPLE
        again = engine.env_create("demo")
        assert again.details["ingress certificate"] == CERTIFICATE_EXAMPLE
    assert asked == [CERTIFICATE_EXAMPLE, CERTIFICATE_EXAMPLE]
    with pytest.raises(UserError, match="is not an ACM certificate ARN"):
        engine.env_create("demo", certificate_arn="nope")
    assert len(asked) == 2
