"""Engines apply the pure model somewhere: ``local`` (one machine) or ``aws``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # proxies import this package too; keep their start-up free of the model's imports
    from meshpipe.engines.base import Engine, Reporter


def get_engine(name: str, reporter: Reporter | None = None) -> Engine:
    """The engine named on the command line. Imports lazily: boto3 is only loaded for ``aws``."""
    if name == "local":
        from meshpipe.engines.local.engine import LocalEngine

        return LocalEngine(reporter=reporter)
    if name == "aws":
        from meshpipe.engines.aws.engine import AwsEngine

        return AwsEngine(reporter=reporter)
    from meshpipe.errors import UserError

    raise UserError(f"unknown engine {name!r}", hint="use --engine local or --engine aws")
