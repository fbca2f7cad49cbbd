"""What several benchmarks start from: one service deployed from its bundled manifest, taking all traffic."""

from __future__ import annotations

from pathlib import Path

from meshpipe.demos.walkthrough import bundled_manifest
from meshpipe.engines.local.engine import LocalEngine
from meshpipe.git import GitIdentity, clone, commit_all, push
from meshpipe.mesh.routing import WeightedTarget

IDENTITY = GitIdentity("meshpipe bench", "bench@meshpipe.invalid")


def deploy_baseline(engine: LocalEngine, env: str, service: str, workdir: Path) -> str:
    """Create ``env`` and ``service``'s pipeline, push the bundled manifest from a clone in ``workdir``, wait for
    the run and send all traffic to the version it deployed; returns that version."""
    engine.env_create(env)
    info = engine.pipeline_create(env, service)
    repo = clone(info.clone_url, workdir)
    (repo / "manifest.yaml").write_bytes(bundled_manifest(f"{service}-cfg"))
    commit = commit_all(repo, "baseline", IDENTITY)
    push(repo)
    run = engine.pipeline_wait(env, service, commit=commit, timeout=180)
    if run.status != "Succeeded" or not run.version:
        raise SystemExit(f"pipeline run {run.run_id} ended {run.status}")
    engine.route_set(env, service, (WeightedTarget(run.version, 100),))
    return run.version
