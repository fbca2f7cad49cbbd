"""The local engine end to end: a real daemon, real proxies and apps, real git pushes, real HTTP, on
127.0.0.1 only. Every test kills, by pid, whatever it started, even when it fails."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shlex
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from meshpipe import git
from meshpipe.engines.local.control.daemon import read_daemon_file
from meshpipe.engines.local.engine import LocalEngine
from meshpipe.engines.local.state import daemonfiles
from meshpipe.engines.local.state.options import LocalOptions
from meshpipe.engines.local.state.store import StateStore
from meshpipe.engines.local.tasks import processes as procs
from meshpipe.errors import ConflictError, NotFoundError
from meshpipe.mesh.routing import WeightedTarget, make_gateway_route
from support.load import KeepAliveLoad, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WEB_MANIFEST = (EXAMPLES / "hello-web-cfg" / "manifest.yaml").read_text()
BACKEND_MANIFEST = (EXAMPLES / "hello-backend-cfg" / "manifest.yaml").read_text()
BACKEND_V2_MANIFEST = (EXAMPLES / "hello-backend-cfg-v2" / "manifest.yaml").read_text()
ENV = "demo"
# Health checks five times faster than the platform's timings (start period 2 s, interval 1 s).
FAST = 0.2


def backend_manifest(*args: str, health: str = "/ping", image: str = "wizriz/hello-backend:66f2a19") -> str:
    command = "".join(f'\n    - "{a}"' for a in ("node", "server", *args))
    return (f'Task:\n  Family: "hello-backend"\n\nAppContainer:\n  Image: "{image}"\n  Port: 80\n'
            f'  HealthCheckPath: "{health}"\n  Command:{command}\n')


@dataclass
class LocalEnv:
    """One environment under test, with helpers that act as a person at a terminal would."""

    engine: LocalEngine
    work: Path
    seen_pids: set[int] = field(default_factory=set)

    @property
    def paths(self):  # type: ignore[no-untyped-def]
        return self.engine.paths(ENV)

    def note_pids(self) -> list[int]:
        pids = self.engine.running_pids(ENV) if self.paths.exists() else []
        self.seen_pids.update(pids)
        return pids

    def pipeline(self, service: str) -> Path:
        info = self.engine.pipeline_create(ENV, service)
        workdir = self.work / f"{service}-cfg"
        git.clone(info.clone_url, workdir)
        return workdir

    def push(self, service: str, manifest: str, message: str = "change") -> str:
        workdir = self.work / f"{service}-cfg"
        (workdir / "manifest.yaml").write_text(manifest)
        commit = git.commit_all(workdir, message)
        said = git.push(workdir)
        assert f"started for {service} at {commit[:8]}" in said, said
        return commit

    def deploy(self, service: str, manifest: str) -> str:
        """Push and wait for the run; returns the version id."""
        commit = self.push(service, manifest)
        run = self.engine.pipeline_wait(ENV, service, commit=commit, timeout=60)
        assert run.status == "Succeeded", [(s.name, s.status, s.log) for s in run.stages]
        assert run.version == commit[:8]
        self.note_pids()
        return commit[:8]

    def route(self, service: str, **weights: int) -> None:
        self.engine.route_set(ENV, service, tuple(WeightedTarget(v.removeprefix("v"), w) for v, w in weights.items()))

    def route_backend_through_gateway(self) -> None:
        """The gateway sends /backend to hello-backend."""
        self.engine.gateway_route_set(ENV, make_gateway_route("r-backend", "/backend", "hello-backend", "demo.local"))

    def serve_backend(self) -> str:
        """hello-backend's pipeline and one version of the example manifest with all the traffic, reached
        through the gateway at /backend; returns the version id."""
        self.pipeline("hello-backend")
        version = self.deploy("hello-backend", BACKEND_MANIFEST)
        self.route("hello-backend", **{version: 100})
        self.route_backend_through_gateway()
        return version

    def processes(self, role: str) -> list[tuple[int, str | None]]:
        store = StateStore(self.paths.state_db)
        try:
            return [(p.pid, p.task_id) for p in store.processes() if p.role == role]
        finally:
            store.close()

    @property
    def ingress_port(self) -> int:
        return int(self.engine.ingress_url(ENV).rsplit(":", 1)[1])


def get(port: int, path: str, conn: http.client.HTTPConnection | None = None) -> tuple[int, str]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        if own:
            conn.close()


class Load(KeepAliveLoad[tuple[int, str]]):
    """A few client threads sending GETs through the ingress until stopped; every answer is kept."""

    def __init__(self, port: int, path: str, clients: int = 4) -> None:
        super().__init__(port, clients)
        self.path = path

    def one(self, conn: http.client.HTTPConnection) -> tuple[int, str]:
        return get(self.port, self.path, conn)

    def failed(self, exc: Exception) -> tuple[int, str]:
        return 0, f"{type(exc).__name__}: {exc}"

    def failures(self) -> list[tuple[int, str]]:
        return [r for r in self.snapshot() if r[0] != 200]



@pytest.fixture
def make_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:  # type: ignore[type-arg]
    home = tmp_path / "home"
    monkeypatch.setenv("MESHPIPE_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path))
    created: list[LocalEnv] = []

    def make(tasks: int = 1, scale: float = FAST, access_log: bool = False) -> LocalEnv:
        engine = LocalEngine(home=home, options=LocalOptions(tasks_per_version=tasks, health_time_scale=scale,
                                                             deploy_timeout=40.0, access_log=access_log))
        env = LocalEnv(engine, tmp_path / "work")
        env.work.mkdir(exist_ok=True)
        created.append(env)
        engine.env_create(ENV)
        env.note_pids()
        return env

    yield make
    for env in created:
        try:
            if env.paths.exists():
                env.note_pids()
                env.engine.env_delete(ENV)
        finally:
            # Whatever this test started goes, by pid, even when the test or the delete failed.
            leftovers = [(pid, None) for pid in env.seen_pids if procs.is_running(pid)]
            procs.kill_all(leftovers, timeout=3.0)
            assert not leftovers, f"processes left behind after env delete: {leftovers}"


def test_walkthrough_canary_promote_and_clean_delete(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(tasks=2)
    # Step 2-3: pipelines, then push both of the original sample's manifests.
    env.pipeline("hello-web")
    env.pipeline("hello-backend")
    web = env.deploy("hello-web", WEB_MANIFEST)
    old = env.deploy("hello-backend", BACKEND_MANIFEST)
    for service, version in (("hello-web", web), ("hello-backend", old)):
        [info] = env.engine.versions(ENV, service)
        assert (info.version, info.status, info.healthy_tasks, info.desired_tasks, info.weight) == (
            version, "CREATE_COMPLETE", 2, 2, 0)
        assert info.stack_name == f"demo-{service}-{version}"
    # Step 4: the ingress route and 100 % routes.
    env.engine.gateway_route_set(ENV, make_gateway_route("r-ingress-hello-service", "/hello-service", "hello-web",
                                                         "demo.local"))
    env.route("hello-web", **{web: 100})
    env.route("hello-backend", **{old: 100})
    # Step 5.
    status, body = get(env.ingress_port, "/hello-service/hello/Bob")
    assert status == 200 and body.startswith("Hello Bob<br>Welcome to our world!<br><br>timestamp: "), body
    # Step 6-7: a new version beside the old one, then a 90/10 canary.
    new = env.deploy("hello-backend", BACKEND_V2_MANIFEST)
    assert new != old
    assert {v.version for v in env.engine.versions(ENV, "hello-backend")} == {old, new}
    env.route("hello-backend", **{old: 90, new: 10})
    greetings: Counter[str] = Counter()
    conn = http.client.HTTPConnection("127.0.0.1", env.ingress_port, timeout=10)
    for _ in range(400):
        status, body = get(env.ingress_port, "/hello-service/hello/Bob", conn)
        assert status == 200, body
        greetings[body.split("<br>")[0]] += 1
    conn.close()
    assert set(greetings) == {"Hello Bob", "Yo Bob"}
    # 10 % of 400 is 40; the bounds are about four standard deviations.
    assert 16 <= greetings["Yo Bob"] <= 64, greetings
    stats = env.engine.stats(ENV, "hello-backend").versions
    assert stats[new].requests > 0 and stats[old].requests > stats[new].requests
    # Step 8: promote; the route is in effect when route_set returns.
    env.route("hello-backend", **{new: 100})
    for _ in range(20):
        status, body = get(env.ingress_port, "/hello-service/hello/Bob")
        assert status == 200 and body.startswith("Yo Bob<br>Have a great day!"), body
    with pytest.raises(ConflictError):
        env.engine.version_delete(ENV, "hello-backend", new)
    # Step 9: delete the old version; its processes go, the new one keeps serving.
    old_pids = [pid for pid, task in env.processes("app") + env.processes("sidecar") if task and old in task]
    assert len(old_pids) == 4
    env.engine.version_delete(ENV, "hello-backend", old)
    assert [v.version for v in env.engine.versions(ENV, "hello-backend")] == [new]
    assert not any(procs.is_running(pid) for pid in old_pids)
    assert get(env.ingress_port, "/hello-service/hello/Bob")[0] == 200
    with pytest.raises(ConflictError):
        env.engine.pipeline_delete(ENV, "hello-backend")
    # Clean up: env delete stops every process, by pid, and removes the folder.
    pids = env.note_pids()
    # daemon, its watchdog, gateway, (web + backend) x 2 tasks x (app + the app's log stamper + sidecar)
    assert len(pids) == 1 + 1 + 1 + 2 * 2 * 3
    env.engine.env_delete(ENV)
    assert not [pid for pid in pids if procs.is_running(pid)]
    assert not env.paths.root.exists()
    with pytest.raises(NotFoundError):
        env.engine.env_status(ENV)


def test_a_post_goes_through_the_ingress_and_both_sidecars(make_env) -> None:  # type: ignore[no-untyped-def]
    """Routes match every method unless they name one (App Mesh's default): a POST to hello-web reaches its
    app through the ingress and its sidecar, and the app's POST to hello-backend goes out through its
    sidecar's egress and in through the backend's sidecar."""
    env = make_env()
    env.pipeline("hello-web")
    env.pipeline("hello-backend")
    web = env.deploy("hello-web", WEB_MANIFEST)
    backend = env.deploy("hello-backend", BACKEND_MANIFEST)
    env.engine.gateway_route_set(ENV, make_gateway_route("r-ingress-hello-service", "/hello-service", "hello-web",
                                                         "demo.local"))
    env.route("hello-web", **{web: 100})
    env.route("hello-backend", **{backend: 100})
    conn = http.client.HTTPConnection("127.0.0.1", env.ingress_port, timeout=10)
    try:
        conn.request("POST", "/hello-service/hello/Bob", body=b"")
        resp = conn.getresponse()
        body = resp.read().decode()
    finally:
        conn.close()
    assert resp.status == 200 and body.startswith("Hello Bob<br>Welcome to our world!"), (resp.status, body)
    assert env.engine.route_show(ENV, "hello-backend").method is None  # type: ignore[union-attr]
    # hello-web's sidecar counted the POST it sent on to the backend's sidecar.
    assert env.engine.stats(ENV, "hello-backend").versions[backend].requests >= 1


def test_two_tags_of_one_image_run_different_code(make_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """images.yaml maps mycorp/greeter to a program in a folder named after the tag, with a variable that
    carries the tag: :1.1 and :1.2 run two different checkouts side by side."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    for tag, greeting in (("1.1", "One"), ("1.2", "Two")):
        checkout = home / f"greeter-{tag}"
        checkout.mkdir()
        (checkout / "app.py").write_text(
            "import sys\nfrom meshpipe.samples.hello_backend import main\n"
            f"sys.exit(main(['-g', {greeting!r}]))\n")
    (home / "images.yaml").write_text(
        'images:\n  - match: "mycorp/greeter"\n    argv: ["{python}", "app.py"]\n    cwd: "greeter-{tag}"\n'
        '    env: {MESSAGE: "release {tag}"}\n')
    env = make_env()
    env.pipeline("hello-backend")
    env.route_backend_through_gateway()
    answers = {}
    for tag in ("1.1", "1.2"):
        manifest = (f'Task:\n  Family: "hello-backend"\n\nAppContainer:\n  Image: "mycorp/greeter:{tag}"\n'
                    '  Port: 80\n  HealthCheckPath: "/ping"\n')
        version = env.deploy("hello-backend", manifest)
        env.route("hello-backend", **{version: 100})
        status, body = get(env.ingress_port, "/backend/data")
        assert status == 200, body
        answers[tag] = json.loads(body)
    assert (answers["1.1"]["greeting"], answers["1.1"]["message"]) == ("One", "release 1.1")
    assert (answers["1.2"]["greeting"], answers["1.2"]["message"]) == ("Two", "release 1.2")


def test_broken_manifest_fails_build_and_changes_nothing(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    good = env.serve_backend()
    before = env.note_pids()
    commit = env.push("hello-backend", BACKEND_MANIFEST.replace("Port: 80", 'Port: "eighty"'))
    run = env.engine.pipeline_wait(ENV, "hello-backend", commit=commit, timeout=30)
    assert run.status == "Failed"
    assert [(s.name, s.status) for s in run.stages] == [("Source", "Succeeded"), ("Build", "Failed"),
                                                        ("Deploy", "Skipped")]
    assert "AppContainer.Port" in run.stages[1].log
    assert [v.version for v in env.engine.versions(ENV, "hello-backend")] == [good]
    assert env.engine.route_show(ENV, "hello-backend").targets == (WeightedTarget(good, 100),)
    assert env.note_pids() == before
    status, body = get(env.ingress_port, "/backend/data")
    assert status == 200 and '"greeting": "Hello"' in body


def test_failing_health_check_or_unknown_image_gets_no_traffic(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(tasks=2)
    good = env.serve_backend()
    # An image nothing maps to a local program fails at once.
    commit = env.push("hello-backend", backend_manifest(image="example/unknown:1.0"))
    run = env.engine.pipeline_wait(ENV, "hello-backend", commit=commit, timeout=30)
    assert run.status == "Failed" and run.stages[2].status == "Failed"
    assert "does not know how to run image" in run.stages[2].log
    # A health check that never passes: CREATE_FAILED once the start period and the retries are over.
    commit = env.push("hello-backend", backend_manifest("-g Broken", health="/no-such-page"))
    run = env.engine.pipeline_wait(ENV, "hello-backend", commit=commit, timeout=60)
    assert run.status == "Failed" and run.stages[2].status == "Failed"
    assert "never passed" in run.stages[2].log and "/no-such-page" in run.stages[2].log
    failed = {v.version: v for v in env.engine.versions(ENV, "hello-backend")}
    assert failed[commit[:8]].status == "CREATE_FAILED" and failed[commit[:8]].healthy_tasks == 0
    assert failed[commit[:8]].desired_tasks == 0
    assert not [pid for pid, task in env.processes("app") if task and commit[:8] in task]
    with pytest.raises(ConflictError, match="CREATE_FAILED"):
        env.route("hello-backend", **{good: 50, commit[:8]: 50})
    # An app that crashes at start: the version's reason quotes what it said last, not only a log path.
    commit = env.push("hello-backend", backend_manifest("--no-such-option"))
    run = env.engine.pipeline_wait(ENV, "hello-backend", commit=commit, timeout=60)
    assert run.status == "Failed"
    crashed = {v.version: v for v in env.engine.versions(ENV, "hello-backend")}[commit[:8]]
    assert crashed.status == "CREATE_FAILED" and "app exited with status 2" in (crashed.reason or "")
    assert "its last lines:" in (crashed.reason or "") and "--no-such-option" in (crashed.reason or ""), crashed.reason
    for _ in range(20):
        status, body = get(env.ingress_port, "/backend/data")
        assert status == 200 and '"greeting": "Hello"' in body


def test_killed_app_is_replaced_while_the_other_task_serves(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(tasks=2)
    env.serve_backend()
    victim, victim_task = env.processes("app")[0]
    with Load(env.ingress_port, "/backend/data") as load:
        wait_until(lambda: load.count() > 50, 10, "load running")
        os.kill(victim, signal.SIGKILL)
        served_at_kill = load.count()
        wait_until(lambda: load.count() > served_at_kill + 200, 15, "serving after the kill")

        def recovered() -> bool:
            [v] = env.engine.versions(ENV, "hello-backend")
            return v.healthy_tasks == 2 and any(p != victim and t == victim_task for p, t in env.processes("app"))

        wait_until(recovered, 20, "task replaced")
        served_at_recovery = load.count()
        wait_until(lambda: load.count() > served_at_recovery + 50, 10, "serving after recovery")
    env.note_pids()
    assert not procs.is_running(victim)
    task = next(t for t in env.engine.status(ENV)["tasks"] if t["task_id"] == victim_task)
    assert task["restarts"] == 1 and "app exited" in task["last_error"]
    # Retries send a request that met the dying task to the other one; at most a stray failure slips by.
    assert len(load.failures()) <= 2, load.failures()[:5]


def test_weight_changes_under_load_lose_no_request(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    env.pipeline("hello-backend")
    one = env.deploy("hello-backend", BACKEND_MANIFEST)
    two = env.deploy("hello-backend", BACKEND_V2_MANIFEST)
    env.route("hello-backend", **{one: 100})
    env.route_backend_through_gateway()
    with Load(env.ingress_port, "/backend/data") as load:
        for weights in ({one: 50, two: 50}, {two: 100}, {one: 100, two: 0}, {one: 10, two: 90}, {one: 100}):
            wait_until(lambda n=load.count(): load.count() > n + 40, 10, "requests between changes")
            env.route("hello-backend", **weights)
        wait_until(lambda n=load.count(): load.count() > n + 40, 10, "requests after the last change")
    assert load.failures() == []
    bodies = Counter('"greeting": "Yo"' in body for _, body in load.results)
    assert bodies[True] > 0 and bodies[False] > 0


def test_daemon_killed_under_load_is_restored_without_losing_a_request(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(tasks=2)
    good = env.serve_backend()
    port = env.ingress_port
    old_daemon = read_daemon_file(env.paths.daemon_json)
    assert old_daemon is not None
    serving = sorted(env.processes("gateway") + env.processes("sidecar") + env.processes("app"))
    assert len(serving) == 5
    with Load(port, "/backend/data") as load:
        wait_until(lambda: load.count() > 100, 10, "load running")
        os.kill(old_daemon["pid"], signal.SIGKILL)
        wait_until(lambda: not procs.is_running(old_daemon["pid"]), 30, "daemon gone")
        at_kill = load.count()
        # Any command brings the daemon back (if nothing did already); it takes over what runs.
        [version] = env.engine.versions(ENV, "hello-backend")
        assert (version.version, version.healthy_tasks) == (good, 2)
        assert env.engine.route_show(ENV, "hello-backend").targets == (WeightedTarget(good, 100),)
        wait_until(lambda: load.count() > at_kill + 200, 15, "serving after the restore")
    new_daemon = read_daemon_file(env.paths.daemon_json)
    assert new_daemon is not None and new_daemon["pid"] != old_daemon["pid"]
    env.note_pids()
    assert load.failures() == []
    # The very processes that served before serve afterwards, on the same ingress port.
    assert sorted(env.processes("gateway") + env.processes("sidecar") + env.processes("app")) == serving
    assert all(procs.is_running(pid) for pid, _ in serving)
    assert env.ingress_port == port
    # The new daemon watches them: a config push reaches all three proxies, a killed app is replaced.
    pushed = env.engine.status(ENV)
    assert pushed["proxies"] == 3 and pushed["gateway"]["live"]
    victim, victim_task = env.processes("app")[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: any(p != victim and t == victim_task for p, t in env.processes("app"))
               and env.engine.versions(ENV, "hello-backend")[0].healthy_tasks == 2, 20, "task replaced")
    env.note_pids()
    task = next(t for t in env.engine.status(ENV)["tasks"] if t["task_id"] == victim_task)
    assert task["restarts"] == 1 and "app exited" in task["last_error"]
    assert any("took over the gateway and 2 task(s)" in e.message for e in env.engine.events(ENV))
    status, body = get(port, "/backend/data")
    assert status == 200 and '"greeting": "Hello"' in body


def daemon_answering(env: LocalEnv, not_pid: int) -> dict | None:  # type: ignore[type-arg]
    """daemon.json of a daemon other than ``not_pid`` that runs and answers, else None."""
    data = read_daemon_file(env.paths.daemon_json)
    if data is None or data["pid"] == not_pid or not procs.is_running(data["pid"]):
        return None
    return data if env.engine.env_status(ENV).status == "RUNNING" else None


def test_killed_daemon_comes_back_by_itself_and_so_does_its_watchdog(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    env.serve_backend()
    first = read_daemon_file(env.paths.daemon_json)
    assert first is not None
    watchdog = wait_until(lambda: daemonfiles.read_lock_holder(env.paths.watchdog_lock)
                          if daemonfiles.lock_is_held(env.paths.watchdog_lock) else None, 10, "watchdog running")
    env.seen_pids.add(watchdog)
    with Load(env.ingress_port, "/backend/data") as load:
        wait_until(lambda: load.count() > 50, 10, "load running")
        os.kill(first["pid"], signal.SIGKILL)
        # No command is run: the watchdog brings the daemon back, which takes over what runs.
        second = wait_until(lambda: daemon_answering(env, first["pid"]), 30, "daemon restarted by the watchdog")
        env.note_pids()
        served = load.count()
        wait_until(lambda: load.count() > served + 50, 10, "serving after the restart")
    assert load.failures() == []
    assert procs.is_running(watchdog)
    messages = [e.message for e in env.engine.events(ENV)]
    assert any(f"the daemon (pid {first['pid']}) died without stopping; the watchdog starts it again" in m
               for m in messages), messages
    assert any(f"daemon started (pid {second['pid']})" in m and "took over the gateway and 1 task(s)" in m
               for m in messages), messages
    # The watchdog killed: the daemon starts another one, which in turn restores a killed daemon.
    os.kill(watchdog, signal.SIGKILL)
    new_watchdog = wait_until(lambda: (pid := daemonfiles.read_lock_holder(env.paths.watchdog_lock)) != watchdog
                              and daemonfiles.lock_is_held(env.paths.watchdog_lock) and pid, 20, "new watchdog")
    env.seen_pids.add(new_watchdog)
    assert any(f"the watchdog (pid {watchdog}) ended" in e.message for e in env.engine.events(ENV))
    os.kill(second["pid"], signal.SIGKILL)
    wait_until(lambda: daemon_answering(env, second["pid"]), 30, "daemon restarted by the new watchdog")
    env.note_pids()
    status, body = get(env.ingress_port, "/backend/data")
    assert status == 200 and '"greeting": "Hello"' in body


def test_undeclared_backend_is_unreachable(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    env.pipeline("hello-backend")
    env.pipeline("hello-web")
    backend = env.deploy("hello-backend", BACKEND_MANIFEST)
    env.route("hello-backend", **{backend: 100})
    undeclared = env.deploy("hello-web", WEB_MANIFEST.split("VirtualNode:")[0])
    env.route("hello-web", **{undeclared: 100})
    env.engine.gateway_route_set(ENV, make_gateway_route("r-ingress-hello-service", "/hello-service", "hello-web",
                                                         "demo.local"))
    status, body = get(env.ingress_port, "/hello-service/hello/Bob")
    assert status == 502 and "hello-backend.demo.local" in body, body
    declared = env.deploy("hello-web", WEB_MANIFEST)
    env.route("hello-web", **{declared: 100})
    status, body = get(env.ingress_port, "/hello-service/hello/Bob")
    assert status == 200 and body.startswith("Hello Bob"), body


def test_bad_requests_are_clear_errors(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    env.pipeline("hello-backend")
    with pytest.raises(ConflictError):
        env.engine.pipeline_create(ENV, "hello-backend")
    with pytest.raises(NotFoundError):
        env.engine.versions(ENV, "nope")
    with pytest.raises(NotFoundError, match="12345678"):
        env.route("hello-backend", **{"12345678": 100})
    with pytest.raises(NotFoundError):
        env.engine.version_delete(ENV, "hello-backend", "12345678")
    with pytest.raises(NotFoundError):
        env.engine.gateway_route_set(ENV, make_gateway_route("r", "/x", "nope", "demo.local"))
    with pytest.raises(NotFoundError):
        env.engine.env_status("other")
    with contextlib.suppress(NotFoundError):
        env.engine.pipeline_logs(ENV, "hello-backend")
        raise AssertionError("a service with no runs has no latest run")
    # The config repo outlives its pipeline unless asked (its history is the app team's).
    env.engine.pipeline_delete(ENV, "hello-backend")
    assert env.paths.repo("hello-backend").exists()
    env.engine.pipeline_create(ENV, "hello-backend")
    env.engine.pipeline_delete(ENV, "hello-backend", delete_repo=True)
    assert not env.paths.repo("hello-backend").exists()
    # The control API answers only with the token from daemon.json (readable by its owner alone).
    daemon = read_daemon_file(env.paths.daemon_json)
    assert daemon is not None and env.paths.daemon_json.stat().st_mode & 0o777 == 0o600
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        conn = http.client.HTTPConnection("127.0.0.1", daemon["control_port"], timeout=5)
        conn.request("GET", "/v1/status", headers=headers)
        assert conn.getresponse().status == 401
        conn.close()
    assert any("pipeline" in e.kind for e in env.engine.events(ENV))


def test_env_delete_finds_a_daemon_that_lost_its_file(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    pids = env.note_pids()
    assert len(pids) == 3  # the daemon, its watchdog and the gateway
    env.paths.daemon_json.unlink()
    env.engine.env_delete(ENV)
    assert not [pid for pid in pids if procs.is_running(pid)]
    assert not env.paths.root.exists()


def test_push_while_the_daemon_is_down_runs_when_it_is_back(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    env.pipeline("hello-backend")
    daemon = read_daemon_file(env.paths.daemon_json)
    assert daemon is not None
    os.kill(daemon["pid"], signal.SIGTERM)  # a clean stop, as at a reboot
    wait_until(lambda: not procs.is_running(daemon["pid"]), 20, "daemon stopped")
    assert env.processes("gateway") == []
    workdir = env.work / "hello-backend-cfg"
    (workdir / "manifest.yaml").write_text(BACKEND_MANIFEST)
    commit = git.commit_all(workdir, "pushed while nothing listened")
    said = git.push(workdir)
    assert "no pipeline run was started" in said, said
    run = env.engine.pipeline_wait(ENV, "hello-backend", commit=commit, timeout=60)
    env.note_pids()
    assert run.status == "Succeeded" and run.version == commit[:8]


def test_a_config_repo_made_by_an_earlier_meshpipe_reports_pushes_once_the_daemon_restarts(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env()
    env.pipeline("hello-backend")
    hook = env.paths.repo("hello-backend") / "hooks" / "post-receive"
    # The hook an earlier meshpipe wrote: its module is not where this one keeps it.
    hook.write_text("#!/bin/sh\nexec " + shlex.join([sys.executable, "-m", "meshpipe.engines.local.hook", "--env-dir",
                                                     str(env.paths.root), "--service", "hello-backend"]) + "\n")
    workdir = env.work / "hello-backend-cfg"
    (workdir / "manifest.yaml").write_text(BACKEND_MANIFEST)
    missed = git.commit_all(workdir, "pushed through the old hook")
    said = git.push(workdir)
    assert "started for hello-backend" not in said and "No module named" in said, said  # the old hook fails
    daemon = read_daemon_file(env.paths.daemon_json)
    assert daemon is not None
    os.kill(daemon["pid"], signal.SIGTERM)
    wait_until(lambda: not procs.is_running(daemon["pid"]), 20, "daemon stopped")
    env.engine.versions(ENV, "hello-backend")  # any command starts the daemon again
    assert "meshpipe.engines.local.source.hook" in hook.read_text()
    commit = env.push("hello-backend", BACKEND_V2_MANIFEST, "pushed through the new hook")
    runs = {r.commit: r for r in (env.engine.pipeline_wait(ENV, "hello-backend", commit=c, timeout=60)
                                  for c in (missed, commit))}
    env.note_pids()
    assert runs[commit].status == "Succeeded" and runs[missed].commit == missed


def test_run_interrupted_by_a_daemon_crash_runs_again(make_env) -> None:  # type: ignore[no-untyped-def]
    env = make_env(tasks=2)
    env.pipeline("hello-backend")
    daemon = read_daemon_file(env.paths.daemon_json)
    assert daemon is not None
    commit = env.push("hello-backend", BACKEND_MANIFEST)
    os.kill(daemon["pid"], signal.SIGKILL)  # mid-run: Source, Build or Deploy
    wait_until(lambda: not procs.is_running(daemon["pid"]), 30, "daemon gone")
    env.seen_pids.update(pid for pid, _ in env.processes("gateway") + env.processes("sidecar") + env.processes("app"))
    run = env.engine.pipeline_wait(ENV, "hello-backend", commit=commit, timeout=60)
    env.note_pids()
    assert run.status == "Succeeded", [(s.name, s.status, s.log) for s in run.stages]
    assert [r.commit for r in env.engine.pipeline_runs(ENV, "hello-backend")] == [commit]
    [version] = env.engine.versions(ENV, "hello-backend")
    assert (version.status, version.healthy_tasks, version.desired_tasks) == ("CREATE_COMPLETE", 2, 2)
    # Exactly the tasks of the version run: whatever the crashed daemon had started was stopped.
    live = [pid for pid, _ in env.processes("app") + env.processes("sidecar") if procs.is_running(pid)]
    assert len(live) == 4
