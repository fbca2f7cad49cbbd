"""The Docker Engine a container runtime talks to, through the ``docker`` SDK (``DOCKER_HOST`` is honoured,
so Podman's Docker-compatible socket works too), and the images the runtime makes for itself.

Every failure to reach the engine is one line that says what to do.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from meshpipe.engines.local.tasks import rootfs
from meshpipe.errors import OperationError, UserError

# Labels on everything the runtime makes: what `env delete` removes, and nothing else.
LABEL_OWNER = "meshpipe.env-dir"
LABEL_ENV = "meshpipe.env"
LABEL_SERVICE = "meshpipe.service"
LABEL_VERSION = "meshpipe.version"
LABEL_TASK = "meshpipe.task"
LABEL_ROLE = "meshpipe.role"
LABEL_LOCAL_IMAGE = "meshpipe.local-image"


def connect(timeout: float = 60.0) -> Any:
    """A ``docker.DockerClient`` that answered a ping; a one-line UserError with the fix otherwise."""
    try:
        import docker
        import docker.errors
    except ImportError:  # pragma: no cover - a pinned dependency
        raise UserError("the 'docker' Python package is missing", hint="pip install meshpipe again") from None
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except docker.errors.DockerException as exc:
        if os.environ.get("DOCKER_HOST") is None and shutil.which("dockerd") is None \
                and shutil.which("docker") is None and shutil.which("podman") is None:
            raise UserError("the docker runtime needs a Docker Engine, and none is installed",
                            hint="apt-get install docker.io, start it (dockerd &), then env create again; "
                                 "or use --runtime process") from None
        raise UserError(f"the Docker Engine at {host} does not answer: {_first_line(exc)}",
                        hint="start it (dockerd & or systemctl start docker), or set DOCKER_HOST to its socket; "
                             "or use --runtime process") from None
    return client


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _import(client: Any, ref: str, data: bytes, changes: list[str]) -> None:
    repo, tag = ref.rsplit(":", 1)
    changes = [*changes, f"LABEL {LABEL_LOCAL_IMAGE}=1"]
    try:
        client.api.import_image_from_data(data, repository=repo, tag=tag, changes=changes)
    except Exception as exc:
        raise OperationError(f"cannot import image {ref} into the Docker Engine: {_first_line(exc)}") from None


def has_image(client: Any, ref: str) -> bool:
    import docker.errors

    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_pause_image(client: Any) -> str:
    """The image each task's namespace holder runs, made from this machine's ``sleep`` when missing."""
    if not has_image(client, rootfs.PAUSE_IMAGE):
        _import(client, rootfs.PAUSE_IMAGE, rootfs.pause_rootfs(), ['CMD ["/bin/pause", "infinity"]'])
    return rootfs.PAUSE_IMAGE


def ensure_python_image(client: Any, rebuild: bool = False) -> str:
    """This machine's Python with curl, sh and the samples' packages (the samples' Dockerfiles' base)."""
    if rebuild or not has_image(client, rootfs.PYTHON_IMAGE):
        _import(client, rootfs.PYTHON_IMAGE, rootfs.python_rootfs(),
                ["ENV PATH=/usr/local/bin:/usr/bin:/bin", 'CMD ["python"]'])
    return rootfs.PYTHON_IMAGE
