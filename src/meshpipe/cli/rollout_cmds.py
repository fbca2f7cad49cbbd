"""``meshpipe rollout``: canary, promote and rollback as one command each, on top of ``route set``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from meshpipe.cli.ops_cmds import EngineOpt, EnvOpt, _print_route, engine_for
from meshpipe.cli.output import out

rollout_app = typer.Typer(help="Shift traffic between versions: canary, promote, rollback, stepped rollouts.",
                          no_args_is_help=True)


@rollout_app.command("canary")
def canary(service: Annotated[str, typer.Argument(help="Service name.")],
           version: Annotated[str, typer.Argument(help="New version (id, commit or virtual node name).")],
           weight: Annotated[int, typer.Option(help="Percent of traffic to the new version.")] = 10,
           env: EnvOpt = "demo", engine: EngineOpt = "local") -> None:
    """Send a share of traffic (default 10 %) to a new version, the rest to the stable one."""
    from meshpipe.mesh import plans
    from meshpipe.mesh.routing import parse_version_ref

    new = parse_version_ref(service, version)
    with engine_for(engine) as eng:
        targets = plans.canary(eng.route_show(env, service), new, weight)
        route = eng.route_set(env, service, targets)
    _print_route(route, service)


@rollout_app.command("promote")
def promote(service: Annotated[str, typer.Argument(help="Service name.")],
            version: Annotated[str | None, typer.Argument(help="Version to promote (default: the canary).")] = None,
            env: EnvOpt = "demo", engine: EngineOpt = "local") -> None:
    """Send all traffic to the canary (or the named version)."""
    from meshpipe.mesh import plans
    from meshpipe.mesh.routing import parse_version_ref

    named = parse_version_ref(service, version) if version else None
    with engine_for(engine) as eng:
        targets = plans.promote(eng.route_show(env, service), named)
        route = eng.route_set(env, service, targets)
    _print_route(route, service)


@rollout_app.command("rollback")
def rollback(service: Annotated[str, typer.Argument(help="Service name.")],
             to: Annotated[str | None, typer.Option("--to", help="Version to go back to (default: the stable one).")] = None,
             env: EnvOpt = "demo", engine: EngineOpt = "local") -> None:
    """Send all traffic back to the stable version (or the one named)."""
    from meshpipe.mesh import plans
    from meshpipe.mesh.routing import parse_version_ref

    named = parse_version_ref(service, to) if to else None
    with engine_for(engine) as eng:
        targets = plans.rollback(eng.route_show(env, service), named)
        route = eng.route_set(env, service, targets)
    out.print(f"rolled back {escape(service)}")
    _print_route(route, service)
