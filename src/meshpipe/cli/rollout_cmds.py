"""``meshpipe rollout``: canary, promote and rollback as one command each, on top of ``route set``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from meshpipe.cli.ops_cmds import EngineOpt, EnvOpt, FormatOpt, _print_route, engine_for, lacking
from meshpipe.cli.output import Format, out, print_json
from meshpipe.status import RolloutStatus

if TYPE_CHECKING:
    from meshpipe.engines.base import Engine, RolloutRunner, RolloutStatusSource

rollout_app = typer.Typer(help="Shift traffic between versions: rollouts run by the environment (start, status, "
                               "watch, pause, resume, abort, promote), and one-step canary, promote, rollback.",
                          no_args_is_help=True)


@rollout_app.command("canary")
def canary(service: Annotated[str, typer.Argument(help="Service name.")],
           version: Annotated[str, typer.Argument(help="New version (id, commit or virtual node name).")],
           weight: Annotated[int, typer.Option(help="Percent of traffic to the new version.")] = 10,
           env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """Send a share of traffic (default 10 %) to a new version, the rest to the stable one."""
    from meshpipe.mesh import traffic
    from meshpipe.mesh.routing import parse_version_ref

    new = parse_version_ref(service, version)
    with engine_for(engine) as eng:
        targets = traffic.canary(eng.route_show(env, service), new, weight)
        route = eng.route_set(env, service, targets)
    print_json(route) if fmt is Format.json else _print_route(route, service)


@rollout_app.command("promote")
def promote(service: Annotated[str, typer.Argument(help="Service name.")],
            version: Annotated[str | None, typer.Argument(help="Version to promote (default: the canary).")] = None,
            env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """Send all traffic to the canary (or the named version); a running rollout is promoted at once."""
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
    """Send all traffic back to the stable version (or the one named); a running rollout is aborted."""
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


# --- rollouts run by the environment (the local engine's daemon) ------------------------------------------

def _runner(eng: Engine) -> RolloutRunner:
    """The engine as one whose environment runs rollouts itself; refused (exit 2) when it does not."""
    from meshpipe.engines.base import RolloutRunner

    if not isinstance(eng, RolloutRunner):
        raise lacking(eng, "rollouts run by the environment",
                      hint="on aws, rollout promote and rollout rollback drive the ECS deployment")
    return eng


def _status_source(eng: Engine) -> RolloutStatusSource:
    """The engine as one that can show a rollout's progress; refused (exit 2) when it cannot."""
    from meshpipe.engines.base import RolloutStatusSource

    if not isinstance(eng, RolloutStatusSource):
        raise lacking(eng, "rollout status")
    return eng


# Outcomes a script must not take for success: `rollout status` and `rollout watch` exit 1 on these
# (local: rolled back, or halted by a pre-rollout check; ECS: rolled back, its rollback failed, or stopped).
FAILED_OUTCOMES = frozenset({RolloutStatus.ROLLED_BACK, RolloutStatus.HALTED, "rollback-failed", "stopped"})


def _outcome_exit(status: dict[str, Any]) -> None:
    if status.get("status") in FAILED_OUTCOMES:
        raise typer.Exit(1)


def _show(status: dict[str, Any], fmt: Format) -> None:
    from meshpipe.cli.rollout_view import render

    if fmt is Format.json:
        print_json(status)
    else:
        out.print(render(status))


@rollout_app.command("start")
def start(service: Annotated[str, typer.Argument(help="Service name.")],
          version: Annotated[str, typer.Argument(help="Version to roll out (id, commit or virtual node name).")],
          env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """Start a rollout of a deployed version: its manifest's plan, else the platform's default."""
    from meshpipe.mesh.routing import parse_version_ref

    ver = parse_version_ref(service, version)
    with engine_for(engine) as eng:
        status = _runner(eng).rollout_start(env, service, ver)
    _show(status, fmt)


@rollout_app.command("status")
def status(service: Annotated[str, typer.Argument(help="Service name.")], env: EnvOpt = "demo",
           engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """The running (else the latest) rollout: step, weights, every window's figures and verdict, next decision.

    Exit status: 0 running or promoted (or superseded by a newer version), 1 rolled back or halted."""
    with engine_for(engine) as eng:
        found = _status_source(eng).rollout_status(env, service)
    _show(found, fmt)
    _outcome_exit(found)


# pause, resume and abort differ only in the action they send; the table gives each its command and help.
_CONTROLS = {
    "pause": "Hold the running rollout where it is: no decisions until resumed.",
    "resume": "Go on with a paused rollout; the window the pause cut starts over.",
    "abort": "Roll the running rollout back: every version gets its weight from before the rollout.",
}


def _control_command(action: str, doc: str) -> Callable[..., None]:
    def control(service: Annotated[str, typer.Argument(help="Service name.")], env: EnvOpt = "demo",
                engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
        with engine_for(engine) as eng:
            found = _runner(eng).rollout_control(env, service, action)
        _show(found, fmt)

    control.__name__ = action
    control.__doc__ = doc
    return control


for _action, _doc in _CONTROLS.items():
    rollout_app.command(_action)(_control_command(_action, _doc))


@rollout_app.command("watch")
def watch(service: Annotated[str, typer.Argument(help="Service name.")], env: EnvOpt = "demo",
          engine: EngineOpt = "local",
          every: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 0.5,
          until_done: Annotated[bool, typer.Option("--until-done/--forever",
                                                   help="Stop once the rollout ended.")] = True,
          fmt: FormatOpt = Format.text) -> None:
    """Follow a rollout live: step, weights, windows, next decision (Ctrl-C stops watching, not the rollout).

    json: one status document per line, each time it changes. Exit status once it ended: 0 promoted (or
    superseded), 1 rolled back or halted."""
    import time

    from meshpipe.errors import UserError

    if not 0.1 <= every <= 60:
        raise UserError(f"--every {every:g} is not between 0.1 and 60 seconds")
    with engine_for(engine) as eng:
        read = _status_source(eng).rollout_status
        current = read(env, service)
        try:
            if fmt is Format.json:
                _watch_json(lambda: read(env, service), current, every, until_done)
            else:
                from rich.live import Live

                from meshpipe.cli.rollout_view import render

                with Live(render(current), console=out, refresh_per_second=max(1, int(1 / every)),
                          transient=False) as live:
                    while not (until_done and current["status"] != RolloutStatus.RUNNING):
                        time.sleep(every)
                        current = read(env, service)
                        live.update(render(current))
        except KeyboardInterrupt:
            return
    if current["status"] != RolloutStatus.RUNNING:
        _outcome_exit(current)


def _watch_json(read: Callable[[], dict[str, Any]], current: dict[str, Any], every: float, until_done: bool) -> None:
    import json
    import sys
    import time

    from meshpipe.cli.output import to_jsonable

    def changed(doc: dict[str, Any]) -> dict[str, Any]:
        # The countdown changes on every read; it alone is no news.
        return {k: v for k, v in doc.items() if k != "next_decision_in_s"}

    sys.stdout.write(json.dumps(to_jsonable(current)) + "\n")
    sys.stdout.flush()
    last = changed(current)
    while not (until_done and current["status"] != RolloutStatus.RUNNING):
        time.sleep(every)
        current.clear()
        current.update(read())
        if changed(current) != last:
            last = changed(current)
            sys.stdout.write(json.dumps(to_jsonable(current)) + "\n")
            sys.stdout.flush()
