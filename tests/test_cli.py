"""The CLI contract (exit statuses in meshpipe.cli, commands in README.md): exit codes, output file names,
printed stack names, nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshpipe.cli import main

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "examples" / "hello-web-cfg" / "manifest.yaml"
BACKEND = ROOT / "examples" / "hello-backend-cfg" / "manifest.yaml"
PLATFORM = ROOT / "examples" / "platform.yaml"
COMMIT = "e9d5f17a3c4b5d6e7f8091a2b3c4d5e6f7a8b9c0"
REFERENCE_ENV = ROOT / "tests" / "reference" / "env.txt"


def seed_environment() -> dict[str, str]:
    """The environment variables the original sample's build ran with (tests/reference/env.txt)."""
    env = {}
    for line in REFERENCE_ENV.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key] = value.split("#", 1)[0].strip()
    return env


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text("Task:\n  Famly: web\nAppContainer:\n  Image: nginx\n  Port: 15001\n  HealthCheckPath: /ok\n")
    return path


def test_validate_accepts_the_seed_manifests(capsys):
    assert main(["validate", str(WEB), str(BACKEND)]) == 0
    assert "valid" in capsys.readouterr().out


def test_validate_reports_every_problem_with_file_and_line(broken, capsys):
    assert main(["validate", str(broken)]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith(str(broken))]
    assert any(ln.startswith(f"{broken}:2: Task.Famly:") and "did you mean 'Family'" in ln for ln in lines)
    assert any(ln.startswith(f"{broken}:4: AppContainer.Image:") for ln in lines)
    assert len(lines) >= 3


def test_validate_json_format_is_machine_readable(broken, capsys):
    assert main(["validate", str(WEB), str(broken), "--format", "json"]) == 2
    reports = json.loads(capsys.readouterr().out)
    assert [r["valid"] for r in reports] == [True, False]
    assert all({"file", "line", "path", "message"} <= set(p) for p in reports[1]["problems"])


def test_schema_is_json_schema_of_the_manifest(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["properties"]) == {"Task", "AppContainer", "VirtualNode", "Rollout"}
    assert "Task" in schema["required"] and "AppContainer" in schema["required"]


def test_synth_writes_the_stack_template_and_prints_its_name(tmp_path, capsys):
    code = main(["synth", str(WEB), "--commit", COMMIT, "--service", "hello-web", "--platform", str(PLATFORM),
                 "-o", str(tmp_path), "--mesh", "appmesh"])
    assert code == 0
    assert capsys.readouterr().out.strip() == "demo-hello-web-e9d5f17a"
    written = tmp_path / "demo-hello-web-e9d5f17a.template.json"
    template = json.loads(written.read_text())
    assert "AWS::AppMesh::VirtualNode" in {r["Type"] for r in template["Resources"].values()}
    assert list(tmp_path.iterdir()) == [written]


def test_synth_reads_the_seeds_environment_variables(tmp_path):
    env = {**seed_environment(), "SERVICE_NAME": "hello-backend", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "meshpipe", "synth", str(BACKEND), "-o", str(tmp_path), "--mesh", "appmesh"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "demo-hello-backend-e9d5f17a"
    assert (tmp_path / "demo-hello-backend-e9d5f17a.template.json").is_file()


def test_synth_writes_nothing_on_bad_input(broken, tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert main(["synth", str(broken), "--commit", COMMIT, "--platform", str(PLATFORM), "-o", str(out_dir)]) == 2
    assert not out_dir.exists() or not any(out_dir.iterdir())
    assert "Task.Famly" in capsys.readouterr().err


@pytest.mark.parametrize("args, fragment", [
    (["--commit", "not-a-sha"], "--commit: 'not-a-sha' is not a git commit id"),
    (["--commit", COMMIT, "--mesh", "linkerd"], "linkerd"),
    (["--commit", COMMIT, "--service", "Bad_Name"], "--service: 'Bad_Name' is not a service name"),
])
def test_synth_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys, args, fragment):
    out_dir = tmp_path / "out"
    assert main(["synth", str(WEB), "--platform", str(PLATFORM), "-o", str(out_dir), *args]) == 2
    assert fragment in capsys.readouterr().err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_synth_without_platform_reports_every_missing_variable(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "meshpipe", "synth", str(WEB), "--commit", COMMIT, "-o",
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    for var in ("ENVIRONMENT_NAME", "VPC_ID", "TASK_ROLE_ARN", "VPC_SUBNET_ONE"):
        assert var in proc.stderr
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "meshpipe", "synth"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_route_set_rejects_app_mesh_limits_before_any_engine(capsys):
    targets = [f"{i:08x}=10" for i in range(11)]
    assert main(["route", "set", "hello-backend", *targets, "--env", "demo"]) == 2
    assert "1-10 weighted targets" in capsys.readouterr().err
    assert main(["route", "set", "hello-backend", "e9d5f17a=0"]) == 2
    assert main(["route", "set", "hello-backend", "e9d5f17a=101"]) == 2


# Commands that print nothing a script would parse: a file, or a narrative for people.
NO_DATA_COMMANDS = {
    "schema",  # prints JSON already
    "synth",  # prints the stack name, and writes the template file
    "demo",
    "platform render", "platform bundle",  # print the paths they wrote
    "rollout run",  # a live narrative driven by this process; its outcome is the exit status
}
# Commands that act on no one environment: the engine's list of them, and synth (--engine: --diff STACK).
NO_ENV_COMMANDS = {"env list", "synth"}


def _leaf_commands() -> dict[str, object]:
    import typer.main

    from meshpipe.cli.app import app

    found: dict[str, object] = {}

    def walk(cmd: object, path: list[str]) -> None:
        children = getattr(cmd, "commands", None)
        if children is None:
            found[" ".join(path)] = cmd
            return
        for name, child in children.items():
            walk(child, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def _option(cmd: object, name: str) -> object | None:
    return next((p for p in cmd.params if name in getattr(p, "opts", [])), None)  # type: ignore[attr-defined]


def test_every_command_that_prints_data_takes_format_json():
    """Walks the whole command tree: every command that prints data takes --format json (metrics, rollout
    watch and graph included), and every command that acts on an environment takes --env."""
    commands = _leaf_commands()
    assert set(commands) >= NO_DATA_COMMANDS | NO_ENV_COMMANDS, "a command named here no longer exists"
    assert {"metrics", "rollout watch", "graph", "services", "env list", "env status"} <= set(commands)
    lacking_json = []
    for name, cmd in commands.items():
        fmt = _option(cmd, "--format")
        values = [] if fmt is None else [str(getattr(v, "value", v)) for v in fmt.type_descriptor.annotation]  # type: ignore[attr-defined]
        if name not in NO_DATA_COMMANDS and "json" not in values:
            lacking_json.append(name)
    assert lacking_json == []
    lacking_env = [name for name, cmd in commands.items()
                   if _option(cmd, "--engine") is not None and name not in NO_ENV_COMMANDS
                   and _option(cmd, "--env") is None]
    assert lacking_env == []


def test_the_exit_statuses_are_documented_in_the_help_and_the_readme():
    from pathlib import Path

    from meshpipe.cli.app import EXIT_STATUS

    shown = subprocess.run([sys.executable, "-m", "meshpipe", "--help"], capture_output=True, text=True,
                           check=True, env={**os.environ, "COLUMNS": "400"}).stdout
    assert " ".join(EXIT_STATUS.split()) in " ".join(shown.split())
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    for code, meaning in (("0", "success"), ("1", "the operation failed"), ("2", "bad input"),
                          ("70", "a bug in meshpipe"), ("130", "interrupted")):
        assert f"{code} {meaning}" in EXIT_STATUS and f"`{code}` {meaning}" in readme, code


@pytest.mark.parametrize("hint", [
    "list versions with: meshpipe versions orders",
    "delete them first (meshpipe route delete orders --header NAME), or pass --force",
    "promote or abort it first: meshpipe rollout promote|abort orders",
])
def test_a_hint_carries_the_env_the_user_gave(hint):
    from meshpipe.cli.readouts import with_env

    carried = with_env(hint, "shop")
    assert carried.count("--env shop") == 1 and carried.replace(" --env shop", "") == hint
    assert with_env(hint, None) == hint
    # Commands that name the environment themselves, or take none, are left alone.
    for untouched in ("create it with: meshpipe env create shop", "check it: meshpipe validate manifest.yaml",
                      "see meshpipe pipeline logs orders --env shop"):
        assert with_env(untouched, "shop") == untouched


def _failing_app():
    import typer

    app = typer.Typer()

    @app.command()
    def broken() -> None:
        raise RuntimeError("the index went negative")

    @app.command()
    def fine() -> None:
        print("fine")

    return app


def test_a_bug_is_one_line_with_the_saved_traceback_and_exit_70(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("MESHPIPE_DEBUG", raising=False)
    import tempfile

    tempfile.tempdir = None  # re-read TMPDIR
    try:
        assert main(["broken"], app=_failing_app()) == 70
    finally:
        tempfile.tempdir = None
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "meshpipe hit a bug (RuntimeError: the index went negative)" in err and "--debug" in err
    saved = list(tmp_path.glob("meshpipe-bug-*.txt"))
    assert len(saved) == 1 and str(saved[0]) in err.replace("\n", "")
    text = saved[0].read_text()
    assert "Traceback" in text and "RuntimeError: the index went negative" in text


@pytest.mark.parametrize("args", [["--debug", "broken"], ["broken", "--debug"]])
def test_debug_shows_the_traceback(args, monkeypatch):
    monkeypatch.delenv("MESHPIPE_DEBUG", raising=False)
    with pytest.raises(RuntimeError, match="the index went negative"):
        main(args, app=_failing_app())


def test_debug_flag_is_removed_before_the_command_parses_it(capsys):
    assert main(["fine", "--debug"], app=_failing_app()) == 0
    assert capsys.readouterr().out == "fine\n"


def test_the_debug_flag_is_documented_on_the_root_command():
    result = subprocess.run([sys.executable, "-m", "meshpipe", "--help"], capture_output=True, text=True, check=True)
    assert "--debug" in result.stdout


def test_synth_and_platform_render_default_to_service_connect(tmp_path, capsys):
    """As the docs say: Service Connect is the default flavour; App Mesh is asked for by name."""
    assert main(["synth", str(WEB), "--commit", COMMIT, "--service", "hello-web", "--platform", str(PLATFORM),
                 "-o", str(tmp_path / "synth")]) == 0
    assert capsys.readouterr().out.strip() == "demo-hello-web"
    assert main(["platform", "render", "--env", "demo", "-o", str(tmp_path / "platform")]) == 0
    env = json.loads((tmp_path / "platform" / "demo-env.template.json").read_text())
    assert "AWS::AppMesh::Mesh" not in {r["Type"] for r in env["Resources"].values()}
