"""The environment commands as a new user types them, on a real local environment named ``shop``: the
name as argument, --env or $MESHPIPE_ENV; env list and services; hints that carry --env; a service without
a pipeline; deletes that say what goes, ask on a terminal, need --yes without one, and keep the config repo.

Real processes (the CLI, the daemon, proxies, apps), real git, a real pseudo-terminal, a temporary home.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_cli_local_e2e import EXAMPLES, Shell, owned_pids

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ENV = "shop"


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shell]:
    home = tmp_path_factory.mktemp("first-hour")
    sh = Shell(home)
    try:
        sh.meshpipe("env", "create", "--env", ENV)
        yield sh
    finally:
        sh.meshpipe("env", "delete", ENV, "--yes", ok=False)
        for pid in owned_pids(home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def on_a_terminal(shell: Shell, args: list[str], answer: str) -> tuple[int, str]:
    """Run meshpipe with a pseudo-terminal as its stdin, answer its question, return (exit status, output)."""
    primary, secondary = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "meshpipe", *args], env=shell.env, cwd=shell.home,
                                stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        os.close(secondary)
        os.write(primary, answer.encode())
        output, _ = proc.communicate(timeout=120)
    finally:
        os.close(primary)
    return proc.returncode, output


def test_the_name_as_argument_env_option_or_variable(shell: Shell) -> None:
    by_arg = json.loads(shell.meshpipe("env", "status", ENV, "--format", "json").stdout)
    by_option = json.loads(shell.meshpipe("env", "status", "--env", ENV, "--format", "json").stdout)
    shell.env["MESHPIPE_ENV"] = ENV
    try:
        by_variable = json.loads(shell.meshpipe("env", "status", "--format", "json").stdout)
        listed = json.loads(shell.meshpipe("env", "list", "--format", "json").stdout)
    finally:
        del shell.env["MESHPIPE_ENV"]
    assert by_arg["name"] == by_option["name"] == by_variable["name"] == ENV
    assert by_arg["ingress_url"] == by_option["ingress_url"] == by_variable["ingress_url"]
    assert [(e["name"], e["status"]) for e in listed] == [(ENV, "RUNNING")]
    assert ENV in shell.meshpipe("env", "list").stdout
    two = shell.meshpipe("env", "status", ENV, "--env", "other", ok=False)
    assert two.returncode == 2 and "two environments named" in two.stderr


def test_a_service_without_a_pipeline_is_said_so_with_hints_for_the_users_env(shell: Shell) -> None:
    started = shell.meshpipe("pipeline", "start", "payments", "--env", ENV, ok=False)
    assert started.returncode == 2, started.stderr
    assert "service 'payments' has no pipeline" in started.stderr
    assert f"meshpipe pipeline create payments --env {ENV}" in started.stderr
    versions = shell.meshpipe("versions", "payments", "--env", ENV, ok=False)  # the fast path says the same
    assert versions.returncode == 2 and f"meshpipe pipeline create payments --env {ENV}" in versions.stderr


def test_services_lists_every_service_of_the_env(shell: Shell) -> None:
    shell.meshpipe("pipeline", "create", "hello-web", "--env", ENV)
    listed = json.loads(shell.meshpipe("services", "--env", ENV, "--format", "json").stdout)
    assert [(s["name"], s["versions"]) for s in listed] == [("hello-web", [])]
    assert "hello-web" in shell.meshpipe("services", "--env", ENV).stdout


def test_events_are_compact_lines_and_follow_prints_new_ones(shell: Shell) -> None:
    import queue
    import threading

    listed = shell.meshpipe("events", "--env", ENV).stdout.splitlines()
    assert listed and all(len(line) > 14 and line[2] == ":" and line[12:14] == "  " for line in listed), listed
    proc = subprocess.Popen([sys.executable, "-m", "meshpipe", "events", "--follow", "--env", ENV], env=shell.env,
                            cwd=shell.home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True)
    reader.start()
    try:
        for _ in range(len(listed)):  # the latest events first
            lines.get(timeout=30)
        shell.meshpipe("route", "gateway", "r-follow", "--prefix", "/follow", "--service", "hello-web",
                       "--env", ENV)
        new = lines.get(timeout=15)
        assert "gateway-route" in new and "r-follow" in new, new
    finally:
        proc.kill()
        proc.wait(timeout=10)
    shell.meshpipe("route", "gateway-delete", "r-follow", "--env", ENV)


def test_pipeline_delete_says_what_goes_asks_and_keeps_the_config_repo(shell: Shell) -> None:
    created = json.loads(shell.meshpipe("pipeline", "create", "hello-backend", "--env", ENV, "--format",
                                        "json").stdout)
    first = shell.push_manifest(created["clone_url"], EXAMPLES / "hello-backend-cfg" / "manifest.yaml", "Baseline")
    shell.meshpipe("pipeline", "wait", "hello-backend", "--env", ENV)
    # The local build names what it made without App Mesh, which was shut down.
    built = shell.meshpipe("pipeline", "logs", "hello-backend", "--env", ENV).stdout
    assert "Synthesized stack" in built and "run on the local mesh" in built and "appmesh" not in built.lower()
    shell.meshpipe("version", "delete", "hello-backend", first[:8], "--env", ENV)
    # A script (no terminal) that did not say --yes: refused, nothing deleted.
    refused = shell.meshpipe("pipeline", "delete", "hello-backend", "--env", ENV, ok=False)
    assert refused.returncode == 2 and "--yes" in refused.stderr and "config repo hello-backend-cfg" in refused.stderr
    # On a terminal: what goes, then the question; "n" keeps everything.
    code, said = on_a_terminal(shell, ["pipeline", "delete", "hello-backend", "--env", ENV], "n\n")
    assert code == 1 and "1 pipeline run(s)" in said and "kept (--delete-repo deletes it)" in said, said
    assert "Delete?" in said and "nothing deleted" in said
    assert "hello-backend" in shell.meshpipe("services", "--env", ENV).stdout
    code, said = on_a_terminal(shell, ["pipeline", "delete", "hello-backend", "--env", ENV], "y\n")
    assert code == 0 and "its config repo is kept" in said, said
    # A push to the kept repo says what to do instead of git's "does not appear to be a git repository".
    work = shell.home / "work" / "hello-backend-cfg"
    (work / "note.txt").write_text("after the delete\n")
    shell.git("add", ".", cwd=work)
    shell.git("commit", "-q", "-m", "after", cwd=work)
    pushed = shell.git("push", "origin", "HEAD:main", cwd=work)
    assert f"hello-backend has no pipeline in {ENV}" in pushed and "meshpipe pipeline create hello-backend" in pushed
    # Created again, the pipeline uses the kept repo, history included; the next push runs.
    again = json.loads(shell.meshpipe("pipeline", "create", "hello-backend", "--env", ENV, "--format",
                                      "json").stdout)
    assert again["repo_kept"] is True and again["clone_url"] == created["clone_url"]
    log = shell.git("--git-dir", again["clone_url"].removeprefix("file://"), "log", "--format=%s", cwd=shell.home)
    assert log.split() == ["after", "Baseline"]
    shell.meshpipe("pipeline", "start", "hello-backend", "--env", ENV)
    run = json.loads(shell.meshpipe("pipeline", "wait", "hello-backend", "--env", ENV, "--format", "json").stdout)
    assert run["status"] == "Succeeded"
    # --yes in a script; --delete-repo takes the repo too.
    shell.meshpipe("version", "delete", "hello-backend", run["version"], "--env", ENV)
    shell.meshpipe("pipeline", "delete", "hello-backend", "--env", ENV, "--delete-repo", "--yes")
    assert not Path(again["clone_url"].removeprefix("file://")).exists()


def test_env_delete_asks_on_a_terminal_and_needs_yes_in_a_script(shell: Shell) -> None:
    refused = shell.meshpipe("env", "delete", "--env", ENV, ok=False)
    assert refused.returncode == 2 and f"meshpipe env delete {ENV} --yes" in refused.stderr
    code, said = on_a_terminal(shell, ["env", "delete", ENV], "n\n")
    assert code == 1 and f"environment {ENV} (RUNNING)" in said and "service hello-web" in said, said
    assert json.loads(shell.meshpipe("env", "status", ENV, "--format", "json").stdout)["status"] == "RUNNING"
    nameless = shell.meshpipe("env", "delete", "--yes", ok=False)
    assert nameless.returncode == 2 and "no environment named" in nameless.stderr
    deleted = shell.meshpipe("env", "delete", "--env", ENV, "--yes", "--format", "json")
    assert json.loads(deleted.stdout) == {"environment": ENV, "deleted": True}
    deadline = time.monotonic() + 10
    while owned_pids(shell.home) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert owned_pids(shell.home) == []
