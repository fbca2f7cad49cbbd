"""The post-receive hook of a service's config repo: tells the environment's daemon about a push.

    python -m meshpipe.engines.local.source.hook --env-dir DIR --service SVC [--branch main]

Git feeds the hook one ``<old> <new> <ref>`` line per updated ref. A push to the pipeline's branch that
sets it to a commit is reported to the daemon (``POST /v1/push`` on its loopback control API, with the
token from ``<env-dir>/daemon.json``), which starts the service's pipeline. The hook never fails the
push: a push that could not be reported is kept in the repository, and a warning tells the pusher how to
start its pipeline run later (:func:`start_run`, e.g. from ``meshpipe pipeline start``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from meshpipe.errors import OperationError

DAEMON_FILE = "daemon.json"
PUSH_PATH = "/v1/push"
POST_TIMEOUT_SECONDS = 10.0
ZERO_COMMIT = "0" * 40


class DaemonUnavailable(OperationError):
    """The environment's daemon could not be told about a push."""


class NoPipeline(OperationError):
    """The repo's service has no pipeline (it was deleted, the repo kept): nothing runs for its pushes."""


@dataclass(frozen=True)
class RefUpdate:
    old: str
    new: str
    ref: str


@dataclass(frozen=True)
class DaemonAddress:
    pid: int
    control_port: int
    token: str


def parse_ref_updates(lines: Iterable[str]) -> list[RefUpdate]:
    """Git's post-receive input; malformed lines are skipped."""
    updates = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            updates.append(RefUpdate(*parts))
    return updates


def pipeline_updates(updates: Sequence[RefUpdate], branch: str) -> list[RefUpdate]:
    """The updates that start a pipeline run: the branch set to a commit (not deleted)."""
    ref = f"refs/heads/{branch}"
    return [u for u in updates if u.ref == ref and u.new.strip("0")]


def read_daemon_address(env_dir: Path) -> DaemonAddress:
    path = Path(env_dir) / DAEMON_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return DaemonAddress(int(data["pid"]), int(data["control_port"]), str(data["token"]))
    except FileNotFoundError:
        raise DaemonUnavailable(f"the environment's daemon is not running ({path} does not exist)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DaemonUnavailable(f"cannot read {path}: {exc}") from None


def post_push(env_dir: Path, service: str, ref: str, old: str, new: str,
              timeout: float = POST_TIMEOUT_SECONDS) -> str:
    """Report a push to the daemon; returns the id of the pipeline run it started."""
    address = read_daemon_address(env_dir)
    body = json.dumps({"service": service, "ref": ref, "old": old, "new": new}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", address.control_port, timeout=timeout)
    try:
        conn.request("POST", PUSH_PATH, body=body, headers={
            "Authorization": f"Bearer {address.token}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise DaemonUnavailable(f"the daemon on 127.0.0.1:{address.control_port} did not answer: {exc}") from None
    finally:
        conn.close()
    text = raw.decode("utf-8", "replace").strip()
    if resp.status == 404:
        raise NoPipeline(f"{service} has no pipeline in this environment")
    if resp.status // 100 != 2:
        raise DaemonUnavailable(f"the daemon refused the push (HTTP {resp.status}): {text[:300]}")
    try:
        run_id = json.loads(raw)["run_id"]
    except (ValueError, KeyError, TypeError):
        raise DaemonUnavailable(f"the daemon answered without a run id: {text[:300]}") from None
    return str(run_id)


def start_run(env_dir: Path, service: str, commit: str, branch: str = "main") -> str:
    """Start a pipeline run for ``commit`` as if it had just been pushed (e.g. after the daemon was down)."""
    return post_push(env_dir, service, f"refs/heads/{branch}", ZERO_COMMIT, commit)


def hook_argv(env_dir: Path, service: str, python: str = sys.executable) -> list[str]:
    """The argv a config repo's post-receive hook runs (for :func:`gitrepo.create_bare_repo`)."""
    return [python, "-m", "meshpipe.engines.local.source.hook", "--env-dir", str(env_dir), "--service", service]


def handle_push(env_dir: Path, service: str, branch: str, lines: Iterable[str], out: TextIO) -> int:
    """Report each pipeline-starting update; always 0, so a push is never refused after the fact."""
    updates = parse_ref_updates(lines)
    for update in updates:
        if update.ref != f"refs/heads/{branch}":
            print(f"meshpipe: {update.ref} is not {branch}: the {service} pipeline runs only for {branch}", file=out)
    for update in pipeline_updates(updates, branch):
        try:
            run_id = post_push(env_dir, service, update.ref, update.old, update.new)
        except NoPipeline:
            env = Path(env_dir).name
            print(f"meshpipe: push kept, but {service} has no pipeline in {env} (it was deleted; this config repo "
                  f"was kept): create it with 'meshpipe pipeline create {service} --env {env}', then run "
                  f"'meshpipe pipeline start {service} --env {env}'", file=out)
            continue
        except OperationError as exc:
            print(f"meshpipe: warning: push kept, but no pipeline run was started: {exc.message}", file=out)
            env = Path(env_dir).name
            print(f"meshpipe: check the environment with 'meshpipe env status --env {env}', then start the run "
                  f"with 'meshpipe pipeline start {service} --env {env}' (commit {update.new[:8]})", file=out)
            continue
        print(f"meshpipe: pipeline run {run_id} started for {service} at {update.new[:8]}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshpipe-hook", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--env-dir", required=True, type=Path, help="the environment's folder (holds daemon.json)")
    parser.add_argument("--service", required=True, help="the service whose config repo this is")
    parser.add_argument("--branch", default="main", help="the branch that starts the pipeline (default: main)")
    args = parser.parse_args(argv)
    try:
        return handle_push(args.env_dir, args.service, args.branch, sys.stdin, sys.stdout)
    except Exception as exc:  # the push already happened; say what went wrong, without a traceback
        print(f"meshpipe: warning: could not report the push: {exc}", file=sys.stdout)
        return 0


if __name__ == "__main__":
    sys.exit(main())
