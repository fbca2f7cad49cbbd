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


def remove_environment(client: Any, env_dir: str) -> list[str]:
    """Every container and network labelled with the environment's folder, and nothing else; their names."""
    import contextlib

    removed = []
    owner = f"{LABEL_OWNER}={env_dir}"
    for container in client.containers.list(all=True, filters={"label": owner}):
        with contextlib.suppress(Exception):
            container.remove(force=True)
            removed.append(container.name)
    for net in client.networks.list(filters={"label": owner}):
        with contextlib.suppress(Exception):
            net.remove()
            removed.append(net.name)
    return removed


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


SAMPLES = ("hello-web", "hello-backend")


def sample_context(service: str) -> bytes:
    """The build context of a bundled sample: its Dockerfile and the meshpipe package, as a tar."""
    import io
    import tarfile
    from pathlib import Path

    import meshpipe

    package = Path(meshpipe.__file__).parent
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(package / "samples" / f"Dockerfile.{service}"), arcname="Dockerfile")
        tar.add(str(package), arcname="meshpipe",
                filter=lambda info: None if "__pycache__" in info.name else info)
    return buf.getvalue()


def build_sample_image(client: Any, service: str, tag: str) -> str:
    """``docker build`` of a bundled sample (``hello-web``, ``hello-backend``) from local material only."""
    import io

    import docker.errors

    if service not in SAMPLES:
        raise UserError(f"{service!r} is not a bundled sample", hint=f"one of: {', '.join(SAMPLES)}")
    base = ensure_python_image(client)
    try:
        client.images.build(fileobj=io.BytesIO(sample_context(service)), custom_context=True, tag=tag,
                            buildargs={"BASE": base}, pull=False, rm=True, forcerm=True,
                            labels={LABEL_LOCAL_IMAGE: "1"})
    except docker.errors.BuildError as exc:
        raise OperationError(f"cannot build {tag}: {_first_line(exc)}") from None
    return tag
