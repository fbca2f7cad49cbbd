"""Platform settings from the original sample's environment variables or a platform.yaml: every missing or malformed
setting at once, with its variable name or its file and line; the policy section and its defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from meshpipe.errors import ValidationError
from meshpipe.platform import (
    ENV_VARS,
    SUBNET_VARS,
    PlatformPolicy,
    build_inputs_from_env,
    load_platform_file,
    local_settings,
    settings_from_env,
    settings_from_mapping,
)
from meshpipe.validation.yamlsafe import read_yaml_text

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PLATFORM = REPO / "examples" / "platform.yaml"


def reference_env() -> dict[str, str]:
    """The variables the original sample's reference templates were built with (tests/reference/env.txt)."""
    env = {}
    for line in (REPO / "tests" / "reference" / "env.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value.split("#")[0].strip()
    return env


def env_problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ValidationError) as err:
        settings_from_env(env)
    return [str(p) for p in err.value.problems]


def file_problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "platform.yaml"
    path.write_text(text)
    with pytest.raises(ValidationError) as err:
        load_platform_file(str(path))
    return [str(p).replace(str(path), "platform.yaml") for p in err.value.problems]


EXAMPLE_TEXT = EXAMPLE_PLATFORM.read_text()


# --- environment variables --------------------------------------------------------------------------

def test_the_seeds_variables_give_the_reference_settings() -> None:
    s = settings_from_env(reference_env())
    assert s.environment_name == "demo"
    assert s.aws_account_id == "123456789012"
    assert s.aws_region == "us-east-1"
    assert s.subnets == ("subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2")
    assert s.namespace_name == "demo.local"
    assert s.log_group_name == "demo-cluster"
    assert s.envoy_image_uri == "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.18.3.0-prod"
    assert s.partition == "aws"
    assert s.policy == PlatformPolicy()


def test_every_unset_variable_is_its_own_problem() -> None:
    found = env_problems({})
    expected = sorted(set(ENV_VARS) - {"ENVOY_IMAGE_URI"} | set(SUBNET_VARS))
    assert found == [f"environment: {var}: is required but not set" for var in expected]


def test_empty_variables_count_as_unset() -> None:
    env = reference_env() | {"VPC_ID": "", "VPC_SUBNET_TWO": ""}
    assert env_problems(env) == ["environment: VPC_ID: is required but not set",
                                 "environment: VPC_SUBNET_TWO: is required but not set"]


def test_the_envoy_image_has_the_seeds_default() -> None:
    env = reference_env()
    del env["ENVOY_IMAGE_URI"]
    assert settings_from_env(env).envoy_image_uri == "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.18.3.0-prod"


@pytest.mark.parametrize(("var", "value", "says"), [
    ("ENVIRONMENT_NAME", "Demo", "is not an environment name"),
    ("ENVIRONMENT_NAME", "prod-eu", "is not an environment name"),
    ("AWS_ACCOUNT_ID", "12345", "is not an AWS account id (12 digits)"),
    ("AWS_ACCOUNT_ID", "123456789012\n", "is not an AWS account id"),
    ("AWS_REGION", "useast1", "is not an AWS region like us-east-1"),
    ("VPC_ID", "vpc-XYZ", "is not a VPC id"),
    ("CLUSTER_NAME", "demo cluster", "is not an ECS cluster name"),
    ("ENVOY_IMAGE_URI", "envoy", "neither a tag nor a digest"),
    ("NAMESPACE_ID", "ns-1", "is not a Cloud Map namespace id"),
    ("NAMESPACE_NAME", "Demo Local", "is not a DNS namespace name"),
    ("LOG_GROUP_NAME", "demo cluster", "is not a log group name"),
    ("SECURITY_GROUP_ID", "sg-", "is not a security group id"),
    ("TASK_ROLE_ARN", "role/x", "is not an IAM role ARN"),
    ("VPC_SUBNET_ONE", "subnet-zz", "is not a subnet id"),
    ("VPC_SUBNET_TWO", "10.0.0.0/24", "is not a subnet id"),
])
def test_malformed_variables_are_named(var: str, value: str, says: str) -> None:
    [problem] = env_problems(reference_env() | {var: value})
    assert problem.startswith(f"environment: {var}: ")
    assert says in problem


def test_all_malformed_and_missing_variables_at_once() -> None:
    env = reference_env() | {"AWS_REGION": "nowhere", "VPC_SUBNET_ONE": "bad"}
    del env["CLUSTER_NAME"]
    found = env_problems(env)
    assert [p.split(": ")[1] for p in found] == ["AWS_REGION", "CLUSTER_NAME", "VPC_SUBNET_ONE"]


@pytest.mark.parametrize(("changes", "var", "says"), [
    ({"NAMESPACE_ARN": "arn:aws:servicediscovery:eu-west-1:123456789012:namespace/ns-abcdefgh12345678"},
     "NAMESPACE_ARN", "is in region 'eu-west-1', but aws_region is 'us-east-1'"),
    ({"NAMESPACE_ARN": "arn:aws:servicediscovery:us-east-1:999999999999:namespace/ns-abcdefgh12345678"},
     "NAMESPACE_ARN", "is in account '999999999999'"),
    ({"NAMESPACE_ID": "ns-0000000000000000"}, "NAMESPACE_ARN", "but namespace_id is 'ns-0000000000000000'"),
    ({"TASK_EXEC_ROLE_ARN": "arn:aws:iam::999999999999:role/x"}, "TASK_EXEC_ROLE_ARN", "must be in the task's account"),
])
def test_settings_must_agree_with_each_other(changes: dict[str, str], var: str, says: str) -> None:
    [problem] = env_problems(reference_env() | changes)
    assert problem.startswith(f"environment: {var}: ")
    assert says in problem


def test_consistency_is_checked_beside_other_problems() -> None:
    env = reference_env() | {"TASK_ROLE_ARN": "arn:aws:iam::999999999999:role/x", "VPC_ID": "bad"}
    assert [p.split(": ")[1] for p in env_problems(env)] == ["TASK_ROLE_ARN", "VPC_ID"]


def test_a_policy_can_be_given_with_the_variables() -> None:
    policy = PlatformPolicy(max_cpu=1024)
    assert settings_from_env(reference_env(), policy).policy.max_cpu == 1024


def test_build_inputs() -> None:
    assert build_inputs_from_env({"SERVICE_NAME": "hello-web", "CONFIG_COMMIT_ID": "abc"}) == ("hello-web", "abc")
    assert build_inputs_from_env({"SERVICE_NAME": ""}) == (None, None)


# --- platform.yaml ----------------------------------------------------------------------------------

def test_the_example_platform_file_matches_the_seeds_variables() -> None:
    assert load_platform_file(str(EXAMPLE_PLATFORM)) == settings_from_env(reference_env())


def test_policy_defaults_are_the_seeds_conventions() -> None:
    p = PlatformPolicy()
    assert p.launch_type == "FARGATE"
    assert (p.autoscaling.min_tasks, p.autoscaling.max_tasks, p.autoscaling.cpu_target_percent) == (2, 6, 80)
    assert (p.health_check.interval, p.health_check.timeout, p.health_check.retries,
            p.health_check.start_period) == (5, 2, 3, 10)
    assert p.stop_timeout == 10
    assert (p.app_log_prefix, p.envoy_log_prefix, p.envoy_uid) == ("app", "envoy", 1337)
    assert (p.proxy_ingress_port, p.proxy_egress_port, p.envoy_admin_port) == (15000, 15001, 9901)
    assert p.reserved_ports == {15000, 15001, 9901}
    assert p.egress_ignored_ips == ("169.254.170.2", "169.254.169.254")
    assert p.dns_ttl == 20
    assert (p.deployment_maximum_percent, p.deployment_minimum_healthy_percent) == (200, 50)
    assert p.allowed_registries == ()


def test_a_policy_section_restricts_registries_and_size(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text(EXAMPLE_TEXT + "policy:\n  allowed_registries: ['*.dkr.ecr.us-east-1.amazonaws.com']\n"
                                   "  max_cpu: 1024\n  max_memory: 4096\n  autoscaling: {min_tasks: 1, max_tasks: 3}\n")
    policy = load_platform_file(str(path)).policy
    assert policy.allowed_registries == ("*.dkr.ecr.us-east-1.amazonaws.com",)
    assert (policy.max_cpu, policy.max_memory) == (1024, 4096)
    assert (policy.autoscaling.min_tasks, policy.autoscaling.max_tasks) == (1, 3)
    assert policy.autoscaling.cpu_target_percent == 80


def test_platform_file_problems_carry_lines_and_come_all_at_once(tmp_path: Path) -> None:
    text = EXAMPLE_TEXT.replace('aws_account_id: "123456789012"', "aws_account_id: 123456789012")
    text = text.replace("vpc_id: vpc-0123456789abcdef0\n", "vpcid: vpc-0123456789abcdef0\n")
    text = text.replace("  - subnet-0bbbbbbbbbbbbbbb2\n", "  - subnet-nope\n")
    text += ("policy:\n  max_cpu: 100\n  autoscaling:\n    min_tasks: 7\n    max_tasks: 3\n"
             "  health_check:\n    intervall: 10\n  allowed_registries: [Docker.IO]\n  stop_timeout: true\n"
             "  proxy_egress_port: 9901\n  egress_ignored_ips: [169.254.170.300]\n")
    found = file_problems(tmp_path, text)
    where = [tuple(p.split(": ")[0:2]) for p in found]
    assert where == [
        ("platform.yaml:5", "aws_account_id"), ("platform.yaml:7", "vpcid"), ("platform.yaml:16", "subnets[1]"),
        ("platform.yaml:21", "policy.max_cpu"), ("platform.yaml:22", "policy.autoscaling"),
        ("platform.yaml:26", "policy.health_check.intervall"), ("platform.yaml:27", "policy.allowed_registries[0]"),
        ("platform.yaml:28", "policy.stop_timeout"), ("platform.yaml:29", "policy.proxy_egress_port"),
        ("platform.yaml:30", "policy.egress_ignored_ips[0]"),
    ]
    says = dict(zip([w[1] for w in where], found, strict=True))
    assert 'quote it: "123456789012"' in says["aws_account_id"]
    assert "did you mean 'vpc_id'?" in says["vpcid"]
    assert "'subnet-nope' is not a subnet id" in says["subnets[1]"]
    assert "100 is too small: the minimum is 256" in says["policy.max_cpu"]
    assert "min_tasks (7) is above max_tasks (3)" in says["policy.autoscaling"]
    assert "did you mean 'interval'?" in says["policy.health_check.intervall"]
    assert "'Docker.IO' is not a registry host" in says["policy.allowed_registries[0]"]
    assert "must be an integer, not a boolean (true)" in says["policy.stop_timeout"]
    assert "9901 is also policy.envoy_admin_port" in says["policy.proxy_egress_port"]
    assert "'169.254.170.300' is not an IPv4 address" in says["policy.egress_ignored_ips[0]"]
    # A misspelt key does not add "is required" for the key it was meant to be.
    assert "vpc_id" not in says


def test_habits_from_the_environment_variables_get_a_did_you_mean(tmp_path: Path) -> None:
    text = EXAMPLE_TEXT.replace("cluster_name: demo\n", "CLUSTER_NAME: demo\n")
    text = text.replace("subnets:\n", "VPC_SUBNET_ONE: subnet-0aaaaaaaaaaaaaaa1\nsubnets:\n")
    found = file_problems(tmp_path, text)
    assert any("CLUSTER_NAME: is not a known key; did you mean 'cluster_name'?" in p for p in found)
    assert any("VPC_SUBNET_ONE: is not a known key; did you mean 'subnets'?" in p for p in found)


def test_policy_key_in_the_wrong_place_is_pointed_at(tmp_path: Path) -> None:
    [problem] = file_problems(tmp_path, EXAMPLE_TEXT + "max_cpu: 1024\n")
    assert "max_cpu: is not a known key; did you mean 'policy.max_cpu'?" in problem


def test_missing_settings_point_at_their_section(tmp_path: Path) -> None:
    text = EXAMPLE_TEXT.replace("cluster_name: demo\n", "") + "policy:\n  autoscaling:\n    min_tasks: x\n"
    found = file_problems(tmp_path, text)
    assert found[0].startswith("platform.yaml:4: cluster_name: is required")
    assert found[1].startswith("platform.yaml:21: policy.autoscaling.min_tasks: must be an integer")


def test_reader_problems_come_with_setting_problems(tmp_path: Path) -> None:
    text = EXAMPLE_TEXT + "cluster_name: again\npolicy:\n  max_cpu: 0x400\n  dns_ttl: -1\n"
    found = file_problems(tmp_path, text)
    assert [p.split(": ")[1] for p in found] == ["cluster_name", "policy.max_cpu", "policy.dns_ttl"]
    assert "duplicate key (first defined on line 8)" in found[0]
    assert "0x400 is read by YAML as the number 1024" in found[1]


@pytest.mark.parametrize(("text", "says"), [
    ("- a\n", "platform.yaml:1: a platform file must be a mapping of settings, not a list"),
    ("", "platform.yaml:1: the file is empty"),
    ("a: [\n", "platform.yaml:2: YAML syntax error"),
])
def test_platform_files_that_are_not_settings(tmp_path: Path, text: str, says: str) -> None:
    [problem] = file_problems(tmp_path, text)
    assert problem.startswith(says)


def test_settings_from_mapping_threads_lines() -> None:
    data = {"environment_name": "demo"}
    with pytest.raises(ValidationError) as err:
        settings_from_mapping(data, "p.yaml", {"": 1, "environment_name": 3})
    assert all(p.file == "p.yaml" and p.line == 1 for p in err.value.problems)
    with pytest.raises(ValidationError) as err:
        settings_from_mapping({"environment_name": "Demo"}, "p.yaml", {"": 1, "environment_name": 3})
    assert any(p.line == 3 and p.path == "environment_name" for p in err.value.problems)


def test_settings_from_mapping_without_lines() -> None:
    with pytest.raises(ValidationError) as err:
        settings_from_mapping([], "p.yaml")
    assert err.value.problems[0].line is None


@pytest.mark.parametrize("name", ["demo", "d", "prodeu1"])
def test_local_settings_are_valid_and_consistent(name: str) -> None:
    s = local_settings(name)
    assert settings_from_mapping(s.model_dump(), "local") == s
    assert s.namespace_name == f"{name}.local"


def test_a_malformed_subnet_is_reported_when_the_other_is_unset() -> None:
    env = reference_env() | {"VPC_SUBNET_ONE": "subnet-x"}
    del env["VPC_SUBNET_TWO"]
    assert env_problems(env) == [
        "environment: VPC_SUBNET_ONE: 'subnet-x' is not a subnet id (subnet-0123456789abcdef0)",
        "environment: VPC_SUBNET_TWO: is required but not set",
    ]


def test_traffic_shift_values_are_strict(tmp_path: Path) -> None:
    found = file_problems(tmp_path, EXAMPLE_TEXT + "policy:\n  traffic_shift:\n    canary_percent: '10'\n"
                                                   "    strategy: canary\n")
    assert [p.split(": ")[1] for p in found] == ["policy.traffic_shift.canary_percent", "policy.traffic_shift.strategy"]
    assert "write it without quotes: 10" in found[0]
    assert "'CANARY'" in found[1]


SETTING_KEYS = ["environment_name", "aws_account_id", "subnets", "policy", "max_cpu", "autoscaling", "min_tasks",
                "allowed_registries", "traffic_shift", "strategy", "VPC_ID", ""]
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(SETTING_KEYS) | st.text(max_size=8),
                                                                 inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(SETTING_KEYS), VALUES, max_size=6), st.booleans())
@settings(max_examples=200, deadline=None)
def test_any_platform_mapping_gives_settings_or_a_validation_error(data: dict[str, object], on_example: bool) -> None:
    if on_example:
        data = {**read_yaml_text(EXAMPLE_TEXT, "p.yaml").data, **data}
    try:
        doc = read_yaml_text(yaml.safe_dump(data), "p.yaml")
        settings_from_mapping(doc.data, "p.yaml", doc.lines, doc.raw)
    except ValidationError as err:
        assert err.problems
        assert all(p.file == "p.yaml" and (p.line is None or p.line >= 1) and p.message for p in err.problems)
