"""``validate``, ``schema`` and ``synth``: the manifest core, under the CLI contract (exit statuses in
:mod:`meshpipe.cli`, commands in README.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from meshpipe.cli.output import Format, err, out, print_json, print_problems
from meshpipe.mesh.flavour import MeshFlavour


def validate(
    manifests: Annotated[list[Path], typer.Argument(help="manifest.yaml files to check.", show_default=False)],
    platform: Annotated[Path | None, typer.Option("--platform", help="platform.yaml whose policy applies too.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="text for people, json for machines.")] = Format.text,
) -> None:
    """Check manifests; exit 0 when all are valid, 2 with one line per problem otherwise."""
    from meshpipe.api import validate_files
    from meshpipe.platform import load_platform_file

    policy = load_platform_file(str(platform)).policy if platform else None
    reports = validate_files(manifests, policy)
    if fmt is Format.json:
        print_json([{"file": r.file, "valid": r.ok, "problems": [p.as_dict() for p in r.problems]} for r in reports])
    else:
        for r in reports:
            if r.ok:
                out.print(f"[green]✓[/green] {r.file}: valid")
            else:
                print_problems(r.problems)
        bad = [r for r in reports if not r.ok]
        if bad:
            total = sum(len(r.problems) for r in bad)
            err.print(f"[bold red]{total} problem(s) in {len(bad)} of {len(reports)} file(s)[/bold red]")
    if any(not r.ok for r in reports):
        raise typer.Exit(2)


def schema(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the manifest's JSON Schema."""
    from meshpipe.manifest import manifest_schema

    text = json.dumps(manifest_schema(), indent=2) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def synth(
    manifest: Annotated[Path, typer.Argument(help="The service's manifest.yaml.", show_default=False)],
    commit: Annotated[str | None, typer.Option("--commit", help="Config commit id (default: $CONFIG_COMMIT_ID).")] = None,
    service: Annotated[str | None, typer.Option("--service", help="Service name (default: $SERVICE_NAME, else Task.Family).")] = None,
    platform: Annotated[Path | None, typer.Option("--platform", help="platform.yaml (default: the platform's environment variables, see docs/platform.md).")] = None,
    mesh: Annotated[str, typer.Option("--mesh", help=f"{MeshFlavour.SERVICE_CONNECT} (the default: live) or {MeshFlavour.APPMESH} (the original system, shut down on 2026-09-30).")] = MeshFlavour.SERVICE_CONNECT.value,
    output_dir: Annotated[Path, typer.Option("-o", "--output-dir", help="Folder for <stack-name>.template.json.")] = Path("."),
    policy: Annotated[Path | None, typer.Option("--policy", help="Platform file whose policy: section applies, with the settings from the environment variables (default: $MESHPIPE_POLICY, else the default policy).")] = None,
    diff: Annotated[str | None, typer.Option("--diff", metavar="STACK_OR_FILE", help="Print what the new template changes, resource by resource, against a template file (or, with --engine aws, a deployed stack's template), and write nothing.")] = None,
    engine: Annotated[str | None, typer.Option("--engine", help="With --diff STACK: the engine holding the stack (aws).")] = None,
) -> None:
    """Synthesize a version stack; print its stack name. Writes nothing when anything is wrong."""
    from meshpipe.api import load_platform, synth_manifest, write_template

    settings = load_platform(platform, policy_file=policy)
    result = synth_manifest(manifest, commit=commit, platform=settings, service=service, mesh=mesh)
    if diff is not None:
        _print_diff(result.template, result.stack_name, diff, engine)
        return
    path = write_template(result, output_dir)
    out.print(result.stack_name)
    err.print(f"[dim]wrote {path}[/dim]")


def _previous_template(where: str, engine: str | None) -> dict[str, Any]:
    """The template to compare with: a file, else (with --engine) a deployed stack's."""
    from meshpipe.errors import UserError

    path = Path(where)
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{where}: not a JSON template ({exc})") from None
        if not isinstance(found, dict):
            raise UserError(f"{where}: not a JSON template (a JSON object)")
        return found
    if engine is None:
        raise UserError(f"there is no file {where}",
                        hint="pass a template file, or a deployed stack's name with --engine aws")
    from meshpipe.cli.ops_cmds import engine_for
    from meshpipe.engines.base import DeployedTemplates

    with engine_for(engine) as eng:
        if not isinstance(eng, DeployedTemplates):
            raise UserError(f"the {eng.name} engine keeps no deployed templates; --diff STACK applies to "
                            "--engine aws", hint="pass a template file instead")
        return eng.deployed_template(where)


def _print_diff(template: dict[str, Any], stack_name: str, where: str, engine: str | None) -> None:
    from meshpipe.synth.diff import diff_lines, diff_templates

    old = _previous_template(where, engine)
    for line in diff_lines(diff_templates(old, template), where, f"{stack_name} (new)"):
        sys.stdout.write(line + "\n")
