"""The Deploy stage's local effect: a version's stack recorded and its tasks started.

What CloudFormation and ECS do on AWS, for one machine:

1. the stack (name, template, resolved version) and its tasks are recorded in one transaction, status
   ``CREATE_IN_PROGRESS``;
2. the supervisor starts the tasks;
3. once every task is healthy the stack is ``CREATE_COMPLETE``; if a health check never passes, the app
   keeps crashing before it is ready, the image has no local mapping, or the deadline passes, it is
   ``CREATE_FAILED`` with the reason, and its tasks are stopped (as a failed stack rolls back).

A version never gets traffic by being deployed: only a route sends traffic, and a route accepts only
``CREATE_COMPLETE`` versions, so a failed deploy leaves the last good version serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshpipe.clock import SYSTEM_CLOCK, Clock
from meshpipe.engines.local.state.home import EnvPaths
from meshpipe.engines.local.state.options import LocalOptions
from meshpipe.engines.local.state.store import StateStore
from meshpipe.engines.local.tasks.health import HealthTimings
from meshpipe.engines.local.tasks.images import LocalProgram
from meshpipe.engines.local.tasks.runtime import DOCKER, ContainerSpec
from meshpipe.engines.local.tasks.supervisor import AdoptedTask, Supervisor, VersionSpec
from meshpipe.errors import ConflictError, MeshpipeError, NotFoundError, OperationError
from meshpipe.mesh.routing import Route
from meshpipe.model import ServiceVersion
from meshpipe.status import VersionStatus

log = logging.getLogger("meshpipe.daemon")

READY_POLL_SECONDS = 0.05


def resolved_to_json(version: ServiceVersion) -> dict[str, Any]:
    """The resolved version as plain JSON (kept with the stack, read back to run its tasks)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(version):
        value = getattr(version, f.name)
        if f.name == "platform":
            out[f.name] = value.model_dump(mode="json")
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[f.name] = dataclasses.asdict(value)
        else:
            out[f.name] = value
    return out


def task_count(resolved: dict[str, Any], options: LocalOptions) -> int:
    if options.tasks_per_version is not None:
        return options.tasks_per_version
    return int(resolved["platform"]["policy"]["autoscaling"]["min_tasks"])


def version_spec(resolved: dict[str, Any], program: LocalProgram | list[str], options: LocalOptions) -> VersionSpec:
    """How the supervisor runs a version's tasks, from its resolved JSON and its local command. Pure."""
    app = resolved["app"]
    hc = app["health_check"]
    timings = HealthTimings(interval=float(hc["interval"]), timeout=float(hc["timeout"]), retries=int(hc["retries"]),
                            start_period=float(hc["start_period"])).scaled(options.health_time_scale)
    stop = options.stop_timeout if options.stop_timeout is not None else float(app["stop_timeout"])
    sidecar = resolved["sidecar"]
    container = ContainerSpec(
        environment=str(resolved["environment"]), image=str(app["image"]),
        command=tuple(app["command"]) if app["command"] is not None else None, port=int(app["port"]),
        health_command=tuple(hc["command"]), cpu=int(resolved["cpu"]), memory=int(resolved["memory"]),
        ingress_port=int(sidecar["ingress_port"]), egress_port=int(sidecar["egress_port"]),
        ignored_uid=int(sidecar["ignored_uid"]), egress_ignored_ips=tuple(sidecar["egress_ignored_ips"]),
        names=tuple(dict.fromkeys([*resolved["backends"], f"{resolved['service']}.{resolved['namespace']}"])))
    if not isinstance(program, LocalProgram):
        program = LocalProgram(list(program))
    # The image's variables first, then the manifest's, which win (as a task definition's do over ENV).
    manifest_env = {str(k): str(v) for k, v in app["environment"]}
    image_env = [(k, v) for k, v in program.env if k not in manifest_env]
    return VersionSpec(
        service=resolved["service"],
        version=resolved["version"],
        app_argv=tuple(program.argv),
        app_env=(*image_env, *manifest_env.items()),
        app_cwd=program.cwd,
        health_path=app["health_check_path"],
        health=timings,
        backends=tuple(resolved["backends"]),
        stop_timeout=stop,
        container=container,
    )


class DeployFailed(OperationError):
    """The stack ended CREATE_FAILED; the message is its reason."""


@dataclass(eq=False)
class Deployer:
    store: StateStore
    supervisor: Supervisor
    paths: EnvPaths
    home: Path
    options: LocalOptions
    publish: Callable[[str], Awaitable[object]]
    clock: Clock = SYSTEM_CLOCK
    _waits: dict[tuple[str, str], asyncio.Task[str]] = field(default_factory=dict, init=False)

    def local_argv(self, resolved: dict[str, Any]) -> LocalProgram:
        """How the version's app runs here (images.yaml, then the built-in mappings)."""
        from meshpipe.engines.local.tasks.images import local_program

        app = resolved["app"]
        command = tuple(app["command"]) if app["command"] is not None else None
        if self.supervisor.runtime.name == DOCKER:
            # The image itself runs: its command is the task definition's, as written.
            return LocalProgram(list(command or ()))
        return local_program(app["image"], command, home=self.home)

    async def prepare_image(self, resolved: dict[str, Any]) -> None:
        """A container runtime's image on this machine (pulled as the policy says), before any task."""
        runtime: Any = self.supervisor.runtime
        if runtime.name == DOCKER:
            await runtime.call(lambda: runtime.ensure_image(resolved["app"]["image"]))

    async def deploy(self, version: ServiceVersion, template: dict[str, Any], run_id: str | None) -> str:
        """Create the version's stack and wait for it; returns what happened, raises DeployFailed."""
        service, ver = version.service, version.version
        existing = self.store.version(service, ver)
        if existing is not None and existing.status == VersionStatus.CREATE_COMPLETE:
            if existing.scaled_down:  # a run of a commit whose version a rollout scaled down: it comes back
                return await self.scale(service, ver, existing.desired_tasks or 1, "by a new run of its commit")
            return f"stack {existing.stack_name} already exists ({VersionStatus.CREATE_COMPLETE}): nothing to do"
        if existing is not None and existing.status == VersionStatus.CREATE_IN_PROGRESS:
            return await self._await_ready(service, ver)
        if existing is not None:
            # A failed stack is replaced, as CloudFormation replaces a stack that rolled back.
            self.store.delete_version(service, ver, force=True)
        resolved = resolved_to_json(version)
        count = task_count(resolved, self.options)
        try:
            argv = self.local_argv(resolved)
            await self.prepare_image(resolved)
        except MeshpipeError as exc:
            reason = exc.message + (f" ({exc.hint})" if exc.hint else "")
            self.store.create_version(service, ver, version.commit, version.stack_name, count, template, resolved,
                                      run_id, status=VersionStatus.CREATE_FAILED, reason=reason)
            raise DeployFailed(f"stack {version.stack_name} {VersionStatus.CREATE_FAILED}: {reason}") from None
        self.store.create_version(service, ver, version.commit, version.stack_name, count, template, resolved, run_id)
        self.supervisor.start_version(version_spec(resolved, argv, self.options), count,
                                      self.paths.version_logs(service, ver))
        return await self._await_ready(service, ver)

    async def _await_ready(self, service: str, version: str) -> str:
        key = (service, version)
        task = self._waits.get(key)
        if task is None or task.done():
            task = asyncio.ensure_future(self._wait_ready(service, version))
            self._waits[key] = task
            task.add_done_callback(self._forget_wait)
        return await asyncio.shield(task)

    def _forget_wait(self, task: asyncio.Task[str]) -> None:
        for key, current in list(self._waits.items()):
            if current is task:
                del self._waits[key]

    async def _wait_ready(self, service: str, version: str) -> str:
        row = self.store.version(service, version)
        if row is None:
            raise DeployFailed(f"version {version} of {service} was deleted while it was being deployed")
        deadline = self.clock.now() + self.options.deploy_timeout
        while True:
            health = self.supervisor.version_health(service, version)
            if health.desired and health.healthy >= health.desired:
                self.store.set_version_status(service, version, VersionStatus.CREATE_COMPLETE)
                log.info("stack %s %s", row.stack_name, VersionStatus.CREATE_COMPLETE)
                return f"{health.healthy}/{health.desired} tasks healthy: stack {row.stack_name} {VersionStatus.CREATE_COMPLETE}"
            reason = health.failure
            if reason is None and self.clock.now() >= deadline:
                reason = (f"only {health.healthy}/{health.desired} tasks healthy after "
                          f"{self.options.deploy_timeout:g} s")
            if reason is None and not health.desired:
                reason = "its tasks are not running"
            if reason is not None:
                await self.supervisor.stop_version(service, version)
                if self.store.version(service, version) is not None:
                    self.store.set_version_status(service, version, VersionStatus.CREATE_FAILED, reason)
                log.warning("stack %s %s: %s", row.stack_name, VersionStatus.CREATE_FAILED, reason)
                raise DeployFailed(f"stack {row.stack_name} {VersionStatus.CREATE_FAILED}: {reason}",
                                   hint=f"see the task logs in {self.paths.version_logs(service, version)}")
            await self.clock.wait(READY_POLL_SECONDS)

    def restore(self, adopted: Mapping[tuple[str, str], Mapping[int, AdoptedTask]] | None = None
                ) -> list[tuple[str, str]]:
        """Run the tasks of every version state.db says should run (after a daemon start): the ``adopted``
        ones (by version and slot) as they are, new ones for the other slots."""
        adopted = adopted or {}
        started = []
        for row in self.store.versions():
            if row.status not in (VersionStatus.CREATE_COMPLETE, VersionStatus.CREATE_IN_PROGRESS) or row.scaled_down:
                continue
            try:
                argv = self.local_argv(row.resolved)
            except MeshpipeError as exc:
                self.store.set_version_status(row.service, row.version, VersionStatus.CREATE_FAILED, exc.message)
                continue
            self.supervisor.start_version(version_spec(row.resolved, argv, self.options), row.desired_tasks,
                                          self.paths.version_logs(row.service, row.version),
                                          adopted.get((row.service, row.version)))
            started.append((row.service, row.version))
            if row.status == VersionStatus.CREATE_IN_PROGRESS:
                task = asyncio.ensure_future(self._await_ready(row.service, row.version))
                # Nobody waits for this one; its outcome is recorded in state.
                task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
        return started

    async def delete(self, service: str, version: str, force: bool) -> Route | None:
        """Delete a version: out of its route first (refused while weighted, unless forced), then stop it."""
        route = self.store.delete_version(service, version, force=force)
        wait = self._waits.pop((service, version), None)
        if wait is not None:
            wait.cancel()
        await self.publish(f"version {version} of {service} deleted")
        await self.supervisor.stop_version(service, version)
        return route

    # -- scaling --

    def _weighted(self, service: str, version: str) -> bool:
        """Whether the version takes traffic: weight in the service's route or one of its header routes."""
        if self.store.weights(service).get(version, 0) > 0:
            return True
        return any(t.version == version and t.weight > 0
                   for route in self.store.header_routes(service).get(service, []) for t in route.targets)

    async def scale(self, service: str, version: str, tasks: int, why: str) -> str:
        """Run ``tasks`` tasks of a deployed version: 0 scales it down (refused while it takes traffic); more
        brings it back and returns once they are healthy."""
        row = self.store.version(service, version)
        if row is None:
            raise NotFoundError(f"version {version} of {service} does not exist",
                                hint=f"list versions with: meshpipe versions {service}")
        if tasks == 0:
            if self._weighted(service, version):
                raise ConflictError(f"version {version} of {service} takes traffic; it cannot run without tasks",
                                    hint=f"move the traffic first: meshpipe route set {service} ...")
            self.store.scale_version(service, version, 0, why)
            await self.supervisor.stop_version(service, version)
            await self.publish(f"version {version} of {service} scaled down")
            return f"version {version} of {service} scaled down to 0 tasks"
        argv = self.local_argv(row.resolved)
        self.store.scale_version(service, version, tasks, why)
        await self.supervisor.scale_version(version_spec(row.resolved, argv, self.options), tasks,
                                            self.paths.version_logs(service, version))
        deadline = self.clock.now() + self.options.deploy_timeout
        while True:
            health = self.supervisor.version_health(service, version)
            if health.healthy >= tasks:
                return f"version {version} of {service}: {health.healthy}/{tasks} tasks healthy"
            if health.failure is not None or self.clock.now() >= deadline:
                raise OperationError(f"version {version} of {service}: only {health.healthy}/{tasks} tasks healthy"
                                     + (f": {health.failure}" if health.failure else
                                        f" after {self.options.deploy_timeout:g} s"),
                                     hint=f"see the task logs in {self.paths.version_logs(service, version)}")
            await self.clock.wait(READY_POLL_SECONDS)

    async def scale_down_due(self, now: float, busy: set[tuple[str, str]]) -> list[tuple[str, str]]:
        """Scale to zero the versions whose scale-down is due and that still take no traffic (a version
        routed to again, or in a running rollout, stays up). Returns those scaled down."""
        done = []
        for row in self.store.due_scale_downs(now):
            key = (row.service, row.version)
            if key in busy or self._weighted(row.service, row.version):
                self.store.cancel_scale_down(row.service, row.version, "it takes traffic again")
                continue
            self.store.scale_version(row.service, row.version, 0, "(no weight after its rollout ended)")
            await self.supervisor.stop_version(row.service, row.version)
            done.append(key)
        if done:
            await self.publish(f"{len(done)} version(s) scaled down")
        return done

    def cancel_waits(self) -> None:
        for task in list(self._waits.values()):
            task.cancel()
        self._waits.clear()
