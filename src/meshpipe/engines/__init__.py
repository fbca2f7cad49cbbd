"""Engines apply the pure model somewhere: ``local`` (one machine) or ``aws``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # proxies import this package too; keep their start-up free of the model's imports
    from meshpipe.engines.base import Engine, Reporter


def get_engine(name: str, reporter: Reporter | None = None, **local: Any) -> Engine:
    """The engine named on the command line. Imports lazily: boto3 is only loaded for ``aws``.

    ``local``: the local engine's own knobs (``home``, ``tasks_per_version``, ``autostart``; see
    ``LocalEngine``), for the demos and the read path; the AWS engine takes none."""
    if name == "local":
        from meshpipe.engines.local.engine import LocalEngine

        return LocalEngine(reporter=reporter, **local)
    from meshpipe.errors import UserError

    if name == "aws":
        if local:
            raise UserError(f"the aws engine takes no {', '.join(sorted(local))}")
        from meshpipe.engines.aws.engine import AwsEngine

        return AwsEngine(reporter=reporter)
    raise UserError(f"unknown engine {name!r}", hint="use --engine local or --engine aws")
