"""checkov on every template meshpipe emits: no unsuppressed failure, and every suppression says why.

checkov pins an older boto3 than meshpipe, so it runs from its own venv, ``.venv-checkov``, which ``./dev
test`` (or ``./dev checkov``) creates from tools/checkov-requirements.txt. Without it these tests fail
rather than skip: CI must run them. ``MESHPIPE_CHECKOV`` may name another checkov executable.

One checkov run covers every template (it takes a few seconds to start): the platform templates of both
flavours (environment with and without a certificate, build bucket, service pipeline), the version and
service stacks of the sample manifests and of a manifest using every extension, and a control: the plain
HTTP environment with its suppressions removed, which must fail the checks its suppressions answer.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.synth import synthesize
from meshpipe.synth.cfn import template_json
from meshpipe.synth.environment import EnvironmentOptions
from meshpipe.synth.ingress_tls import CERTIFICATE_EXAMPLE, HTTPS_CHECKS
from meshpipe.synth.network_security import PORT_80_OPEN
from meshpipe.synth.pipeline_source import parse_source
from meshpipe.synth.platform_render import platform_template_files, render_platform
from support import synth_cases as cases

CHECKOV = Path(os.environ.get("MESHPIPE_CHECKOV") or cases.REPO / ".venv-checkov" / "bin" / "checkov")
INSTALL_HINT = ("checkov is not installed at {path}: run `./dev checkov` (or `./dev test`), which installs "
                "tools/checkov-requirements.txt into .venv-checkov; or set MESHPIPE_CHECKOV to a checkov 3.3.30")
CONTROL = "control--service-connect--env-unsuppressed.template.json"
# Keeps checkov offline: no policy-metadata download, no check for a newer checkov.
OFFLINE_ENV = {"CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}

Template = dict[str, Any]
CONNECTION_EXAMPLE = "arn:aws:codeconnections:us-east-1:123456789012:connection/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"


def emitted_templates() -> dict[str, Template]:
    """Every template meshpipe emits, by a file name saying what it is."""
    out: dict[str, Template] = {}
    every = cases.version_from_text(cases.EVERY_EXTENSION_MANIFEST)
    for mesh in MeshFlavour:
        for label, cert in (("plain", None), ("tls", CERTIFICATE_EXAMPLE)):
            rendered = render_platform("demo", mesh=mesh, options=EnvironmentOptions(certificate_arn=cert))
            env_file, bucket_file, pipeline_file = platform_template_files("demo")
            out[f"{mesh}--env-{label}.template.json"] = rendered[env_file]
            if cert is None:
                out[f"{mesh}--build-bucket.template.json"] = rendered[bucket_file]
                out[f"{mesh}--service-pipeline.template.json"] = rendered[pipeline_file]
        github = render_platform("demo", mesh=mesh, source=parse_source("github:acme/hello-web-cfg", CONNECTION_EXAMPLE))
        out[f"{mesh}--service-pipeline-github.template.json"] = github[platform_template_files("demo")[2]]
        for service in cases.SAMPLES:
            out[f"{mesh}--{service}.template.json"] = synthesize(cases.sample_version(service), mesh).template
        out[f"{mesh}--every-extension.template.json"] = synthesize(every, mesh).template
    return out


def without_suppressions(tpl: Template) -> Template:
    stripped = copy.deepcopy(tpl)
    for res in stripped["Resources"].values():
        res.get("Metadata", {}).pop("checkov", None)
        if res.get("Metadata") == {}:
            del res["Metadata"]
    return stripped


def suppressions(tpl: Template) -> list[tuple[str, dict[str, Any]]]:
    """(logical id, skip entry) for every checkov skip in the template's resource Metadata."""
    return [(logical_id, skip) for logical_id, res in tpl["Resources"].items()
            for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", [])]


@functools.cache
def scanned() -> tuple[dict[str, Template], dict[str, Any]]:
    """Render every template into a fresh folder, run checkov once over it, return (templates, report)."""
    if not CHECKOV.exists():
        pytest.fail(INSTALL_HINT.format(path=CHECKOV))
    import tempfile

    templates = emitted_templates()
    templates[CONTROL] = without_suppressions(templates[f"{MeshFlavour.SERVICE_CONNECT}--env-plain.template.json"])
    with tempfile.TemporaryDirectory(prefix="meshpipe-checkov-") as folder:
        for name, tpl in templates.items():
            (Path(folder) / name).write_text(template_json(tpl), encoding="utf-8")
        proc = subprocess.run(
            [str(CHECKOV), "--directory", folder, "--framework", "cloudformation", "--output", "json",
             "--skip-download"],
            capture_output=True, text=True, env={**os.environ, **OFFLINE_ENV}, timeout=240, check=False)
    # checkov exits 1 when any check fails (the control always does); anything else is checkov failing.
    assert proc.returncode in (0, 1), f"checkov exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    if isinstance(report, list):  # one entry per framework; only CloudFormation was asked for
        [report] = [r for r in report if r.get("check_type") == "cloudformation"]
    return templates, report


def by_file(checks: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for check in checks:
        found.setdefault(Path(check["file_path"]).name, []).append(check)
    return found


def logical_id(check: dict[str, Any]) -> str:
    return check["resource"].rsplit(".", 1)[1]  # "AWS::S3::Bucket.BuildBucket" -> "BuildBucket"


def test_checkov_read_every_template_and_every_resource() -> None:
    templates, report = scanned()
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] == sum(len(t["Resources"]) for t in templates.values())
    checked = set(by_file(report["results"]["passed_checks"]))
    assert checked == set(templates), f"checkov checked nothing in {sorted(set(templates) - checked)}"


def test_no_template_has_an_unsuppressed_checkov_failure() -> None:
    _, report = scanned()
    failures = {name: found for name, found in by_file(report["results"]["failed_checks"]).items() if name != CONTROL}
    assert failures == {}, "\n".join(
        f"{name}: {c['check_id']} {c['resource']}: {c['check_name']}" for name, found in failures.items() for c in found)


def test_the_unsuppressed_control_fails_what_the_suppressions_answer() -> None:
    """Proves checkov runs its checks and that the suppressions, not luck, keep the templates clean."""
    templates, report = scanned()
    failed = {(logical_id(c), c["check_id"]) for c in by_file(report["results"]["failed_checks"]).get(CONTROL, [])}
    expected = {(lid, skip["id"]) for lid, skip in suppressions(templates[f"{MeshFlavour.SERVICE_CONNECT}--env-plain.template.json"])}
    assert {("IngressListener", check) for check in HTTPS_CHECKS} | {("IngressSecurityGroup", PORT_80_OPEN)} <= expected
    assert failed == expected


def test_every_suppression_is_used_and_carries_its_reason() -> None:
    templates, report = scanned()
    skipped = by_file(report["results"]["skipped_checks"])
    for name, tpl in templates.items():
        declared = suppressions(tpl)
        for lid, skip in declared:
            reason = skip.get("comment")
            assert isinstance(reason, str) and len(reason.strip()) > 20, f"{name}: {lid} skips {skip.get('id')} without a reason"
        used = {(logical_id(c), c["check_id"]) for c in skipped.get(name, [])}
        # A suppression of a check that passes, or of a misspelt check id, would hide a future finding.
        assert used == {(lid, skip["id"]) for lid, skip in declared}, name
        # checkov shows the reason it read from the template.
        assert all(c["check_result"].get("suppress_comment") for c in skipped.get(name, [])), name


def test_a_certificate_removes_the_plain_http_suppressions() -> None:
    templates, _ = scanned()
    for mesh in MeshFlavour:
        plain = {(lid, s["id"]) for lid, s in suppressions(templates[f"{mesh}--env-plain.template.json"])}
        tls = {(lid, s["id"]) for lid, s in suppressions(templates[f"{mesh}--env-tls.template.json"])}
        assert tls < plain, mesh
        assert not {check for _, check in tls} & set(HTTPS_CHECKS), mesh
    # A network load balancer cannot redirect, so with TLS its port 80 is closed; the application load
    # balancer keeps port 80 open, for the redirect only, and says so.
    appmesh_tls = suppressions(templates["appmesh--env-tls.template.json"])
    assert PORT_80_OPEN not in {s["id"] for _, s in appmesh_tls}
    [(lid, redirect)] = [(lid, s) for lid, s in suppressions(templates[f"{MeshFlavour.SERVICE_CONNECT}--env-tls.template.json"])
                         if s["id"] == PORT_80_OPEN]
    assert lid == "IngressSecurityGroup" and "redirect" in redirect["comment"]
