"""The Docker Engine for the container-runtime tests.

Every image these tests use is made from this machine's files (meshpipe's own image builders, then
``docker build FROM`` them): nothing is ever pulled. Without a reachable engine the tests are skipped on a
developer's machine with the reason, and fail in CI (``CI=true``) or with ``MESHPIPE_REQUIRE_DOCKER=1``,
where a missing Docker is a broken set-up, not a pass.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from meshpipe.errors import MeshpipeError

# Everything a test makes carries this label, so a failed test's leftovers are found and removed.
TEST_LABEL = "meshpipe.test"


def docker_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("MESHPIPE_REQUIRE_DOCKER") == "1"


def docker_or_skip() -> Any:
    from meshpipe.engines.local.tasks.dockerhost import connect

    try:
        return connect(timeout=120)
    except MeshpipeError as exc:
        reason = f"no Docker Engine: {exc.message} ({exc.hint})"
        if docker_required():
            pytest.fail(reason)
        pytest.skip(reason)


def remove_labelled(client: Any, label: str, value: str) -> None:
    """Remove every container and network carrying ``label=value`` (a test's leftovers)."""
    for container in client.containers.list(all=True, filters={"label": f"{label}={value}"}):
        container.remove(force=True)
    for network in client.networks.list(filters={"label": f"{label}={value}"}):
        network.remove()
