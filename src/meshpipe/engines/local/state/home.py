"""Where the local engine keeps things: ``$MESHPIPE_HOME`` (default ``~/.meshpipe``).

Each environment lives in its own folder, so deleting an environment is deleting one folder::

    <home>/envs/<env>/state.db       SQLite: services, versions, routes, tasks, pipeline runs, events
                      repos/         bare git repos, one per service (<svc>-cfg.git)
                      logs/          one folder per version: <task>-app.log and <task>-envoy.log
                      daemon.json    pid, control port and bearer token of the running daemon (mode 0600)
                      daemon.log     what the daemon did
                      daemon.lock    held by the running daemon: one daemon per environment
                      watchdog.lock  held by the daemon's watchdog, which restarts it if it dies
                      engine.json    local engine options fixed when the environment was created
                      metrics.token  the bearer token for scraping the daemon's /metrics (mode 0600)
                      dashboard.token  what opens the web dashboard (``meshpipe dashboard`` prints it in the URL; 0600)
                      dashboard.port   the dashboard's port, taken again when the daemon restarts and it is free
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meshpipe.engines.local.state.folders import DAEMON_JSON, ENVS, home_folder
from meshpipe.naming import check_env_name


def meshpipe_home(environ: Mapping[str, str] | None = None) -> Path:
    """The home folder: ``$MESHPIPE_HOME`` when set, else ``~/.meshpipe``."""
    return Path(home_folder(environ))


@dataclass(frozen=True)
class EnvPaths:
    """The files of one environment."""

    name: str
    root: Path

    @property
    def state_db(self) -> Path:
        return self.root / "state.db"

    @property
    def repos(self) -> Path:
        return self.root / "repos"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def daemon_json(self) -> Path:
        return self.root / DAEMON_JSON

    @property
    def daemon_log(self) -> Path:
        return self.root / "daemon.log"

    @property
    def daemon_lock(self) -> Path:
        return self.root / "daemon.lock"

    @property
    def watchdog_lock(self) -> Path:
        return self.root / "watchdog.lock"

    @property
    def engine_json(self) -> Path:
        return self.root / "engine.json"

    @property
    def metrics_token(self) -> Path:
        return self.root / "metrics.token"

    @property
    def dashboard_token(self) -> Path:
        return self.root / "dashboard.token"

    @property
    def dashboard_port(self) -> Path:
        return self.root / "dashboard.port"

    def repo(self, service: str) -> Path:
        return self.repos / f"{service}-cfg.git"

    def version_logs(self, service: str, version: str) -> Path:
        return self.logs / f"{service}-{version}"

    def gateway_log(self) -> Path:
        return self.logs / "gateway-envoy.log"

    def exists(self) -> bool:
        return self.state_db.exists()

    def make_dirs(self) -> None:
        for d in (self.root, self.repos, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        # The env folder holds the control token; only its owner may look inside.
        os.chmod(self.root, 0o700)


def env_paths(home: Path, env: str) -> EnvPaths:
    check_env_name(env)
    return EnvPaths(env, home / ENVS / env)


def env_paths_of_dir(env_dir: Path) -> EnvPaths:
    """The paths of the environment whose folder is ``env_dir`` (the daemon is given the folder)."""
    env_dir = env_dir.absolute()
    check_env_name(env_dir.name)
    return EnvPaths(env_dir.name, env_dir)
