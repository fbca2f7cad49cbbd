"""The rules a manifest value must follow, as small pure checks shared by the model and by policy."""

from __future__ import annotations

import re

# ECS task definition family: up to 255 letters, digits, hyphens and underscores.
FAMILY_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")

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


def describe_memory_choices(cpu: int) -> str:
    sizes = FARGATE_SIZES[cpu]
    if len(sizes) <= 4:
        return ", ".join(str(s) for s in sizes)
    step = sizes[1] - sizes[0]
    return f"{sizes[0]}-{sizes[-1]} in steps of {step}"


# Image references, after the grammar of the distribution project's reference package.
_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|-+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEP}{_ALNUM})*"
_DOMAIN_PART = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]{{1,5}})?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_RE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<name>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
DOCKER_HUB = "docker.io"


def parse_image(ref: str) -> tuple[str, str, str | None, str | None] | None:
    """Split an image reference into (registry, repository, tag, digest); None when it is not valid.

    The first component is a registry only when it looks like a host (has a dot or a port, or is
    ``localhost``), as Docker decides it; otherwise the image lives on Docker Hub.
    """
    m = IMAGE_RE.match(ref)
    if not m or len(ref) > 512:
        return None
    domain, name = m.group("domain"), m.group("name")
    if domain and not ("." in domain or ":" in domain or domain == "localhost" or domain.startswith("[")):
        # "wizriz/hello-web": the first part is a Docker Hub namespace, not a registry.
        name = f"{domain}/{name}"
        domain = None
        if not re.fullmatch(rf"{_COMPONENT}(?:/{_COMPONENT})*", name):
            return None
    if domain and ":" in domain.rsplit("]", 1)[-1]:
        port = int(domain.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            return None
    return (domain or DOCKER_HUB, name, m.group("tag"), m.group("digest"))


def registry_allowed(registry: str, allowed: tuple[str, ...]) -> bool:
    """``allowed`` entries are registry hosts; ``*.example.com`` matches any subdomain."""
    if not allowed:
        return True
    for pattern in allowed:
        if pattern.startswith("*.") and registry.endswith(pattern[1:]):
            return True
        if registry == pattern:
            return True
    return False


# A health-check path is pasted into `CMD-SHELL curl -f http://localhost:PORT<path> || exit 1`, so only
# characters with no meaning to a POSIX shell are allowed: no spaces, quotes, $, `, ;, &, |, <, >, (, ),
# *, ?, [, ], {, }, ~ at a word start, !, # or backslash.
HEALTH_PATH_RE = re.compile(r"^/(?:[A-Za-z0-9._/:@,+=-]|%[0-9A-Fa-f]{2})*$")
HEALTH_PATH_MAX = 512

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names the platform sets in the app container itself.
RESERVED_ENV = frozenset({"APPMESH_RESOURCE_ARN", "PORT", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
                          "ECS_CONTAINER_METADATA_URI", "ECS_CONTAINER_METADATA_URI_V4"})

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DNS_NAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
MAX_BACKENDS = 50  # App Mesh: backends per virtual node

# A service name: it becomes part of stack, ECS service, Cloud Map and virtual node names.
SERVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$|^[a-z]$")
