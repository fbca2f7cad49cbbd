"""The walkthrough through the ``meshpipe`` command itself, as a person types it, on the local engine.

Real processes (the CLI, the daemon, proxies, apps), real git, real HTTP on 127.0.0.1, a temporary home.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
pytestmark = pytest.mark.e2e


class Shell:
    """Runs meshpipe and git in one temporary home, like a user's terminal."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "MESHPIPE_HOME": str(home / "meshpipe"), "HOME": str(home),
                    "MESHPIPE_LOCAL_TASKS": "1", "COLUMNS": "200", "NO_COLOR": "1",
                    "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.invalid",
                    "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.invalid"}
        self.env.pop("MESHPIPE_ENV", None)
        self.env.pop("MESHPIPE_ENGINE", None)

    def meshpipe(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "meshpipe", *args], env=self.env, capture_output=True,
                              text=True, timeout=120, cwd=self.home)
        assert "Traceback" not in proc.stderr, proc.stderr
        if ok:
            assert proc.returncode == 0, f"meshpipe {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc

    def git(self, *args: str, cwd: Path) -> str:
        proc = subprocess.run(["git", *args], env=self.env, cwd=cwd, capture_output=True, text=True, timeout=60,
                              check=True)
        return proc.stdout + proc.stderr

    def push_manifest(self, clone_url: str, manifest: Path, message: str) -> str:
        work = self.home / "work" / Path(clone_url).name.removesuffix(".git")
        if not work.exists():
            work.parent.mkdir(parents=True, exist_ok=True)
            self.git("clone", "-q", clone_url, str(work), cwd=self.home)
        shutil.copy(manifest, work / "manifest.yaml")
        self.git("add", ".", cwd=work)
        self.git("commit", "-q", "-m", message, cwd=work)
        self.git("push", "-q", "origin", "HEAD:main", cwd=work)
        return self.git("rev-parse", "HEAD", cwd=work).strip()


def owned_pids(home: Path) -> list[int]:
    """Processes whose command line or environment names this home (the daemon marks what it starts)."""
    mine = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if str(home).encode() in blob:
            mine.append(int(entry.name))
    return mine


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    sh = Shell(tmp_path)
    try:
        yield sh
    finally:
        sh.meshpipe("env", "delete", "demo", "--yes", ok=False)
        for pid in owned_pids(tmp_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def get(url: str) -> tuple[int, str]:
    assert url.startswith("http://127.0.0.1:")
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_walkthrough_typed_at_the_command_line(shell: Shell, tmp_path: Path) -> None:
    created = json.loads(shell.meshpipe("env", "create", "demo", "--format", "json").stdout)
    ingress = created["ingress_url"]
    urls = {svc: json.loads(shell.meshpipe("pipeline", "create", svc, "--env", "demo", "--format", "json").stdout)
            ["clone_url"] for svc in ("hello-web", "hello-backend")}

    web = shell.push_manifest(urls["hello-web"], EXAMPLES / "hello-web-cfg" / "manifest.yaml", "Baseline")
    old = shell.push_manifest(urls["hello-backend"], EXAMPLES / "hello-backend-cfg" / "manifest.yaml", "Baseline")
    shell.meshpipe("pipeline", "wait", "hello-web", "--env", "demo")
    waited = json.loads(shell.meshpipe("pipeline", "wait", "hello-backend", "--env", "demo", "--format", "json").stdout)
    assert (waited["service"], waited["commit"], waited["status"]) == ("hello-backend", old, "Succeeded")
    assert [s["name"] for s in waited["stages"]] == ["Source", "Build", "Deploy"]
    versions = json.loads(shell.meshpipe("versions", "hello-backend", "--format", "json").stdout)
    assert [(v["version"], v["status"], v["weight"]) for v in versions] == [(old[:8], "CREATE_COMPLETE", 0)]

    gateway = json.loads(shell.meshpipe("route", "gateway", "r-ingress-hello-service", "--prefix", "/hello-service",
                                        "--service", "hello-web", "--format", "json").stdout)
    assert (gateway["name"], gateway["prefix"], gateway["rewrite_prefix"]) == ("r-ingress-hello-service",
                                                                               "/hello-service", True)
    shell.meshpipe("route", "set", "hello-web", f"{web}=100")  # a full commit id works too
    shell.meshpipe("route", "set", "hello-backend", f"vn-hello-backend-{old[:8]}=100")
    status, page = get(f"{ingress}/hello-service/hello/Bob")
    assert status == 200 and page.startswith("Hello Bob<br>Welcome to our world!<br><br>timestamp: ")

    new = shell.push_manifest(urls["hello-backend"], EXAMPLES / "hello-backend-cfg-v2" / "manifest.yaml",
                              "Changed greeting")
    shell.meshpipe("pipeline", "wait", "hello-backend", "--env", "demo")
    shown = json.loads(shell.meshpipe("rollout", "canary", "hello-backend", new[:8], "--format", "json").stdout)
    assert {t["version"]: t["weight"] for t in shown["targets"]} == {old[:8]: 90, new[:8]: 10}
    refused = shell.meshpipe("version", "delete", "hello-backend", old[:8], ok=False)
    assert refused.returncode == 2 and "carries" in refused.stderr

    pages = [get(f"{ingress}/hello-service/hello/Bob")[1] for _ in range(200)]
    yo = sum(p.startswith("Yo Bob<br>Have a great day!") for p in pages)
    assert 5 <= yo <= 45, f"{yo} of 200 from the 10 % canary"
    stats = json.loads(shell.meshpipe("stats", "hello-backend", "--format", "json").stdout)
    assert stats["versions"][new[:8]]["requests"] == yo

    shell.meshpipe("rollout", "promote", "hello-backend")
    assert all(get(f"{ingress}/hello-service/hello/Bob")[1].startswith("Yo Bob") for _ in range(20))
    shell.meshpipe("version", "delete", "hello-backend", old[:8])
    left = json.loads(shell.meshpipe("versions", "hello-backend", "--format", "json").stdout)
    assert [v["version"] for v in left] == [new[:8]]
    events = json.loads(shell.meshpipe("events", "hello-backend", "--format", "json").stdout)
    assert {"pipeline", "stack", "route"} <= {e["kind"] for e in events}
    assert any(e["kind"] == "stack" and f"demo-hello-backend-{old[:8]} deleted" in e["message"] for e in events)

    shell.meshpipe("env", "delete", "demo", "--yes")
    assert owned_pids(tmp_path) == []
    gone = shell.meshpipe("env", "status", "demo", ok=False)
    assert gone.returncode == 2 and "does not exist" in gone.stderr


def test_a_broken_push_fails_build_and_the_logs_say_why(shell: Shell) -> None:
    shell.meshpipe("env", "create", "demo")
    url = json.loads(shell.meshpipe("pipeline", "create", "hello-web", "--format", "json").stdout)["clone_url"]
    shell.push_manifest(url, EXAMPLES / "broken-manifest.yaml", "Broken")
    waited = shell.meshpipe("pipeline", "wait", "hello-web", ok=False)
    assert waited.returncode == 1
    failed = shell.meshpipe("pipeline", "wait", "hello-web", "--format", "json", ok=False)
    assert failed.returncode == 1 and json.loads(failed.stdout)["status"] == "Failed"
    logs = shell.meshpipe("pipeline", "logs", "hello-web").stdout
    assert "Build: Failed" in logs
    assert "manifest.yaml:4: Task.family: is not a known key" in logs
    assert json.loads(shell.meshpipe("versions", "hello-web", "--format", "json").stdout) == []
