"""The ``meshpipe`` command: thin commands over the library, mounted on one Typer app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meshpipe import __version__
from meshpipe.cli import core_cmds, observe_cmds, ops_cmds
from meshpipe.cli.output import Format
from meshpipe.cli.platform_cmds import platform_app
from meshpipe.cli.rollout_cmds import rollout_app

# Documented in README.md (Exit status) as well; tests/test_cli.py keeps the two in step.
EXIT_STATUS = ("Exit status: 0 success; 1 the operation failed (a failed pipeline run, a rolled-back or halted "
               "rollout, an engine error); 2 bad input: a usage error, a file's problems, something that does "
               "not exist, or a request the current state refuses (a conflict); 70 a bug in meshpipe (the "
               "traceback is saved to a file); 130 interrupted.")

app = typer.Typer(
    name="meshpipe",
    help="One small manifest.yaml per service → meshed, immutable versions on Amazon ECS or on this machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    epilog=EXIT_STATUS,
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
app.command()(ops_cmds.services)
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
def load(
    url: Annotated[str, typer.Argument(help="URL to GET, e.g. the ingress: http://127.0.0.1:PORT/backend/data.")],
    rps: Annotated[float, typer.Option("--rps", help="Requests per second, sent on schedule (open loop).")] = 50.0,
    duration: Annotated[float, typer.Option("--duration", help="Seconds to send for.")] = 10.0,
    header: Annotated[list[str] | None, typer.Option("--header", help="NAME=VALUE sent with every request "
                                                     "(e.g. x-canary=always for a preview); repeatable.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take.")] = 10.0,
    fmt: Annotated[Format, typer.Option("--format", help="text for people, json for scripts.")] = Format.text,
) -> None:
    """Send steady load and print latency percentiles and the split between the versions that answered."""
    from meshpipe.cli.loadgen import generate, report_json
    from meshpipe.cli.output import out, print_json

    report = generate(url, rps, duration, header or (), timeout)
    if fmt is Format.json:
        print_json(report_json(report))
        return
    from rich.markup import escape
    from rich.table import Table

    lat = report.latency_ms
    out.print(f"GET {escape(url)}: {report.sent} of {report.planned} requests sent at {rps:g}/s for {duration:g} s "
              f"(achieved {report.achieved_rps:.1f}/s), {report.answered} answered")
    out.print("status: " + (", ".join(f"{code}: {n}" for code, n in report.statuses.items()) or "none")
              + "".join(f"; [red]{escape(why)}: {n}[/red]" for why, n in report.failures.items()))
    if lat["p50"] is not None:
        out.print("latency ms: " + "  ".join(f"{k} {v:.1f}" for k, v in lat.items() if v is not None))
    table = Table("version (x-meshpipe-version)", "answers", "share", "5xx", "p99 ms", box=None, padding=(0, 1))
    for version, f in report.versions.items():
        table.add_row(version, str(f.requests), f"{f.share:.1f} %", str(f.errors),
                      f"{f.p99_ms:.1f}" if f.p99_ms is not None else "-")
    out.print(table)


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="Keep the environment running afterwards.")] = False,
    home: Annotated[Path | None, typer.Option(help="meshpipe home for the demo (default: $MESHPIPE_HOME).")] = None,
    requests: Annotated[int, typer.Option(help="Requests sent to observe the canary split.")] = 300,
    rollout: Annotated[bool, typer.Option("--rollout", help="Instead: push a bad backend (rolled back by itself, "
                                          "the reason shown), then a good one (promoted by itself).")] = False,
    interval: Annotated[int, typer.Option(help="--rollout: seconds per rollout step.")] = 5,
    runtime: Annotated[str | None, typer.Option("--runtime", help="process (the default, or $MESHPIPE_LOCAL_RUNTIME) or docker: build the samples' images and run every task as a container.")] = None,
) -> None:
    """Run the original sample's walkthrough, steps 1-9, on the local engine, showing each step."""
    import os

    from meshpipe.cli.output import out
    from meshpipe.demos.walkthrough import run_demo
    from meshpipe.errors import UserError

    runtime = runtime or os.environ.get("MESHPIPE_LOCAL_RUNTIME") or "process"
    if runtime not in ("process", "docker"):
        raise UserError(f"--runtime {runtime!r} is not one of process, docker")
    # The demo's environment is made with this runtime (the local engine reads it when it is made).
    os.environ["MESHPIPE_LOCAL_RUNTIME"] = runtime
    if rollout:
        from meshpipe.cli.rollout_view import render
        from meshpipe.demos.rollout import run_rollout_demo

        if not 1 <= interval <= 60:
            raise UserError(f"--interval {interval} is not 1-60 seconds")
        run_rollout_demo(home=home, keep=keep, console=out, interval=interval, view=render)
        return

    run_demo(home=home, keep=keep, console=out, requests=requests, runtime=runtime)
