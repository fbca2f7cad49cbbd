"""The task runtime seam without containers: the ProxyConfiguration the synthesized task definition says
is the one the local engine installs, the rules it becomes, the runtime options, and a docker environment
refused at once, with nothing made, when no Docker Engine answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshpipe.engines.local.engine import LocalEngine
from meshpipe.engines.local.state.options import LocalOptions
from meshpipe.engines.local.tasks.deploy import resolved_to_json, version_spec
from meshpipe.engines.local.tasks.interception import ProxyConfiguration, iptables_rules
from meshpipe.errors import UserError
from meshpipe.manifest import load_manifest_text
from meshpipe.model import resolve
from meshpipe.platform import local_settings
from meshpipe.synth.appmesh import proxy_configuration
from support.seed_manifests import SEED_WEB

COMMIT = "e9d5f17a3c4b5d6e7f8091a2b3c4d5e6f7a8b9c0"


def _version():  # type: ignore[no-untyped-def]
    return resolve(load_manifest_text(SEED_WEB), local_settings("demo"), "hello-web", COMMIT)


def test_the_local_rules_come_from_the_task_definitions_proxy_configuration() -> None:
    version = _version()
    synthesized = proxy_configuration(version)
    props = {p["Name"]: p["Value"] for p in synthesized["ProxyConfigurationProperties"]}
    from_template = ProxyConfiguration.from_properties(props)
    assert from_template == ProxyConfiguration.of_resolved(resolved_to_json(version))
    assert from_template == ProxyConfiguration((80,), 15000, 15001, 1337, ("169.254.170.2", "169.254.169.254"))


def test_rules_redirect_in_and_out_except_the_proxy_user_and_ignored_addresses() -> None:
    rules = iptables_rules(ProxyConfiguration((80, 8080), 15000, 15001, 1337, ("169.254.170.2",)))
    lines = rules.splitlines()
    assert "-A MESHPIPE_INGRESS -p tcp -m multiport --dports 80,8080 -j REDIRECT --to-ports 15000" in lines
    egress = [line for line in lines if line.startswith("-A MESHPIPE_EGRESS")]
    # Order matters: the exemptions come before the catch-all redirect.
    assert egress == ["-A MESHPIPE_EGRESS -m owner --uid-owner 1337 -j RETURN",
                      "-A MESHPIPE_EGRESS -d 169.254.170.2 -j RETURN",
                      "-A MESHPIPE_EGRESS -p tcp -j REDIRECT --to-ports 15001"]
    # Only traffic that is not local to the task is intercepted: its own health check reaches the app.
    assert "-A OUTPUT -p tcp -m addrtype ! --dst-type LOCAL -j MESHPIPE_EGRESS" in lines
    assert "-A PREROUTING -p tcp -m addrtype ! --src-type LOCAL -j MESHPIPE_INGRESS" in lines
    # Docker's own chains are kept: rules are added (--noflush input), the built-in chains not redeclared.
    assert not any(line.startswith((":OUTPUT", ":PREROUTING")) for line in lines)
    assert lines[-2:] == ["-A OUTPUT -j MESHPIPE_OUT", "COMMIT"]


def test_a_version_spec_carries_what_a_container_needs() -> None:
    spec = version_spec(resolved_to_json(_version()), [], LocalOptions())
    assert spec.container is not None
    c = spec.container
    assert (c.image, c.port, c.cpu, c.memory) == ("wizriz/hello-web:66f2a19", 80, 256, 512)
    assert c.health_command[0] == "CMD-SHELL" and "curl -f" in c.health_command[1]
    assert "hello-backend.demo.local" in c.names


def test_runtime_options() -> None:
    assert LocalOptions().runtime == "process"
    assert LocalOptions.from_env({"MESHPIPE_LOCAL_RUNTIME": "docker", "MESHPIPE_LOCAL_PULL": "never"}) == \
        LocalOptions(runtime="docker", pull="never")
    with pytest.raises(UserError, match="runtime 'podman' is not one of process, docker"):
        LocalOptions(runtime="podman")
    with pytest.raises(UserError, match="pull policy 'sometimes'"):
        LocalOptions(pull="sometimes")


def test_docker_env_create_without_an_engine_is_one_line_and_makes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    engine = LocalEngine(home=tmp_path / "home", options=LocalOptions(runtime="docker"))
    with pytest.raises(UserError) as caught:
        engine.env_create("demo")
    assert caught.value.message.startswith(f"the Docker Engine at unix://{tmp_path}/no-such.sock does not answer")
    assert "\n" not in caught.value.message
    assert caught.value.hint is not None and "dockerd" in caught.value.hint
    assert not (tmp_path / "home" / "envs" / "demo").exists()


class _Result:
    def __init__(self, exit_code: int, output: bytes) -> None:
        self.exit_code, self.output = exit_code, output


class _Container:
    """An app container whose engine answers until ``engine_up`` is False."""

    def __init__(self, cid: str, exit_code: int = 0, output: bytes = b"") -> None:
        self.id, self.exit_code, self.output, self.engine_up = cid, exit_code, output, True

    def exec_run(self, argv: list[str]) -> _Result:
        if not self.engine_up:
            raise ConnectionError("Connection aborted: [Errno 111] Connection refused")
        return _Result(self.exit_code, self.output)


class _App:
    def __init__(self, container: _Container) -> None:
        self.container = container


def test_a_check_the_engine_cannot_run_keeps_the_tasks_last_answer(tmp_path: Path) -> None:
    """The engine dying must not take healthy tasks down (their containers run on without it), nor make a
    task that never passed healthy; the check itself runs inside the container, and says why it failed."""
    import asyncio

    from meshpipe.engines.local.tasks.containers import DockerRuntime
    from meshpipe.engines.local.tasks.runtime import TaskHandle

    spec = version_spec(resolved_to_json(_version()), [], LocalOptions())
    runtime = DockerRuntime(client=None, env="demo", env_dir=tmp_path)
    healthy, never_checked = _Container("a"), _Container("b")
    no_curl = _Container("c", 127, b"sh: 1: curl: not found")
    handle = TaskHandle("t", None)  # type: ignore[arg-type]

    async def probe(c: _Container):  # type: ignore[no-untyped-def]
        return await runtime.probe_app(handle, _App(c), spec, 2.0)  # type: ignore[arg-type]

    async def scenario() -> None:
        assert (await probe(healthy)).ok
        failed = await probe(no_curl)
        assert not failed.ok and "exited 127; sh: 1: curl: not found (the image lacks the check's program" in failed.detail
        healthy.engine_up = never_checked.engine_up = False
        assert (await probe(healthy)).ok  # kept
        assert runtime.engine_down_since is not None
        unknown = await probe(never_checked)
        assert not unknown.ok and "the Docker Engine does not answer" in unknown.detail
        healthy.engine_up = True
        healthy.exit_code = 1
        assert not (await probe(healthy)).ok  # answering again: the real answer counts
        assert runtime.engine_down_since is None

    try:
        asyncio.run(scenario())
    finally:
        runtime.close()
