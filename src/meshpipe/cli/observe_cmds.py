"""Seeing the mesh: graph, logs, metrics and dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from meshpipe.cli.ops_cmds import EngineOpt, EnvOpt, FormatOpt, engine_for, lacking
from meshpipe.cli.output import Format, out

if TYPE_CHECKING:
    from meshpipe.engines.base import LogLine


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"
    json = "json"


def graph(env: EnvOpt = "demo", engine: EngineOpt = "local",
          fmt: Annotated[GraphFormat, typer.Option("--format", help="mermaid (renders on GitHub), dot (Graphviz), "
                                                   "svg, or json (the topology as data).")] = GraphFormat.mermaid,
          rates: Annotated[float, typer.Option(help="local: measure each version's request and error rates "
                                               "over this many seconds first (0: weights only).")] = 0.0,
          output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file.")] = None) -> None:
    """Draw the environment's mesh: ingress → gateway routes → services → versions, with route weights."""
    from meshpipe.engines.base import TopologySource
    from meshpipe.errors import UserError
    from meshpipe.mesh.graph import render

    if rates < 0:
        raise UserError("--rates takes a number of seconds, 0 or more")
    with engine_for(engine) as eng:
        if not isinstance(eng, TopologySource):
            raise lacking(eng, "graph")
        topology = eng.topology(env, rates)
    if fmt is GraphFormat.json:
        import json

        from meshpipe.cli.output import to_jsonable

        text = json.dumps(to_jsonable(topology), indent=2) + "\n"
    else:
        text = render(topology, fmt.value)
    if output is None:
        typer.echo(text, nl=False)
        return
    from meshpipe.atomic import write_atomically

    write_atomically(output, text)
    out.print(f"wrote {escape(str(output))}")


def logs(service: Annotated[str, typer.Argument(help="Service name.")],
         version: Annotated[str | None, typer.Option("--version", help="Only this version (id, commit or "
                                                     "virtual node name).")] = None,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
         tail: Annotated[int, typer.Option(help="How many of the latest lines first (0: all).")] = 200,
         env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """A service's app and sidecar logs, interleaved by time (json: one object per line)."""
    from meshpipe.engines.base import LogSource
    from meshpipe.mesh.routing import parse_version_ref

    ver = parse_version_ref(service, version) if version else None
    with engine_for(engine) as eng:
        if not isinstance(eng, LogSource):
            raise lacking(eng, "logs")
        for line in eng.logs(env, service, ver, tail or None):
            _print_line(line, fmt)
        if follow:
            try:
                for line in eng.follow_logs(env, service, ver):
                    _print_line(line, fmt)
            except KeyboardInterrupt:
                return


def _print_line(line: LogLine, fmt: Format) -> None:
    import time

    if fmt is Format.json:
        import json

        typer.echo(json.dumps({"at": line.at or None, "source": line.source, "text": line.text}))
        return
    at = line.at
    stamp = time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}" if at else " " * 12
    typer.echo(f"{stamp} {line.source:<30} {line.text}")


def metrics(env: EnvOpt = "demo", engine: EngineOpt = "local",
            scrape_config: Annotated[bool, typer.Option("--scrape-config", help="Print a Prometheus scrape job "
                                                        "for the environment instead.")] = False,
            fmt: Annotated[Format, typer.Option("--format", help="text: Prometheus' text format; json: one "
                                                "object per sample (name, labels, value).")] = Format.text) -> None:
    """The environment's metrics in Prometheus' text format (Envoy's names, plus meshpipe_* figures)."""
    from meshpipe.engines.base import MetricsSource

    with engine_for(engine) as eng:
        if not isinstance(eng, MetricsSource):
            raise lacking(eng, "metrics (see its CloudWatch dashboard: meshpipe dashboard)")
        if not scrape_config:
            page = eng.metrics(env)
            if fmt is Format.json:
                from prometheus_client.parser import text_string_to_metric_families

                from meshpipe.cli.output import print_json

                print_json([{"name": sample.name, "labels": dict(sample.labels), "value": sample.value}
                            for family in text_string_to_metric_families(page) for sample in family.samples])
                return
            typer.echo(page, nl=False)
            return
        target = eng.metrics_target(env)
    if fmt is Format.json:
        from meshpipe.cli.output import print_json

        print_json(target)
        return
    typer.echo(f"""- job_name: meshpipe-{target['environment']}
  metrics_path: {target['metrics_path']}
  authorization:
    type: Bearer
    credentials_file: {target['credentials_file']}
  static_configs:
    - targets: ["{target['target']}"]
""", nl=False)


def dashboard(env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text,
              open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open it in a web browser when "
                                                         "this machine has one (a display, macOS, Windows or "
                                                         "$BROWSER).")] = True) -> None:
    """Print the address of the environment's dashboard, and open it in a browser where there is one.

    local: a live web dashboard served by the environment's daemon on 127.0.0.1; the address carries its
    access token. aws (Service Connect): the environment's CloudWatch dashboard in the console."""
    from meshpipe.engines.base import DashboardSource

    with engine_for(engine) as eng:
        if not isinstance(eng, DashboardSource):
            raise lacking(eng, "dashboard")
        url = eng.dashboard_url(env)
    opened = open_browser and _open_in_browser(url)
    if fmt is Format.json:
        from meshpipe.cli.output import print_json

        print_json({"environment": env, "url": url, "opened": opened})
        return
    typer.echo(url)


def browser_available(environ: Mapping[str, str], platform: str) -> bool:
    """Whether opening a page can show it to someone: a desktop (macOS, Windows, an X or Wayland display)
    or a browser named in $BROWSER. Without one, Python's webbrowser would start a text browser in this
    terminal, or nothing."""
    if environ.get("BROWSER"):
        return True
    if platform == "darwin" or platform.startswith("win"):
        return True
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def _open_in_browser(url: str) -> bool:
    import os
    import sys
    import webbrowser

    if not browser_available(os.environ, sys.platform):
        return False
    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False
