"""One way a moment is written down, whichever engine or part writes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from meshpipe.clock import iso_utc


def test_a_moment_is_utc_to_the_millisecond_from_a_datetime_or_epoch_seconds() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(moment) == "2026-01-02T01:04:05.678Z"
    assert iso_utc(moment.timestamp()) == iso_utc(moment)
    assert iso_utc(datetime(2026, 1, 2, tzinfo=UTC)) == "2026-01-02T00:00:00.000Z"  # fixed width
    assert iso_utc(None) is None


def test_the_text_sorts_as_the_time_does() -> None:
    start = datetime(2026, 1, 1, 23, 59, 59, 999_000, tzinfo=UTC).timestamp()
    moments = [start + d for d in (0.0, 0.001, 0.5, 1.0, 86_400.0)]
    assert sorted(iso_utc(m) for m in moments) == [iso_utc(m) for m in moments]
