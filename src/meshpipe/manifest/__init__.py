"""Service manifests: model, safe loading with line numbers, validation rules."""

from meshpipe.manifest.loader import (
    LoadedManifest,
    check_document,
    enforce_policy,
    load_manifest,
    load_manifest_text,
    manifest_schema,
    validate_document,
)
from meshpipe.manifest.model import AppContainer, ServiceManifest, Task, VirtualNode

__all__ = ["AppContainer", "LoadedManifest", "ServiceManifest", "Task", "VirtualNode", "check_document",
           "enforce_policy", "load_manifest", "load_manifest_text", "manifest_schema", "validate_document"]
