"""docs/aws-runbook.md's commands are real: every `meshpipe ...` against the CLI's own command tree (command
path, options, allowed values, argument count) and every `aws ...` against botocore's service models (service,
operation, parameter names), so a renamed option or a mistyped operation fails here, one test per command."""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from typer._click.exceptions import NoSuchOption, UsageError  # the CLI's own parser and its errors
from typer.exceptions import Exit
from typer.main import get_command

from meshpipe.cli.app import app

RUNBOOK = Path(__file__).resolve().parents[1] / "docs" / "aws-runbook.md"
SEPARATORS = {"&&", "||", ";", "|", "(", ")", "&"}
BOTOCORE = botocore.session.get_session()
# Options the AWS CLI accepts on every command, and on paginated ones.
AWS_GLOBAL_OPTIONS = {
    "--debug", "--endpoint-url", "--no-verify-ssl", "--no-paginate", "--output", "--query", "--profile", "--region",
    "--version", "--color", "--no-sign-request", "--ca-bundle", "--cli-read-timeout", "--cli-connect-timeout",
    "--cli-binary-format", "--no-cli-pager", "--cli-auto-prompt", "--no-cli-auto-prompt", "--cli-input-json",
    "--cli-input-yaml", "--generate-cli-skeleton",
}
AWS_PAGINATION_OPTIONS = {"--max-items", "--starting-token", "--page-size"}
# AWS CLI commands that are customizations, not API operations: (service, command) -> their options.
AWS_CUSTOM_COMMANDS = {
    ("configure", "get"): set(),
    ("logs", "tail"): {"--since", "--follow", "--format", "--filter-pattern", "--log-stream-names",
                       "--log-stream-name-prefix"},
    ("ecr", "get-login-password"): set(),
}
# Where the CLI's service name differs from botocore's.
AWS_CLI_SERVICES = {"s3api": "s3", "configservice": "config"}


@dataclass(frozen=True)
class Command:
    line: int
    words: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def __str__(self) -> str:
        return f"docs/aws-runbook.md:{self.line}: {self.text}"


def code_blocks(text: str) -> Iterator[tuple[int, str]]:
    """(line of the block's first line, body) of every fenced code block."""
    for match in re.finditer(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M):
        yield text.count("\n", 0, match.start(1)) + 1, match.group(1)


def shell_lines(start: int, body: str) -> Iterator[tuple[int, str]]:
    """Logical lines (backslash continuations joined), each with the line it starts on."""
    pending, first = "", start
    for offset, raw in enumerate(body.splitlines()):
        if not pending:
            first = start + offset
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        yield first, pending + raw
        pending = ""
    if pending:
        yield first, pending


def commands(text: str) -> list[Command]:
    """Every simple command of the runbook's code blocks, command substitutions included."""
    found = []
    for start, body in code_blocks(text):
        for line, logical in shell_lines(start, body):
            inner = re.findall(r"\$\(([^()]*)\)", logical)
            outer = re.sub(r"\$\(([^()]*)\)", "SUBSTITUTED", logical)
            for source in (outer, *inner):
                found += [Command(line, words) for words in _split(source)]
    return found


def _split(source: str) -> Iterator[tuple[str, ...]]:
    lexer = shlex.shlex(source, posix=True, punctuation_chars="();&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words: list[str] = []
    for token in [*lexer, ";"]:
        if token in SEPARATORS:
            while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):  # VAR=value prefixes
                words.pop(0)
            if words and words[0] == "export":
                words = []
            if words:
                yield tuple(words)
            words = []
        else:
            words.append(token)


# ---- meshpipe -----------------------------------------------------------------------------------------------

ROOT = get_command(app)


def meshpipe_problems(words: tuple[str, ...]) -> list[str]:
    """What the CLI's own parser says about a `meshpipe ...` command line (each unknown option on its own
    line, then the first other problem); empty when it parses. Nothing is run: contexts are made, commands
    are not invoked."""
    problems: list[str] = []
    args = list(words[1:])
    while True:
        try:
            _parse(args)
            return problems
        except Exit:  # an eager option such as --version did its job while parsing
            return problems
        except NoSuchOption as exc:
            problems.append(f"`{_path(exc)}`: {exc.format_message()}")
            at = args.index(exc.option_name) if exc.option_name in args else None
            if at is None:
                return problems
            # Drop it, and the value it was given, and parse the rest again for more.
            del args[at:at + (2 if at + 1 < len(args) and not args[at + 1].startswith("-") else 1)]
        except UsageError as exc:
            return [*problems, f"`{_path(exc)}`: {exc.format_message()}"]


def _parse(args: list[str]) -> None:
    command, ctx = ROOT, ROOT.make_context("meshpipe", list(args))
    while hasattr(command, "resolve_command"):  # a group: on to the command it names
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            return  # the group alone, e.g. `meshpipe --version`
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)


def _path(exc: UsageError) -> str:
    ctx = exc.ctx
    return ctx.command_path if ctx is not None else "meshpipe"


# ---- aws ------------------------------------------------------------------------------------------------------

def aws_problems(words: tuple[str, ...]) -> list[str]:
    """What is wrong with an `aws ...` command line by botocore's models; empty when it is valid."""
    if len(words) < 3:
        return [f"`{' '.join(words)}` names no operation"]
    cli_service, cli_command, options = words[1], words[2], [w for w in words[3:] if w.startswith("--")]
    custom = AWS_CUSTOM_COMMANDS.get((cli_service, cli_command))
    if custom is not None:
        return [f"`aws {cli_service} {cli_command}` has no option {o}" for o in options
                if o.split("=")[0] not in custom | AWS_GLOBAL_OPTIONS]
    service = AWS_CLI_SERVICES.get(cli_service, cli_service)
    if service not in BOTOCORE.get_available_services():
        return [f"botocore knows no service {cli_service!r}"]
    model = BOTOCORE.get_service_model(service)
    operations = {xform_name(name, "-"): name for name in model.operation_names}
    if cli_command not in operations:
        near = difflib.get_close_matches(cli_command, list(operations), n=3)
        return [f"`aws {cli_service}` has no operation {cli_command!r}" + (f"; did you mean {', '.join(near)}?" if near
                                                                           else "")]
    operation = model.operation_model(operations[cli_command])
    members = operation.input_shape.members if operation.input_shape is not None else {}
    allowed = {f"--{xform_name(name, '-')}" for name in members} | AWS_GLOBAL_OPTIONS
    allowed |= {f"--no-{xform_name(name, '-')}" for name, shape in members.items() if shape.type_name == "boolean"}
    if operation.name in _paginated(service):
        allowed |= AWS_PAGINATION_OPTIONS
    return [f"`aws {cli_service} {cli_command}` ({operation.name}) has no option {o}; it takes: "
            f"{', '.join(sorted(a for a in allowed if a not in AWS_GLOBAL_OPTIONS))}"
            for o in options if o.split("=")[0] not in allowed]


def _paginated(service: str) -> set[str]:
    try:
        return set(BOTOCORE.get_paginator_model(service)._paginator_config)
    except Exception:  # a service without paginators
        return set()


# ---- the tests ------------------------------------------------------------------------------------------------

ALL = commands(RUNBOOK.read_text(encoding="utf-8"))
MESHPIPE = [c for c in ALL if c.words[0] == "meshpipe"]
AWS = [c for c in ALL if c.words[0] == "aws"]


def test_the_runbook_has_commands_of_every_kind() -> None:
    assert len(MESHPIPE) >= 15 and len(AWS) >= 15
    paths = {" ".join(c.words[1:3]) for c in MESHPIPE}
    for needed in ("env create", "pipeline create", "route gateway", "env delete"):
        assert needed in paths, f"the runbook lacks `meshpipe {needed}`"


@pytest.mark.parametrize("command", MESHPIPE, ids=lambda c: f"L{c.line}:{c.text[9:60]}")
def test_meshpipe_command_exists_with_these_options(command: Command) -> None:
    problems = meshpipe_problems(command.words)
    assert not problems, f"{command}\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("command", AWS, ids=lambda c: f"L{c.line}:{c.text[4:60]}")
def test_aws_command_is_a_botocore_operation_with_these_parameters(command: Command) -> None:
    problems = aws_problems(command.words)
    assert not problems, f"{command}\n  " + "\n  ".join(problems)


# The checkers themselves must be able to fail.

def test_the_meshpipe_checker_reports_each_unknown_command_option_and_choice() -> None:
    assert meshpipe_problems(("meshpipe", "env", "create", "demo", "--engine", "aws")) == []
    unknown = meshpipe_problems(("meshpipe", "env", "create", "demo", "--colour", "red", "--engine", "aws",
                                 "--size", "9"))
    assert len(unknown) == 2
    assert "`meshpipe env create`" in unknown[0] and "--colour" in unknown[0] and "--size" in unknown[1]
    assert "No such command 'creat'" in meshpipe_problems(("meshpipe", "env", "creat", "demo"))[0]
    assert "'yaml' is not one of" in meshpipe_problems(("meshpipe", "env", "status", "demo", "--format", "yaml"))[0]
    assert "unexpected extra argument" in meshpipe_problems(("meshpipe", "env", "status", "demo", "extra"))[0]
    assert "Missing option '--prefix'" in meshpipe_problems(("meshpipe", "route", "gateway", "r", "--service", "x"))[0]
    assert meshpipe_problems(("meshpipe", "--version")) == []


def test_the_aws_checker_reports_unknown_services_operations_and_parameters() -> None:
    assert aws_problems(("aws", "cloudformation", "describe-stacks", "--stack-name", "x", "--query", "q")) == []
    assert "no operation 'describe-stack'" in aws_problems(("aws", "cloudformation", "describe-stack"))[0]
    assert "no option --stack" in aws_problems(("aws", "cloudformation", "describe-stacks", "--stack", "x"))[0]
    assert "knows no service" in aws_problems(("aws", "cloudformations", "describe-stacks"))[0]
    assert aws_problems(("aws", "ecs", "list-services", "--cluster", "demo", "--max-items", "5")) == []


def test_the_extractor_finds_commands_in_substitutions_subshells_and_continuations() -> None:
    text = "```sh\nexport X=$(aws sts get-caller-identity --query Arn \\\n    --output text)\n" \
           "(cd repo && git push)   # a comment\nmeshpipe versions a --env demo | head\n```\n"
    found = [c.words for c in commands(text)]
    assert ("aws", "sts", "get-caller-identity", "--query", "Arn", "--output", "text") in found
    assert ("git", "push") in found and ("meshpipe", "versions", "a", "--env", "demo") in found
    assert all("#" not in w for c in found for w in c)


# ---- the cost section's figures -------------------------------------------------------------------------------

def cost_rows(text: str) -> dict[str, float]:
    """item -> its bold monthly figure, from the runbook's cost table."""
    section = text[text.index("## 8. Cost"):text.index("## 9.")]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        figure = re.search(r"\*\*<? ?\$([0-9.]+)\*\*$", cells[-1]) if len(cells) == 4 else None
        if figure:
            rows[cells[0]] = float(figure.group(1))
    return rows


def test_the_cost_table_adds_up_and_counts_what_the_templates_create() -> None:
    from meshpipe.platform import PlatformPolicy
    from meshpipe.synth.platform_render import render_platform

    text = RUNBOOK.read_text(encoding="utf-8")
    rows = cost_rows(text)
    hours = 730
    env = render_platform("demo", mesh="service-connect")["demo-env.template.json"]["Resources"]
    types = [r["Type"] for r in env.values()]
    nat, eips = types.count("AWS::EC2::NatGateway"), types.count("AWS::EC2::EIP")
    [balancer] = [r for r in env.values() if r["Type"] == "AWS::ElasticLoadBalancingV2::LoadBalancer"]
    zones = len(balancer["Properties"]["Subnets"])
    assert balancer["Properties"]["Type"] == "application" and balancer["Properties"]["Scheme"] == "internet-facing"
    assert rows["NAT gateways"] == round(nat * 0.045 * hours, 2)
    assert rows["Public IPv4 addresses"] == round((eips + zones) * 0.005 * hours, 2)
    assert rows["Application load balancer"] == round(0.0225 * hours, 2)
    # The walkthrough's two services at the policy's minimum task count, at the manifests' size.
    tasks = 2 * PlatformPolicy().autoscaling.min_tasks
    for service in ("hello-web", "hello-backend"):
        manifest = (RUNBOOK.parents[1] / "examples" / f"{service}-cfg" / "manifest.yaml").read_text()
        assert "Cpu: 256" in manifest and "Memory: 512" in manifest
    assert rows["Fargate tasks, 0.25 vCPU / 0.5 GB"] == round(tasks * (0.25 * 0.04048 + 0.5 * 0.004445) * hours, 2)
    fixed = sum(rows[k] for k in ("NAT gateways", "Public IPv4 addresses", "Application load balancer",
                                  "Fargate tasks, 0.25 vCPU / 0.5 GB"))
    assert f"${fixed:.2f}" in text  # the fixed part the text names
    total = sum(rows.values())
    assert f"≈ ${round(total)} per month ≈ ${total * 12 / 365:.2f} per day" in text


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower()))


def test_the_runbooks_links_reach_real_files_and_headings() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", text)
    assert links
    for target, anchor in links:
        if target.startswith("http"):
            continue
        path = (RUNBOOK.parent / target) if target else RUNBOOK
        assert path.is_file(), f"the runbook links to {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"{path.name} has no heading #{anchor}"


# ---- every `aws` command is allowed by the documented policies, on the resources it names ----------------------

# The runbook's shell variables, as the commands before them set them (example values of the same shape).
RUNBOOK_VARIABLES = {
    "$CONNECTION_ARN": "arn:aws:codeconnections:us-east-1:123456789012:connection/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
    "$LISTENER_ARN": "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/demo-Ingre-ABCDEF123456/"
                     "0123456789abcdef/0fedcba987654321",
    "$NAMESPACE_ID": "ns-ABCDEF123456",
    # `aws sts get-caller-identity --query Arn`: the identity following the runbook.
    "SUBSTITUTED": "arn:aws:iam::123456789012:user/platform-admin",
}
# What a customization of the AWS CLI calls: (service, command) -> (IAM action, the option naming its
# resource, the parameter that option fills).
AWS_CUSTOM_ACTIONS = {("logs", "tail"): ("logs:FilterLogEvents", None, "logGroupName"),
                      ("ecr", "get-login-password"): ("ecr:GetAuthorizationToken", None, "")}
# Commands that need no permission at all: (service, command) -> why.
NEEDS_NO_PERMISSION = {("sts", "get-caller-identity"): "STS answers it for every identity",
                       ("configure", "get"): "reads the local configuration only"}


def _arguments(words: tuple[str, ...]) -> tuple[list[str], dict[str, list[str]]]:
    """Positional words and ``--option value...`` pairs, variables replaced by their example values."""
    positional: list[str] = []
    options: dict[str, list[str]] = {}
    current: str | None = None
    for word in words[3:]:
        if word.startswith("--"):
            current, _, value = word.partition("=")
            options[current] = [value] if value else []
            continue
        for name, example in RUNBOOK_VARIABLES.items():
            word = word.replace(name, example)
        (options[current] if current else positional).append(word)
    return positional, options


def aws_requests(command: Command) -> list[Any]:
    from meshpipe.engines.aws.clients import iam_action
    from support.iam_eval import Request
    from support.operator_calls import requests_for

    service_cli, cli_command = command.words[1], command.words[2]
    if (service_cli, cli_command) in NEEDS_NO_PERMISSION:
        return []
    positional, options = _arguments(command.words)
    if (service_cli, cli_command) in AWS_CUSTOM_ACTIONS:
        action, _, param = AWS_CUSTOM_ACTIONS[(service_cli, cli_command)]
        return requests_for(action, {param: positional[0]} if param else {}).requests
    service = AWS_CLI_SERVICES.get(service_cli, service_cli)
    model = BOTOCORE.get_service_model(service)
    operation = model.operation_model({xform_name(n, "-"): n for n in model.operation_names}[cli_command])
    members = operation.input_shape.members if operation.input_shape is not None else {}
    by_option = {f"--{xform_name(name, '-')}": name for name in members}
    params = {by_option[o]: (v if len(v) > 1 else v[0]) for o, v in options.items() if o in by_option and v}
    action = iam_action(operation)
    resolved = requests_for(action, params)
    assert not resolved.unresolved, f"{command}: {action} names no resource IAM knows of"
    if action == "iam:SimulatePrincipalPolicy":  # on the principal it reads
        return [Request(action, str(params["PolicySourceArn"]))]
    return resolved.requests


def _runbook_identity() -> list[dict[str, Any]]:
    """The runbook's identity: the deployer and the operator policy of aws.md together."""
    from support import iam

    text = (RUNBOOK.parent / "aws.md").read_text()
    return [s for marker in ("deployer", "operator")
            for s in iam.json_blocks(text, f"<!-- policy: {marker} -->")[0]["Statement"]]


@pytest.mark.parametrize("command", AWS, ids=str)
def test_aws_command_is_allowed_by_the_documented_policies(command: Command) -> None:
    from support.iam_eval import decide

    statements = _runbook_identity()
    refused = [f"{r.action} on {r.resource}" for r in aws_requests(command) if decide(statements, r) != "allowed"]
    assert refused == []


def test_the_runbook_check_sees_resources() -> None:
    from support.iam_eval import decide

    [get_connection] = [c for c in AWS if c.words[1:3] == ("codeconnections", "get-connection")]
    [request] = aws_requests(get_connection)
    assert request.resource == RUNBOOK_VARIABLES["$CONNECTION_ARN"]
    # A policy naming another connection does not allow it.
    other = {"Effect": "Allow", "Action": "codeconnections:GetConnection",
             "Resource": "arn:aws:codeconnections:*:*:connection/other"}
    assert decide([other], request) != "allowed"
