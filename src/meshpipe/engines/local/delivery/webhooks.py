"""Rollout webhooks, as Flagger calls them: a POST of a JSON payload per webhook, with a timeout.

A 2xx answer passes the check; anything else (another status, a refused connection, a timeout, a
redirect) fails it, and the reason says which. Webhooks of one kind run concurrently, so a window waits for
the slowest one, never for the sum of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from meshpipe.delivery.machine import WebhookResult
from meshpipe.delivery.policy import Webhook

MAX_DETAIL = 200


def payload_for(webhook: Webhook, base: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": webhook.name, "type": webhook.type, **base, "metadata": dict(webhook.metadata)}


async def call_one(session: Any, webhook: Webhook, payload: Mapping[str, Any]) -> WebhookResult:
    import aiohttp

    try:
        async with session.post(webhook.url, json=payload, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=webhook.timeout_s)) as resp:
            text = (await resp.text(errors="replace")).strip().replace("\n", " ")
            detail = f"HTTP {resp.status}" + (f": {text[:MAX_DETAIL]}" if text and not 200 <= resp.status < 300 else "")
            return WebhookResult(webhook.name, webhook.type, 200 <= resp.status < 300, detail)
    except TimeoutError:
        return WebhookResult(webhook.name, webhook.type, False, f"no answer within {webhook.timeout_s:g} s")
    except aiohttp.ClientError as exc:
        return WebhookResult(webhook.name, webhook.type, False, f"unreachable: {exc or type(exc).__name__}"[:MAX_DETAIL])


async def call_webhooks(session: Any, webhooks: Sequence[Webhook], base: Mapping[str, Any]) -> list[WebhookResult]:
    """Every webhook of ``webhooks`` with the payload ``base`` plus its own name, type and metadata."""
    if not webhooks:
        return []
    return list(await asyncio.gather(*(call_one(session, h, payload_for(h, base)) for h in webhooks)))
