"""Every AWS call the engine makes goes through :class:`AwsCalls`: throttling is retried with bounded
backoff, and any failure leaves as a meshpipe error (see errors.py), never as a botocore traceback."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from meshpipe.clock import Clock, iso_utc
from meshpipe.engines.aws.clients import ClientFactory
from meshpipe.engines.aws.errors import is_throttling, translate
from meshpipe.engines.aws.retry import Backoff, RetriesExhausted, call_with_backoff
from meshpipe.errors import OperationError


class AwsCalls:
    """Calls ``service.operation(**params)`` on clients from ``factory``."""

    def __init__(self, factory: ClientFactory, *, clock: Clock, backoff: Backoff | None = None,
                 rand: Callable[[], float] = random.random) -> None:
        self.factory = factory
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.rand = rand

    def client(self, service: str) -> Any:
        try:
            return self.factory.client(service)
        except Exception as exc:
            raise translate(exc, service, "client setup") from None

    # ``service`` and ``operation`` are positional-only: an API may have a parameter of the same name (ECS's
    # ListServiceDeployments takes ``service``).
    def __call__(self, service: str, operation: str, /, **params: Any) -> dict[str, Any]:
        result = self.call_or_none(service, operation, when=_never, **params)
        assert result is not None
        return result

    def call_or_none(self, service: str, operation: str, /, *, when: Callable[[BaseException], bool],
                     **params: Any) -> dict[str, Any] | None:
        """Call; an error for which ``when`` holds (e.g. "does not exist") yields None instead."""
        method = getattr(self.client(service), operation)
        try:
            result: dict[str, Any] = call_with_backoff(
                lambda: method(**params), is_retryable=is_throttling, backoff=self.backoff,
                clock=self.clock, rand=self.rand)
            return result
        except RetriesExhausted as exhausted:
            error = translate(exhausted.last, service, _api_name(operation))
            raise OperationError(
                f"{error.message}; still throttled after {exhausted.attempts} attempts",
                hint="wait a minute and retry; if it persists, ask AWS for a higher API rate quota "
                     "or run fewer tools against this account at once") from None
        except Exception as exc:
            if when(exc):
                return None
            raise translate(exc, service, _api_name(operation)) from None

    def pages(self, service: str, operation: str, items_key: str, /, *, token_key: str = "NextToken",
              request_token_key: str | None = None, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list call, following ``token_key`` from page to page."""
        request_key = request_token_key or token_key
        while True:
            page = self(service, operation, **params)
            yield from page.get(items_key, [])
            token = page.get(token_key)
            if not token:
                return
            params = {**params, request_key: token}


def _never(exc: BaseException) -> bool:
    return False


def _api_name(operation: str) -> str:
    """``describe_stacks`` -> ``DescribeStacks`` (the name IAM actions use)."""
    return "".join(part.capitalize() for part in operation.split("_"))


def answer_time(value: Any) -> str | None:
    """A time in an AWS answer, written as meshpipe writes times (:func:`meshpipe.clock.iso_utc`); botocore
    hands timestamps over as datetimes, and anything else (text) is kept as it is."""
    if isinstance(value, datetime):
        return iso_utc(value)
    return str(value) if value else None
