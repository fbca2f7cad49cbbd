"""Config repos with real git: bare repo, post-receive hook, reads at a commit; the hook talking to a daemon."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshpipe.engines.local.source import hook
from meshpipe.engines.local.source.gitrepo import create_bare_repo, head_commit, read_file_at
from meshpipe.errors import NotFoundError, UserError
from meshpipe.git import GitIdentity, clone, commit_all, push, resolve_ref, run_git
from support.http_server import QuietHandler, serving

IDENTITY = GitIdentity("Test Pusher", "pusher@example.invalid")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No git identity and no global config, as in CI.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MESHPIPE_HOME", str(tmp_path / "mp"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_DIR"):
        monkeypatch.delenv(var, raising=False)


def recording_hook(record: Path) -> list[str]:
    """A hook that appends its stdin and argv to ``record``."""
    code = ("import sys, json; data = sys.stdin.read(); "
            f"open({str(record)!r}, 'a').write(json.dumps({{'argv': sys.argv[1:], 'stdin': data}}) + '\\n'); "
            "print('hook saw', len(data.splitlines()), 'update(s)')")
    return [sys.executable, "-c", code, "first arg", "it's quoted"]


def make_clone(tmp_path: Path, bare: Path, name: str = "work") -> Path:
    return clone(str(bare), tmp_path / name)


def test_bare_repo_runs_its_hook_with_the_push_on_stdin(tmp_path: Path) -> None:
    bare = tmp_path / "hello-web-cfg.git"
    record = tmp_path / "hook.jsonl"
    create_bare_repo(bare, recording_hook(record))
    hook_file = bare / "hooks" / "post-receive"
    assert hook_file.stat().st_mode & stat.S_IXUSR
    assert head_commit(bare) is None

    work = make_clone(tmp_path, bare)
    (work / "manifest.yaml").write_text("Task: {}\n")
    first = commit_all(work, "Baseline service configuration", IDENTITY)
    remote_said = push(work)
    assert "hook saw 1 update(s)" in remote_said

    (work / "manifest.yaml").write_text("Task: {Family: x}\n")
    second = commit_all(work, "Changed", IDENTITY)
    push(work)

    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert [c["argv"] for c in calls] == [["first arg", "it's quoted"]] * 2
    assert calls[0]["stdin"] == f"{'0' * 40} {first} refs/heads/main\n"
    assert calls[1]["stdin"] == f"{first} {second} refs/heads/main\n"
    assert head_commit(bare) == second
    assert resolve_ref(bare, "main") == second
    assert resolve_ref(bare, first[:8]) == first
    assert resolve_ref(bare, "no-such-branch") is None
    assert resolve_ref(bare, "--help") is None
    author = run_git(["log", "-1", "--format=%an <%ae>", second], cwd=bare).stdout.decode().strip()
    assert author == "Test Pusher <pusher@example.invalid>"


def test_default_branch_is_main_even_with_another_configured(tmp_path: Path) -> None:
    (Path.home() / ".gitconfig").write_text("[init]\n\tdefaultBranch = trunk\n[core]\n\thooksPath = /nonexistent\n")
    bare = tmp_path / "r.git"
    record = tmp_path / "hook.jsonl"
    create_bare_repo(bare, recording_hook(record))
    assert run_git(["symbolic-ref", "HEAD"], cwd=bare).stdout.decode().strip() == "refs/heads/main"
    work = make_clone(tmp_path, bare)
    (work / "f").write_text("x")
    commit_all(work, "c", IDENTITY)
    push(work)
    # The repository's own hooks path wins over the user's global one.
    assert record.exists()


def test_read_file_at_a_commit(tmp_path: Path) -> None:
    bare = tmp_path / "r.git"
    create_bare_repo(bare, ["/bin/true"])
    work = make_clone(tmp_path, bare)
    (work / "manifest.yaml").write_bytes(b"v1\n")
    c1 = commit_all(work, "one", IDENTITY)
    (work / "manifest.yaml").write_bytes(b"v2\n")
    c2 = commit_all(work, "two", IDENTITY)
    push(work)
    assert read_file_at(bare, c1, "manifest.yaml") == b"v1\n"
    assert read_file_at(bare, c2, "manifest.yaml") == b"v2\n"
    with pytest.raises(NotFoundError, match=rf"other\.yaml is not in commit {c2[:8]} of r\.git"):
        read_file_at(bare, c2, "other.yaml")
    with pytest.raises(NotFoundError, match=r"is not in r\.git"):
        read_file_at(bare, "0123456789abcdef0123456789abcdef01234567", "manifest.yaml")


def test_create_bare_repo_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        create_bare_repo(tmp_path / "busy", ["/bin/true"])


# --- the hook and the daemon -----------------------------------------------------------------------------

class _FakeDaemon(QuietHandler):
    requests: list[tuple[str, str, dict[str, object]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, self.headers.get("Authorization", ""), body))
        if self.headers.get("Authorization") != "Bearer s3cret":
            self.send_response(401)
            payload = b'{"error": "bad token"}'
        else:
            self.send_response(200)
            payload = json.dumps({"run_id": f"run-{len(type(self).requests)}"}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, type[_FakeDaemon]]]:
    handler = type("Daemon", (_FakeDaemon,), {"requests": []})
    with serving(handler) as port:
        env_dir = tmp_path / "envs" / "demo"
        env_dir.mkdir(parents=True)
        (env_dir / "daemon.json").write_text(json.dumps({"pid": 1, "control_port": port, "token": "s3cret"}))
        yield env_dir, handler


def test_a_push_to_main_starts_a_pipeline_run(tmp_path: Path, daemon: tuple[Path, type[_FakeDaemon]]) -> None:
    env_dir, handler = daemon
    bare = tmp_path / "hello-web-cfg.git"
    create_bare_repo(bare, hook.hook_argv(env_dir, "hello-web"))
    work = make_clone(tmp_path, bare)
    (work / "manifest.yaml").write_text("x: 1\n")
    commit = commit_all(work, "Baseline service configuration", IDENTITY)
    said = push(work)
    assert f"meshpipe: pipeline run run-1 started for hello-web at {commit[:8]}" in said
    assert handler.requests == [("/v1/push", "Bearer s3cret", {
        "service": "hello-web", "ref": "refs/heads/main", "old": "0" * 40, "new": commit})]


def test_a_push_to_another_branch_starts_nothing(tmp_path: Path, daemon: tuple[Path, type[_FakeDaemon]]) -> None:
    env_dir, handler = daemon
    bare = tmp_path / "r.git"
    create_bare_repo(bare, hook.hook_argv(env_dir, "hello-web"))
    work = make_clone(tmp_path, bare)
    (work / "f").write_text("x")
    commit_all(work, "c", IDENTITY)
    said = push(work, branch="feature")
    assert "the hello-web pipeline runs only for main" in said
    assert handler.requests == []


def test_a_push_while_the_daemon_is_down_succeeds_with_a_warning(tmp_path: Path) -> None:
    env_dir = tmp_path / "envs" / "demo"
    env_dir.mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    (env_dir / "daemon.json").write_text(json.dumps({"pid": 1, "control_port": dead_port, "token": "t"}))
    bare = tmp_path / "r.git"
    create_bare_repo(bare, hook.hook_argv(env_dir, "hello-web"))
    work = make_clone(tmp_path, bare)
    (work / "f").write_text("x")
    commit = commit_all(work, "c", IDENTITY)
    said = push(work)
    assert "warning: push kept, but no pipeline run was started" in said
    assert f"meshpipe pipeline start hello-web --env demo' (commit {commit[:8]})" in said
    assert head_commit(bare) == commit


def test_hook_without_daemon_file_and_with_a_wrong_token(tmp_path: Path, daemon: tuple[Path, type[_FakeDaemon]]
                                                         ) -> None:
    env_dir, _ = daemon
    new = "a" * 40
    with pytest.raises(hook.DaemonUnavailable, match="is not running"):
        hook.start_run(tmp_path / "nowhere", "hello-web", new)
    (env_dir / "daemon.json").write_text(json.dumps(
        {"pid": 1, "control_port": json.loads((env_dir / "daemon.json").read_text())["control_port"], "token": "bad"}))
    with pytest.raises(hook.DaemonUnavailable, match="HTTP 401"):
        hook.start_run(env_dir, "hello-web", new)


def test_start_run_reports_a_commit_as_a_push(daemon: tuple[Path, type[_FakeDaemon]]) -> None:
    env_dir, handler = daemon
    assert hook.start_run(env_dir, "hello-backend", "b" * 40) == "run-1"
    assert handler.requests[0][2] == {"service": "hello-backend", "ref": "refs/heads/main", "old": "0" * 40,
                                      "new": "b" * 40}


def test_hook_module_ignores_branch_deletion_and_exits_0(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "meshpipe.engines.local.source.hook", "--env-dir", str(tmp_path), "--service", "s"],
        input=f"{'a' * 40} {'0' * 40} refs/heads/main\n".encode(), capture_output=True, timeout=30)
    assert proc.returncode == 0
    assert proc.stdout == b"" and proc.stderr == b""
    assert hook.pipeline_updates(hook.parse_ref_updates(["x", f"{'a' * 40} {'b' * 40} refs/heads/main"]),
                                 "main") == [hook.RefUpdate("a" * 40, "b" * 40, "refs/heads/main")]
