"""The platform policy travels with the environment: from the platform file, through the environment
stack's SSM parameter and the build's MESHPIPE_POLICY, into what every pipeline build synthesizes.

The build is run for real: the service pipeline's build commands in bash, with the CodeBuild project's
variables set as the templates say they are, and meshpipe from this environment on PATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from moto import mock_aws

from meshpipe.cli import main
from meshpipe.errors import UserError, ValidationError
from meshpipe.platform import FIELD_TO_VAR, SUBNET_VARS, PlatformPolicy, load_platform_file
from meshpipe.platform_policy import (
    POLICY_ENV_VAR,
    POLICY_MAX_BYTES,
    load_policy_file,
    policy_from_text,
    policy_text,
)
from meshpipe.platform_render import platform_template_files, render_platform
from meshpipe.synth import buildspec
from meshpipe.synth import policy_parameter as pp
from meshpipe.synth.cfn import template_json
from meshpipe.synth.lint import lint_template
from test_aws_support import FakeClock, RecordingFactory, RecordingReporter, make_engine, use_fake_credentials
from test_platform_templates import actions_of, params_of, resolve, resources_of, statements

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = ROOT / "examples" / "platform.yaml"
WEB = ROOT / "examples" / "hello-web-cfg" / "manifest.yaml"
COMMIT = "e9d5f17a3c4b5d6e7f8091a2b3c4d5e6f7a8b9c0"
LINEAR = "policy:\n  traffic_shift:\n    strategy: LINEAR\n    linear_step_percent: 25\n"
ALLOW_LIST = "policy:\n  allowed_registries:\n    - public.ecr.aws\n"
SC = "service-connect"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rendered(env: str, policy: PlatformPolicy | None, mesh: str) -> tuple[dict[str, Any], dict[str, Any]]:
    env_file, _, pipeline_file = platform_template_files(env)
    templates = render_platform(env, policy, mesh=mesh)
    return templates[env_file], templates[pipeline_file]


# ---- the policy file and its text ----

def test_a_policy_file_needs_no_settings_and_a_full_platform_file_gives_its_policy(tmp_path: Path) -> None:
    policy = load_policy_file(str(write(tmp_path, "p.yaml", LINEAR)))
    assert policy.traffic_shift.strategy == "LINEAR" and policy.traffic_shift.linear_step_percent == 25
    full = write(tmp_path, "platform.yaml", PLATFORM.read_text() + LINEAR)
    assert load_policy_file(str(full)) == load_platform_file(str(full)).policy == policy
    assert load_policy_file(str(PLATFORM)) == PlatformPolicy()  # no policy: section, the defaults


def test_a_bad_policy_file_names_each_problem_with_its_line(tmp_path: Path) -> None:
    bad = write(tmp_path, "p.yaml", "policy:\n  max_cpus: 1024\n  traffic_shift:\n    strategy: SLOW\n"
                                    "  proxy_egress_port: 9901\nvpcid: vpc-1\n")
    with pytest.raises(ValidationError) as caught:
        load_policy_file(str(bad))
    shown = [str(p) for p in caught.value.problems]
    assert any(s.startswith(f"{bad}:2: policy.max_cpus: is not a known key; did you mean 'max_cpu'") for s in shown)
    assert any(s.startswith(f"{bad}:4: policy.traffic_shift.strategy:") and "LINEAR" in s for s in shown)
    assert any(s.startswith(f"{bad}:5: policy.proxy_egress_port: 9901 is also") for s in shown)
    assert any(s.startswith(f"{bad}:6: vpcid: is not a known key; did you mean 'vpc_id'") for s in shown)


def test_the_text_holds_what_differs_from_the_defaults_and_reads_back() -> None:
    assert policy_text(None) == policy_text(PlatformPolicy()) == "{}"
    policy = PlatformPolicy.model_validate({"traffic_shift": {"strategy": "LINEAR"}, "max_cpu": 1024,
                                            "allowed_registries": ["public.ecr.aws"]})
    text = policy_text(policy)
    assert json.loads(text) == {"traffic_shift": {"strategy": "LINEAR"}, "max_cpu": 1024,
                                "allowed_registries": ["public.ecr.aws"]}
    assert policy_from_text(text) == policy


def test_a_policy_too_big_for_the_parameter_is_refused() -> None:
    hosts = [f"registry-{i:04d}.example.com" for i in range(POLICY_MAX_BYTES // 20)]
    with pytest.raises(UserError) as caught:
        policy_text(PlatformPolicy.model_validate({"allowed_registries": hosts}))
    assert f"at most {POLICY_MAX_BYTES}" in caught.value.message


@pytest.mark.parametrize(("text", "expected"), [
    ("not json", "MESHPIPE_POLICY: is not JSON"),
    ("[1]", "MESHPIPE_POLICY: must be a JSON object"),
    ('{"max_cpu": "1"}', "MESHPIPE_POLICY: max_cpu: must be an integer"),
    ('{"autoscaling": {"min_task": 1}}', "MESHPIPE_POLICY: autoscaling.min_task: is not a known key"),
])
def test_a_bad_policy_variable_is_named_by_the_variable(text: str, expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        policy_from_text(text)
    assert any(str(p).startswith(expected) for p in caught.value.problems), caught.value.problems


# ---- the templates ----

@pytest.mark.parametrize("mesh", ["appmesh", SC])
def test_the_environment_keeps_the_policy_in_an_exported_ssm_parameter(mesh: str) -> None:
    policy = PlatformPolicy.model_validate({"traffic_shift": {"strategy": "LINEAR"}})
    env_tpl, _ = rendered("demo", policy, mesh)
    default_env, _ = rendered("demo", None, mesh)
    assert env_tpl != default_env  # a policy change changes the environment template
    assert env_tpl["Parameters"][pp.POLICY_PARAMETER]["Default"] == policy_text(policy)
    assert default_env["Parameters"][pp.POLICY_PARAMETER]["Default"] == "{}"
    param = env_tpl["Resources"][pp.POLICY_RESOURCE]
    assert param["Type"] == "AWS::SSM::Parameter"
    assert param["Properties"]["Value"] == {"Ref": pp.POLICY_PARAMETER}
    assert param["Properties"]["Tier"] == "Standard" and param["Properties"]["Type"] == "String"
    params = params_of(env_tpl)
    assert resolve(param["Properties"]["Name"], params) == pp.parameter_name("demo") == "/meshpipe/demo/platform-policy"
    out = env_tpl["Outputs"][pp.POLICY_EXPORT]
    assert out["Value"] == {"Ref": pp.POLICY_RESOURCE}
    assert resolve(out["Export"]["Name"], params) == f"demo:{pp.POLICY_EXPORT}"
    # The parameter holds 4 KB, and so does the template parameter that sets it.
    assert env_tpl["Parameters"][pp.POLICY_PARAMETER]["MaxLength"] == POLICY_MAX_BYTES
    assert [f for f in lint_template(template_json(env_tpl)) if f.rule.startswith(("E", "W3")) and
            f.path.split("/")[1] in (pp.POLICY_RESOURCE, pp.POLICY_PARAMETER)] == []


def cfn_lint_iam_catalogue() -> dict[str, Any]:
    import cfnlint.data.AdditionalSpecs as specs

    return json.loads((Path(specs.__file__).parent / "Policies.json").read_text())


@pytest.mark.parametrize("mesh", ["appmesh", SC])
def test_every_build_reads_the_policy_and_the_build_role_only_that_parameter(mesh: str) -> None:
    _, pipeline = rendered("demo", None, mesh)
    variables = pipeline["Resources"]["BuildProject"]["Properties"]["Environment"]["EnvironmentVariables"]
    [var] = [v for v in variables if v["Name"] == POLICY_ENV_VAR]
    assert var["Type"] == "PARAMETER_STORE"
    assert var["Value"] == {"Fn::ImportValue": {"Fn::Sub": "${EnvironmentName}:" + pp.POLICY_EXPORT}}
    [(_, grant)] = [(r, s) for r, s in statements(pipeline)
                    if any(a.startswith("ssm:") for a in actions_of(s))]
    assert _ == "BuildRole" and actions_of(grant) == ["ssm:GetParameters"]
    [arn] = resources_of(grant)
    text, names = arn["Fn::Sub"]
    assert names == {"Name": var["Value"]}  # exactly the parameter the variable names
    arn_text = text.replace("${Name}", pp.parameter_name("demo"))
    assert arn_text == "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/meshpipe/demo/platform-policy"
    # IAM's catalogue (cfn-lint's copy): GetParameters is scoped by a parameter ARN of exactly this form.
    ssm = cfn_lint_iam_catalogue()["ssm"]
    assert ssm["Actions"]["getparameters"]["Resources"] == ["parameter"]
    [form] = ssm["Resources"]["parameter"]["ARNFormats"]
    assert form == "arn:${Partition}:ssm:${Region}:${Account}:parameter/.*"
    assert arn_text.startswith("arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/")


# ---- the build, for real ----

def ssm_value(env_tpl: dict[str, Any]) -> str:
    """What the environment's SSM parameter holds once the stack is deployed with its defaults."""
    param = env_tpl["Resources"][pp.POLICY_RESOURCE]["Properties"]
    return env_tpl["Parameters"][param["Value"]["Ref"]]["Default"]


def codebuild_environment(pipeline: dict[str, Any], env_tpl: dict[str, Any], cfg: Path) -> dict[str, str]:
    """The build's environment: each project variable with the value CodeBuild would give it."""
    settings = load_platform_file(str(PLATFORM))
    by_var = {var: str(getattr(settings, field)) for field, var in FIELD_TO_VAR.items()}
    by_var.update(dict(zip(SUBNET_VARS, settings.subnets, strict=True)))
    by_var.update({"SERVICE_NAME": "hello-web", POLICY_ENV_VAR: ssm_value(env_tpl)})
    variables = pipeline["Resources"]["BuildProject"]["Properties"]["Environment"]["EnvironmentVariables"]
    environ = {v["Name"]: by_var[v["Name"]] for v in variables}
    bin_dir = Path(sys.executable).parent  # meshpipe of this environment
    environ.update({"PATH": f"{bin_dir}:{os.environ['PATH']}", "CONFIG_COMMIT_ID": COMMIT,
                    "CODEBUILD_SRC_DIR_ConfigOutput": str(cfg), "HOME": str(cfg.parent)})
    return environ


def run_build(tmp_path: Path, policy_file_text: str | None, manifest: Path = WEB) -> subprocess.CompletedProcess[str]:
    policy = load_policy_file(str(write(tmp_path, "policy.yaml", policy_file_text))) if policy_file_text else None
    env_tpl, pipeline = rendered("demo", policy, SC)
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "manifest.yaml").write_text(manifest.read_text())
    spec = yaml.safe_load(pipeline["Resources"]["BuildProject"]["Properties"]["Source"]["BuildSpec"])
    work = tmp_path / "build"
    work.mkdir()
    script = "set -e\n" + "\n".join(spec["phases"]["build"]["commands"])
    return subprocess.run(["bash", "-c", script], cwd=work, env=codebuild_environment(pipeline, env_tpl, cfg),
                          capture_output=True, text=True, timeout=120)


def built_deployment(tmp_path: Path) -> dict[str, Any]:
    template = json.loads((tmp_path / "build" / buildspec.TEMPLATE_FILE).read_text())
    [service] = [r for r in template["Resources"].values() if r["Type"] == "AWS::ECS::Service"]
    return service["Properties"]["DeploymentConfiguration"]


def test_a_linear_policy_reaches_the_service_the_build_synthesizes(tmp_path: Path) -> None:
    result = run_build(tmp_path, LINEAR)
    assert result.returncode == 0, result.stderr
    deployment = built_deployment(tmp_path)
    assert deployment["Strategy"] == "LINEAR"
    assert deployment["LinearConfiguration"]["StepPercent"] == 25


def test_without_a_policy_the_build_keeps_the_default_canary(tmp_path: Path) -> None:
    result = run_build(tmp_path, None)
    assert result.returncode == 0, result.stderr
    assert built_deployment(tmp_path)["Strategy"] == "CANARY"


def test_a_registry_allow_list_makes_the_build_refuse_an_image_from_elsewhere(tmp_path: Path) -> None:
    result = run_build(tmp_path, ALLOW_LIST)
    assert result.returncode != 0
    assert "allowed_registries" in result.stderr and "public.ecr.aws" in result.stderr
    assert not (tmp_path / "build" / buildspec.TEMPLATE_FILE).exists()


# ---- the commands ----

def test_synth_takes_the_policy_from_a_file_or_the_variable_with_settings_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_platform_file(str(PLATFORM))
    for field, var in FIELD_TO_VAR.items():
        monkeypatch.setenv(var, str(getattr(settings, field)))
    for var, subnet in zip(SUBNET_VARS, settings.subnets, strict=True):
        monkeypatch.setenv(var, subnet)
    policy_file = write(tmp_path, "policy.yaml", LINEAR)

    def synthesized(*extra: str) -> dict[str, Any]:
        out = tmp_path / "out"
        assert main(["synth", str(WEB), "--commit", COMMIT, "--mesh", SC, "-o", str(out), *extra]) == 0
        stack = capsys.readouterr().out.strip()
        template = json.loads((out / f"{stack}.template.json").read_text())
        [svc] = [r for r in template["Resources"].values() if r["Type"] == "AWS::ECS::Service"]
        return svc["Properties"]["DeploymentConfiguration"]

    assert synthesized()["Strategy"] == "CANARY"
    assert synthesized("--policy", str(policy_file))["Strategy"] == "LINEAR"
    monkeypatch.setenv(POLICY_ENV_VAR, '{"traffic_shift":{"strategy":"BLUE_GREEN"}}')
    assert synthesized()["Strategy"] == "BLUE_GREEN"
    assert synthesized("--policy", str(policy_file))["Strategy"] == "LINEAR"  # the option wins

    monkeypatch.setenv(POLICY_ENV_VAR, "{broken")
    assert main(["synth", str(WEB), "--commit", COMMIT, "-o", str(tmp_path / "bad")]) == 2
    assert "MESHPIPE_POLICY: is not JSON" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["synth", str(WEB), "--commit", COMMIT, "--platform", str(PLATFORM), "--policy",
                 str(policy_file)]) == 2
    assert "--policy goes with settings from the environment variables" in capsys.readouterr().err


def test_platform_render_writes_the_policy_into_the_environment_template(tmp_path: Path) -> None:
    policy_file = write(tmp_path, "policy.yaml", LINEAR)
    assert main(["platform", "render", "--env", "demo", "--mesh", SC, "-o", str(tmp_path / "a")]) == 0
    assert main(["platform", "render", "--env", "demo", "--mesh", SC, "--platform", str(policy_file),
                 "-o", str(tmp_path / "b")]) == 0
    env_file = platform_template_files("demo")[0]
    plain = json.loads((tmp_path / "a" / env_file).read_text())
    with_policy = json.loads((tmp_path / "b" / env_file).read_text())
    assert ssm_value(plain) == "{}"
    assert policy_from_text(ssm_value(with_policy)).traffic_shift.strategy == "LINEAR"


def test_env_create_checks_the_platform_file_before_anything_else(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # No moto: any AWS call would fail on the unreachable endpoint instead of giving these messages.
    use_fake_credentials(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MESHPIPE_HOME", str(tmp_path / "home"))
    bad = write(tmp_path, "bad.yaml", "policy:\n  max_cpu: lots\n")
    assert main(["env", "create", "demo", "--engine", "aws", "--platform", str(bad)]) == 2
    assert f"{bad}:2: policy.max_cpu:" in capsys.readouterr().err
    good = write(tmp_path, "good.yaml", LINEAR)
    assert main(["env", "create", "demo", "--engine", "local", "--platform", str(good)]) == 2
    assert "--platform applies to --engine aws" in capsys.readouterr().err
    assert not (tmp_path / "home" / "demo").exists()


# ---- on AWS (moto) ----

@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingFactory]:
    use_fake_credentials(monkeypatch)
    with mock_aws():
        yield RecordingFactory()


@pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")
@pytest.mark.parametrize("mesh", [SC])  # env create refuses App Mesh, which AWS shut down
def test_env_create_stores_the_policy_and_keeps_it_until_another_is_given(aws: RecordingFactory, mesh: str) -> None:
    linear = PlatformPolicy.model_validate({"traffic_shift": {"strategy": "LINEAR", "linear_step_percent": 25}})
    reporter = RecordingReporter()
    engine = make_engine(aws, FakeClock(), reporter, mesh=mesh)
    ssm = aws.raw("ssm")

    def stored() -> PlatformPolicy:
        value = ssm.get_parameter(Name="/meshpipe/demo/platform-policy")["Parameter"]["Value"]
        return policy_from_text(value)

    info = engine.env_create("demo", policy=linear)
    assert stored() == linear
    assert info.details["platform policy"] == "traffic_shift (SSM parameter /meshpipe/demo/platform-policy)"
    engine.env_create("demo")  # without a policy: the environment keeps its own
    assert stored() == linear
    allow = PlatformPolicy.model_validate({"allowed_registries": ["public.ecr.aws"]})
    engine.env_create("demo", policy=allow)
    assert stored() == allow
    # The stack's parameter says the same, for the next env create and for pipeline create.
    [stack] = aws.raw("cloudformation").describe_stacks(StackName="demo-env")["Stacks"]
    values = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert values[pp.POLICY_PARAMETER] == policy_text(allow)
