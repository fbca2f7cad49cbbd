"""Values quoted in messages: long ones are cut so that one bad value never floods a report."""

from __future__ import annotations

SHOWN_CHARS = 60


def clip(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr`` of ``value``, cut to about ``limit`` characters with a long string's full length noted."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return clip(text, limit) + size
