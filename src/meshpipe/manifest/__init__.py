"""Service manifests: model, safe loading with line numbers, validation rules.

The names below are loaded on first use (PEP 562): the model needs pydantic and the loader YAML, which
commands that only need ``rules`` (names and patterns) should not pay for at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meshpipe.manifest.loader import (
        LoadedManifest,
        check_document,
        check_family,
        enforce_policy,
        load_manifest,
        load_manifest_text,
        manifest_schema,
        validate_document,
    )
    from meshpipe.manifest.model import AppContainer, ServiceManifest, Task, VirtualNode

_WHERE = {
    "LoadedManifest": "loader", "check_document": "loader", "check_family": "loader",
    "enforce_policy": "loader", "load_manifest": "loader",
    "load_manifest_text": "loader", "manifest_schema": "loader", "validate_document": "loader",
    "AppContainer": "model", "ServiceManifest": "model", "Task": "model", "VirtualNode": "model",
}

__all__ = ["AppContainer", "LoadedManifest", "ServiceManifest", "Task", "VirtualNode", "check_document",
           "check_family", "enforce_policy", "load_manifest", "load_manifest_text", "manifest_schema", "validate_document"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'meshpipe.manifest' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"meshpipe.manifest.{module}"), name)
    globals()[name] = value
    return value
