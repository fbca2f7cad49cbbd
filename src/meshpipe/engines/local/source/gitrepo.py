"""Git for the local engine: a service's config repo (bare, with a post-receive hook) and what is read from it.

git itself (running it, and the working copies a person makes from a clone URL) is ``meshpipe.git``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from meshpipe.atomic import write_atomically
from meshpipe.errors import NotFoundError, UserError

# The git program's names this module's callers use too: re-exported.
from meshpipe.git import DEFAULT_BRANCH as DEFAULT_BRANCH
from meshpipe.git import GitError as GitError
from meshpipe.git import resolve_ref as resolve_ref
from meshpipe.git import run_git as run_git

ZERO_COMMIT = "0" * 40


def hook_script(hook_argv: Sequence[str]) -> str:
    """A POSIX shell hook that replaces itself with ``hook_argv`` (stdin, stdout, stderr passed through)."""
    if not hook_argv:
        raise ValueError("hook_argv must name a program")
    return "#!/bin/sh\n# Installed by meshpipe: reports each push to the environment's daemon.\nexec " + \
        " ".join(shlex.quote(a) for a in hook_argv) + "\n"


def install_post_receive_hook(repo: Path, hook_argv: Sequence[str]) -> Path:
    hooks = repo / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    hook = hooks / "post-receive"
    return write_atomically(hook, hook_script(hook_argv), mode=0o755)  # a push never sees half a hook


def create_bare_repo(path: Path, hook_argv: list[str], branch: str = DEFAULT_BRANCH) -> None:
    """Create an empty bare repository whose default branch is ``branch``, with a post-receive hook."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise UserError(f"{path} already exists and is not empty")
    path.mkdir(parents=True, exist_ok=True)
    run_git(["init", "--quiet", "--bare", f"--initial-branch={branch}", str(path)])
    # A user's global core.hooksPath would otherwise hide this repository's own hook.
    run_git(["config", "core.hooksPath", str(path.resolve() / "hooks")], cwd=path)
    install_post_receive_hook(path, hook_argv)


def has_commits(repo: Path) -> bool:
    """Whether ``repo`` is a git repository with at least one commit on any branch."""
    proc = run_git(["rev-list", "--all", "--max-count=1"], cwd=Path(repo), check=False)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def head_commit(repo: Path) -> str | None:
    """The commit HEAD points at, or None for an empty repository."""
    return resolve_ref(repo, "HEAD")


def read_file_at(repo: Path, commit: str, path: str) -> bytes:
    """The bytes of ``path`` as of ``commit``; a clear error when the commit or the file is missing."""
    repo = Path(repo)
    full = resolve_ref(repo, commit)
    if full is None:
        raise NotFoundError(f"commit {commit[:12]!r} is not in {repo.name}")
    proc = run_git(["cat-file", "blob", f"{full}:{path}"], cwd=repo, check=False)
    if proc.returncode != 0:
        raise NotFoundError(f"{path} is not in commit {full[:8]} of {repo.name}",
                            hint=f"add {path} at the top of the repository, commit and push again")
    return proc.stdout
