"""Engines apply the pure model somewhere: ``local`` (one machine) or ``aws``."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own flag would load typing: read commands and proxies import this package
if TYPE_CHECKING:  # proxies import this package too; keep their start-up free of the model's imports
    from typing import Any

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


def daemon_read(name: str, env: str, read: str, service: str = "") -> Any:
    """The JSON answer of a running local daemon to a read command (``versions``, ``route_view``, ``stats``;
    ``env_status``: ``EnvironmentInfo``'s fields), in one request and without loading the engine's types.

    None when the engine is not ``local`` or it cannot answer this way (no daemon running: the engine
    starts one). An answer that is an error is raised as the meshpipe error the engine would raise."""
    if name != "local":
        return None
    from meshpipe.engines.local.control.reads import ask

    answered = ask(env, read, service)
    if answered is None:
        return None
    status, answer = answered
    if status >= 400:
        from meshpipe.engines.local.control.httpapi import error_from_json  # only when it went wrong

        raise error_from_json(status, answer)
    return answer


def route_view_typed(answer: Any) -> tuple[Any, list[Any]]:
    """A local daemon's ``route_view`` answer (from :func:`daemon_read`) as the engine's ``route_view`` returns
    it: the Route (or None) and the HeaderRoutes. Loads the routing types, which the plain route does not need."""
    from meshpipe.engines.local.control.operations import ROUTE_VIEW

    view = ROUTE_VIEW.decode(answer)
    return view.route, list(view.header_routes)
