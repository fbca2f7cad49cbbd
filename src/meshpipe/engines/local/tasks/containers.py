"""The docker runtime: each task as ECS runs an awsvpc task, with the Docker Engine.

Per environment, one internal bridge network (no route out: Docker adds no NAT or forwarding for it).
Per task:

1. a pause container on that network holds the task's network namespace and its ``/etc/hosts`` (the
   environment's names, as Cloud Map resolves them; whatever address a name resolves to, the sidecar
   answers, because of the next step);
2. the task definition's APPMESH proxy configuration is installed in that namespace as netfilter rules
   (``nsenter --net`` + ``iptables-restore``, see :mod:`interception`);
3. the sidecar, meshpipe's proxy on the host, enters the namespace for its listeners and becomes uid 1337
   (the daemon reaches its admin API on the host's 127.0.0.1 as for any task);
4. the app container from the manifest's image joins the namespace (``network_mode: container:``), with
   the task definition's command, environment, port, Cpu and Memory as limits, and labels naming the
   environment, service, version and task.

Health checks run the task definition's ``CMD-SHELL`` inside the app container (``docker exec``), with the
supervisor's timings, so an image without the check's tool fails as it would on ECS. Other proxies reach
the task at its address on the app's port, which the rules hand to the sidecar's ingress.

Every container and network carries the environment's folder as a label: ``env delete`` and a restarted
daemon find exactly what this environment made.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from meshpipe.engines.local.dataplane.meshconfig import Endpoint
from meshpipe.engines.local.tasks import dockerhost as dh
from meshpipe.engines.local.tasks.health import Probe
from meshpipe.engines.local.tasks.interception import ProxyConfiguration, iptables_rules
from meshpipe.engines.local.tasks.processes import start_time
from meshpipe.engines.local.tasks.runtime import DOCKER, ContainerSpec, TaskHandle
from meshpipe.errors import OperationError, UserError

if TYPE_CHECKING:
    from meshpipe.engines.local.tasks.supervisor import Proc, TaskPorts, VersionSpec

log = logging.getLogger("meshpipe.daemon")
T = TypeVar("T")
PULL_POLICIES = ("missing", "always", "never")


def network_name(env: str, env_dir: Path) -> str:
    """One network per environment; the folder's hash keeps two homes' ``demo`` environments apart."""
    digest = hashlib.sha256(str(Path(env_dir).absolute()).encode()).hexdigest()[:8]
    return f"meshpipe-{env}-{digest}"


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
    return str(text).strip().splitlines()[0][:300]


class ContainerProc:
    """The app container, seen as a process: its main process's host pid, watched through a pidfd (no
    thread, no polling), and why it ended (exit code, OOM kill) asked of the engine once it has."""

    def __init__(self, runtime: DockerRuntime, container: Any, pid: int, memory: int) -> None:
        from meshpipe.engines.local.tasks.spawn import AdoptedProcess

        self.runtime = runtime
        self.container = container
        self.pid = pid
        self.memory = memory
        self.oom_killed = False
        self.status: int | None = None
        self._ended = False
        self._watch = AdoptedProcess(pid, start_time(pid), [container.name])

    @property
    def returncode(self) -> int | None:
        return self.status if self._ended else None

    async def wait(self) -> int | None:
        await self._watch.wait()
        if not self._ended:
            with contextlib.suppress(Exception):
                state = await self.runtime.call(self._state)
                self.status = int(state.get("ExitCode", -1))
                self.oom_killed = bool(state.get("OOMKilled"))
            self._ended = True
        return self.status

    def _state(self) -> dict[str, Any]:
        # The engine records the exit a moment after the process is gone.
        self.container.wait(timeout=10)
        self.container.reload()
        return dict(self.container.attrs["State"])


class DockerRuntime:
    """Tasks as containers (``--runtime docker``)."""

    name = DOCKER

    def __init__(self, client: Any, env: str, env_dir: Path, pull: str = "missing",
                 names: Callable[[], list[str]] | None = None) -> None:
        if pull not in PULL_POLICIES:
            raise UserError(f"pull policy {pull!r} is not one of {', '.join(PULL_POLICIES)}")
        self.client = client
        self.env = env
        self.env_dir = Path(env_dir).absolute()
        self.pull = pull
        # Every virtual service name of the environment (Cloud Map resolves them all in the namespace).
        self.names = names or (lambda: [])
        self.network = network_name(env, self.env_dir)
        self.gateway_ip = ""
        self.pause_image = ""
        # Engine calls block: they run on threads of their own, so a slow engine never stalls the loop
        # (and never takes the threads asyncio's default executor gives to everything else).
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="docker")
        self._followers: dict[str, threading.Thread] = {}
        # The last answer of each task's check, kept for when the engine itself does not answer.
        self._last_probe: dict[str, Probe] = {}
        self.engine_down_since: float | None = None

    # -- the engine --

    async def call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def labels(self, **more: str) -> dict[str, str]:
        return {dh.LABEL_OWNER: str(self.env_dir), dh.LABEL_ENV: self.env, **more}

    def prepare(self) -> None:
        """The environment's network and the pause image (blocking; the daemon calls it at start)."""
        import docker.errors

        self.pause_image = dh.ensure_pause_image(self.client)
        try:
            net = self.client.networks.get(self.network)
        except docker.errors.NotFound:
            net = self.client.networks.create(self.network, driver="bridge", internal=True,
                                              labels=self.labels(**{dh.LABEL_ROLE: "network"}))
        net.reload()
        configs = net.attrs.get("IPAM", {}).get("Config") or [{}]
        self.gateway_ip = str(configs[0].get("Gateway", "")).split("/")[0] or "10.255.255.254"

    def ensure_image(self, image: str) -> None:
        """The version's image on this machine, pulled as the policy says; an OperationError names why not."""
        import docker.errors

        present = dh.has_image(self.client, image)
        if present and self.pull != "always":
            return
        if self.pull == "never":
            raise OperationError(f"image {image} is not on this machine and the pull policy is 'never'",
                                 hint=f"docker build -t {image} . (or env create --pull missing)")
        repo, _, tag = image.rpartition(":") if "@" not in image else (image, "", "")
        if "/" in tag:  # a registry port, not a tag
            repo, tag = image, "latest"
        log.info("pulling image %s", image)
        try:
            last = ""
            for line in self.client.api.pull(repo or image, tag=tag or None, stream=True, decode=True):
                status = str(line.get("status", ""))
                if "error" in line:
                    raise OperationError(f"cannot pull image {image}: {line['error']}")
                if status and status != last:
                    log.info("pull %s: %s %s", image, status, line.get("progress", ""))
                    last = status
        except docker.errors.DockerException as exc:
            raise OperationError(f"cannot pull image {image}: {_first_line(exc)}") from None

    # -- one task --

    def allocate_ports(self, spec: VersionSpec, free: Callable[[], TaskPorts]) -> TaskPorts:
        from meshpipe.engines.local.tasks.supervisor import TaskPorts

        c = self._container(spec)
        # The task has its own namespace: its app and proxy ports are the task definition's; only the
        # sidecar's admin API is on the host.
        return TaskPorts(app=c.port, ingress=c.ingress_port, egress=c.egress_port, admin=free().admin)

    @staticmethod
    def _container(spec: VersionSpec) -> ContainerSpec:
        if spec.container is None:
            raise OperationError(f"version {spec.version} of {spec.service} has no container spec")
        return spec.container

    async def open_task(self, spec: VersionSpec, task_id: str, ports: TaskPorts) -> TaskHandle:
        c = self._container(spec)
        return await self.call(lambda: self._open(spec, c, task_id, ports))

    def _open(self, spec: VersionSpec, c: ContainerSpec, task_id: str, ports: TaskPorts) -> TaskHandle:
        name = f"{self.network}-{task_id}-{uuid.uuid4().hex[:6]}"
        labels = self.labels(**{dh.LABEL_SERVICE: spec.service, dh.LABEL_VERSION: spec.version,
                                dh.LABEL_TASK: task_id, dh.LABEL_ROLE: "pause"})
        try:
            pause = self.client.containers.run(
                self.pause_image or dh.ensure_pause_image(self.client), detach=True, name=f"{name}-pause",
                network=self.network, labels=labels, hostname=task_id[:63],
                extra_hosts={host: self.gateway_ip for host in dict.fromkeys([*c.names, *self.names()])})
            pause.reload()
        except Exception as exc:
            raise OperationError(f"cannot start task {task_id}'s namespace: {_first_line(exc)}") from None
        pid = int(pause.attrs["State"]["Pid"])
        address = str(pause.attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"])
        netns = f"/proc/{pid}/ns/net"
        cfg = ProxyConfiguration(app_ports=(c.port,), proxy_ingress_port=c.ingress_port,
                                 proxy_egress_port=c.egress_port, ignored_uid=c.ignored_uid,
                                 egress_ignored_ips=c.egress_ignored_ips)
        done = subprocess.run(["nsenter", f"--net={netns}", "iptables-restore", "--noflush"],
                              input=iptables_rules(cfg), text=True, capture_output=True, check=False)
        if done.returncode != 0:
            with contextlib.suppress(Exception):
                pause.remove(force=True)
            raise OperationError(f"cannot install task {task_id}'s proxy configuration: "
                                 f"{(done.stderr.strip() or 'iptables-restore failed').splitlines()[0]}")
        return TaskHandle(task_id, ports, address=address, netns=netns, run_as=c.ignored_uid,
                          extra={"pause": pause, "name": name})

    async def start_app(self, handle: TaskHandle, spec: VersionSpec, env: Mapping[str, str],
                        log_path: Path) -> Proc:
        c = self._container(spec)
        return await self.call(lambda: self._start_app(handle, spec, c, log_path))

    def _start_app(self, handle: TaskHandle, spec: VersionSpec, c: ContainerSpec, log_path: Path) -> Proc:
        pause = handle.extra["pause"]
        labels = self.labels(**{dh.LABEL_SERVICE: spec.service, dh.LABEL_VERSION: spec.version,
                                dh.LABEL_TASK: handle.task_id, dh.LABEL_ROLE: "app"})
        environment = dict(spec.app_env)
        environment["PORT"] = str(c.port)
        try:
            container = self.client.containers.run(
                c.image, command=list(c.command) if c.command is not None else None, detach=True,
                name=f"{handle.extra['name']}-app", network_mode=f"container:{pause.id}", labels=labels,
                environment=environment, mem_limit=f"{c.memory}m", memswap_limit=f"{c.memory}m",
                nano_cpus=int(c.cpu * 1_000_000_000 // 1024), stop_signal="SIGTERM", init=False)
            container.reload()
        except Exception as exc:
            raise OperationError(f"cannot start the app container of task {handle.task_id} from {c.image}: "
                                 f"{_first_line(exc)}") from None
        pid = int(container.attrs["State"]["Pid"])
        handle.extra["app"] = container
        self._follow_logs(container, log_path)
        if pid == 0:  # already ended
            proc = ContainerProc(self, container, os.getpid(), c.memory)
            proc._ended = True
            proc.status = int(container.attrs["State"].get("ExitCode", -1))
            return proc
        return ContainerProc(self, container, pid, c.memory)

    def _follow_logs(self, container: Any, log_path: Path, since: int | None = None) -> None:
        """The container's output appended to the task's log file (what `meshpipe logs` reads)."""
        def follow() -> None:
            with contextlib.suppress(Exception):
                log_path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    for chunk in container.logs(stream=True, follow=True, since=since):
                        os.write(fd, chunk)
                finally:
                    os.close(fd)

        thread = threading.Thread(target=follow, name=f"logs {container.name}", daemon=True)
        thread.start()
        self._followers[container.id] = thread

    async def probe_app(self, handle: TaskHandle, app: Proc, spec: VersionSpec, timeout: float) -> Probe:
        c = self._container(spec)
        container = getattr(app, "container", None)
        if container is None:
            return Probe(False, "no app container")
        kind, *words = c.health_command
        argv = ["/bin/sh", "-c", words[0]] if kind == "CMD-SHELL" else list(words)
        future = asyncio.get_running_loop().run_in_executor(self._pool, lambda: container.exec_run(argv))
        try:
            result = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return self._keep(container.id, Probe(False, f"health check timed out after {timeout:g} s"))
        except Exception as exc:
            return self._engine_failed(container.id, exc)
        self.engine_down_since = None
        if result.exit_code == 0:
            return self._keep(container.id, Probe(True, ""))
        output = (result.output or b"").decode(errors="replace").strip().splitlines()
        why = f"; {output[-1][:200]}" if output else ""
        if result.exit_code == 127:
            why += " (the image lacks the check's program: ECS would fail this check too)"
        return self._keep(container.id, Probe(False, f"health check command exited {result.exit_code}{why}"))

    def _keep(self, key: str, probe: Probe) -> Probe:
        self._last_probe[key] = probe
        return probe

    def _engine_failed(self, key: str, exc: Exception) -> Probe:
        """The check could not be run because the engine does not answer (it died, or is restarting).
        Its containers run on without it, as ECS tasks outlive their agent: the task keeps its last
        answer rather than being replaced for the engine's fault; a task never checked is not healthy."""
        if self.engine_down_since is None:
            self.engine_down_since = time.monotonic()
            log.error("the Docker Engine does not answer (%s); tasks keep their last health answer until it "
                      "does", _first_line(exc))
        last = self._last_probe.get(key)
        if last is None:
            return Probe(False, f"health check could not run: the Docker Engine does not answer: {_first_line(exc)}")
        return last

    async def stop_app(self, handle: TaskHandle, app: Proc, timeout: float) -> None:
        container = getattr(app, "container", None)
        if container is not None:
            await self.call(lambda: self._remove(container, timeout))

    async def close_task(self, handle: TaskHandle) -> None:
        extra = handle.extra or {}
        for key in ("app", "pause"):
            container = extra.get(key)
            if container is not None:
                await self.call(lambda c=container: self._remove(c, 1.0))  # type: ignore[misc]

    @staticmethod
    def _remove(container: Any, timeout: float) -> None:
        with contextlib.suppress(Exception):
            container.stop(timeout=max(1, int(timeout)))
        with contextlib.suppress(Exception):
            container.remove(force=True)

    def endpoint(self, handle: TaskHandle) -> Endpoint:
        # The app's port at the task's address: the rules hand it to the sidecar's ingress.
        return Endpoint(handle.address, handle.ports.app)

    def app_env(self, spec: VersionSpec, ports: TaskPorts, base: Mapping[str, str]) -> dict[str, str]:
        return {"PORT": str(ports.app)}

    def exit_text(self, app: Proc, status: int | None, log_path: Path) -> str:
        from meshpipe.engines.local.tasks.supervisor import exit_text, last_lines

        if getattr(app, "oom_killed", False):
            return (f"app container was OOM-killed: it used more than its memory limit "
                    f"({getattr(app, 'memory', '?')} MiB, Task.Memory) (see {log_path.name})")
        return exit_text("app container", status, log_path.name, last_lines(log_path))

    # -- the environment --

    def adopt(self, spec: VersionSpec, task_id: str, ports: TaskPorts, app_pid: int,
              log_path: Path) -> tuple[TaskHandle, Proc] | None:
        """A task a previous daemon started whose containers still run (blocking): its namespace and app,
        when the app container's main process is the recorded ``app_pid``; None otherwise."""
        c = self._container(spec)
        owner = f"{dh.LABEL_OWNER}={self.env_dir}"
        found = self.client.containers.list(filters={"label": [owner, f"{dh.LABEL_TASK}={task_id}"]})
        pauses = [x for x in found if x.labels.get(dh.LABEL_ROLE) == "pause"]
        apps = [x for x in found if x.labels.get(dh.LABEL_ROLE) == "app"]
        if len(pauses) != 1 or len(apps) != 1:
            return None
        pause, app = pauses[0], apps[0]
        if int(app.attrs["State"]["Pid"]) != app_pid:
            return None
        address = str(pause.attrs["NetworkSettings"]["Networks"].get(self.network, {}).get("IPAddress", ""))
        if not address:
            return None
        handle = TaskHandle(task_id, ports, address=address, netns=f"/proc/{pause.attrs['State']['Pid']}/ns/net",
                            run_as=c.ignored_uid,
                            extra={"pause": pause, "app": app, "name": pause.name.removesuffix("-pause")})
        # Only what it writes from now on: the earlier output is in the log already.
        self._follow_logs(app, log_path, since=int(time.time()))
        return handle, ContainerProc(self, app, app_pid, c.memory)

    def remove_tasks(self, keep: frozenset[str] = frozenset()) -> list[str]:
        """Every task container of this environment but ``keep`` (ids): a predecessor's leftovers."""
        removed = []
        owner = f"{dh.LABEL_OWNER}={self.env_dir}"
        for container in self.client.containers.list(all=True, filters={"label": owner}):
            if container.id in keep:
                continue
            with contextlib.suppress(Exception):
                container.remove(force=True)
                removed.append(container.name)
        return removed

    def remove_all(self) -> list[str]:
        """Every container and network of this environment (by label), nothing else; the names removed."""
        return dh.remove_environment(self.client, str(self.env_dir))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
