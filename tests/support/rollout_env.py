"""A local environment for rollout tests: hello-backend behind the gateway at /backend, git pushes of its
manifest, and a steady load whose answers (status, version that answered) are all kept."""

from __future__ import annotations

import http.client
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from meshpipe import git
from meshpipe.engines.base import Event
from meshpipe.engines.local.engine import LocalEngine
from meshpipe.engines.local.state.options import LocalOptions
from meshpipe.engines.local.tasks import processes as procs
from meshpipe.mesh.routing import make_gateway_route
from support.load import KeepAliveLoad, wait_until

ENV = "demo"
SERVICE = "hello-backend"
FAST = 0.2  # health checks five times faster than the platform's timings
VERSION_HEADER = "x-meshpipe-version"

T = TypeVar("T")


def backend_manifest(*args: str, rollout: str = "") -> str:
    """hello-backend's manifest with extra command words (e.g. "--fail-rate 0.2") and a Rollout section."""
    command = "".join(f'\n    - "{a}"' for a in ("node", "server", *args))
    text = (f'Task:\n  Family: "hello-backend"\n\nAppContainer:\n  Image: "wizriz/hello-backend:66f2a19"\n'
            f'  Port: 80\n  HealthCheckPath: "/ping"\n  Command:{command}\n')
    return text + (f"\nRollout:\n{rollout}" if rollout else "")


class Load(KeepAliveLoad[tuple[float, int, str]]):
    """Client threads sending GETs until stopped; each answer kept as (when, status, answering version)."""

    def __init__(self, port: int, path: str = "/backend/data", clients: int = 3,
                 headers: dict[str, str] | None = None, pause: float = 0.005) -> None:
        super().__init__(port, clients, pause)
        self.path, self.headers = path, headers or {}

    def one(self, conn: http.client.HTTPConnection) -> tuple[float, int, str]:
        conn.request("GET", self.path, headers=self.headers)
        resp = conn.getresponse()
        resp.read()
        return time.time(), resp.status, resp.getheader(VERSION_HEADER) or ""

    def failed(self, exc: Exception) -> tuple[float, int, str]:
        return time.time(), 0, ""

    def since(self, t: float) -> list[tuple[float, int, str]]:
        return [r for r in self.snapshot() if r[0] >= t]

    def versions_since(self, t: float) -> Counter[str]:
        return Counter(v for _, status, v in self.since(t) if status == 200)


@dataclass
class RolloutEnv:
    engine: LocalEngine
    work: Path
    seen_pids: set[int] = field(default_factory=set)

    @property
    def paths(self) -> Any:
        return self.engine.paths(ENV)

    def note_pids(self) -> None:
        if self.paths.exists():
            self.seen_pids.update(self.engine.running_pids(ENV))

    @property
    def ingress_port(self) -> int:
        return int(self.engine.ingress_url(ENV).rsplit(":", 1)[1])

    def start_backend(self) -> None:
        info = self.engine.pipeline_create(ENV, SERVICE)
        git.clone(info.clone_url, self.work / f"{SERVICE}-cfg")
        self.engine.gateway_route_set(ENV, make_gateway_route("r-backend", "/backend", SERVICE, "demo.local"))

    def push(self, manifest: str, message: str = "change") -> str:
        """git push a manifest; returns the version id its run deploys."""
        workdir = self.work / f"{SERVICE}-cfg"
        (workdir / "manifest.yaml").write_text(manifest)
        commit = git.commit_all(workdir, message)
        said = git.push(workdir)
        assert f"started for {SERVICE} at {commit[:8]}" in said, said
        return commit[:8]

    def deployed(self, version: str, timeout: float = 60) -> None:
        run = self.engine.pipeline_wait(ENV, SERVICE, commit=version, timeout=timeout)
        assert run.status == "Succeeded", [(s.name, s.status, s.log) for s in run.stages]
        self.note_pids()

    def status(self) -> dict[str, Any]:
        return self.engine.rollout_status(ENV, SERVICE)

    def rollout_of(self, version: str) -> dict[str, Any] | None:
        try:
            found = self.status()
        except Exception:
            return None
        return found if found["candidate"] == version else None

    def finished(self, version: str, timeout: float) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            found = self.rollout_of(version)
            return found if found and found["status"] != "running" else None

        return wait_until(done, timeout, f"rollout of {version} finished", every=0.2)

    def weights(self) -> dict[str, int]:
        route = self.engine.route_show(ENV, SERVICE)
        return {t.version: t.weight for t in route.targets} if route else {}

    def events(self, kind: str = "rollout") -> list[Event]:
        return [e for e in self.engine.events(ENV, SERVICE, limit=500) if e.kind == kind]


@contextmanager
def rollout_env(tmp_path: Path, tasks: int = 1) -> Iterator[RolloutEnv]:
    """An environment with hello-backend's pipeline and gateway route; everything it started is killed."""
    engine = LocalEngine(home=tmp_path / "home", options=LocalOptions(tasks_per_version=tasks,
                                                                      health_time_scale=FAST, deploy_timeout=40.0))
    env = RolloutEnv(engine, tmp_path / "work")
    env.work.mkdir(exist_ok=True)
    try:
        engine.env_create(ENV)
        env.note_pids()
        env.start_backend()
        yield env
    finally:
        try:
            if env.paths.exists():
                env.note_pids()
                engine.env_delete(ENV)
        finally:
            leftovers = [(pid, None) for pid in env.seen_pids if procs.is_running(pid)]
            procs.kill_all(leftovers, timeout=3.0)
            assert not leftovers, f"processes left behind: {leftovers}"
