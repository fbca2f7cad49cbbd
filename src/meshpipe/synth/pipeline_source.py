"""Where a service pipeline takes the config repo from: CodeCommit, or a repository behind a CodeConnections
connection (GitHub, GitLab, Bitbucket).

CodeCommit is the original sample's source: the pipeline stack creates the repo ``<svc>-cfg`` and an
EventBridge rule that starts the pipeline on a push (AWS no longer opens CodeCommit to new customers). A
connection source names an existing repository and an existing connection (created, and authorised once
with the provider, outside meshpipe): the pipeline's ``CodeStarSourceConnection`` source action reads the
repository, and the V2 pipeline's own trigger starts a run on a push to the branch.

Everything here is checked offline, before any AWS call: the source's form, the repository's form for its
provider, and the connection ARN's shape. Whether the connection exists, is AVAILABLE and reaches the
repository only AWS can say, on the pipeline's first run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshpipe.errors import UserError

CODECOMMIT = "codecommit"
# meshpipe's name of a provider -> the host people clone from (the CLI shows it).
PROVIDER_HOSTS = {"github": "github.com", "gitlab": "gitlab.com", "bitbucket": "bitbucket.org"}

# The owner/name forms each provider accepts. GitHub: owner of 1-39 letters, digits and single hyphens;
# GitLab: a project under one or more (sub)groups; Bitbucket: workspace and repository slug.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
REPOSITORY_RES = {
    "github": re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}/[A-Za-z0-9._-]{1,100}\Z"),
    "gitlab": re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT}){{1,20}}\Z"),
    "bitbucket": re.compile(r"^[A-Za-z0-9_-]{1,62}/[A-Za-z0-9._-]{1,128}\Z"),
}
REPOSITORY_FORMS = {"github": "OWNER/REPO", "gitlab": "GROUP/[SUBGROUP/...]PROJECT", "bitbucket": "WORKSPACE/REPO"}
REPOSITORY_MAX = 255
# What the pipeline template's FullRepositoryId parameter accepts (any provider's form).
REPOSITORY_PATTERN = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$"

# Connections created since July 2024 have codeconnections ARNs, older ones codestar-connections; IAM wants
# the action's service prefix to be the resource's, so the pipeline role is granted exactly that one.
CONNECTION_PREFIXES = ("codeconnections", "codestar-connections")
_CONNECTION_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
CONNECTION_ARN_RE = re.compile(
    rf"^arn:aws(?:-[a-z]+)*:(?P<prefix>{'|'.join(CONNECTION_PREFIXES)}):[a-z]{{2}}(?:-[a-z]+)+-\d:\d{{12}}:"
    rf"connection/{_CONNECTION_ID}\Z")
CONNECTION_HINT = ("create one with `aws codeconnections create-connection --provider-type GitHub "
                   "--connection-name NAME` (or GitLab, Bitbucket), complete it in the console (Developer Tools > "
                   "Settings > Connections), then pass its ARN: arn:aws:codeconnections:REGION:ACCOUNT:connection/ID")


@dataclass(frozen=True)
class ConnectionSource:
    """A repository reached through a CodeConnections connection."""

    provider: str  # github | gitlab | bitbucket
    repository: str  # OWNER/REPO, as CodePipeline's FullRepositoryId
    connection_arn: str

    @property
    def spec(self) -> str:
        return f"{self.provider}:{self.repository}"

    @property
    def iam_prefix(self) -> str:
        """``codeconnections`` or ``codestar-connections``: the service prefix of the connection's ARN."""
        return self.connection_arn.split(":")[2]

    @property
    def partition(self) -> str:
        return self.connection_arn.split(":")[1]

    @property
    def clone_url(self) -> str:
        return f"https://{PROVIDER_HOSTS[self.provider]}/{self.repository}.git"


# None stands for CodeCommit.
PipelineSource = ConnectionSource | None


def connection_arn_pattern(prefix: str) -> str:
    """The template parameter's pattern: a connection ARN of this service prefix (the one IAM grants)."""
    return rf"^arn:aws[a-z-]*:{prefix}:[a-z0-9-]+:[0-9]{{12}}:connection/[0-9a-f-]{{36}}$"


def check_connection_arn(arn: str) -> str:
    if not isinstance(arn, str) or not CONNECTION_ARN_RE.match(arn):
        shown = repr(arn) if isinstance(arn, str) and len(arn) <= 120 else repr(str(arn)[:119]) + "…"
        if isinstance(arn, str) and re.match(r"^arn:aws[a-z-]*:(codeconnections|codestar-connections):[^:]*:[^:]*:host/",
                                             arn):
            problem = "names a host, not a connection"
        else:
            problem = "is not a CodeConnections connection ARN"
        raise UserError(f"--connection {shown} {problem}",
                        hint="expected arn:aws:codeconnections:REGION:ACCOUNT:connection/ID (or codestar-connections "
                             "for a connection created before July 2024); " + CONNECTION_HINT)
    return arn


def parse_source(spec: str | None, connection: str | None = None) -> PipelineSource:
    """The pipeline's source from ``--source`` and ``--connection``; a clear UserError for anything else."""
    if spec is None or spec == CODECOMMIT:
        if connection is not None:
            raise UserError("--connection applies to a github:, gitlab: or bitbucket: source",
                            hint="pass --source github:OWNER/REPO with it, or leave it out for CodeCommit")
        return None
    provider, sep, repository = spec.partition(":")
    if not sep or provider not in REPOSITORY_RES:
        raise UserError(f"{spec!r} is not a pipeline source",
                        hint="use codecommit (the default), github:OWNER/REPO, gitlab:GROUP/PROJECT or "
                             "bitbucket:WORKSPACE/REPO")
    if repository.endswith(".git"):
        raise UserError(f"{spec!r}: name the repository without .git",
                        hint=f"e.g. {provider}:{repository.removesuffix('.git')}")
    if len(repository) > REPOSITORY_MAX or not REPOSITORY_RES[provider].match(repository):
        raise UserError(f"{repository!r} is not a {provider} repository",
                        hint=f"write {provider}:{REPOSITORY_FORMS[provider]} (letters, digits, '.', '_', '-')")
    if connection is None:
        raise UserError(f"a {provider} source needs --connection ARN (a CodeConnections connection to {provider})",
                        hint=CONNECTION_HINT)
    return ConnectionSource(provider, repository, check_connection_arn(connection))
