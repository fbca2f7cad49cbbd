"""The README's examples stay true: its shown output is what the commands print."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def console_blocks() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of every ```console block starting with `$ meshpipe`."""
    blocks = []
    for body in re.findall(r"```console\n(.*?)```", README, flags=re.S):
        lines = body.rstrip("\n").splitlines()
        if lines and lines[0].startswith("$ meshpipe "):
            blocks.append((lines[0][2:], lines[1:]))
    return blocks


def test_readme_shows_validate_output_as_printed():
    blocks = console_blocks()
    assert blocks, "the README shows no meshpipe console example"
    for command, expected in blocks:
        args = command.split()[1:]
        env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"}
        proc = subprocess.run([sys.executable, "-m", "meshpipe", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        printed = (proc.stdout + proc.stderr).splitlines()
        assert printed == expected, f"README block for {command!r} is out of date"


def test_readme_names_the_two_setup_commands():
    assert "./dev demo" in README and "./dev test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./dev test" in ci
