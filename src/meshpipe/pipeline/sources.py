"""Where a pipeline's Source stage reads from: the config repo at the pushed commit."""

from __future__ import annotations

from pathlib import Path

from meshpipe.pipeline.stages import SourceInput

MANIFEST_FILE = "manifest.yaml"


def git_source(repo: Path, service: str, commit: str, path: str = MANIFEST_FILE) -> SourceInput:
    """Source for a local bare repo: ``path`` as of ``commit``, read when the stage runs."""
    from meshpipe.engines.local.gitrepo import read_file_at

    return SourceInput(service=service, commit=commit, read_manifest=lambda: read_file_at(repo, commit, path),
                       file_label=path)
