"""IAM facts the tests check our policies against, read offline from the tools that ship them.

* What CloudFormation calls for a resource type: the registry schema's ``handlers`` (create, read, update,
  delete ``permissions``), as cfn-lint ships the schemas (``data/schemas/providers/us-east-1.json`` maps a
  type to its file under ``data/schemas/resources/``).
* Whether a policy allows an action: IAM's action matching (case-insensitive, ``*`` and ``?`` wildcards in
  the action name), with an unconditional ``Deny`` on every resource winning.
* Every IAM policy document a template holds (role inline policies, managed and inline policy resources,
  bucket policies), and the templates meshpipe emits, each with the identity that deploys it.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cfnlint

from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.synth import synthesize
from meshpipe.synth.environment import EnvironmentOptions
from meshpipe.synth.iam_needs import UNREGISTERED_TYPE_ACTIONS
from meshpipe.synth.pipeline_source import parse_source
from meshpipe.synth.platform_render import platform_template_files, render_platform
from support import synth_cases as cases

SCHEMAS = Path(cfnlint.__file__).parent / "data" / "schemas"
# The handlers CloudFormation runs while it creates, updates, reads (drift, rollback) and deletes a stack.
# `list` serves resource discovery and import, which meshpipe's stacks never do.
STACK_HANDLERS = ("create", "read", "update", "delete")
ENV = "demo"
CERTIFICATE_ARN = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
CONNECTION_ARN = "arn:aws:codeconnections:us-east-1:123456789012:connection/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"


@functools.cache
def _schema_files() -> dict[str, str]:
    mapping: dict[str, str] = json.loads((SCHEMAS / "providers" / "us-east-1.json").read_text())
    return mapping


@functools.cache
def schema(resource_type: str) -> dict[str, Any]:
    """The registry schema of ``resource_type`` (KeyError for a type the registry does not know)."""
    found: dict[str, Any] = json.loads((SCHEMAS / "resources" / f"{_schema_files()[resource_type]}.json").read_text())
    return found


def has_handlers(resource_type: str) -> bool:
    return bool(schema(resource_type).get("handlers"))


def handler_permissions(resource_type: str, handlers: Iterable[str] = STACK_HANDLERS) -> set[str]:
    """What the type's handlers call; for a type the registry has no handlers for, meshpipe's own table."""
    if not has_handlers(resource_type):
        return set(UNREGISTERED_TYPE_ACTIONS[resource_type])
    spec = schema(resource_type)["handlers"]
    return {p for h in handlers for p in spec.get(h, {}).get("permissions", [])}


def never_deleted(res: dict[str, Any]) -> bool:
    """A resource CloudFormation never deletes: kept on removal, on stack deletion and on replacement."""
    return res.get("DeletionPolicy") == "Retain" and res.get("UpdateReplacePolicy") == "Retain"


def required_actions(template: dict[str, Any]) -> dict[str, set[str]]:
    """action -> the resource types whose handlers call it while CloudFormation runs ``template``.

    A resource that is retained on deletion and on replacement never has its delete handler called.
    """
    needs: dict[str, set[str]] = {}
    for res in template["Resources"].values():
        handlers = [h for h in STACK_HANDLERS if not (h == "delete" and never_deleted(res))]
        for action in handler_permissions(res["Type"], handlers):
            needs.setdefault(action, set()).add(res["Type"])
    return needs


# ---- policies ----

def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, action: str) -> bool:
    """IAM's action matching: case-insensitive, ``*`` any run of characters, ``?`` exactly one."""
    return fnmatch.fnmatchcase(action.lower(), pattern.lower().replace("[", "[[]"))


def allows(statements: Iterable[dict[str, Any]], action: str) -> bool:
    """Whether the statements allow ``action`` on some resource (resources and conditions aside), and no
    unconditional ``Deny`` on every resource takes it away."""
    allowed = denied = False
    for s in statements:
        if "NotAction" in s:
            hit = not any(_matches(p, action) for p in as_list(s["NotAction"]))
        else:
            hit = any(_matches(p, action) for p in as_list(s["Action"]))
        if not hit:
            continue
        if s["Effect"] == "Allow":
            allowed = True
        elif "*" in as_list(s.get("Resource", [])) and not s.get("Condition"):
            denied = True
    return allowed and not denied


def missing_actions(statements: list[dict[str, Any]], actions: Iterable[str]) -> set[str]:
    return {a for a in actions if not allows(statements, a)}


@dataclass(frozen=True)
class PolicyDoc:
    """One policy document of a template: where it sits and what it says."""

    logical_id: str
    name: str
    document: dict[str, Any]
    kind: str  # "identity" (a role's or a policy resource's) or "resource" (a bucket policy)


def policy_documents(template: dict[str, Any]) -> Iterator[PolicyDoc]:
    for logical_id, res in template["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Role":
            for p in props.get("Policies", []):
                yield PolicyDoc(logical_id, p["PolicyName"], p["PolicyDocument"], "identity")
        elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            yield PolicyDoc(logical_id, str(props.get("PolicyName", logical_id)), props["PolicyDocument"], "identity")
        elif res["Type"] == "AWS::S3::BucketPolicy":
            yield PolicyDoc(logical_id, logical_id, props["PolicyDocument"], "resource")


def role_statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """Every statement of the role's inline policies (the only way meshpipe grants a role anything)."""
    props = template["Resources"][role]["Properties"]
    assert not props.get("ManagedPolicyArns"), f"{role} has managed policies the tests cannot read"
    return [s for p in props.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


# ---- the templates meshpipe emits ----

@dataclass(frozen=True)
class EmittedTemplate:
    """A template meshpipe emits, and who deploys it: the operator's own credentials, or a role of
    another template (``deployer`` names the pipeline template's ``DeployRole``)."""

    name: str
    mesh: str
    template: dict[str, Any]
    deployed_by: str  # "operator" or "DeployRole"
    service: str = ""  # the service a pipeline or service stack is for


@functools.cache
def platform(mesh: str) -> dict[str, dict[str, Any]]:
    """The flavour's platform templates keyed by kind: ``env``, ``bucket``, ``pipeline``."""
    rendered = render_platform(ENV, mesh=mesh)
    return dict(zip(("env", "bucket", "pipeline"), (rendered[f] for f in platform_template_files(ENV)), strict=True))


@functools.cache
def platform_variants(mesh: str) -> dict[str, dict[str, Any]]:
    """The platform templates' other shapes: an HTTPS ingress, and a pipeline reading GitHub."""
    tls = render_platform(ENV, mesh=mesh, options=EnvironmentOptions(certificate_arn=CERTIFICATE_ARN))
    github = render_platform(ENV, mesh=mesh, source=parse_source("github:acme/hello-web-cfg", CONNECTION_ARN))
    env_file, _, pipeline_file = platform_template_files(ENV)
    return {"env with certificate": tls[env_file], "pipeline from github": github[pipeline_file]}


# Rollout plans and platform strategies a Service Connect service stack can be synthesized with.
ROLLOUT_PLANS = {
    "canary rollout": "Rollout:\n  Steps: [5, 25, 50, 100]\n  Interval: 90\n  Analysis: {MinSuccessRate: 99.5, MaxP99Ms: 800}\n",
    "linear rollout": "Rollout:\n  Strategy: linear\n  StepPercent: 25\n  Interval: 60\n",
    "blue-green rollout": "Rollout:\n  Strategy: blue-green\n  Interval: 300\n",
}
SHIFTS = ("LINEAR", "BLUE_GREEN", "ROLLING")


def build_settings(service: str, **policy_updates: Any) -> Any:
    """The platform settings the service's Build stage hands ``meshpipe synth``: the demo platform with the
    pipeline stack's own task roles (as CloudFormation names them: ``<stack>-<logical id>-<suffix>``)."""
    base = cases.platform(**policy_updates)
    roles = {f"task{kind}_role_arn": f"arn:aws:iam::123456789012:role/{ENV}-{service}-pipeline-Task{name}Role-ABCDEF123456"
             for kind, name in (("_exec", "Execution"), ("", ""))}
    # The environment stack's namespace, as its exports name it (support.iam_lint's example ids).
    namespace = {"namespace_id": "ns-ABCDEF123456",
                 "namespace_arn": "arn:aws:servicediscovery:us-east-1:123456789012:namespace/ns-ABCDEF123456"}
    return base.model_copy(update={**roles, **namespace})


def _service_stack_variants() -> dict[str, dict[str, Any]]:
    """hello-web's service stack with each rollout plan, and under each platform traffic shift."""
    text = cases.SAMPLES["hello-web"].read_text()
    found = {}
    for name, plan in ROLLOUT_PLANS.items():
        version = cases.version_from_text(text + plan, service="hello-web", settings=build_settings("hello-web"))
        found[name] = synthesize(version, MeshFlavour.SERVICE_CONNECT).template
    for shift in SHIFTS:
        settings = build_settings("hello-web", traffic_shift={**cases.platform().policy.traffic_shift.model_dump(),
                                                              "strategy": shift})
        found[f"{shift} shift"] = synthesize(cases.sample_version("hello-web", settings=settings),
                                             MeshFlavour.SERVICE_CONNECT).template
    return found


def emitted_templates() -> list[EmittedTemplate]:
    """Every template meshpipe emits in either flavour: the three platform templates and their variants
    (HTTPS ingress, GitHub source), each sample manifest's version stack (App Mesh) or service stack
    (Service Connect), and hello-web's service stack with each rollout plan and platform traffic shift."""
    found = []
    for mesh in MeshFlavour:
        for kind, tpl in platform(mesh).items():
            found.append(EmittedTemplate(f"{mesh}/{kind}", mesh, tpl, "operator"))
        for kind, tpl in platform_variants(mesh).items():
            found.append(EmittedTemplate(f"{mesh}/{kind}", mesh, tpl, "operator"))
        for service in cases.SAMPLES:
            result = synthesize(cases.sample_version(service, settings=build_settings(service)), mesh)
            kind = "service stack" if mesh == MeshFlavour.SERVICE_CONNECT else "version stack"
            found.append(EmittedTemplate(f"{mesh}/{kind} {service}", mesh, result.template, "DeployRole", service))
    for variant, tpl in _service_stack_variants().items():
        found.append(EmittedTemplate(f"{MeshFlavour.SERVICE_CONNECT}/service stack hello-web, {variant}", MeshFlavour.SERVICE_CONNECT, tpl,
                                     "DeployRole", "hello-web"))
    return found


def deploy_role_statements(mesh: str) -> list[dict[str, Any]]:
    return role_statements(platform(mesh)["pipeline"], "DeployRole")


# ---- a policy as JSON in a Markdown document ----

def json_blocks(markdown: str, marker: str) -> list[Any]:
    """The ```json blocks that directly follow a line holding ``marker`` (e.g. an HTML comment)."""
    pattern = re.compile(re.escape(marker) + r"[^\n]*\n+```json\n(.*?)\n```", re.S)
    return [json.loads(m) for m in pattern.findall(markdown)]
