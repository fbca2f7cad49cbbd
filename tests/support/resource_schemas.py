"""CloudFormation's registry schemas, as cfn-lint ships them: what a resource type's properties are, which
of them are create-only (changing one replaces the resource), what its handlers call."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import cfnlint

SCHEMAS = Path(cfnlint.__file__).parent / "data" / "schemas"


@functools.cache
def resource_schema(type_name: str, region: str = "us-east-1") -> dict[str, Any]:
    """The registry schema of ``type_name`` (e.g. ``AWS::EC2::SecurityGroup``) in ``region``."""
    providers = json.loads((SCHEMAS / "providers" / f"{region}.json").read_text(encoding="utf-8"))
    return dict(json.loads((SCHEMAS / "resources" / f"{providers[type_name]}.json").read_text(encoding="utf-8")))
