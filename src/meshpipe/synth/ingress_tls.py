"""TLS on the environment's ingress: the listeners of its load balancer, with or without a certificate.

The certificate is a render option (``EnvironmentOptions.certificate_arn``), not a template parameter with a
condition: the rendered template then says exactly which listeners exist and with which protocol, so cfn-lint
and checkov check the listeners that will be deployed (checkov cannot evaluate ``Fn::If`` and would judge a
conditional protocol as plain HTTP). Turning TLS on later is an update of the same stack: the listener that
gateway routes attach to keeps its logical id, and CloudFormation changes its port and protocol in place
(only ``LoadBalancerArn`` of a listener is create-only), so its ARN, its export and the listener rules on
it stay.

* Application load balancer (Service Connect): with a certificate, the main listener is HTTPS on 443 with
  :data:`TLS_POLICY`, and a second listener on 80 redirects every request to HTTPS. Without one, the main
  listener is plain HTTP on 80, and checkov's HTTPS findings are suppressed in the template with the reason.
* Network load balancer (App Mesh): with a certificate the listener terminates TLS on 443 and forwards
  plain TCP to the gateway Envoy; a network load balancer cannot redirect, so port 80 is then closed.
"""

from __future__ import annotations

import re
from typing import Any

from meshpipe.errors import UserError
from meshpipe.synth.cfn import Json, checkov_skips, ref, resource, sub

HTTP_PORT = 80
HTTPS_PORT = 443
# AWS's recommended policy for new HTTPS and TLS listeners: TLS 1.3 and 1.2 only, restricted to AEAD
# ciphers with forward secrecy, plus hybrid post-quantum key exchange for clients that offer it.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"
# An ACM certificate: arn:<partition>:acm:<region>:<account>:certificate/<uuid>.
CERTIFICATE_ARN_RE = re.compile(
    r"^arn:aws(-cn|-us-gov)?:acm:[a-z]{2}(-[a-z]+)+-\d{1,2}:\d{12}:certificate/"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CERTIFICATE_EXAMPLE = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"

# The environment's output recording the certificate, so that updating the environment keeps it.
CERTIFICATE_OUTPUT = "IngressCertificateArn"
LISTENER = "IngressListener"
REDIRECT_LISTENER = "IngressHttpRedirectListener"

# checkov: "ALB protocol is HTTPS" and "listener uses at least TLS 1.2", and why a plain listener is kept.
HTTPS_CHECKS = ("CKV_AWS_2", "CKV_AWS_103")
PLAIN_HTTP_LISTENER_REASON = ("Rendered without a TLS certificate (--certificate-arn): the ingress serves "
                              "plain HTTP on port 80. With a certificate this listener serves HTTPS on 443 "
                              "and port 80 only redirects to it.")


def certificate_problem(value: str) -> str | None:
    if CERTIFICATE_ARN_RE.fullmatch(value):
        return None
    return (f"{value!r} is not an ACM certificate ARN: expected arn:aws:acm:REGION:ACCOUNT:certificate/ID, "
            f"e.g. {CERTIFICATE_EXAMPLE}")


def check_certificate_arn(value: str, source: str = "--certificate-arn") -> str:
    problem = certificate_problem(value)
    if problem:
        raise UserError(f"{source}: {problem}",
                        hint="request or import a certificate in AWS Certificate Manager, in the environment's "
                             "region, and pass its ARN (aws acm list-certificates)")
    return value


def _tls_settings(certificate_arn: str) -> Json:
    return {"Certificates": [{"CertificateArn": certificate_arn}], "SslPolicy": TLS_POLICY}


def application_listeners(certificate_arn: str | None, default_actions: list[Json]) -> Json:
    """The application load balancer's listeners; :data:`LISTENER` is the one gateway routes attach to."""
    if not certificate_arn:
        return {LISTENER: resource("AWS::ElasticLoadBalancingV2::Listener", {
            "DefaultActions": default_actions,
            "LoadBalancerArn": ref("IngressLoadBalancer"),
            "Port": HTTP_PORT,
            "Protocol": "HTTP",
        }, Metadata=checkov_skips(*((check, PLAIN_HTTP_LISTENER_REASON) for check in HTTPS_CHECKS)))}
    return {
        LISTENER: resource("AWS::ElasticLoadBalancingV2::Listener", {
            **_tls_settings(certificate_arn),
            "DefaultActions": default_actions,
            "LoadBalancerArn": ref("IngressLoadBalancer"),
            "Port": HTTPS_PORT,
            "Protocol": "HTTPS",
        }),
        # Created after the main listener: when TLS is turned on in an existing environment, the main listener
        # must leave port 80 before this one takes it.
        REDIRECT_LISTENER: resource("AWS::ElasticLoadBalancingV2::Listener", {
            "DefaultActions": [{"RedirectConfig": {
                "Port": str(HTTPS_PORT),
                "Protocol": "HTTPS",
                "StatusCode": "HTTP_301",
            }, "Type": "redirect"}],
            "LoadBalancerArn": ref("IngressLoadBalancer"),
            "Port": HTTP_PORT,
            "Protocol": "HTTP",
        }, DependsOn=LISTENER),
    }


def network_listener(certificate_arn: str | None, target_group: str) -> Json:
    """The network load balancer's one listener: TCP on 80, or TLS on 443 when there is a certificate."""
    forward = [{"TargetGroupArn": ref(target_group), "Type": "forward"}]
    if not certificate_arn:
        props: Json = {"Port": HTTP_PORT, "Protocol": "TCP"}
    else:
        props = {**_tls_settings(certificate_arn), "Port": HTTPS_PORT, "Protocol": "TLS"}
    return {LISTENER: resource("AWS::ElasticLoadBalancingV2::Listener", {
        **props,
        "DefaultActions": forward,
        "LoadBalancerArn": ref("IngressLoadBalancer"),
    })}


def public_ports(certificate_arn: str | None, redirects: bool) -> list[tuple[int, str]]:
    """The load balancer's public listener ports, with why each is open (security-group rule descriptions)."""
    if not certificate_arn:
        return [(HTTP_PORT, "HTTP from anywhere: the public ingress (no TLS certificate given)")]
    ports = [(HTTPS_PORT, "HTTPS from anywhere: the public ingress")]
    if redirects:
        ports.append((HTTP_PORT, "HTTP from anywhere: redirected to HTTPS"))
    return ports


def ingress_endpoint(certificate_arn: str | None) -> Any:
    """The public URL: the load balancer's DNS name. A certificate names some other host, which the
    platform team points at this one (a DNS alias); clients then use that name."""
    scheme = "https" if certificate_arn else "http"
    return sub(scheme + "://${IngressLoadBalancer.DNSName}")


def certificate_output(certificate_arn: str | None) -> Json:
    if not certificate_arn:
        return {}
    return {CERTIFICATE_OUTPUT: {"Value": certificate_arn,
                                 "Description": "ACM certificate of the ingress's TLS listener"}}
