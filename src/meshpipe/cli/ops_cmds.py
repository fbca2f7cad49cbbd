"""Operations on an environment, the same on every engine: env, pipeline, route, versions, version."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from meshpipe.cli import readouts
from meshpipe.cli.output import ConsoleReporter, Format, out, print_json
from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.status import RolloutStatus

if TYPE_CHECKING:
    from meshpipe.engines.base import Engine, HeaderRoutes, Planner
    from meshpipe.engines.plan import Plan

EngineOpt = Annotated[str, typer.Option("--engine", envvar="MESHPIPE_ENGINE", help="local (this machine) or aws.")]
EnvOpt = Annotated[str, typer.Option("--env", envvar="MESHPIPE_ENV", help="Environment name.")]
FormatOpt = Annotated[Format, typer.Option("--format", help="text for people, json for scripts.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan (the calls it would make, each with "
                                                             "its reason) and change nothing (aws).")]
GraphOpt = Annotated[bool, typer.Option("--graph", help="A compact weight bar per version instead of a table.")]


def _print_bars(weights: list[tuple[str, int]]) -> None:
    from meshpipe.mesh.graph import weight_bars

    for line in weight_bars("", weights):
        out.print(escape(line))

env_app = typer.Typer(help="Create, inspect and delete environments (mesh, cluster, ingress).", no_args_is_help=True)
pipeline_app = typer.Typer(help="Service pipelines: config repo → Build → Deploy of a new version.", no_args_is_help=True)
route_app = typer.Typer(help="Traffic: gateway routes on the ingress and weighted routes between versions.",
                        no_args_is_help=True)
version_app = typer.Typer(help="Manage one version of a service.", no_args_is_help=True)


@contextmanager
def engine_for(name: str) -> Iterator[Engine]:
    from meshpipe.engines import get_engine

    reporter = ConsoleReporter()
    try:
        yield get_engine(name, reporter)
    finally:
        reporter.close()


def planner(engine: Engine) -> Planner:
    """The engine as one that plans before it acts, for ``--dry-run``; refused (exit 2) when it does not."""
    from meshpipe.engines.base import Planner

    if not isinstance(engine, Planner):
        from meshpipe.errors import UserError

        raise UserError(f"--dry-run is not available on the {engine.name} engine")
    return engine


def show_plan(plan: Plan, fmt: Format) -> None:
    if fmt is Format.json:
        print_json(plan.as_dict())
        return
    for line in plan.lines():
        out.print(escape(line), highlight=False)


def header_routing(engine: Engine) -> HeaderRoutes:
    """The engine as one that routes by request header; refused (exit 2) when it does not."""
    from meshpipe.engines.base import HeaderRoutes

    if not isinstance(engine, HeaderRoutes):
        raise lacking(engine, "header routes")
    return engine


def lacking(engine: Engine, what: str = "this command", hint: str | None = None) -> Exception:
    """The refusal (exit 2) of a command whose capability (a runtime-checkable protocol of
    meshpipe.engines.base) the engine has not."""
    from meshpipe.errors import UserError

    return UserError(f"{what} is not available on the {engine.name} engine", hint=hint)


# --- env -------------------------------------------------------------------------------------------------

EnvNameArg = Annotated[str | None, typer.Argument(help="Environment name; or --env NAME, or $MESHPIPE_ENV.",
                                                  show_default=False)]
EnvNameOpt = Annotated[str | None, typer.Option("--env", help="Environment name (the same as the argument).",
                                                show_default=False)]


YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask: needed when there is no terminal to ask on "
                                                          "(scripts, CI).")]


def confirm(goes: list[str], command: str, yes: bool) -> None:
    """Show what a destructive command removes; go on with ``--yes``, or after a 'y' typed on a terminal.

    With no terminal on stdin there is nobody to ask, and a script that did not say --yes may not mean it:
    refused (exit 2), nothing deleted."""
    import sys

    from meshpipe.errors import UserError

    if yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"{command} deletes: " + " ".join(line.strip() for line in goes),
                        hint=f"there is no terminal to ask on: run 'meshpipe {command} --yes' to delete it")
    for line in goes:
        out.print(escape(line))
    if not typer.confirm("Delete?", default=False):
        out.print("nothing deleted")
        raise typer.Exit(1)


def env_name(positional: str | None, option: str | None, default: str | None = "demo") -> str:
    """The environment an ``env`` command is about: its argument or ``--env`` (the same name when both are
    given), else $MESHPIPE_ENV, else ``default`` (None: one must be named)."""
    import os

    from meshpipe.errors import UserError

    if positional and option and positional != option:
        raise UserError(f"two environments named: {positional!r} and --env {option!r}", hint="name one")
    name = positional or option or os.environ.get("MESHPIPE_ENV") or default
    if not name:
        raise UserError("no environment named", hint="name it: meshpipe env delete NAME (or --env NAME)")
    return name


def _print_env(info: Any) -> None:
    text = readouts.Text()
    readouts.env_text(info, text)
    text.write()


@env_app.command("create")
def env_create(name: EnvNameArg = None, env: EnvNameOpt = None, engine: EngineOpt = "local",
               mesh: Annotated[str | None, typer.Option("--mesh", help=f"aws: {MeshFlavour.SERVICE_CONNECT} (the default) or {MeshFlavour.APPMESH} (refused: App Mesh was shut down on 2026-09-30).")] = None,
               certificate_arn: Annotated[str | None, typer.Option("--certificate-arn", help="aws: ACM certificate for the ingress: HTTPS on 443, HTTP redirected to it (kept when omitted later).")] = None,
               platform: Annotated[Path | None, typer.Option("--platform", help="aws: platform file whose policy: section every build of the environment applies (default: keep the environment's, else the defaults).")] = None,
               runtime: Annotated[str | None, typer.Option("--runtime", help="local: what runs a task: process (the default, $MESHPIPE_LOCAL_RUNTIME) or docker (the manifest's image as a container, intercepted by its sidecar as on ECS).")] = None,
               pull: Annotated[str | None, typer.Option("--pull", help="local, docker runtime: when to pull an image: missing (the default), always or never.")] = None,
               fmt: FormatOpt = Format.text, dry_run: DryRunOpt = False) -> None:
    """Create an environment (default demo) and print its ingress endpoint."""
    from meshpipe.engines.base import ConfigurableEnvironments, EnvCreateOptions
    from meshpipe.errors import UserError
    from meshpipe.platform_policy import load_policy_file
    from meshpipe.synth.ingress_tls import check_certificate_arn

    flavour = MeshFlavour.parse(mesh) if mesh is not None else None
    if certificate_arn is not None:
        check_certificate_arn(certificate_arn)
    name = env_name(name, env)
    # The file is checked before any engine is asked for anything.
    policy = load_policy_file(str(platform)) if platform is not None else None
    if runtime is not None and runtime not in ("process", "docker"):
        raise UserError(f"--runtime {runtime!r} is not one of process, docker")
    if pull is not None and pull not in ("missing", "always", "never"):
        raise UserError(f"--pull {pull!r} is not one of missing, always, never")
    if (runtime or pull) and engine != "local":
        raise UserError("--runtime and --pull apply to --engine local (ECS runs the tasks on AWS)")
    # The local engine reads its per-environment options from these when it is made.
    if runtime is not None:
        os.environ["MESHPIPE_LOCAL_RUNTIME"] = runtime
    if pull is not None:
        os.environ["MESHPIPE_LOCAL_PULL"] = pull
    with engine_for(engine) as eng:
        if dry_run:
            return show_plan(planner(eng).plan_env_create(name, flavour, certificate_arn, policy), fmt)
        if isinstance(eng, ConfigurableEnvironments):
            info = eng.env_create_with(name, EnvCreateOptions(flavour, certificate_arn, policy))
        elif certificate_arn is not None:
            raise UserError(f"the {eng.name} engine's ingress is plain HTTP on this machine; "
                            "--certificate-arn applies to --engine aws")
        elif flavour not in (None, MeshFlavour.APPMESH):
            raise UserError(f"the {eng.name} engine runs the mesh itself; --mesh {mesh} applies to --engine aws")
        elif policy is not None:
            raise UserError(f"--platform applies to --engine aws; the {eng.name} engine applies the default policy",
                            hint="check a manifest against a policy with `meshpipe validate MANIFEST --platform FILE`")
        else:
            info = eng.env_create(name)
    print_json(info) if fmt is Format.json else _print_env(info)


@env_app.command("status")
def env_status(name: EnvNameArg = None, env: EnvNameOpt = None, engine: EngineOpt = "local",
               fmt: FormatOpt = Format.text) -> None:
    """Show an environment (default demo): status, ingress endpoint, services."""
    name = env_name(name, env)
    with engine_for(engine) as eng:
        info = eng.env_status(name)
    if info.missing:  # every engine answers a missing environment the same way: exit 2
        from meshpipe.errors import NotFoundError

        raise NotFoundError(f"environment {name!r} does not exist on the {engine} engine",
                            hint=f"create it with: meshpipe env create {name} --engine {engine}")
    print_json(info) if fmt is Format.json else _print_env(info)


@env_app.command("delete")
def env_delete(name: EnvNameArg = None, env: EnvNameOpt = None, engine: EngineOpt = "local",
               yes: YesOpt = False, dry_run: DryRunOpt = False, fmt: FormatOpt = Format.text) -> None:
    """Tear an environment down in the order that works: routes, versions, pipelines, buckets, environment.

    Says what goes and asks first on a terminal; without one (a script), --yes is required."""
    name = env_name(name, env, default=None)
    with engine_for(engine) as eng:
        if dry_run:
            return show_plan(planner(eng).plan_env_delete(name), fmt)
        info = eng.env_status(name)
        if info.missing:
            from meshpipe.errors import NotFoundError

            raise NotFoundError(f"environment {name!r} does not exist on the {engine} engine")
        goes = [f"environment {name} ({info.status}) on the {engine} engine, and everything in it:"]
        goes += [f"  {key}: {value}" for key, value in info.details.items() if key.startswith(("service ", "gateway"))]
        if engine == "local":
            goes.append("  every process it runs, its state, logs and the services' config repos (their git history)")
        confirm(goes, f"env delete {name}", yes)
        eng.env_delete(name)
    if fmt is Format.json:
        print_json({"environment": name, "deleted": True})
        return
    out.print(f"environment {escape(name)} deleted")




@env_app.command("list")
def env_list(engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """List the environments: name, status, ingress endpoint."""
    from meshpipe.engines.base import EnvironmentLister

    with engine_for(engine) as eng:
        if not isinstance(eng, EnvironmentLister):
            raise lacking(eng, "env list")
        found = [eng.env_status(name) for name in eng.env_list()]
    if fmt is Format.json:
        print_json([{"name": i.name, "status": i.status, "ingress_url": i.ingress_url} for i in found])
        return
    if not found:
        out.print(f"no environments on the {escape(engine)} engine yet: meshpipe env create NAME")
        return
    table = Table("environment", "status", "ingress")
    for i in found:
        table.add_row(i.name, str(i.status), i.ingress_url or "")
    out.print(table)


# --- pipeline --------------------------------------------------------------------------------------------

@pipeline_app.command("create")
def pipeline_create(service: Annotated[str, typer.Argument(help="Service name, e.g. hello-web.")], env: EnvOpt = "demo",
                    engine: EngineOpt = "local",
                    source: Annotated[str | None, typer.Option("--source", help="aws: codecommit (a repo <svc>-cfg, the default), or github:OWNER/REPO, gitlab:GROUP/PROJECT, bitbucket:WORKSPACE/REPO read through --connection.")] = None,
                    connection: Annotated[str | None, typer.Option("--connection", help="aws: ARN of the CodeConnections connection to the --source provider.")] = None,
                    branch: Annotated[str | None, typer.Option("--branch", help="aws: branch whose pushes start the pipeline (default main, or the pipeline's own).")] = None,
                    fmt: FormatOpt = Format.text, dry_run: DryRunOpt = False) -> None:
    """Create the service's config repo (or use yours) and pipeline (App Mesh: also its virtual service and router); print where to push."""
    from meshpipe.engines.base import ConfigurablePipelines, PipelineCreateOptions
    from meshpipe.errors import UserError
    from meshpipe.model import check_service_name
    from meshpipe.synth.pipeline_source import parse_source
    from meshpipe.synth.service_pipeline import check_branch

    check_service_name(service, "command line", "SERVICE")
    # Checked before any engine is asked for anything.
    if source is not None or connection is not None:
        parse_source(source, connection)
    if branch is not None:
        check_branch(branch)
    with engine_for(engine) as eng:
        if dry_run:
            return show_plan(planner(eng).plan_pipeline_create(env, service, source, connection, branch), fmt)
        if isinstance(eng, ConfigurablePipelines):
            info = eng.pipeline_create_with(env, service, PipelineCreateOptions(source, connection, branch))
        elif source is not None or connection is not None or branch is not None:
            raise UserError(f"--source, --connection and --branch apply to --engine aws; the {eng.name} engine "
                            "keeps the config repo itself (branch main)")
        else:
            info = eng.pipeline_create(env, service)
    print_json(info) if fmt is Format.json else print_pipeline(info)


def print_pipeline(info: Any) -> None:
    """Where to push: the repository (and branch) read through a connection, or the repo's clone URL."""
    out.print(f"pipeline for [bold]{escape(info.service)}[/bold] in {escape(info.environment)}: {escape(info.status)}")
    out.print(f"virtual service: {escape(info.virtual_service)}")
    if info.repository:
        out.print(f"repository: [cyan]{escape(info.repository)}[/cyan] (push manifest.yaml to branch "
                  f"{escape(info.branch or 'main')}; clone {escape(info.clone_url)})")
    else:
        out.print(f"clone URL: [cyan]{escape(info.clone_url)}[/cyan]")
    if info.repo_kept:
        out.print("the config repo kept from the deleted pipeline is used again, with its history")


@pipeline_app.command("delete")
def pipeline_delete(service: Annotated[str, typer.Argument(help="Service name.")], env: EnvOpt = "demo",
                    engine: EngineOpt = "local",
                    force: Annotated[bool, typer.Option(help="Delete the service's routes and versions first (aws).")] = False,
                    delete_repo: Annotated[bool, typer.Option("--delete-repo", help="local: delete the config repo "
                                                              "(its git history) too; kept by default, and a new "
                                                              "pipeline create uses it again.")] = False,
                    yes: YesOpt = False, dry_run: DryRunOpt = False, fmt: FormatOpt = Format.text) -> None:
    """Delete a service's pipeline (refused while versions of the service exist); the config repo is kept
    unless --delete-repo.

    Says what goes and asks first on a terminal; without one (a script), --yes is required."""
    from meshpipe.engines.base import ConfigRepoOwner, ConfigurablePipelines
    from meshpipe.errors import UserError

    with engine_for(engine) as eng:
        if dry_run:
            return show_plan(planner(eng).plan_pipeline_delete(env, service, force), fmt)
        if delete_repo and not isinstance(eng, ConfigRepoOwner):
            raise UserError(f"--delete-repo applies to the local engine; on {eng.name} the pipeline's stack "
                            "decides what happens to the repository")
        if force and not isinstance(eng, ConfigurablePipelines):
            raise UserError(f"--force is not available on the {eng.name} engine",
                            hint="delete the service's versions first: meshpipe version delete SVC VERSION")
        runs = eng.pipeline_runs(env, service)  # also: a service without a pipeline is refused here
        goes = [f"the pipeline of {service} in {env}: its virtual service {service}.{env}.local, router and "
                f"{len(runs)} pipeline run(s) with their logs"]
        if isinstance(eng, ConfigRepoOwner):
            goes.append(f"its config repo {service}-cfg (git history): "
                        + ("deleted (--delete-repo)" if delete_repo else "kept (--delete-repo deletes it)"))
        confirm(goes, f"pipeline delete {service} --env {env}" + (" --delete-repo" if delete_repo else ""), yes)
        if force and isinstance(eng, ConfigurablePipelines):
            eng.pipeline_delete_forced(env, service)
        elif delete_repo and isinstance(eng, ConfigRepoOwner):
            eng.pipeline_delete_with_repo(env, service)
        else:
            eng.pipeline_delete(env, service)
    if fmt is Format.json:
        print_json({"service": service, "environment": env, "deleted": True,
                    "repo_kept": isinstance(eng, ConfigRepoOwner) and not delete_repo})
        return
    out.print(f"pipeline for {escape(service)} deleted"
              + (f"; its config repo is kept (pipeline create {escape(service)} uses it again)"
                 if isinstance(eng, ConfigRepoOwner) and not delete_repo else ""))


def _runs_table(runs: list[Any]) -> Table:
    table = Table("run", "commit", "status", "version", "started", "finished", "stages")
    for r in runs:
        stages = " → ".join(f"{s.name}:{s.status}" for s in r.stages)
        table.add_row(r.run_id, (r.commit or "")[:8], r.status, r.version or "", r.started_at, r.finished_at or "",
                      stages)
    return table


@pipeline_app.command("runs")
def pipeline_runs(service: Annotated[str, typer.Argument(help="Service name.")], env: EnvOpt = "demo",
                  engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """List the pipeline's runs, newest first."""
    with engine_for(engine) as eng:
        runs = eng.pipeline_runs(env, service)
    if fmt is Format.json:
        print_json(runs)
    elif not runs:
        out.print(f"no runs yet for {escape(service)}: push a manifest.yaml to its config repo")
    else:
        out.print(_runs_table(runs))


def _print_run_logs(run: Any) -> None:
    out.print(f"run {escape(run.run_id)} of {escape(run.service)} at {escape((run.commit or '')[:8])}: "
              f"[bold]{escape(run.status)}[/bold]")
    for stage in run.stages:
        colour = {"Succeeded": "green", "Failed": "red"}.get(stage.status, "yellow")
        out.print(f"[{colour}]── {escape(stage.name)}: {escape(stage.status)}[/{colour}]")
        if stage.log:
            out.print(escape(stage.log.rstrip("\n")))


@pipeline_app.command("logs")
def pipeline_logs(service: Annotated[str, typer.Argument(help="Service name.")],
                  run_id: Annotated[str | None, typer.Argument(help="Run id (default: the latest).")] = None,
                  env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """Show what each stage of a run did."""
    with engine_for(engine) as eng:
        run = eng.pipeline_logs(env, service, run_id)
    print_json(run) if fmt is Format.json else _print_run_logs(run)


@pipeline_app.command("wait")
def pipeline_wait(service: Annotated[str, typer.Argument(help="Service name.")],
                  run_id: Annotated[str | None, typer.Argument(help="Run id (default: the latest).")] = None,
                  env: EnvOpt = "demo", engine: EngineOpt = "local",
                  timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 120.0,
                  rollout: Annotated[bool, typer.Option("--rollout", help="Also wait for the deployed version's "
                                                        "rollout to end (within --timeout).")] = False,
                  fmt: FormatOpt = Format.text) -> None:
    """Wait for a pipeline run to finish; exit 1 if it failed, or if the version it deployed was rolled back
    (or its rollout halted) by the time the wait ends."""
    import time

    from meshpipe.engines.base import PipelineWaiter
    from meshpipe.status import RunStatus

    deadline = time.monotonic() + timeout
    with engine_for(engine) as eng:
        if not isinstance(eng, PipelineWaiter):
            raise lacking(eng)
        run = eng.pipeline_wait(env, service, run_id, timeout=timeout)
        outcome = _rollout_of(eng, env, service, run.version) if run.status is RunStatus.SUCCEEDED else None
        while rollout and outcome is not None and outcome["status"] == RolloutStatus.RUNNING and time.monotonic() < deadline:
            time.sleep(0.5)
            outcome = _rollout_of(eng, env, service, run.version)
    if fmt is Format.json:
        from meshpipe.cli.output import to_jsonable

        print_json({**to_jsonable(run), "rollout": outcome})
    else:
        _print_run_logs(run)
        if outcome is not None:
            _print_rollout_outcome(outcome, service, env)
    from meshpipe.cli.rollout_cmds import FAILED_OUTCOMES

    if run.status is not RunStatus.SUCCEEDED or (outcome is not None and outcome["status"] in FAILED_OUTCOMES):
        raise typer.Exit(1)


def _rollout_of(eng: Engine, env: str, service: str, version: str | None) -> dict[str, Any] | None:
    """Status and reason of the rollout of ``version``, when the engine runs rollouts and there is one."""
    from meshpipe.engines.base import RolloutStatusSource
    from meshpipe.errors import MeshpipeError

    if version is None or not isinstance(eng, RolloutStatusSource):
        return None
    try:
        found = eng.rollout_status(env, service)
    except MeshpipeError:
        return None
    if found.get("candidate") != version:
        return None
    return {"version": version, "status": found["status"], "reason": found.get("reason") or None,
            "holding": found.get("holding")}


def _print_rollout_outcome(outcome: dict[str, Any], service: str, env: str) -> None:
    from meshpipe.cli.rollout_cmds import FAILED_OUTCOMES

    status, version = outcome["status"], outcome["version"]
    if status in FAILED_OUTCOMES:
        out.print(f"[red]version {escape(version)} was deployed, but its rollout was {escape(status)}: "
                  f"{escape(outcome['reason'] or '')}[/red]")
    elif status == RolloutStatus.RUNNING:
        out.print(f"rollout of {escape(version)} running"
                  + (f" ({escape(outcome['holding'])})" if outcome.get("holding") else "")
                  + f"; follow it with: meshpipe rollout watch {escape(service)} --env {escape(env)}")
    else:
        out.print(f"rollout of {escape(version)}: {escape(status)}"
                  + (f" ({escape(outcome['reason'])})" if outcome["reason"] else ""))


@pipeline_app.command("start")
def pipeline_start(service: Annotated[str, typer.Argument(help="Service name.")],
                   commit: Annotated[str | None, typer.Argument(help="Commit in the config repo (default: the branch head).")] = None,
                   env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """Start a run for a commit already pushed (e.g. one pushed while the daemon was down)."""
    from meshpipe.engines.base import PipelineStarter

    with engine_for(engine) as eng:
        if not isinstance(eng, PipelineStarter):
            raise lacking(eng)
        started = eng.pipeline_start(env, service, commit)
    if fmt is Format.json:
        print_json(started)
        return
    out.print(f"pipeline run {escape(started.run_id)} started for {escape(service)} at {started.commit[:8]}")


# --- routes ----------------------------------------------------------------------------------------------

def _print_route(route: Any, service: str) -> None:
    text = readouts.Text()
    readouts.route_text(route, service, text)
    text.write()


def _print_header_routes(routes: list[Any], service: str) -> None:
    for r in routes:
        spread = ", ".join(f"{t.version}={t.weight}" for t in r.targets)
        out.print(f"header route [bold]{escape(r.name)}[/bold] (priority {r.priority}): requests with "
                  f"{escape(r.describe())} → {escape(spread)}")


HeaderOpt = Annotated[list[str] | None, typer.Option(
    "--header", help="NAME=VALUE: an extra, higher-priority route for requests with this header (=^ prefix, "
                     "=~ regex), e.g. --header x-canary=always; repeat to match several headers.")]


@route_app.command("set")
def route_set(service: Annotated[str, typer.Argument(help="Service name.")],
              targets: Annotated[list[str], typer.Argument(help="VERSION=WEIGHT pairs; a version by id, commit or "
                                                                   "virtual node name.", show_default=False)],
              header: HeaderOpt = None,
              env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text,
              dry_run: DryRunOpt = False) -> None:
    """Set the weighted targets of a service's route, e.g. canary: OLD=90 NEW=10; with --header, of a header route."""
    from meshpipe.mesh.routing import parse_weight_args

    parsed = parse_weight_args(service, targets)
    if header:
        from meshpipe.errors import UserError
        from meshpipe.mesh.headers import parse_header_arg
        from meshpipe.mesh.routing import make_header_route

        try:
            matches = tuple(parse_header_arg(h) for h in header)
        except ValueError as exc:
            raise UserError(f"--header: {exc}") from None
        if dry_run:
            raise UserError("--dry-run plans a service's weighted route; a header route is set without a plan")
        make_header_route(service, matches, parsed)  # App Mesh's limits, before any engine is asked
        with engine_for(engine) as eng:
            made = header_routing(eng).header_route_set(env, service, matches, parsed)
        if fmt is Format.json:
            print_json(made)
        else:
            _print_header_routes([made], service)
        return
    with engine_for(engine) as eng:
        if dry_run:
            return show_plan(planner(eng).plan_route_set(env, service, parsed), fmt)
        route = eng.route_set(env, service, parsed)
    print_json(route) if fmt is Format.json else _print_route(route, service)


@route_app.command("show")
def route_show(service: Annotated[str, typer.Argument(help="Service name.")], env: EnvOpt = "demo",
               engine: EngineOpt = "local", fmt: FormatOpt = Format.text, graph: GraphOpt = False) -> None:
    """Show a service's route and weights, and its header routes."""
    from meshpipe.engines.base import HeaderRoutes

    with engine_for(engine) as eng:
        route = eng.route_show(env, service)
        header_routes = eng.header_routes(env, service) if isinstance(eng, HeaderRoutes) else []
    if fmt is Format.json:
        print_json(route if not header_routes else {"route": route, "header_routes": header_routes})
    elif graph and route is not None:
        out.print(f"route [bold]{escape(route.name)}[/bold] of {escape(service)}")
        _print_bars([(t.version, t.weight) for t in route.targets])
        _print_header_routes(header_routes, service)
    else:
        _print_route(route, service)
        _print_header_routes(header_routes, service)


@route_app.command("delete")
def route_delete(service: Annotated[str, typer.Argument(help="Service name.")], env: EnvOpt = "demo",
                 engine: EngineOpt = "local",
                 header: Annotated[str | None, typer.Option("--header", help="Delete only the header route matching "
                                                                            "this header name.")] = None,
                 fmt: FormatOpt = Format.text) -> None:
    """Delete a service's route (its virtual service then answers 503), or one header route."""
    with engine_for(engine) as eng:
        if header:
            header_routing(eng).header_route_delete(env, service, header)
        else:
            eng.route_delete(env, service)
    if fmt is Format.json:
        print_json({"service": service, "header": header, "deleted": True})
        return
    out.print(f"header route {escape(header)} of {escape(service)} deleted" if header
              else f"route of {escape(service)} deleted")


@route_app.command("gateway")
def route_gateway(name: Annotated[str, typer.Argument(help="Gateway route name, e.g. r-ingress-hello-service.")],
                  prefix: Annotated[str, typer.Option(help="Path prefix on the ingress, e.g. /hello-service.")],
                  service: Annotated[str, typer.Option(help="Target service, e.g. hello-web.")],
                  rewrite: Annotated[bool, typer.Option(help="Rewrite the matched prefix to '/'.")] = True,
                  env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """Route a path prefix on the ingress gateway to a service."""
    from meshpipe.mesh.routing import make_gateway_route

    gr = make_gateway_route(name, prefix, service, f"{env}.local", rewrite)
    with engine_for(engine) as eng:
        gr = eng.gateway_route_set(env, gr)
    if fmt is Format.json:
        print_json(gr)
        return
    out.print(f"gateway route {escape(gr.name)}: {escape(gr.prefix)} → {escape(gr.virtual_service)}"
              + (" (prefix rewritten to /)" if gr.rewrite_prefix else ""))


@route_app.command("gateways")
def route_gateways(env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """List the gateway routes of the ingress."""
    with engine_for(engine) as eng:
        routes = eng.gateway_routes(env)
    if fmt is Format.json:
        print_json(routes)
        return
    table = Table("name", "prefix", "virtual service", "rewrite")
    for gr in routes:
        table.add_row(gr.name, gr.prefix, gr.virtual_service, "yes" if gr.rewrite_prefix else "no")
    out.print(table)


@route_app.command("gateway-delete")
def route_gateway_delete(name: Annotated[str, typer.Argument(help="Gateway route name.")], env: EnvOpt = "demo",
                         engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """Delete a gateway route."""
    with engine_for(engine) as eng:
        eng.gateway_route_delete(env, name)
    if fmt is Format.json:
        print_json({"gateway_route": name, "deleted": True})
        return
    out.print(f"gateway route {escape(name)} deleted")


# --- versions --------------------------------------------------------------------------------------------

def services(env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """List the environment's services: their versions, each with its weight, and what they call."""
    from meshpipe.engines.base import TopologySource

    with engine_for(engine) as eng:
        if not isinstance(eng, TopologySource):
            raise lacking(eng, "services")
        topology = eng.topology(env, 0.0)
    if fmt is Format.json:
        print_json([{"name": svc.name, "versions": [{"version": v.version, "weight": v.weight, "status": v.status}
                                                     for v in svc.versions],
                     "backends": list(svc.backends)} for svc in topology.services])
        return
    if not topology.services:
        out.print(f"no services in {escape(env)} yet: meshpipe pipeline create SERVICE --env {escape(env)}")
        return
    table = Table("service", "versions (weight %)", "calls")
    for svc in topology.services:
        table.add_row(svc.name, ", ".join(f"{v.version} {v.weight}" for v in svc.versions) or "none",
                      ", ".join(svc.backends))
    out.print(table)


def versions(service: Annotated[str, typer.Argument(help="Service name.")], env: EnvOpt = "demo",
             engine: EngineOpt = "local", fmt: FormatOpt = Format.text, graph: GraphOpt = False) -> None:
    """List every version of a service with its stack status and current weight."""
    with engine_for(engine) as eng:
        found = eng.versions(env, service)
    if fmt is Format.json:
        print_json(found)
        return
    if graph and found:
        _print_bars([(v.version, v.weight) for v in found])
        return
    text = readouts.Text()
    readouts.versions_text(found, service, text)
    text.write()


def stats(service: Annotated[str, typer.Argument(help="Service name.")], env: EnvOpt = "demo",
          engine: EngineOpt = "local", fmt: FormatOpt = Format.text,
          window: Annotated[float | None, typer.Option("--window", help="Measure over the next SECONDS "
                                                       "(up to 300) instead of since each proxy started.",
                                                       show_default=False)] = None) -> None:
    """Traffic to each version of a service as its callers' proxies saw it: requests, errors, latency."""
    from meshpipe.engines.base import StatsSource
    from meshpipe.errors import UserError

    if window is not None and not 0 < window <= 300:
        raise UserError(f"--window {window:g} is not between 0 and 300 seconds")
    with engine_for(engine) as eng:
        if not isinstance(eng, StatsSource):
            raise lacking(eng)
        found = eng.stats(env, service, window)
    if fmt is Format.json:
        print_json(found)
        return
    text = readouts.Text()
    readouts.stats_text(found, text)
    text.write()


def events(service: Annotated[str | None, typer.Argument(help="Only this service's events.")] = None,
           limit: Annotated[int, typer.Option(help="How many of the latest events.")] = 50,
           follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events "
                                                "(Ctrl-C stops).")] = False,
           env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """What happened in the environment: deploys, route changes, rollout decisions, restarts, pipeline runs.

    One line each: the time (UTC), then, without a service named, the kind and service; json: a list, or
    with --follow one object per line."""
    import time

    from meshpipe.engines.base import EventSource

    with engine_for(engine) as eng:
        if not isinstance(eng, EventSource):
            raise lacking(eng)
        found = eng.events(env, service, limit)
        if fmt is Format.json and not follow:
            print_json(found)
            return
        seen: set[Any] = set()
        try:
            while True:
                for e in found:
                    if e in seen:
                        continue
                    seen.add(e)
                    _print_event(e, service is None, fmt)
                if not follow:
                    return
                time.sleep(0.5)
                found = eng.events(env, service, 200)
                seen &= set(found)  # only what can come back in the next read needs remembering
        except KeyboardInterrupt:
            return


def event_line(e: Any, with_service: bool) -> str:
    """``14:41:33.950  rollout  hello-backend  step 1/3: ...`` (kind and service left out when one service
    was asked for)."""
    at = str(e.at)
    stamp = at[11:23] if len(at) >= 23 and at[10] == "T" else at
    who = f"{e.kind:<8} {e.service or '-':<16} " if with_service else ""
    return f"{stamp}  {who}{e.message}"


def _print_event(e: Any, with_service: bool, fmt: Format) -> None:
    import json
    import sys

    from meshpipe.cli.output import to_jsonable

    line = json.dumps(to_jsonable(e)) if fmt is Format.json else event_line(e, with_service)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@version_app.command("scale")
def version_scale(service: Annotated[str, typer.Argument(help="Service name.")],
                  version: Annotated[str, typer.Argument(help="Version id, commit or virtual node name.")],
                  tasks: Annotated[int, typer.Option("--tasks", help="Tasks to run: 0 scales the version down "
                                                     "(refused while it takes traffic).")],
                  env: EnvOpt = "demo", engine: EngineOpt = "local", fmt: FormatOpt = Format.text) -> None:
    """Run N tasks of a deployed version: bring back one a rollout scaled down, or scale one down by hand.

    A route set that gives weight to a scaled-down version brings it back by itself first."""
    from meshpipe.engines.base import VersionScaler
    from meshpipe.errors import UserError
    from meshpipe.mesh.routing import parse_version_ref

    ver = parse_version_ref(service, version)
    if tasks < 0:
        raise UserError(f"--tasks {tasks} is not 0 or more")
    with engine_for(engine) as eng:
        if not isinstance(eng, VersionScaler):
            raise lacking(eng, "version scale")
        said = eng.version_scale(env, service, ver, tasks)
    if fmt is Format.json:
        print_json({"service": service, "version": ver, "tasks": tasks, "message": said})
        return
    out.print(escape(said))


@version_app.command("delete")
def version_delete(service: Annotated[str, typer.Argument(help="Service name.")],
                   version: Annotated[str, typer.Argument(help="Version id, commit or virtual node name.")],
                   force: Annotated[bool, typer.Option(help="Delete even while the version carries weight.")] = False,
                   env: EnvOpt = "demo", engine: EngineOpt = "local", dry_run: DryRunOpt = False,
                   fmt: FormatOpt = Format.text) -> None:
    """Delete a version's stack (refused while the version carries weight)."""
    from meshpipe.mesh.routing import parse_version_ref

    ver = parse_version_ref(service, version)
    with engine_for(engine) as eng:
        if dry_run:
            return show_plan(planner(eng).plan_version_delete(env, service, ver, force), fmt)
        eng.version_delete(env, service, ver, force=force)
    out.print(f"version {ver} of {escape(service)} deleted")
