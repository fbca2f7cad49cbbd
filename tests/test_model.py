"""Resolution of a manifest against the platform for one commit: every name and setting of a version, as
the original sample's reference templates show them."""

from __future__ import annotations

import pytest

from meshpipe.errors import ValidationError
from meshpipe.manifest import load_manifest_text
from meshpipe.model import check_commit, check_service_name, resolve, version_id
from meshpipe.platform import PlatformPolicy, PlatformSettings, local_settings
from support.seed_manifests import SEED_WEB

COMMIT = "e9d5f17a3c4b5d6e7f8091a2b3c4d5e6f7a8b9c0"


def demo(**policy: object) -> PlatformSettings:
    base = local_settings("demo")
    if not policy:
        return base
    return base.model_copy(update={"policy": PlatformPolicy.model_validate({**base.policy.model_dump(), **policy})})


def test_names_follow_the_seeds_conventions() -> None:
    v = resolve(load_manifest_text(SEED_WEB), demo(), "hello-web", COMMIT)
    assert v.version == "e9d5f17a"
    assert v.stack_name == "demo-hello-web-e9d5f17a"
    assert v.virtual_node_name == "vn-hello-web-e9d5f17a"
    assert v.ecs_service_name == v.discovery_name == "hello-web-e9d5f17a"
    assert v.dns_name == "hello-web-e9d5f17a.demo.local"
    assert v.virtual_service_name == "hello-web.demo.local"
    assert (v.virtual_router_name, v.route_name) == ("vr-hello-web", "r-hello-web")


def test_containers_match_the_reference_template() -> None:
    v = resolve(load_manifest_text(SEED_WEB), demo(), "hello-web", COMMIT)
    assert (v.family, v.cpu, v.memory) == ("hello-web", 256, 512)
    assert v.app.name == "app"
    assert v.app.command == ("node", "server", "-b http://hello-backend.demo.local/data")
    assert v.app.health_check.command == ("CMD-SHELL", "curl -f http://localhost:80/ping || exit 1")
    assert (v.app.health_check.interval, v.app.health_check.timeout, v.app.health_check.retries,
            v.app.health_check.start_period) == (5, 2, 3, 10)
    assert v.app.log_stream_prefix == "app-hello-web-e9d5f17a"
    assert v.app.stop_timeout == 10
    assert v.sidecar.name == "envoy"
    assert v.sidecar.user == "1337"
    assert v.sidecar.health_check.command == (
        "CMD-SHELL", "curl -s http://localhost:9901/server_info | grep state | grep -q LIVE")
    assert v.sidecar.log_stream_prefix == "envoy-hello-web-e9d5f17a"
    assert (v.sidecar.ingress_port, v.sidecar.egress_port, v.sidecar.ignored_uid) == (15000, 15001, 1337)
    assert v.sidecar.egress_ignored_ips == ("169.254.170.2", "169.254.169.254")
    assert v.backends == ("hello-backend.demo.local",)


def test_policy_settings_flow_into_the_version() -> None:
    platform = demo(health_check={"interval": 10, "timeout": 4, "retries": 2, "start_period": 30},
                    stop_timeout=30, app_log_prefix="application", envoy_admin_port=9902)
    v = resolve(load_manifest_text(SEED_WEB), platform, "hello-web", COMMIT)
    assert v.app.health_check.interval == 10
    assert v.app.stop_timeout == v.sidecar.stop_timeout == 30
    assert v.app.log_stream_prefix == "application-hello-web-e9d5f17a"
    assert "localhost:9902/server_info" in v.sidecar.health_check.command[1]


def test_extensions_resolve() -> None:
    text = SEED_WEB.replace('  Command:\n    - "node"\n    - "server"\n    - "-b http://hello-backend.demo.local/data"\n',
                       "  Environment:\n    B: two\n    A: one\n")
    v = resolve(load_manifest_text(text), demo(), "hello-web", COMMIT)
    assert v.app.command is None
    assert v.app.environment == (("A", "one"), ("B", "two"))


def test_the_platforms_policy_decides_at_resolution() -> None:
    loaded = load_manifest_text(SEED_WEB)  # valid under the default policy
    with pytest.raises(ValidationError) as err:
        resolve(loaded, demo(allowed_registries=["public.ecr.aws"]), "hello-web", COMMIT)
    [problem] = err.value.problems
    assert (problem.line, problem.path) == (7, "AppContainer.Image")
    assert "allowed_registries" in problem.message


def test_a_bare_manifest_resolves_too() -> None:
    manifest = load_manifest_text(SEED_WEB).manifest
    assert resolve(manifest, demo(), "hello-web", COMMIT).family == "hello-web"


def test_a_family_of_another_service_is_refused_with_its_line() -> None:
    """A manifest copied from another service's repo would register that service's task family: on AWS
    the two services would overwrite each other's task definitions."""
    copied = SEED_WEB.replace('Family: "hello-web"', 'Family: "payments"')
    assert copied != SEED_WEB
    with pytest.raises(ValidationError) as caught:
        resolve(load_manifest_text(copied, "orders-cfg/manifest.yaml"), demo(), "hello-web", COMMIT)
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.path, problem.code) == ("orders-cfg/manifest.yaml", 2,
                                                                        "Task.Family", "M019")
    assert "'payments' is not the name of the service" in problem.message and 'Family: "hello-web"' in problem.message
    with pytest.raises(ValidationError, match="payments"):
        resolve(load_manifest_text(copied).manifest, demo(), "hello-web", COMMIT)


def test_version_ids_are_the_first_8_characters() -> None:
    assert version_id(COMMIT) == "e9d5f17a"
    assert version_id(COMMIT.upper()) == "e9d5f17a"


def test_an_uppercase_commit_is_accepted_and_lowered() -> None:
    v = resolve(load_manifest_text(SEED_WEB), demo(), "hello-web", COMMIT.upper())
    assert (v.commit, v.version) == (COMMIT, "e9d5f17a")


@pytest.mark.parametrize("commit", ["e9d5f17", "not-a-commit", "g" * 40, "e9d5f17a\n", "a" * 65, ""])
def test_bad_commits(commit: str) -> None:
    with pytest.raises(ValidationError) as err:
        check_commit(commit)
    assert err.value.problems[0].path == "CONFIG_COMMIT_ID"
    assert "is not a git commit id" in err.value.problems[0].message


@pytest.mark.parametrize("service", ["Hello", "hello_web", "-web", "web-", "a" * 41, "web\n", "", "1web"])
def test_bad_service_names(service: str) -> None:
    with pytest.raises(ValidationError) as err:
        check_service_name(service)
    assert err.value.problems[0].path == "SERVICE_NAME"
    with pytest.raises(ValidationError):
        resolve(load_manifest_text(SEED_WEB), demo(), service, COMMIT)


@pytest.mark.parametrize("service", ["a", "hello-web", "a" * 40, "web2"])
def test_good_service_names(service: str) -> None:
    check_service_name(service)
