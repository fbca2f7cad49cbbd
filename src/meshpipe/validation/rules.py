"""The rules a manifest value must follow, as small pure checks shared by the model, the cross-field
checks and the platform policy.

Each ``*_problem`` function returns ``None`` for a good value, or a message that says what is wrong and
what is allowed instead. Messages quote the value through :func:`shorten`, so a 200 KB string never ends
up in an error line.
"""

from __future__ import annotations

import re

from meshpipe.text import shorten

# --- quoting values in messages --------------------------------------------------------------------

# Quoting values in messages is meshpipe.text's; `shorten` stays importable from here for the manifest.


# --- Task ------------------------------------------------------------------------------------------

# ECS task definition family: up to 255 letters, digits, hyphens and underscores.
FAMILY_MAX = 255
FAMILY_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}\Z")

# Fargate's accepted task sizes: CPU units -> allowed memory (MiB).
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
FARGATE_MEMORY: frozenset[int] = frozenset(m for sizes in FARGATE_SIZES.values() for m in sizes)
DEFAULT_CPU = 256
DEFAULT_MEMORY = 512


def describe_memory_choices(cpu: int) -> str:
    sizes = FARGATE_SIZES[cpu]
    if len(sizes) <= 4:
        return ", ".join(str(s) for s in sizes)
    step = sizes[1] - sizes[0]
    return f"{sizes[0]}-{sizes[-1]} in steps of {step}"


def family_problem(value: str) -> str | None:
    if len(value) > FAMILY_MAX:
        return f"is {len(value)} characters long; a task family has at most {FAMILY_MAX}"
    if not FAMILY_RE.match(value):
        return f"{shorten(value)} is not a task family: 1-{FAMILY_MAX} letters, digits, '-' or '_'"
    return None


def cpu_problem(value: int) -> str | None:
    if value not in FARGATE_SIZES:
        allowed = ", ".join(str(c) for c in FARGATE_SIZES)
        return f"{value} is not a Fargate CPU size; allowed: {allowed}"
    return None


def memory_problem(value: int) -> str | None:
    if value not in FARGATE_MEMORY:
        return (f"{value} MiB is not a Fargate memory size; allowed: 512, 1024, 2048, then steps of 1024 up to "
                "30720, of 4096 up to 61440, of 8192 up to 122880 (which ones depends on Cpu)")
    return None


def memory_fit_problem(cpu: int, memory: int) -> str | None:
    """Fargate accepts only some memory sizes for each CPU size."""
    if cpu in FARGATE_SIZES and memory not in FARGATE_SIZES[cpu]:
        return f"{memory} MiB does not fit Cpu {cpu} on Fargate; allowed with Cpu {cpu}: {describe_memory_choices(cpu)}"
    return None


# --- AppContainer.Image ----------------------------------------------------------------------------

# Image references, after the grammar of the distribution project's reference package.
IMAGE_MAX = 255  # ECS: "up to 255 letters, numbers, hyphens, ..."
_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|-+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_PART = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]{{1,5}})?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_RE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<name>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?\Z",
    re.ASCII,
)
_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*", re.ASCII)
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
DOCKER_HUB = "docker.io"
# Names Docker itself treats as Docker Hub.
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def parse_image(ref: str) -> tuple[str, str, str | None, str | None] | None:
    """Split an image reference into (registry, repository, tag, digest); None when it is not valid.

    The first component is a registry only when it looks like a host (has a dot or a port, or is
    ``localhost``), as Docker decides it; otherwise the image lives on Docker Hub.
    """
    if len(ref) > IMAGE_MAX:  # checked first: no regular expression runs over a huge string
        return None
    m = IMAGE_RE.match(ref)
    if not m:
        return None
    domain, name = m.group("domain"), m.group("name")
    if domain and not ("." in domain or ":" in domain or domain == "localhost" or domain.startswith("[")):
        # "wizriz/hello-web": the first part is a Docker Hub namespace, not a registry.
        name = f"{domain}/{name}"
        domain = None
        if not _NAME_RE.fullmatch(name):
            return None
    if domain and ":" in domain.rsplit("]", 1)[-1]:
        port = int(domain.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            return None
    digest = m.group("digest")
    if digest:
        algorithm, _, hex_part = digest.partition(":")
        expected = DIGEST_HEX_LENGTHS.get(algorithm.lower())
        if expected is not None and len(hex_part) != expected:
            return None
    return (domain or DOCKER_HUB, name, m.group("tag"), digest)


def image_problem(value: str) -> str | None:
    if len(value) > IMAGE_MAX:
        return f"is {len(value)} characters long; an image reference has at most {IMAGE_MAX}"
    parsed = parse_image(value)
    if parsed is None:
        return (f"{shorten(value)} is not an image reference: [registry[:port]/]name:tag or "
                "[registry[:port]/]name@sha256:<64 hex digits>, with a lowercase repository name")
    if parsed[2] is None and parsed[3] is None:
        return f"{shorten(value)} has neither a tag nor a digest: pin it, e.g. {value}:1.0 or {value}@sha256:..."
    return None


def normalize_registry(registry: str) -> str:
    host = registry.lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


REGISTRY_PATTERN_RE = re.compile(
    r"^(?:\*\.)?[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?\Z")


def registry_allowed(registry: str, allowed: tuple[str, ...]) -> bool:
    """``allowed`` entries are registry hosts (with a port when the registry has one); ``*.example.com``
    matches any subdomain of example.com. An empty ``allowed`` allows every registry."""
    if not allowed:
        return True
    host = normalize_registry(registry)
    for pattern in allowed:
        pattern = normalize_registry(pattern)
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
            return True
        if host == pattern:
            return True
    return False


# --- AppContainer.Port -----------------------------------------------------------------------------

DEFAULT_PORT = 80


def port_problem(value: int) -> str | None:
    if not 1 <= value <= 65535:
        return f"{value} is not a port: 1-65535"
    return None


# --- AppContainer.HealthCheckPath -------------------------------------------------------------------

# A health-check path goes into `CMD-SHELL curl -f 'http://localhost:PORT<path>' || exit 1`. The URL is
# single-quoted (see meshpipe.model), so a query string's `?`, `&` and `=` are inert; what could end the
# quoting or mean something to an HTTP request line (quotes, backslash, whitespace, control characters)
# is refused, and so is everything else a URL path does not need: $, `, ;, |, <, >, (, ), *, [, ], {, },
# !, #, ~.
HEALTH_PATH_RE = re.compile(r"^/(?:[A-Za-z0-9._/:@,+=?&-]|%[0-9A-Fa-f]{2})*\Z", re.ASCII)
HEALTH_PATH_MAX = 512
_HEALTH_PATH_CHARS = frozenset("._/:@,+=?&-%")


def health_path_problem(value: str) -> str | None:
    if len(value) > HEALTH_PATH_MAX:
        return f"is {len(value)} characters long; a health-check path has at most {HEALTH_PATH_MAX}"
    if not value.startswith("/"):
        return f"{shorten(value)} must start with '/', e.g. /ping"
    if not HEALTH_PATH_RE.match(value):
        bad = sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in _HEALTH_PATH_CHARS))})
        shown = " ".join(repr(c) for c in bad[:10]) if bad else "a '%' not followed by two hex digits"
        return (f"{shorten(value)} is not a plain URL path with an optional query (it runs in a shell health "
                f"check); not allowed: {shown}. Allowed: letters, digits, . _ / : @ , + = - ? & and %XX escapes, "
                "e.g. /healthz?full=1")
    return None


# --- AppContainer.Command --------------------------------------------------------------------------

COMMAND_ARG_MAX = 4096
COMMAND_ARGS_MAX = 256
COMMAND_TOTAL_MAX = 32768


def command_arg_problem(value: str) -> str | None:
    if len(value) > COMMAND_ARG_MAX:
        return f"is {len(value)} characters long; a command argument has at most {COMMAND_ARG_MAX}"
    if "\x00" in value:
        return "contains a NUL character, which no command line can carry"
    return None


def command_problem(args: list[str]) -> str | None:
    """Rules on the command as a whole (its arguments are checked one by one)."""
    if not args:
        return "must not be empty: leave Command out to use the image's default command"
    if len(args) > COMMAND_ARGS_MAX:
        return f"has {len(args)} arguments; at most {COMMAND_ARGS_MAX} are allowed"
    total = sum(len(a) for a in args if isinstance(a, str))
    if total > COMMAND_TOTAL_MAX:
        return f"is {total} characters long in all; at most {COMMAND_TOTAL_MAX} are allowed"
    return None


# --- AppContainer.Environment (extension) -----------------------------------------------------------

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z", re.ASCII)
ENV_NAME_MAX = 255
ENV_VALUE_MAX = 4096
ENV_VARS_MAX = 100
# Names the platform sets in the app container itself: overriding them would break the mesh wiring.
RESERVED_ENV = frozenset({"APPMESH_RESOURCE_ARN", "PORT", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                          "NO_PROXY", "no_proxy", "ECS_CONTAINER_METADATA_URI", "ECS_CONTAINER_METADATA_URI_V4",
                          "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"})


def env_name_problem(name: str) -> str | None:
    if len(name) > ENV_NAME_MAX:
        return f"is {len(name)} characters long; an environment variable name has at most {ENV_NAME_MAX}"
    if not ENV_NAME_RE.match(name):
        return (f"{shorten(name)} is not an environment variable name: letters, digits and '_', "
                "not starting with a digit")
    if name in RESERVED_ENV:
        return f"{name!r} is set by the platform and cannot be overridden"
    return None


def env_value_problem(value: str) -> str | None:
    if len(value) > ENV_VALUE_MAX:
        return f"is {len(value)} characters long; an environment value has at most {ENV_VALUE_MAX}"
    if "\x00" in value:
        return "contains a NUL character, which no environment variable can carry"
    return None


# --- VirtualNode.Backends --------------------------------------------------------------------------

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DNS_NAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+\Z", re.ASCII)
DNS_NAME_MAX = 253
MAX_BACKENDS = 50  # App Mesh: backends per virtual node


def backend_problem(name: str) -> str | None:
    if len(name) > DNS_NAME_MAX:
        return f"is {len(name)} characters long; a DNS name has at most {DNS_NAME_MAX}"
    if not DNS_NAME_RE.match(name):
        hint = f"; lowercase: {name.lower()!r}" if name != name.lower() and DNS_NAME_RE.match(name.lower()) else ""
        return (f"{shorten(name)} is not a virtual service DNS name like 'hello-backend.demo.local' "
                f"(lowercase labels of letters, digits and '-', joined by dots){hint}")
    return None


# --- names derived from the service -----------------------------------------------------------------

# An environment name: 1-32 lowercase letters or digits, starting with a letter (it prefixes stacks). No '-':
# it ends the environment's part of every name derived from it (``demo-hello-web``, ``demo-build-bucket``),
# so an IAM pattern ``demo-*`` names environment demo's resources and never those of a ``demo-x``.
ENVIRONMENT_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,31}\Z")

# A version id is this many hex characters of its commit (as the original sample names its resources).
VERSION_LEN = 8

# A service name: it becomes part of stack, ECS service, Cloud Map and virtual node names.
SERVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]\Z|^[a-z]\Z", re.ASCII)
