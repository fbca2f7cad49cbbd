"""Runs a local environment whose home is on a small tmpfs, inside a private mount namespace, and takes
orders from the test on stdin (one JSON object a line), answering each on stdout (one JSON object a line).

Started by tests/test_local_disk_faults.py as ``unshare -m --propagation private <python> <this file>
<mount dir> <work dir>``: every process the environment starts (daemon, watchdog, gateway, sidecars,
apps) inherits the namespace and so sees the tmpfs; loopback networking is shared, so the test sends its
requests to the ingress from outside. The tmpfs vanishes with the namespace's last process.

Orders: ``setup`` (mount, create the environment, serve hello-backend at /backend), ``cli`` (run the
meshpipe command line), ``push`` (commit and git push a manifest), ``fill`` / ``unfill`` (a file that takes
every free byte of the tmpfs), ``readonly`` / ``writable`` (the environment's folder, or with ``only_state_db`` state.db alone,
bind-mounted read-only),
``daemon`` (the running daemon's pid), ``kill_daemon`` (SIGKILL of it), ``daemon_log`` (its end), ``pids`` (every process the environment recorded) and
``teardown`` (every process by pid, then the mounts).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

from meshpipe import git  # noqa: E402
from meshpipe.engines.local.engine import LocalEngine  # noqa: E402
from meshpipe.engines.local.state.daemonfiles import read_daemon_file  # noqa: E402
from meshpipe.engines.local.state.options import LocalOptions  # noqa: E402
from meshpipe.engines.local.tasks import processes as procs  # noqa: E402
from test_local_engine_e2e import ENV, FAST, LocalEnv  # noqa: E402

TMPFS_SIZE = "48m"


class Driver:
    def __init__(self, mount: Path, work: Path) -> None:
        self.mount, self.work = mount, work
        self.home = mount / "home"
        self.filler = mount / "filler"
        self.env: LocalEnv | None = None
        self.seen: set[int] = set()
        self.readonly = False
        self.ro_target = ""

    def _env(self) -> LocalEnv:
        assert self.env is not None, "setup first"
        return self.env

    def note(self) -> list[int]:
        env = self._env()
        pids = env.engine.running_pids(ENV) if env.paths.exists() else []
        self.seen.update(pids)
        return pids

    def setup(self) -> dict[str, Any]:
        self.mount.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(self.mount)], check=True)
        os.environ["MESHPIPE_HOME"] = str(self.home)
        engine = LocalEngine(home=self.home, options=LocalOptions(tasks_per_version=2, health_time_scale=FAST,
                                                                  deploy_timeout=40.0))
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = LocalEnv(engine, self.work)
        engine.env_create(ENV)
        self.note()
        version = self.env.serve_backend()
        self.note()
        return {"version": version, "ingress_port": self.env.ingress_port, "env_dir": str(self.env.paths.root)}

    def cli(self, args: list[str]) -> dict[str, Any]:
        exe = Path(sys.executable).parent / "meshpipe"
        done = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=90,
                              env={**os.environ, "MESHPIPE_HOME": str(self.home)})
        return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}

    def push(self, manifest: str, message: str) -> dict[str, Any]:
        workdir = self.work / "hello-backend-cfg"
        if (workdir / "manifest.yaml").read_text() != manifest:  # a push that failed is pushed again as it was
            (workdir / "manifest.yaml").write_text(manifest)
            git.commit_all(workdir, message)
        done = subprocess.run(["git", "push", "-q", "origin", "HEAD:main"], cwd=workdir, capture_output=True,
                              text=True, timeout=90)
        return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}

    def fill(self) -> dict[str, Any]:
        # Written, not fallocated, so the tmpfs's pages are really taken; until ENOSPC says there is no more.
        chunk = b"\0" * (1 << 20)
        written = 0
        with open(self.filler, "wb", buffering=0) as f:
            while True:
                try:
                    written += f.write(chunk) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        # The last partial pages too, byte by byte would be slow: halve the chunk until nothing fits.
        size = len(chunk) // 2
        with open(self.filler, "ab", buffering=0) as f:
            while size:
                try:
                    written += f.write(b"\0" * size) or 0
                except OSError:
                    size //= 2
        st = os.statvfs(self.mount)
        return {"written": written, "free": st.f_bavail * st.f_frsize}

    def unfill(self) -> dict[str, Any]:
        self.filler.unlink(missing_ok=True)
        return {}

    def set_readonly(self, only_state_db: bool = False) -> dict[str, Any]:
        root = str(self._env().paths.state_db if only_state_db else self._env().paths.root)
        self.ro_target = root
        subprocess.run(["mount", "--bind", root, root], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", root], check=True)
        self.readonly = True
        return {}

    def set_writable(self) -> dict[str, Any]:
        if self.readonly:
            subprocess.run(["umount", self.ro_target], check=True)
            self.readonly = False
        return {}

    def daemon(self) -> dict[str, Any]:
        info = read_daemon_file(self._env().paths.root / "daemon.json")
        return {"pid": int(info["pid"]) if info else None}

    def kill_daemon(self) -> dict[str, Any]:
        info = read_daemon_file(self._env().paths.root / "daemon.json")
        assert info is not None, "no daemon.json"
        pid = int(info["pid"])
        os.kill(pid, signal.SIGKILL)
        return {"pid": pid}

    def daemon_log(self) -> dict[str, Any]:
        """The end of daemon.log, to show when an assertion fails."""
        log = self._env().paths.daemon_log
        return {"tail": log.read_text(errors="replace")[-6000:] if log.exists() else ""}

    def pids(self) -> dict[str, Any]:
        return {"pids": sorted(self.note())}

    def teardown(self) -> dict[str, Any]:
        left: list[int] = []
        try:
            self.set_writable()
            self.unfill()
            if self.env is not None and self.env.paths.exists():
                self.note()
                try:
                    self.env.engine.env_delete(ENV)
                except Exception as exc:  # whatever the delete said, the pids below still go
                    sys.stderr.write(f"env delete: {exc}\n")
        finally:
            alive = [(pid, None) for pid in self.seen if procs.is_running(pid)]
            left = [pid for pid, _ in alive]
            procs.kill_all(alive, timeout=3.0)
            if self.env is not None:
                owned = procs.owned_processes(self.env.paths.root)
                left += owned
                procs.kill_all([(pid, None) for pid in owned], timeout=3.0)
            subprocess.run(["umount", "-l", str(self.mount)], check=False)
        return {"left_running": left}


def main() -> None:
    driver = Driver(Path(sys.argv[1]), Path(sys.argv[2]))
    orders = {"setup": driver.setup, "fill": driver.fill, "unfill": driver.unfill, "pids": driver.pids,
              "readonly": driver.set_readonly, "writable": driver.set_writable, "kill_daemon": driver.kill_daemon,
              "daemon": driver.daemon, "daemon_log": driver.daemon_log,
              "teardown": driver.teardown}
    for line in sys.stdin:
        order = json.loads(line)
        op = order.pop("op")
        started = time.monotonic()
        try:
            if op == "cli":
                result = driver.cli(order["args"])
            elif op == "readonly":
                result = driver.set_readonly(bool(order.get("only_state_db")))
            elif op == "push":
                result = driver.push(order["manifest"], order.get("message", "change"))
            else:
                result = orders[op]()
            answer = {"ok": True, **result}
        except Exception as exc:
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        answer["seconds"] = round(time.monotonic() - started, 3)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        if op == "teardown":
            return
    driver.teardown()  # stdin closed without a teardown: the test went away; leave nothing behind


if __name__ == "__main__":
    main()
