"""The platform policy on its way from the platform team to every pipeline build.

On AWS the environment supplies the settings (its exports become the build's variables), but the policy is
the platform team's choice: ``env create --platform FILE`` reads it here, the environment stack keeps its
compact text in an SSM parameter (see :mod:`meshpipe.synth.policy_parameter`), CodeBuild hands the
parameter's value to the build as ``MESHPIPE_POLICY``, and ``meshpipe synth`` reads it back here.

* :func:`load_policy_file` reads the ``policy:`` section of a platform file. Settings may stand beside it
  (a full ``platform.yaml`` does), but only their names are checked: on AWS the environment decides them.
* :func:`policy_text` is the compact JSON of what differs from the defaults, at most
  :data:`POLICY_MAX_BYTES` (a standard-tier SSM parameter and a CloudFormation parameter both hold 4 KB).
* :func:`policy_from_text` reads that text back, reporting every problem by the variable's name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model
from pydantic import ValidationError as PydanticValidationError

from meshpipe.errors import Problem, UserError, ValidationError
from meshpipe.manifest.explain import Explainer, KeyMap, Source
from meshpipe.manifest.yamlsafe import parse_yaml_file, within_any
from meshpipe.platform import PlatformPolicy, PlatformSettings, cross_check_policy

POLICY_ENV_VAR = "MESHPIPE_POLICY"
# A standard-tier SSM parameter holds 4 KB, and a CloudFormation parameter value 4,096 bytes.
POLICY_MAX_BYTES = 4096

# A platform file read for its policy: the policy is checked in full, the settings beside it by name only.
_PolicyFile: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "_PolicyFile",
    __config__=ConfigDict(extra="forbid", frozen=True),
    policy=(PlatformPolicy, PlatformPolicy()),
    **{name: (Any, None) for name in PlatformSettings.model_fields if name != "policy"},
)

_EXPECTED = {"policy.allowed_registries": "a list of registry hosts",
             "policy.egress_ignored_ips": "a list of IPv4 addresses"}


def _file_explainer() -> Explainer:
    return Explainer(KeyMap.of(PlatformSettings, by_alias=False), _EXPECTED)


def load_policy_file(path: str) -> PlatformPolicy:
    """The ``policy:`` section of a platform file (the defaults when it has none); every problem at once."""
    doc = parse_yaml_file(path)
    problems = list(doc.problems)
    refused = {p.path for p in doc.problems if p.path}
    data = doc.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(Problem(doc.file, doc.line_of(""), "",
                                "a platform file must be a mapping of settings with a policy: section"))
        raise ValidationError(problems, hint="see docs/platform.md for the policy's settings")
    source = Source(doc.file, doc.line_of, doc.raw_of)
    found: list[Problem] = []
    policy: PlatformPolicy | None = None
    try:
        policy = _PolicyFile.model_validate(data).policy  # type: ignore[attr-defined]
    except PydanticValidationError as exc:
        found = _file_explainer().problems(exc.errors(), source)
    found += [Problem(doc.file, doc.line_of(p), p, msg)
              for p, msg in cross_check_policy(data.get("policy"), [p.path for p in found])]
    # Where the reader refused a value, the model's complaint about what was left behind only repeats it.
    problems += [p for p in found if not within_any(p.path, refused)]
    if problems or policy is None:
        raise ValidationError(problems, hint="see docs/platform.md for the policy's settings")
    return policy


def policy_text(policy: PlatformPolicy | None) -> str:
    """Compact JSON of the policy's values that differ from the defaults (``{}`` for the defaults)."""
    values = (policy or PlatformPolicy()).model_dump(mode="json", exclude_defaults=True)
    text = json.dumps(values, separators=(",", ":"), sort_keys=True)
    size = len(text.encode())
    if size > POLICY_MAX_BYTES:
        raise UserError(f"the platform policy is {size} bytes as JSON; an environment can carry at most "
                        f"{POLICY_MAX_BYTES} (an SSM parameter of the standard tier)",
                        hint="shorten it: e.g. one wildcard registry (*.dkr.ecr.REGION.amazonaws.com) "
                             "instead of many hosts")
    return text


def policy_from_text(text: str, source: str = POLICY_ENV_VAR) -> PlatformPolicy:
    """The policy :func:`policy_text` wrote; problems are named ``<source>: <key>``."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValidationError([Problem(source, None, "", f"is not JSON ({exc})")],
                              hint="it holds the platform policy as JSON, as env create stores it") from None
    if not isinstance(data, dict):
        raise ValidationError([Problem(source, None, "", "must be a JSON object of policy settings")])
    explainer = Explainer(KeyMap.of(PlatformPolicy, by_alias=False),
                          {k.removeprefix("policy."): v for k, v in _EXPECTED.items()})
    problems: list[Problem] = []
    policy: PlatformPolicy | None = None
    try:
        policy = PlatformPolicy.model_validate(data)
    except PydanticValidationError as exc:
        problems = explainer.problems(exc.errors(), Source(source))
    problems += [Problem(source, None, path.removeprefix("policy."), msg.replace("policy.", ""))
                 for path, msg in cross_check_policy(data, [f"policy.{p.path}" for p in problems])]
    if problems or policy is None:
        raise ValidationError(problems, hint="see docs/platform.md for the policy's settings")
    return policy


def policy_from_env(environ: Mapping[str, str]) -> PlatformPolicy | None:
    """The policy in ``MESHPIPE_POLICY``, or None when the variable is unset or empty."""
    text = environ.get(POLICY_ENV_VAR, "")
    return policy_from_text(text) if text.strip() else None
