"""The docker runtime end to end: a real daemon, real containers built from local material (never pulled),
real git pushes and HTTP. Each test removes every container and network it made, even when it fails."""

from __future__ import annotations

import http.client
import json
import os
import signal
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshpipe import git as gitrepo
from meshpipe.engines.local.engine import LocalEngine
from meshpipe.engines.local.state.daemonfiles import read_daemon_file
from meshpipe.engines.local.state.options import LocalOptions
from meshpipe.engines.local.state.store import StateStore
from meshpipe.engines.local.tasks import processes as procs
from meshpipe.engines.local.tasks.dockerhost import LABEL_OWNER, build_sample_image
from meshpipe.mesh.routing import WeightedTarget, make_gateway_route
from support.docker import docker_or_skip
from support.load import KeepAliveLoad, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ENV = "demo"
# The task definition's own timings: a container and a check run in it (docker exec) start slower than a
# process, on a busy machine by seconds; a healthy task is still found at once (checks every 0.25 s while starting).
FAST = 1.0


def manifest(service: str, image: str, args: list[str], backends: list[str] | None = None,
             memory: int = 512) -> str:
    command = "".join(f'\n    - "{a}"' for a in args)
    text = (f'Task:\n  Family: "{service}"\n  Cpu: 256\n  Memory: {memory}\n\nAppContainer:\n  Image: "{image}"\n'
            f'  Port: 80\n  HealthCheckPath: "/ping"\n  Command:{command}\n')
    if backends:
        text += "\nVirtualNode:\n  Backends:\n" + "".join(f'    - "{b}"\n' for b in backends)
    return text


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """The walkthrough's images, built with docker build from this machine's files: two backend
    versions (same code, the greeting comes from the command) and the web front."""
    client = docker_or_skip()
    return {"web": build_sample_image(client, "hello-web", "hello-web:v1"),
            "backend": build_sample_image(client, "hello-backend", "hello-backend:v1"),
            "backend2": build_sample_image(client, "hello-backend", "hello-backend:v2")}


class Env:
    def __init__(self, engine: LocalEngine, work: Path) -> None:
        self.engine = engine
        self.work = work

    def pipeline(self, service: str) -> None:
        info = self.engine.pipeline_create(ENV, service)
        gitrepo.clone(info.clone_url, self.work / f"{service}-cfg")

    def deploy(self, service: str, text: str, ok: bool = True) -> str:
        workdir = self.work / f"{service}-cfg"
        (workdir / "manifest.yaml").write_text(text)
        commit = gitrepo.commit_all(workdir, "change")
        gitrepo.push(workdir)
        run = self.engine.pipeline_wait(ENV, service, commit=commit, timeout=120)
        if ok:
            assert run.status == "Succeeded", "\n".join(f"{s.name} {s.status}: {s.log[-1500:]}" for s in run.stages)
        return commit[:8]

    def route(self, service: str, **weights: int) -> None:
        self.engine.route_set(ENV, service, tuple(WeightedTarget(v, w) for v, w in weights.items()))

    @property
    def port(self) -> int:
        return int(self.engine.ingress_url(ENV).rsplit(":", 1)[1])

    def sidecar_admin_ports(self, service: str) -> list[int]:
        store = StateStore(self.engine.paths(ENV).state_db)
        try:
            rows = [p for p in store.processes() if p.role == "sidecar" and (p.task_id or "").startswith(service)]
        finally:
            store.close()
        return [int(r.argv[r.argv.index("--admin-port") + 1]) for r in rows]


@pytest.fixture
def docker_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: dict[str, str]) -> Iterator[Env]:
    client = docker_or_skip()
    home = tmp_path / "home"
    monkeypatch.setenv("MESHPIPE_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path))
    engine = LocalEngine(home=home, options=LocalOptions(tasks_per_version=1, health_time_scale=FAST,
                                                         deploy_timeout=90.0, runtime="docker", pull="never"))
    env = Env(engine, tmp_path / "work")
    env.work.mkdir()
    owner = f"{LABEL_OWNER}={engine.paths(ENV).root.absolute()}"
    try:
        engine.env_create(ENV)
        yield env
    finally:
        pids = engine.running_pids(ENV) if engine.paths(ENV).exists() else []
        try:
            if engine.paths(ENV).exists():
                engine.env_delete(ENV)
            # env delete leaves no container or network of the environment.
            assert client.containers.list(all=True, filters={"label": owner}) == []
            assert client.networks.list(filters={"label": owner}) == []
        finally:
            procs.kill_all([(p, None) for p in pids if procs.is_running(p)], timeout=3.0)
            for c in client.containers.list(all=True, filters={"label": owner}):
                c.remove(force=True)
            for n in client.networks.list(filters={"label": owner}):
                n.remove()


def get(port: int, path: str, conn: http.client.HTTPConnection | None = None) -> tuple[int, str, str]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace"), resp.getheader("x-meshpipe-version") or ""
    finally:
        if own:
            conn.close()


def stats(admin: int) -> dict[str, Any]:
    return dict(json.loads(urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats", timeout=5).read()))


def test_walkthrough_with_local_images_and_a_canary(docker_env: Env, images: dict[str, str]) -> None:
    env = docker_env
    env.pipeline("hello-web")
    env.pipeline("hello-backend")
    # hello-web calls hello-backend.demo.local with no HTTP_PROXY: the rules take its call to its sidecar.
    web = env.deploy("hello-web", manifest("hello-web", images["web"], ["-b http://hello-backend.demo.local/data"],
                                           ["hello-backend.demo.local"]))
    old = env.deploy("hello-backend", manifest("hello-backend", images["backend"],
                                               ["-g Hello", "-m Welcome to our world!"]))
    [info] = env.engine.versions(ENV, "hello-web")
    assert (info.status, info.healthy_tasks) == ("CREATE_COMPLETE", 1)
    env.engine.gateway_route_set(ENV, make_gateway_route("r-ingress", "/hello-service", "hello-web", "demo.local"))
    env.route("hello-web", **{web: 100})
    env.route("hello-backend", **{old: 100})
    status, body, _ = get(env.port, "/hello-service/hello/Bob")
    assert status == 200 and body.startswith("Hello Bob<br>Welcome to our world!<br><br>timestamp: "), body
    # The web app's call went through its sidecar's egress listener.
    [admin] = env.sidecar_admin_ports("hello-web")
    assert stats(admin)["listeners"]["egress"]["requests"] >= 1
    # A new image version beside the old one, then 90/10.
    new = env.deploy("hello-backend", manifest("hello-backend", images["backend2"],
                                               ["-g Yo", "-m Have a great day!"]))
    env.route("hello-backend", **{old: 90, new: 10})
    greetings: Counter[str] = Counter()
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=10)
    for _ in range(300):
        status, body, _ = get(env.port, "/hello-service/hello/Bob", conn)
        assert status == 200, body
        greetings[body.split(" ", 1)[0]] += 1
    conn.close()
    assert greetings["Hello"] + greetings["Yo"] == 300
    assert 10 <= greetings["Yo"] <= 60, greetings  # 10 % of 300 is 30
    # Both containers' output reaches `meshpipe logs`: the app's through the daemon's follower.
    sources = {line.source.rsplit(" ", 1)[-1] for line in env.engine.logs(ENV, "hello-backend")}
    assert sources == {"app", "envoy"}, sources
    # Nothing of a task is published on the host: only the gateway listens, on 127.0.0.1.
    client = docker_or_skip()
    owner = f"{LABEL_OWNER}={env.engine.paths(ENV).root.absolute()}"
    for container in client.containers.list(filters={"label": owner}):
        assert not container.attrs["HostConfig"].get("PortBindings"), container.name
        assert container.labels["meshpipe.env"] == ENV and container.labels["meshpipe.task"]


def test_missing_image_fails_the_version_and_the_old_one_keeps_serving(docker_env: Env,
                                                                        images: dict[str, str]) -> None:
    env = docker_env
    env.pipeline("hello-backend")
    old = env.deploy("hello-backend", manifest("hello-backend", images["backend"], ["-g Hello"]))
    env.engine.gateway_route_set(ENV, make_gateway_route("r-b", "/backend", "hello-backend", "demo.local"))
    env.route("hello-backend", **{old: 100})
    bad = env.deploy("hello-backend", manifest("hello-backend", "hello-backend:does-not-exist", ["-g Hi"]), ok=False)
    versions = {v.version: v for v in env.engine.versions(ENV, "hello-backend")}
    assert versions[bad].status == "CREATE_FAILED"
    assert "hello-backend:does-not-exist is not on this machine" in versions[bad].reason
    status, _, version = get(env.port, "/backend/ping")
    assert status == 200 and version == old


EATER = ("import http.server\n"
         "class H(http.server.BaseHTTPRequestHandler):\n"
         "    def do_GET(self):\n"
         "        if self.path == '/eat':\n"
         "            H.kept = [bytearray(64 << 20) for _ in range(16)]\n"
         "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
         "http.server.HTTPServer(('0.0.0.0', 80), H).serve_forever()\n")


def test_memory_limit_kills_and_replaces(docker_env: Env, images: dict[str, str]) -> None:
    """An app that goes past Task.Memory is OOM-killed by the kernel, and its task is replaced; the event
    log says it was OOM-killed."""
    from meshpipe.engines.local.tasks.rootfs import PYTHON_IMAGE

    env = docker_env
    env.pipeline("eater")
    text = manifest("eater", PYTHON_IMAGE, ["python", "-c", "EATER"], memory=512).replace('"EATER"',
                                                                                          json.dumps(EATER))
    version = env.deploy("eater", text)
    env.engine.gateway_route_set(ENV, make_gateway_route("r-e", "/eater", "eater", "demo.local"))
    env.route("eater", **{version: 100})
    assert get(env.port, "/eater/ping")[0] == 200
    get(env.port, "/eater/eat")  # 1 GiB in a 512 MiB task: its answer is an error, or none
    wait_until(lambda: any("OOM-killed" in e.message for e in env.engine.events(ENV)), 60, "an OOM-killed event")
    wait_until(lambda: get(env.port, "/eater/ping")[0] == 200, 60, "the replaced task serving")


class Load(KeepAliveLoad[int]):
    def __init__(self, port: int, path: str) -> None:
        super().__init__(port, clients=4)
        self.path = path

    def one(self, conn: http.client.HTTPConnection) -> int:
        return get(self.port, self.path, conn)[0]

    def failed(self, exc: Exception) -> int:
        return 0


def test_daemon_killed_under_load_takes_over_the_containers(docker_env: Env, images: dict[str, str]) -> None:
    env = docker_env
    env.pipeline("hello-backend")
    version = env.deploy("hello-backend", manifest("hello-backend", images["backend"], ["-g Hello"]))
    env.engine.gateway_route_set(ENV, make_gateway_route("r-b", "/backend", "hello-backend", "demo.local"))
    env.route("hello-backend", **{version: 100})
    client = docker_or_skip()
    owner = f"{LABEL_OWNER}={env.engine.paths(ENV).root.absolute()}"
    before = sorted(c.id for c in client.containers.list(filters={"label": owner}))
    assert len(before) == 2  # the task's pause and app containers
    old = read_daemon_file(env.engine.paths(ENV).daemon_json)
    assert old is not None
    with Load(env.port, "/backend/ping") as load:
        wait_until(lambda: load.count() > 100, 20, "load running")
        os.kill(old["pid"], signal.SIGKILL)
        wait_until(lambda: not procs.is_running(old["pid"]), 5, "daemon gone")
        at_kill = load.count()
        [info] = env.engine.versions(ENV, "hello-backend")  # any command brings the daemon back
        assert info.healthy_tasks == 1
        wait_until(lambda: load.count() > at_kill + 200, 30, "serving after the restore")
    new = read_daemon_file(env.engine.paths(ENV).daemon_json)
    assert new is not None and new["pid"] != old["pid"]
    assert [r for r in load.snapshot() if r != 200] == []
    # The very containers that served before serve afterwards.
    assert sorted(c.id for c in client.containers.list(filters={"label": owner})) == before
    assert any("took over" in e.message and "1 task(s)" in e.message for e in env.engine.events(ENV))


CALLER = ("import http.server, urllib.request, urllib.error\n"
          "class H(http.server.BaseHTTPRequestHandler):\n"
          "    def do_GET(self):\n"
          "        body = b'ok'\n"
          "        if self.path.startswith('/call/'):\n"
          "            try:\n"
          "                r = urllib.request.urlopen('http://' + self.path[6:], timeout=1)\n"
          "                body = b'%d ' % r.status + r.read()\n"
          "            except urllib.error.HTTPError as e:\n"
          "                body = b'%d ' % e.code + e.read()\n"
          "            except Exception as e:\n"
          "                body = b'ERR ' + repr(e).encode()\n"
          "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
          "http.server.HTTPServer(('0.0.0.0', 80), H).serve_forever()\n")


def test_an_app_that_ignores_http_proxy_can_reach_only_its_backends(docker_env: Env, images: dict[str, str]) -> None:
    """The caller uses urllib with no proxy set. Its call to its backend, by the Cloud Map name, goes through
    its sidecar; a call to a name outside Backends, and one straight to the backend task's address, are
    refused by the sidecar, and nothing else leaves the task."""
    from meshpipe.engines.local.tasks.rootfs import PYTHON_IMAGE

    env = docker_env
    env.pipeline("hello-backend")
    env.pipeline("caller")
    env.pipeline("other")  # a service of the environment that is not one of the caller's backends
    backend = env.deploy("hello-backend", manifest("hello-backend", images["backend"], ["-g Hello"]))
    env.route("hello-backend", **{backend: 100})
    caller = env.deploy("caller", manifest("caller", PYTHON_IMAGE, ["python", "-c", "CALLER"],
                                           ["hello-backend.demo.local"]).replace('"CALLER"', json.dumps(CALLER)))
    env.route("caller", **{caller: 100})
    env.engine.gateway_route_set(ENV, make_gateway_route("r-c", "/caller", "caller", "demo.local"))
    client = docker_or_skip()
    owner = f"{LABEL_OWNER}={env.engine.paths(ENV).root.absolute()}"
    [backend_pause] = client.containers.list(filters={"label": [owner, "meshpipe.role=pause",
                                                                  "meshpipe.service=hello-backend"]})
    backend_ip = next(iter(backend_pause.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    [admin] = env.sidecar_admin_ports("caller")
    before = stats(admin)["listeners"]["egress"]["requests"]

    _, body, _ = get(env.port, "/caller/call/hello-backend.demo.local/data")
    assert body.startswith("200 ") and '"greeting": "Hello"' in body, body
    _, body, _ = get(env.port, "/caller/call/other.demo.local/")
    assert body.startswith("403 egress to other.demo.local refused"), body
    _, body, _ = get(env.port, f"/caller/call/{backend_ip}/data")
    assert body.startswith(f"403 egress to {backend_ip} refused"), body
    # All three went through the caller's sidecar: it is in its stats.
    assert stats(admin)["listeners"]["egress"]["requests"] - before == 3
    # A name outside the environment does not resolve, and no address outside leads anywhere.
    _, body, _ = get(env.port, "/caller/call/example.com/")
    assert body.startswith("ERR "), body
    # Not TCP either: UDP to anywhere but Docker's resolver is rejected in the task.
    [caller_app] = client.containers.list(filters={"label": [owner, "meshpipe.role=app", "meshpipe.service=caller"]})
    udp = caller_app.exec_run(["python", "-c", "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                                               f"s.sendto(b'x', ('{backend_ip}', 53))"])
    assert udp.exit_code != 0 and b"PermissionError" in udp.output, udp


def test_demo_with_the_docker_runtime_builds_and_runs_the_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  images: dict[str, str]) -> None:
    """`meshpipe demo --runtime docker`: the original sample's manifests, unchanged but for the images,
    which are built from the samples' Dockerfiles; every container and network is gone afterwards."""
    import io

    from rich.console import Console

    from meshpipe.demos.walkthrough import run_demo

    client = docker_or_skip()
    monkeypatch.setenv("MESHPIPE_LOCAL_RUNTIME", "docker")
    monkeypatch.setenv("MESHPIPE_LOCAL_HEALTH_SCALE", str(FAST))
    monkeypatch.setenv("HOME", str(tmp_path))
    output = io.StringIO()
    try:
        result = run_demo(home=tmp_path / "home", console=Console(file=output, width=200), requests=100,
                          tasks_per_version=1, runtime="docker")
    finally:
        text = output.getvalue()
        print(text)
    assert "docker build -f src/meshpipe/samples/Dockerfile.hello-backend -t hello-backend:66f2a19 src" in text
    assert result.first_page.startswith("Hello Bob<br>Welcome to our world!")
    assert result.canary is not None and result.canary.new > 0 and result.canary.errors == 0
    owner = f"{LABEL_OWNER}={(tmp_path / 'home' / 'envs' / 'demo').absolute()}"
    assert client.containers.list(all=True, filters={"label": owner}) == []
    assert client.networks.list(filters={"label": owner}) == []
