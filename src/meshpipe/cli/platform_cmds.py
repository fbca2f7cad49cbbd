"""``meshpipe platform``: the AWS environment, build bucket and service pipeline as templates, and the bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from meshpipe.cli.output import out
from meshpipe.mesh.flavour import MeshFlavour

platform_app = typer.Typer(help="What the platform team deploys on AWS: templates and the build bundle.",
                           no_args_is_help=True)


@platform_app.command("render")
def render(env: Annotated[str, typer.Option("--env", help="Environment name, e.g. demo.")],
           output_dir: Annotated[Path, typer.Option("-o", "--output-dir", help="Folder for the templates.")] = Path("."),
           branch: Annotated[str, typer.Option(help="Config repo branch whose pushes start pipelines.")] = "main",
           platform: Annotated[Path | None, typer.Option("--platform", help="Platform file whose policy: section applies (settings beside it are not needed).")] = None,
           mesh: Annotated[str, typer.Option("--mesh", help=f"{MeshFlavour.SERVICE_CONNECT} (the default: live) or {MeshFlavour.APPMESH} (the original system, shut down on 2026-09-30).")] = MeshFlavour.SERVICE_CONNECT.value,
           certificate_arn: Annotated[str | None, typer.Option("--certificate-arn", help="ACM certificate for the ingress: HTTPS on 443, HTTP redirected to it.")] = None,
           source: Annotated[str | None, typer.Option("--source", help="Config repo of the pipeline template: codecommit (default), or github:OWNER/REPO, gitlab:GROUP/PROJECT, bitbucket:WORKSPACE/REPO with --connection.")] = None,
           connection: Annotated[str | None, typer.Option("--connection", help="ARN of the CodeConnections connection for --source.")] = None,
           ) -> None:
    """Write the environment, build-bucket and service-pipeline CloudFormation templates."""
    from meshpipe.platform_policy import load_policy_file
    from meshpipe.synth.environment import EnvironmentOptions
    from meshpipe.synth.ingress_tls import check_certificate_arn
    from meshpipe.synth.pipeline_source import parse_source
    from meshpipe.synth.platform_render import write_platform

    if certificate_arn is not None:
        check_certificate_arn(certificate_arn)
    options = EnvironmentOptions(certificate_arn=certificate_arn)
    pipeline_source = parse_source(source, connection)
    policy = load_policy_file(str(platform)) if platform else None
    for path in write_platform(env, output_dir, policy=policy, branch=branch, mesh=MeshFlavour.parse(mesh), options=options,
                               source=pipeline_source):
        out.print(escape(str(path)))


@platform_app.command("bundle")
def bundle(output_dir: Annotated[Path, typer.Option("-o", "--output-dir", help="Folder for the zip.")] = Path("."),
           wheels: Annotated[bool, typer.Option(help="Carry the dependency wheels (needs PyPI now, not in the build); "
                                                     "--no-wheels carries only the pins.")] = True,
           ) -> None:
    """Build the zip the pipeline's Build stage installs meshpipe from."""
    from meshpipe.pipeline.bundle import build_bundle

    out.print(escape(str(build_bundle(output_dir, include_wheels=wheels))))
