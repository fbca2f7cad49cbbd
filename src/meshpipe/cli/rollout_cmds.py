"""``meshpipe rollout``: canary, promote and rollback as one command each, on top of ``route set``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from meshpipe.cli.ops_cmds import EngineOpt, EnvOpt, FormatOpt, _print_route, engine_for
from meshpipe.cli.output import Format, out, print_json

rollout_app = typer.Typer(help="Shift traffic between versions: canary, promote, rollback, stepped rollouts.",
                          no_args_is_help=True)


@rollout_app.command("canary")
def canary(service: Annotated[str, typer.Argument(help="Service name.")],
           version: Annotated[str, typer.Argument(help="New version (id, commit or virtual node name).")],
           weight: Annotated[int, typer.Option(help="Percent of traffic to the new version.")] = 10,
           env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """Send a share of traffic (default 10 %) to a new version, the rest to the stable one."""
    from meshpipe.mesh import plans
    from meshpipe.mesh.routing import parse_version_ref

    new = parse_version_ref(service, version)
    with engine_for(engine) as eng:
        targets = plans.canary(eng.route_show(env, service), new, weight)
        route = eng.route_set(env, service, targets)
    print_json(route) if fmt is Format.json else _print_route(route, service)


@rollout_app.command("promote")
def promote(service: Annotated[str, typer.Argument(help="Service name.")],
            version: Annotated[str | None, typer.Argument(help="Version to promote (default: the canary).")] = None,
            env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """Send all traffic to the canary (or the named version)."""
    from meshpipe import rollout
    from meshpipe.mesh.routing import parse_version_ref

    named = parse_version_ref(service, version) if version else None
    with engine_for(engine) as eng:
        route = rollout.promote(eng, env, service, named)
    print_json(route) if fmt is Format.json else _print_route(route, service)


@rollout_app.command("rollback")
def rollback(service: Annotated[str, typer.Argument(help="Service name.")],
             to: Annotated[str | None, typer.Option("--to", help="Version to go back to (default: the stable one).")] = None,
             env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """Send all traffic back to the stable version (or the one named)."""
    from meshpipe import rollout
    from meshpipe.mesh.routing import parse_version_ref

    named = parse_version_ref(service, to) if to else None
    with engine_for(engine) as eng:
        route = rollout.rollback(eng, env, service, named)
    if fmt is Format.json:
        print_json(route)
        return
    out.print(f"rolled back {escape(service)}")
    _print_route(route, service)


@rollout_app.command("run")
def run(service: Annotated[str, typer.Argument(help="Service name.")],
        version: Annotated[str, typer.Argument(help="New version (id, commit or virtual node name).")],
        steps: Annotated[str, typer.Option(help="Percent to the new version at each step, ending at 100.")] = "10,50,100",
        interval: Annotated[float, typer.Option(help="Seconds to observe each step.")] = 30.0,
        max_error_rate: Annotated[float, typer.Option(help="Highest error rate of the new version (0-1) a step may show.")] = 0.01,
        min_requests: Annotated[int, typer.Option(help="Requests to the new version a step needs; fewer fails the step.")] = 0,
        env: EnvOpt = "demo", engine: EngineOpt = "local") -> None:
    """Shift traffic to a new version step by step; roll back when its error rate exceeds the limit."""
    from meshpipe.engines.base import StatsSource
    from meshpipe.errors import UserError
    from meshpipe.mesh.routing import parse_version_ref
    from meshpipe.rollout import RolloutPolicy, run_rollout

    try:
        weights = tuple(int(s) for s in steps.split(","))
    except ValueError:
        raise UserError(f"--steps {steps!r} is not a list of integers like 10,50,100") from None
    if not 0 <= max_error_rate <= 1:
        raise UserError(f"--max-error-rate {max_error_rate} is not between 0 and 1")
    if interval < 0:
        raise UserError("--interval must not be negative")
    new = parse_version_ref(service, version)
    policy = RolloutPolicy(steps=weights, interval_s=interval, max_error_rate=max_error_rate, min_requests=min_requests)
    with engine_for(engine) as eng:
        counted = eng if isinstance(eng, StatsSource) else None
        if counted is None:
            out.print(f"[yellow]the {eng.name} engine reports no per-version metrics: steps advance on time only[/yellow]")
        report = run_rollout(eng, env, service, new, policy,
                             stats=(lambda: counted.stats(env, service)) if counted else None,
                             say=lambda line: out.print(escape(line)))
    if report.outcome != "promoted":
        raise typer.Exit(1)
