"""The ``meshpipe`` command with ``--engine aws``, against moto: wiring, exit codes and messages."""

from __future__ import annotations

import pytest
from moto import mock_aws

from meshpipe.cli import main
from test_aws_support import use_fake_credentials


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    use_fake_credentials(monkeypatch)
    with mock_aws():
        yield


def test_status_of_a_missing_environment_exits_2(aws, capsys):
    assert main(["env", "status", "demo", "--engine", "aws"]) == 2
    err = capsys.readouterr().err
    assert "environment 'demo' does not exist" in err and "meshpipe env create demo --engine aws" in err


def test_commands_on_a_missing_environment_say_so(aws, capsys):
    assert main(["versions", "hello-backend", "--env", "demo", "--engine", "aws"]) == 2
    assert "demo" in capsys.readouterr().err
    assert main(["route", "set", "hello-backend", "e9d5f17a=100", "--env", "demo", "--engine", "aws"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_local_only_commands_are_refused_on_aws(aws, capsys):
    assert main(["stats", "hello-backend", "--engine", "aws"]) == 2
    assert "not available on the aws engine" in capsys.readouterr().err


def test_routing_limits_are_checked_before_any_aws_call(capsys, monkeypatch):
    # No moto here: any AWS call would fail with a connection error, not this message.
    use_fake_credentials(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert main(["route", "set", "hello-backend", "e9d5f17a=0", "--engine", "aws"]) == 2
    assert "at least one target needs a weight above 0" in capsys.readouterr().err
    assert main(["route", "set", "hello-backend", *[f"{i:08x}=10" for i in range(11)], "--engine", "aws"]) == 2
    assert "1-10 weighted targets" in capsys.readouterr().err


def test_env_create_on_app_mesh_is_refused_before_any_aws_call(capsys, monkeypatch):
    # No moto: any AWS call would fail with a connection error, not this message.
    use_fake_credentials(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert main(["env", "create", "demo", "--engine", "aws", "--mesh", "appmesh"]) == 2
    err = capsys.readouterr().err
    assert "AWS shut App Mesh down on 2026-09-30" in err
    assert "meshpipe env create demo --engine aws" in err and "--mesh appmesh" in err
    assert "Traceback" not in err


def test_app_mesh_templates_are_still_written_for_reading_and_migration(tmp_path, capsys):
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert main(["platform", "render", "--env", "demo", "--mesh", "appmesh", "-o", str(tmp_path / "platform")]) == 0
    env = json.loads((tmp_path / "platform" / "demo-env.template.json").read_text())
    assert {"AWS::AppMesh::Mesh", "AWS::AppMesh::VirtualGateway"} <= {r["Type"] for r in env["Resources"].values()}
    assert main(["synth", str(root / "examples" / "hello-web-cfg" / "manifest.yaml"), "--commit", "66f2a19c" * 5,
                 "--platform", str(root / "examples" / "platform.yaml"), "--mesh", "appmesh",
                 "-o", str(tmp_path / "synth")]) == 0
    [written] = (tmp_path / "synth").iterdir()
    version = json.loads(written.read_text())
    assert "AWS::AppMesh::VirtualNode" in {r["Type"] for r in version["Resources"].values()}
