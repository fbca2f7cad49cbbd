"""CloudFormation synthesis: a resolved service version in, a template out. Pure.

``synthesize`` picks the mesh flavour: ``appmesh`` (the original sample's system, one immutable stack per version)
or ``service-connect`` (one stack per service, updated per commit, ECS shifting traffic between revisions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.synth.cfn import Json, template_json

if TYPE_CHECKING:
    from meshpipe.model import ServiceVersion



@dataclass(frozen=True)
class SynthResult:
    """A synthesized stack: its name, flavour and template."""

    stack_name: str
    mesh: MeshFlavour
    template: Json

    @property
    def json_text(self) -> str:
        """The template's bytes as written to disk: same version, same text."""
        return template_json(self.template)

    @property
    def file_name(self) -> str:
        return f"{self.stack_name}.template.json"


def _appmesh(version: ServiceVersion) -> tuple[str, Json]:
    from meshpipe.synth.appmesh import synth_appmesh

    return version.stack_name, synth_appmesh(version)


def _service_connect(version: ServiceVersion) -> tuple[str, Json]:
    from meshpipe.synth.service_connect import stack_name, synth_service_connect

    return stack_name(version), synth_service_connect(version)


_SYNTHESIZERS: dict[MeshFlavour, Callable[[ServiceVersion], tuple[str, Json]]] = {
    MeshFlavour.APPMESH: _appmesh,
    MeshFlavour.SERVICE_CONNECT: _service_connect,
}


def synthesize(version: ServiceVersion, mesh: MeshFlavour = MeshFlavour.APPMESH) -> SynthResult:
    """The stack for ``version`` in the ``mesh`` flavour; :class:`UserError` for an unknown flavour."""
    flavour = MeshFlavour.parse(mesh)
    name, tpl = _SYNTHESIZERS[flavour](version)
    return SynthResult(stack_name=name, mesh=flavour, template=tpl)


__all__ = ["MeshFlavour", "SynthResult", "synthesize"]
