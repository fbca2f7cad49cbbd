"""Stable codes of the findings meshpipe reports about its input files, so CI systems can filter them.

A code names a kind of finding, never its wording: messages may improve, codes stay. ``Y`` codes come from
the YAML reader (manifests and ``platform.yaml`` alike), ``M`` codes from manifest rules, ``P`` codes from
platform settings and policy, ``A`` codes from command-line values such as a service name or a commit.
docs/manifest.md lists them all; a test keeps that list and this table equal.
"""

from __future__ import annotations

CODES: dict[str, str] = {
    # The YAML reader.
    "Y001": "the file cannot be read (missing, a folder, no permission)",
    "Y002": "the file is larger than the size limit",
    "Y003": "the file is not UTF-8 text",
    "Y004": "YAML syntax error, or a second document",
    "Y005": "too many values or too deep nesting",
    "Y006": "the file is empty",
    "Y007": "a YAML tag, merge key or non-string key",
    "Y008": "a duplicate key",
    "Y009": "a value YAML reads differently than it looks (0x50, 1e3, a NUL character, an overlong key)",
    # The manifest.
    "M001": "an unknown key (with a suggestion when one is near)",
    "M002": "a required key is missing",
    "M003": "a value of the wrong type",
    "M004": "a value is null",
    "M005": "a value outside the allowed range or choices",
    "M006": "the manifest is not a mapping",
    "M010": "Task.Family is not a valid task family name",
    "M011": "Task.Cpu is not a Fargate CPU size",
    "M012": "Task.Memory is not a Fargate memory size, or does not fit the CPU",
    "M013": "AppContainer.Image has no tag or digest, or is not an image reference",
    "M014": "AppContainer.Port is not a port, or belongs to the sidecar",
    "M015": "AppContainer.HealthCheckPath is not a plain URL path",
    "M016": "AppContainer.Command is not a usable list of arguments",
    "M017": "AppContainer.Environment has a reserved or invalid name or value",
    "M018": "VirtualNode.Backends has an invalid or repeated name",
    "M019": "Task.Family is not the name of the service the manifest is deployed as",
    "M020": "the manifest breaks the platform policy max_cpu",
    "M021": "the manifest breaks the platform policy max_memory",
    "M022": "the manifest's port is reserved by the platform policy",
    "M023": "the image's registry is not in the platform policy allowed_registries",
    "M030": "Rollout.Steps do not rise strictly from above 0 to 100",
    "M031": "a Rollout setting that does not apply to the service's rollout strategy",
    "M032": "Rollout.Webhooks has an invalid name, URL or metadata, or a repeated name",
    "M033": "Rollout.PreviewHeader is not a header the mesh can match",
    # Platform settings and policy.
    "P001": "an unknown setting",
    "P002": "a required setting is missing",
    "P003": "a setting of the wrong type",
    "P004": "a setting is null",
    "P005": "a setting outside the allowed range or choices",
    "P006": "the platform file is not a mapping",
    "P010": "a setting's value is malformed (an id, ARN, name or address)",
    "P011": "settings that contradict each other",
    # Command-line values.
    "A001": "a service name meshpipe does not accept",
    "A002": "a commit id that is not 8-64 hexadecimal characters",
}

# The manifest field each rule code belongs to (list indices dropped).
MANIFEST_FIELD_CODES: dict[str, str] = {
    "Task.Family": "M010",
    "Task.Cpu": "M011",
    "Task.Memory": "M012",
    "AppContainer.Image": "M013",
    "AppContainer.Port": "M014",
    "AppContainer.HealthCheckPath": "M015",
    "AppContainer.Command": "M016",
    "AppContainer.Environment": "M017",
    "VirtualNode.Backends": "M018",
    "Rollout.Steps": "M030",
    "Rollout.Webhooks": "M032",
    "Rollout.PreviewHeader": "M033",
}


def field_code(path: str, table: dict[str, str], fallback: str) -> str:
    """The code of a rule about the field at ``path`` (``Command[2]`` and ``Environment.X`` count as their
    field), else ``fallback``."""
    bare = path.split("[", 1)[0]
    while bare:
        if bare in table:
            return table[bare]
        bare = bare.rpartition(".")[0]
    return fallback
