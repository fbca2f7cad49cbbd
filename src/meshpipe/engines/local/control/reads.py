"""The read commands' way to a running daemon: one request, and its JSON answer in the form the command
prints, without the operation table, the engine's types or any dataclass.

A read command (``versions``, ``route show``, ``env status``, ``stats``) would otherwise spend more on
loading what types and routes every other operation than on its request. :func:`ask` finds the daemon as
``LocalEngine`` does (daemon.json, its pid running), sends the read's endpoint (``endpoints``, which the
operation table routes too) and returns the answer. Whenever it cannot answer (no daemon running or
listening, a name it does not take, an answer it does not read), it returns None and the full command
line does the command, starting the daemon or saying what is wrong.
"""

from __future__ import annotations

import json
import os

from meshpipe.engines.local.control import endpoints
from meshpipe.engines.local.control.wire import connect, read_response, request_head
from meshpipe.engines.local.state.daemonfiles import read_daemon_file
from meshpipe.engines.local.state.folders import DAEMON_JSON, ENVS, home_folder
from meshpipe.engines.local.tasks.pids import is_running
from meshpipe.validation.rules import ENVIRONMENT_NAME_RE, SERVICE_NAME_RE

TYPE_CHECKING = False  # typing's own flag would load typing, a tenth of a read command
if TYPE_CHECKING:
    from typing import Any

PATHS = {"versions": endpoints.VERSIONS, "route_view": endpoints.ROUTE_VIEW, "env_status": endpoints.STATUS,
         "stats": endpoints.STATS}
RUNNING = "RUNNING"  # engines.base.EnvState.RUNNING, as an environment whose daemon answers reports it
TIMEOUT = 30.0


def environment_details(root: str, status: dict[str, Any]) -> dict[str, str]:
    """What ``env status`` lists of a running environment, from the daemon's status document."""
    details = {"home": root, "namespace": status["namespace"],
               # A daemon started before runtimes existed runs tasks as processes.
               "runtime": status.get("runtime", "process (tasks as local processes)"),
               "daemon": f"running (pid {status['daemon']['pid']})",
               "gateway": "live" if status["gateway"]["live"] else "not live"}
    for svc in status["services"]:
        versions = ", ".join(f"{v['version']} {v['status']} {v['healthy_tasks']}/{v['desired_tasks']} tasks "
                             f"weight {v['weight']}" for v in svc["versions"]) or "no versions"
        details[f"service {svc['name']}"] = f"{svc['virtual_service']}: {versions}"
    for gr in status["gateway_routes"]:
        details[f"gateway route {gr['name']}"] = f"{gr['prefix']} -> {gr['virtual_service']}"
    return details


def ask(env: str, read: str, service: str = "", home: str | None = None) -> tuple[int, Any] | None:
    """The daemon's status and JSON answer to ``read`` (a key of :data:`PATHS`) about ``service`` in ``env``;
    for ``env_status``, the environment's info as ``EnvironmentInfo``'s fields. None: the full command
    line must do it."""
    if not ENVIRONMENT_NAME_RE.match(env) or (read != "env_status" and not SERVICE_NAME_RE.match(service)):
        return None  # the full command line names what is wrong with it
    root = os.path.join(home if home is not None else home_folder(), ENVS, env)
    data = read_daemon_file(os.path.join(root, DAEMON_JSON))
    if data is None or not is_running(int(data["pid"])):
        return None
    try:
        port, token = int(data["control_port"]), str(data["token"])
        sock = connect(port, TIMEOUT)
    except (KeyError, ValueError, OSError):
        return None
    try:
        sock.sendall(request_head("GET", PATHS[read].format(service=service), port, token))
        status, raw = read_response(sock)
        answer: Any = json.loads(raw) if raw else None
    except (OSError, ValueError):
        return None
    finally:
        sock.close()
    if status == 200 and read == "env_status":
        try:
            return status, {"name": env, "status": RUNNING, "ingress_url": answer["ingress_url"],
                            "details": environment_details(root, answer)}
        except (KeyError, TypeError):
            return None
    return status, answer
