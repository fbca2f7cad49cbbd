"""Knobs of the local engine, fixed per environment when it is created (kept in ``engine.json``).

The defaults reproduce the platform policy exactly (2 tasks per version, the task definition's health
check timings). Tests and demos turn them down: fewer tasks, health checks on a faster clock.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from meshpipe.errors import UserError


@dataclass(frozen=True)
class LocalOptions:
    # Tasks per version; None: the platform policy's autoscaling.min_tasks.
    tasks_per_version: int | None = None
    # Multiplies the health check's interval, timeout and start period (0.2: five times faster).
    health_time_scale: float = 1.0
    # A version not healthy within this many seconds fails its deployment (CREATE_FAILED).
    deploy_timeout: float = 300.0
    # Restart backoff of a crashed task: first delay, doubled per failure in a row, up to the cap.
    restart_base: float = 0.5
    restart_max: float = 30.0
    # Seconds between SIGTERM and SIGKILL; None: the platform policy's stop timeout.
    stop_timeout: float | None = None
    # Every proxy writes one JSON line per request (Envoy's default access-log fields) to its log.
    access_log: bool = False
    # What runs a task: "process" (the app as a local process) or "docker" (the manifest's image as a
    # container, intercepted by its sidecar as on ECS).
    runtime: str = "process"
    # docker runtime: when an image is pulled ("missing", "always", "never").
    pull: str = "missing"

    def __post_init__(self) -> None:
        if self.tasks_per_version is not None and not 1 <= self.tasks_per_version <= 20:
            raise UserError(f"tasks_per_version {self.tasks_per_version} is not 1-20")
        if not 0.01 <= self.health_time_scale <= 10:
            raise UserError(f"health_time_scale {self.health_time_scale} is not 0.01-10")
        if self.deploy_timeout <= 0 or self.restart_base <= 0 or self.restart_max < self.restart_base:
            raise UserError("deploy_timeout and restart_base must be positive, restart_max >= restart_base")
        if self.runtime not in ("process", "docker"):
            raise UserError(f"runtime {self.runtime!r} is not one of process, docker")
        if self.pull not in ("missing", "always", "never"):
            raise UserError(f"pull policy {self.pull!r} is not one of missing, always, never")
        if self.stop_timeout is not None and not 0.1 <= self.stop_timeout <= 120:
            raise UserError(f"stop_timeout {self.stop_timeout} is not 0.1-120 seconds")

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> LocalOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalOptions:
        """``MESHPIPE_LOCAL_TASKS``, ``MESHPIPE_LOCAL_HEALTH_SCALE``, ``MESHPIPE_LOCAL_ACCESS_LOG`` (1/0),
        ``MESHPIPE_LOCAL_RUNTIME`` (process/docker) and ``MESHPIPE_LOCAL_PULL`` override the defaults."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        try:
            if environ.get("MESHPIPE_LOCAL_TASKS"):
                values["tasks_per_version"] = int(environ["MESHPIPE_LOCAL_TASKS"])
            if environ.get("MESHPIPE_LOCAL_HEALTH_SCALE"):
                values["health_time_scale"] = float(environ["MESHPIPE_LOCAL_HEALTH_SCALE"])
            if environ.get("MESHPIPE_LOCAL_ACCESS_LOG"):
                values["access_log"] = environ["MESHPIPE_LOCAL_ACCESS_LOG"].strip().lower() in ("1", "true", "yes")
            if environ.get("MESHPIPE_LOCAL_RUNTIME"):
                values["runtime"] = environ["MESHPIPE_LOCAL_RUNTIME"].strip().lower()
            if environ.get("MESHPIPE_LOCAL_PULL"):
                values["pull"] = environ["MESHPIPE_LOCAL_PULL"].strip().lower()
        except ValueError as exc:
            raise UserError(f"bad MESHPIPE_LOCAL_* setting: {exc}") from None
        return cls(**values)  # type: ignore[arg-type]


def write_options(path: Path, options: LocalOptions) -> None:
    from meshpipe.atomic import write_atomically  # tempfile and shutil: not for a read command

    write_atomically(path, json.dumps(options.to_json(), indent=2, sort_keys=True) + "\n")


def read_options(path: Path) -> LocalOptions:
    try:
        return LocalOptions.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return LocalOptions()
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path} is not valid: {exc}") from None


def runtime_text(options: LocalOptions) -> str:
    """How ``env status`` names what runs an environment's tasks."""
    if options.runtime == "docker":
        return f"docker (tasks as containers, intercepted by their sidecar; pull {options.pull})"
    return "process (tasks as local processes)"
