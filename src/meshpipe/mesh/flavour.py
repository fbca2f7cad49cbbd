"""The mesh flavours an AWS environment can run: one name each, spelt as the CLI, JSON and stack outputs spell it."""

from __future__ import annotations

from enum import StrEnum

from meshpipe.errors import UserError


class MeshFlavour(StrEnum):
    # The original sample's system: one immutable stack per version, routes set through the App Mesh API.
    APPMESH = "appmesh"
    # One stack per service, updated per commit; ECS shifts traffic between task-definition revisions.
    SERVICE_CONNECT = "service-connect"

    @classmethod
    def parse(cls, text: str) -> MeshFlavour:
        """The flavour spelt ``text``; :class:`UserError` naming the flavours there are for anything else."""
        try:
            return cls(text)
        except ValueError:
            raise UserError(f"unknown mesh flavour {text!r}",
                            hint=f"choose one of: {', '.join(cls)}") from None
