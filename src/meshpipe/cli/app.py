"""The ``meshpipe`` command: thin commands over the library, mounted on one Typer app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meshpipe import __version__
from meshpipe.cli import core_cmds, observe_cmds, ops_cmds
from meshpipe.cli.platform_cmds import platform_app
from meshpipe.cli.rollout_cmds import rollout_app

app = typer.Typer(
    name="meshpipe",
    help="One small manifest.yaml per service → meshed, immutable versions on Amazon ECS or on this machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"meshpipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an unexpected error (also "
                                        "MESHPIPE_DEBUG=1); accepted anywhere on the command line.")] = False,
) -> None:
    """meshpipe: manifest → pipeline → meshed version → weighted traffic."""


app.command()(core_cmds.validate)
app.command()(core_cmds.schema)
app.command()(core_cmds.synth)
app.add_typer(platform_app, name="platform")
app.add_typer(ops_cmds.env_app, name="env")
app.add_typer(ops_cmds.pipeline_app, name="pipeline")
app.add_typer(ops_cmds.route_app, name="route")
app.command()(ops_cmds.versions)
app.command()(ops_cmds.stats)
app.command()(ops_cmds.events)
app.add_typer(ops_cmds.version_app, name="version")
app.command()(observe_cmds.graph)
app.command()(observe_cmds.logs)
app.command()(observe_cmds.metrics)
app.command()(observe_cmds.dashboard)
app.add_typer(rollout_app, name="rollout")


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="Keep the environment running afterwards.")] = False,
    home: Annotated[Path | None, typer.Option(help="meshpipe home for the demo (default: $MESHPIPE_HOME).")] = None,
    requests: Annotated[int, typer.Option(help="Requests sent to observe the canary split.")] = 300,
) -> None:
    """Run the original sample's walkthrough, steps 1-9, on the local engine, showing each step."""
    from meshpipe.cli.output import out
    from meshpipe.demo import run_demo

    run_demo(home=home, keep=keep, console=out, requests=requests)
