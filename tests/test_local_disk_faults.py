"""A full disk and a read-only state.db under a running local environment: commands fail with one clear
line (no traceback), and the data plane keeps serving; once the disk has room again, commands work again.

Tests run as root, which ignores permission bits, so the faults are made with mounts: the environment's
home is a small tmpfs mounted inside a private mount namespace (``unshare -m`` as root; where that is
refused, e.g. in a container without CAP_SYS_ADMIN, a user namespace's root mounts it), where a driver
(tests/support/disk_fault_driver.py) runs the environment and takes the test's orders. Loopback
networking is shared, so the requests come from here. Everything is stopped by pid at the end, even when
a test fails, and the tmpfs goes with the namespace. Under CI the tests fail, never skip, when neither
namespace can be made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshpipe.engines.local.tasks import processes as procs
from support.ci_skips import ci_enabled
from test_local_engine_e2e import BACKEND_V2_MANIFEST, ENV, Load, get, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

DRIVER = Path(__file__).resolve().parent / "support" / "disk_fault_driver.py"


# As root (CAP_SYS_ADMIN) a mount namespace of its own; without it (a container that drops the capability,
# or an ordinary user) a user namespace whose root may still mount a tmpfs and bind mounts in it.
UNSHARES = (["unshare", "-m", "--propagation", "private"],
            ["unshare", "--user", "--map-root-user", "-m", "--propagation", "private"])


def _usable_unshare(probe_dir: Path) -> tuple[list[str] | None, list[str]]:
    """The first way to get a private mount namespace in which a tmpfs can be mounted, and why each
    that did not work was refused."""
    refusals = []
    probe_dir.mkdir(parents=True, exist_ok=True)
    for unshare in UNSHARES:
        try:
            done = subprocess.run([*unshare, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe_dir)],
                                  capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            refusals.append(f"{' '.join(unshare)}: {exc}")
            continue
        if done.returncode == 0:
            return list(unshare), refusals
        refusals.append(f"{' '.join(unshare)}: {done.stderr.strip() or f'exit status {done.returncode}'}")
    return None, refusals


class Namespace:
    """The driver in its own mount namespace; :meth:`ask` sends one order and returns its answer."""

    def __init__(self, tmp: Path, unshare: list[str]) -> None:
        self.proc = subprocess.Popen([*unshare, sys.executable, str(DRIVER), str(tmp / "disk"), str(tmp / "work")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "HOME": str(tmp)})
        self.seen: set[int] = set()

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the driver ended (exit status {self.proc.poll()}) before answering {op}"
        answer: dict[str, Any] = json.loads(line)
        assert answer["ok"], f"{op}: {answer.get('error')}"
        return answer

    def cli(self, *args: str) -> dict[str, Any]:
        return self.ask("cli", args=list(args))

    def note_pids(self) -> None:
        self.seen.update(self.ask("pids")["pids"])

    def close(self) -> list[int]:
        left: list[int] = []
        try:
            if self.proc.poll() is None:
                left = self.ask("teardown")["left_running"]
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
            # Whatever the driver could not stop, by pid from out here too.
            alive = [(pid, None) for pid in self.seen if procs.is_running(pid)]
            procs.kill_all(alive, timeout=3.0)
        return left + [pid for pid, _ in alive]


@pytest.fixture
def namespace(tmp_path: Path) -> Iterator[Namespace]:
    unshare, refusals = _usable_unshare(tmp_path / "probe")
    if unshare is None:
        why = f"no private mount namespace with a tmpfs can be made here: {'; '.join(refusals)}"
        if ci_enabled():
            pytest.fail(why + " (CI must run the disk-fault tests: run it as root, or where user namespaces are allowed)")
        pytest.skip(why)
    ns = Namespace(tmp_path, unshare)
    try:
        yield ns
    finally:
        left = ns.close()
    assert not left, f"processes left running after the test: {left}"


def assert_fails_clearly(result: dict[str, Any], *words: str) -> str:
    """A failed command: exit status 1 or 2, one ``error:`` line naming the cause (and at most a ``hint:``
    line saying what to do), no traceback, nothing that calls it a bug or an internal error."""
    said = (result["stderr"] + result["stdout"]).strip()
    assert result["rc"] in (1, 2), result
    assert "Traceback" not in said and "bug" not in said and "internal error" not in said, said
    lines = [line for line in said.splitlines() if not line.startswith(("hint:", "…"))]  # "…" is progress
    assert len(lines) == 1 and lines[0].startswith("error:"), said
    assert any(w in lines[0].lower() for w in words), said
    return lines[0]


def test_a_full_disk_fails_commands_clearly_and_the_data_plane_keeps_serving(namespace: Namespace) -> None:
    env = namespace.ask("setup")
    namespace.note_pids()
    version, port = env["version"], env["ingress_port"]
    daemon = namespace.ask("daemon")["pid"]
    assert get(port, "/backend/data")[0] == 200
    with Load(port, "/backend/data") as load:
        wait_until(lambda: load.count() > 50, 10, "load running")
        filled = namespace.ask("fill")
        assert filled["free"] < 64 * 1024, filled
        # Reading needs no room: it still answers.
        read = namespace.cli("versions", "hello-backend", "--env", ENV)
        assert read["rc"] == 0 and version in read["stdout"], read
        # Writing does: one clear line naming the full disk, exit status 1.
        routed = namespace.cli("route", "set", "hello-backend", f"{version}=100", "--env", ENV)
        print("route set on a full disk:", routed)
        assert_fails_clearly(routed, "disk is full")
        pushed = namespace.ask("push", manifest=BACKEND_V2_MANIFEST, message="on a full disk")
        print("push on a full disk:", pushed)
        assert pushed["rc"] != 0 and "Traceback" not in pushed["stderr"], pushed
        assert "no space" in pushed["stderr"].lower() or "full" in pushed["stderr"].lower(), pushed
        during = load.count()
        wait_until(lambda: load.count() > during + 50, 10, "serving while the disk is full")
        namespace.note_pids()
        assert namespace.ask("daemon")["pid"] == daemon  # the daemon took the full disk without dying
        # Room again: the same commands work.
        namespace.ask("unfill")
        routed = namespace.cli("route", "set", "hello-backend", f"{version}=100", "--env", ENV)
        assert routed["rc"] == 0, routed
        pushed = namespace.ask("push", manifest=BACKEND_V2_MANIFEST, message="with room again")
        assert pushed["rc"] == 0, pushed
        waited = namespace.cli("pipeline", "wait", "hello-backend", "--env", ENV)
        assert waited["rc"] == 0 and "Succeeded" in waited["stdout"], waited
        namespace.note_pids()
        after = load.count()
        wait_until(lambda: load.count() > after + 50, 10, "serving after the disk had room again")
    print(f"full disk: {load.count()} requests through the ingress, {len(load.failures())} failed")
    assert not load.failures(), load.failures()[:5]


@pytest.mark.parametrize("only_state_db", [True, False], ids=["state.db", "env-folder"])
def test_a_read_only_state_db_fails_commands_clearly_and_the_data_plane_keeps_serving(
        namespace: Namespace, only_state_db: bool) -> None:
    env = namespace.ask("setup")
    namespace.note_pids()
    version, port = env["version"], env["ingress_port"]
    with Load(port, "/backend/data") as load:
        wait_until(lambda: load.count() > 50, 10, "load running")
        # state.db (or the environment's whole folder) goes read-only. A bind mount cannot take back the write access of files
        # already open (a daemon running keeps writing through them, as it would through a chmod), so the
        # daemon is killed: the one that follows (the watchdog's, or a command's) meets the read-only folder,
        # as after a reboot onto a file system mounted read-only.
        namespace.ask("readonly", only_state_db=only_state_db)
        namespace.ask("kill_daemon")
        routed = namespace.cli("route", "set", "hello-backend", f"{version}=100", "--env", ENV)
        print("route set on a read-only state.db:", routed)
        assert_fails_clearly(routed, "read-only"), namespace.ask("daemon_log")["tail"]
        read = namespace.cli("versions", "hello-backend", "--env", ENV)
        assert_fails_clearly(read, "read-only")
        # What needs no daemon still reads state.db.
        status = namespace.cli("env", "status", ENV)
        assert status["rc"] == 0 and f"{version} CREATE_COMPLETE" in status["stdout"], status
        during = load.count()
        wait_until(lambda: load.count() > during + 50, 10, "serving while state.db is read-only")
        namespace.note_pids()
        # Writable again: the next command starts a daemon, which takes over what ran, and commands work.
        namespace.ask("writable")
        routed = namespace.cli("route", "set", "hello-backend", f"{version}=100", "--env", ENV)
        assert routed["rc"] == 0, routed
        read = namespace.cli("versions", "hello-backend", "--env", ENV)
        assert read["rc"] == 0 and version in read["stdout"], read
        namespace.note_pids()
        after = load.count()
        wait_until(lambda: load.count() > after + 50, 10, "serving after state.db was writable again")
    print(f"read-only state.db: {load.count()} requests through the ingress, {len(load.failures())} failed")
    assert not load.failures(), load.failures()[:5]
