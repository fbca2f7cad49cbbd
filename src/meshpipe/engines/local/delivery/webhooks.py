"""Rollout webhooks, as Flagger calls them: a POST of a JSON payload per hook, with a timeout.

A 2xx answer passes the check; anything else (another status, a refused connection, a timeout, a
redirect) fails it, and the reason says which. Hooks of one kind run concurrently, so a window waits for
the slowest one, never for the sum of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from meshpipe.delivery.machine import HookResult
from meshpipe.delivery.policy import Webhook

MAX_DETAIL = 200


def payload_for(hook: Webhook, base: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": hook.name, "type": hook.type, **base, "metadata": dict(hook.metadata)}


async def call_one(session: Any, hook: Webhook, payload: Mapping[str, Any]) -> HookResult:
    import aiohttp

    try:
        async with session.post(hook.url, json=payload, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=hook.timeout_s)) as resp:
            text = (await resp.text(errors="replace")).strip().replace("\n", " ")
            detail = f"HTTP {resp.status}" + (f": {text[:MAX_DETAIL]}" if text and not 200 <= resp.status < 300 else "")
            return HookResult(hook.name, hook.type, 200 <= resp.status < 300, detail)
    except TimeoutError:
        return HookResult(hook.name, hook.type, False, f"no answer within {hook.timeout_s:g} s")
    except aiohttp.ClientError as exc:
        return HookResult(hook.name, hook.type, False, f"unreachable: {exc or type(exc).__name__}"[:MAX_DETAIL])


async def call_hooks(session: Any, hooks: Sequence[Webhook], base: Mapping[str, Any]) -> list[HookResult]:
    """Every hook of ``hooks`` with the payload ``base`` plus its own name, type and metadata."""
    if not hooks:
        return []
    return list(await asyncio.gather(*(call_one(session, h, payload_for(h, base)) for h in hooks)))
