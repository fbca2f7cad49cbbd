"""git, the program: run it, and what a person does with a config repo's clone URL (clone, commit, push).

Every git call runs as a subprocess with an argument list (never a shell) and a timeout, and a failure
becomes an error that says what git said. Commits made here carry an identity passed in the process
environment, so nothing depends on the user's git configuration. The local engine keeps its config repos
with it (``engines.local.source.gitrepo``); the demos push to them with it, as an app team would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from meshpipe.errors import OperationError, UserError

GIT_TIMEOUT_SECONDS = 30.0
DEFAULT_BRANCH = "main"


@dataclass(frozen=True)
class GitIdentity:
    name: str = "meshpipe"
    email: str = "meshpipe@localhost.invalid"

    def env(self) -> dict[str, str]:
        return {"GIT_AUTHOR_NAME": self.name, "GIT_AUTHOR_EMAIL": self.email,
                "GIT_COMMITTER_NAME": self.name, "GIT_COMMITTER_EMAIL": self.email}


class GitError(OperationError):
    """A git command failed; ``stderr`` holds what git said."""

    def __init__(self, message: str, stderr: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.stderr = stderr


def _git_binary() -> str:
    git = shutil.which("git")
    if git is None:
        raise UserError("git is not installed or not on PATH", hint="install git; the local engine keeps config repos in it")
    return git


def run_git(args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
            input: bytes | None = None, timeout: float = GIT_TIMEOUT_SECONDS,
            check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS``; raise :class:`GitError` on a non-zero exit (when ``check``) or a timeout."""
    full_env = dict(os.environ)
    # Messages are parsed in places (and shown to users), so keep them in one language, and never prompt.
    full_env.update({"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"})
    if env:
        full_env.update(env)
    argv = [_git_binary(), *args]
    try:
        proc = subprocess.run(argv, cwd=cwd, env=full_env, input=input, capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args[:2])} did not finish within {timeout:g} s") from None
    if check and proc.returncode != 0:
        said = proc.stderr.decode("utf-8", "replace").strip()
        raise GitError(f"git {' '.join(args[:2])} failed: {said or f'exit status {proc.returncode}'}", said)
    return proc


def resolve_ref(repo: Path, ref: str) -> str | None:
    """The full commit id ``ref`` names in ``repo``, or None when it names no commit."""
    if not ref or ref.startswith("-"):
        return None
    proc = run_git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"],
                   cwd=Path(repo), check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().strip() or None



# Working copies: what a person does with the clone URL.

def clone(url: str, dest: Path) -> Path:
    run_git(["clone", "--quiet", "--", url, str(dest)])
    return dest


def commit_all(workdir: Path, message: str, identity: GitIdentity | None = None) -> str:
    """``git add . && git commit -m MESSAGE``; returns the new commit id."""
    ident = identity or GitIdentity()
    run_git(["add", "--all", "."], cwd=workdir)
    run_git(["commit", "--quiet", "--no-verify", "--no-gpg-sign", "-m", message], cwd=workdir, env=ident.env())
    commit = resolve_ref(workdir, "HEAD")
    assert commit is not None
    return commit


def push(workdir: Path, branch: str = DEFAULT_BRANCH, timeout: float = 60.0) -> str:
    """``git push origin BRANCH``; returns what the remote printed (the hook's messages)."""
    proc = run_git(["push", "--porcelain", "origin", f"HEAD:refs/heads/{branch}"], cwd=workdir, timeout=timeout)
    lines = proc.stderr.decode("utf-8", "replace").splitlines()
    return "\n".join(line.removeprefix("remote: ").rstrip() for line in lines if line.startswith("remote:"))
