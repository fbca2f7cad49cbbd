"""The platform team's CloudFormation templates for one environment, rendered together and written together.

=====================================  ==============================  ===================================
file                                   stack                           parameters
=====================================  ==============================  ===================================
``<env>-env.template.json``            ``<env>-env``                   EnvironmentName (default ``<env>``)
``<env>-build-bucket.template.json``   ``<env>-build-bucket``          EnvironmentName (default ``<env>``)
``service-pipeline.template.json``     ``<env>-<svc>-pipeline``        EnvironmentName, ServiceName
=====================================  ==============================  ===================================

Create them in that order: the build bucket and the pipelines import the environment's exports, and the
pipelines import the bucket's. :func:`render_platform` is pure; :func:`write_platform` writes all three
files or none.

``mesh`` picks the flavour: ``appmesh`` (the default, the original system) or ``service-connect`` (no App
Mesh: an ECS Service Connect namespace, an application load balancer as the ingress, one service stack
``<env>-<svc>`` per service). The file and stack names are the same in both flavours, since an environment
has one flavour; the environment template records it in its ``MeshFlavour`` output (Service Connect only;
an environment without that output is App Mesh's). Render the two flavours into different folders.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from meshpipe.errors import OperationError, UserError
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.platform import PlatformPolicy
from meshpipe.synth.build_bucket import build_bucket_stack_name, build_bucket_template_file, render_build_bucket
from meshpipe.synth.cfn import Json, template_json
from meshpipe.synth.environment import (
    EnvironmentOptions,
    check_env_name,
    environment_stack_name,
    environment_template_file,
    render_environment_for,
)
from meshpipe.synth.pipeline_source import PipelineSource
from meshpipe.synth.service_pipeline import (
    DEFAULT_SERVICE_PORT,
    SERVICE_PIPELINE_TEMPLATE_FILE,
    pipeline_stack_name,
    render_service_pipeline,
)

__all__ = [
    "SERVICE_PIPELINE_TEMPLATE_FILE",
    "build_bucket_stack_name",
    "environment_stack_name",
    "pipeline_stack_name",
    "platform_template_files",
    "render_platform",
    "write_platform",
]


def platform_template_files(env: str) -> tuple[str, str, str]:
    """The three file names, in the order their stacks must be created."""
    return environment_template_file(env), build_bucket_template_file(env), SERVICE_PIPELINE_TEMPLATE_FILE


def render_platform(env: str, policy: PlatformPolicy | None = None, *, branch: str = "main",
                    options: EnvironmentOptions | None = None,
                    service_port: int = DEFAULT_SERVICE_PORT, mesh: MeshFlavour = MeshFlavour.APPMESH,
                    source: PipelineSource = None) -> dict[str, Json]:
    """The environment, build-bucket and service-pipeline templates, keyed by file name. Pure.

    ``policy`` supplies the conventions shared with version stacks (Envoy health-check timings, log
    prefixes, DNS TTL); ``options`` the environment's own choices (Envoy image, log retention, NAT
    gateways); ``branch`` is the config-repo branch whose pushes start a pipeline; ``source`` the config
    repo (None: a CodeCommit repo per service; see meshpipe.synth.pipeline_source); ``mesh`` the flavour
    (``service_port``, the virtual router's port, applies to ``appmesh`` only).
    """
    check_env_name(env)
    mesh = MeshFlavour.parse(mesh)
    env_file, bucket_file, pipeline_file = platform_template_files(env)
    return {
        env_file: render_environment_for(env, mesh, policy, options),
        bucket_file: render_build_bucket(env),
        pipeline_file: render_service_pipeline(env, policy, branch=branch, service_port=service_port, mesh=mesh,
                                               source=source),
    }


def write_platform(env: str, out_dir: Path | str, policy: PlatformPolicy | None = None, *, branch: str = "main",
                   options: EnvironmentOptions | None = None,
                   service_port: int = DEFAULT_SERVICE_PORT, mesh: MeshFlavour = MeshFlavour.APPMESH,
                   source: PipelineSource = None) -> list[Path]:
    """Render the three templates, then write them into ``out_dir``; return their paths.

    Nothing is written unless every template rendered. The files are first written to a staging folder
    inside ``out_dir`` and then renamed into place, so a failure leaves no partial file behind.
    """
    texts = {name: template_json(body) for name, body in
             render_platform(env, policy, branch=branch, options=options, service_port=service_port,
                             mesh=mesh, source=source).items()}
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is not a folder", hint="pass a folder for the templates with -o")
    targets = {name: out / name for name in texts}
    in_the_way = [str(p) for p in targets.values() if p.exists() and not p.is_file()]
    if in_the_way:
        raise UserError(f"cannot write templates over {', '.join(in_the_way)}", hint="move it or pick another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".meshpipe-render-", dir=out))
    except OSError as exc:
        raise OperationError(f"cannot write to {out}: {exc.strerror or exc}") from None
    placed: list[Path] = []
    try:
        staged = {}
        for name, text in texts.items():
            staged[name] = staging / name
            staged[name].write_text(text, encoding="utf-8")
        for name, path in staged.items():
            existed = targets[name].exists()
            os.replace(path, targets[name])
            if not existed:
                placed.append(targets[name])
    except OSError as exc:
        # Take back the files this call created; files it replaced already hold their new text.
        for path in placed:
            path.unlink(missing_ok=True)
        raise OperationError(f"cannot write the templates to {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return list(targets.values())
