"""The platform's policy on manifests: registries, CPU and memory ceilings, the sidecar's ports; reported
with the model's own problems, each message naming the policy setting it breaks."""

from __future__ import annotations

import pytest

from meshpipe.errors import ValidationError
from meshpipe.manifest import enforce_policy, load_manifest_text
from meshpipe.platform import PlatformPolicy


def manifest(image: str = "wizriz/hello-web:66f2a19", cpu: int = 256, memory: int = 512, port: int = 80,
             extra: str = "") -> str:
    return (f"Task:\n  Family: web\n  Cpu: {cpu}\n  Memory: {memory}\n"
            f"AppContainer:\n  Image: \"{image}\"\n  Port: {port}\n  HealthCheckPath: /ping\n{extra}")


def problems(text: str, policy: PlatformPolicy | None = None) -> list[str]:
    with pytest.raises(ValidationError) as err:
        load_manifest_text(text, "manifest.yaml", policy)
    return [str(p) for p in err.value.problems]


ECR_ONLY = PlatformPolicy(allowed_registries=("*.dkr.ecr.us-east-1.amazonaws.com", "public.ecr.aws"))


@pytest.mark.parametrize("image", [
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1",
    "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.18.3.0-prod",
])
def test_allowed_registries_accept_matching_images(image: str) -> None:
    assert load_manifest_text(manifest(image), policy=ECR_ONLY).manifest.app_container.image == image


@pytest.mark.parametrize(("image", "registry"), [
    ("wizriz/hello-web:66f2a19", "docker.io"),
    ("docker.io/library/nginx:1", "docker.io"),
    ("ghcr.io/org/web:1", "ghcr.io"),
    ("dkr.ecr.us-east-1.amazonaws.com/web:1", "dkr.ecr.us-east-1.amazonaws.com"),
    ("evil-dkr.ecr.us-east-1.amazonaws.com.example.com/web:1", "evil-dkr.ecr.us-east-1.amazonaws.com.example.com"),
])
def test_other_registries_break_the_policy_by_name(image: str, registry: str) -> None:
    assert problems(manifest(image), ECR_ONLY) == [
        f"manifest.yaml:6: AppContainer.Image: registry {registry!r} breaks the platform policy allowed_registries; "
        "allowed: *.dkr.ecr.us-east-1.amazonaws.com, public.ecr.aws"]


def test_docker_hub_may_be_allowed_by_any_of_its_names() -> None:
    for name in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        policy = PlatformPolicy(allowed_registries=(name,))
        load_manifest_text(manifest("wizriz/hello-web:66f2a19"), policy=policy)
        load_manifest_text(manifest("docker.io/wizriz/hello-web:66f2a19"), policy=policy)


def test_a_registry_with_a_port_must_be_allowed_with_its_port() -> None:
    policy = PlatformPolicy(allowed_registries=("registry.example.com:5000",))
    load_manifest_text(manifest("registry.example.com:5000/web:1"), policy=policy)
    assert "allowed_registries" in problems(manifest("registry.example.com/web:1"), policy)[0]
    assert "allowed_registries" in problems(manifest("registry.example.com:5001/web:1"), policy)[0]


def test_no_allowed_registries_means_any_registry() -> None:
    load_manifest_text(manifest("quay.io/org/web:1"), policy=PlatformPolicy())


def test_cpu_and_memory_ceilings_name_their_policy() -> None:
    policy = PlatformPolicy(max_cpu=1024, max_memory=4096)
    assert problems(manifest(cpu=2048, memory=8192), policy) == [
        "manifest.yaml:3: Task.Cpu: 2048 CPU units break the platform policy max_cpu: at most 1024",
        "manifest.yaml:4: Task.Memory: 8192 MiB breaks the platform policy max_memory: at most 4096 MiB",
    ]
    load_manifest_text(manifest(cpu=1024, memory=4096), policy=policy)


def test_the_sidecar_ports_follow_the_policy() -> None:
    policy = PlatformPolicy(proxy_ingress_port=25000, proxy_egress_port=25001, envoy_admin_port=29901)
    load_manifest_text(manifest(port=15000), policy=policy)
    [problem] = problems(manifest(port=25001), policy)
    assert problem.startswith("manifest.yaml:7: AppContainer.Port: 25001 belongs to the Envoy sidecar")
    assert "(it owns 25000, 25001, 29901" in problem


def test_policy_problems_come_with_the_models_problems() -> None:
    text = manifest(image="wizriz/hello-web:1", cpu=256, memory=4096, port=15000,
                    extra="  Famly: x\n  Environment: {PORT: '1', A: 2}\n")
    found = problems(text, ECR_ONLY)
    assert [p.split(": ")[1] for p in found] == [
        "Task.Memory", "AppContainer.Image", "AppContainer.Port", "AppContainer.Famly",
        "AppContainer.Environment.A", "AppContainer.Environment.PORT",
    ]
    assert "does not fit Cpu 256" in found[0]
    assert "allowed_registries" in found[1]
    assert "belongs to the Envoy sidecar" in found[2]


def test_policy_checks_skip_values_that_are_already_wrong() -> None:
    # Port "15000" is a string: one problem about its type, not a second about the sidecar.
    [problem] = problems(manifest().replace("Port: 80", 'Port: "15000"'))
    assert "must be an integer" in problem
    # Cpu 300 is not a Fargate size: no Cpu/Memory fit complaint on top.
    [problem] = problems(manifest(cpu=300, memory=4096))
    assert "Task.Cpu" in problem


def test_policy_checks_run_when_the_section_around_them_has_other_problems() -> None:
    text = "Task:\n  Family: web\n  Cpu: 256\n  Memory: 8192\n  Memroy: 1\nAppContainer:\n  Port: 9901\n"
    found = problems(text)
    assert any("Task.Memory: 8192 MiB does not fit Cpu 256" in p for p in found)
    assert any("AppContainer.Port: 9901 belongs to the Envoy sidecar" in p for p in found)
    assert any("AppContainer.Image: is required" in p for p in found)
    assert any("Task.Memroy: is not a known key; did you mean 'Memory'?" in p for p in found)


def test_enforce_policy_on_a_loaded_manifest_keeps_lines() -> None:
    loaded = load_manifest_text(manifest("ghcr.io/org/web:1", cpu=4096, memory=8192))
    enforce_policy(loaded, PlatformPolicy())
    with pytest.raises(ValidationError) as err:
        enforce_policy(loaded, PlatformPolicy(max_cpu=2048, allowed_registries=("public.ecr.aws",)))
    assert [(p.line, p.path) for p in err.value.problems] == [(3, "Task.Cpu"), (6, "AppContainer.Image")]


def test_enforce_policy_on_a_bare_manifest_has_no_lines() -> None:
    bare = load_manifest_text(manifest(port=8080)).manifest
    with pytest.raises(ValidationError) as err:
        enforce_policy(bare, PlatformPolicy(envoy_admin_port=8080))
    [p] = err.value.problems
    assert (p.file, p.line, p.path) == ("manifest", None, "AppContainer.Port")
