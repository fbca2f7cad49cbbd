"""Atomic writes: the target is whole or untouched, with the mode asked for, and no temporary file stays."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from meshpipe.atomic import write_atomically


def test_replaces_the_file_with_the_mode_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "daemon.json"
    target.write_text("old")
    write_atomically(target, '{"token": "x"}')
    assert target.read_text() == '{"token": "x"}'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_atomically(target, b"#!/bin/sh\n", mode=0o755)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()  # a folder in the way: the final rename fails
    (target / "keep").write_text("x")
    with pytest.raises(OSError):
        write_atomically(target, "new")
    assert (target / "keep").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

