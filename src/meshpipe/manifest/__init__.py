"""Service manifests: model, safe loading with line numbers, validation rules."""

from meshpipe.manifest.loader import LoadedManifest, load_manifest, load_manifest_text, manifest_schema
from meshpipe.manifest.model import AppContainer, ServiceManifest, Task, VirtualNode

__all__ = ["AppContainer", "LoadedManifest", "ServiceManifest", "Task", "VirtualNode", "load_manifest",
           "load_manifest_text", "manifest_schema"]
