"""Query parameters shared by several routes, validated into µs ranges and cursors."""

from __future__ import annotations

import base64
import binascii
from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import Query

from api.errors import invalid
from storage.base import MAX_QUERY_RANGE_US
from storage.localtime import to_us

StartQuery = Annotated[
    datetime | None,
    Query(description="Range start, ISO 8601 with offset (default: `end` minus the default span)."),
]
EndQuery = Annotated[datetime | None, Query(description="Range end, ISO 8601 with offset.")]
FirstNightQuery = Annotated[
    date | None, Query(description="First night (ISO date of its evening).")
]
LastNightQuery = Annotated[date | None, Query(description="Last night (ISO date of its evening).")]


def time_range_us(
    start: datetime | None, end: datetime | None, now: datetime, default_days: int
) -> tuple[int, int]:
    """``[start_us, end_us)`` from optional aware datetimes; 422 naming the bad field."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise invalid(("query", name), "needs a UTC offset, e.g. 2026-11-20T23:00:00Z")
    end = end or now
    start = start or end - timedelta(days=default_days)
    start_us, end_us = to_us(start), to_us(end)
    if end_us <= start_us:
        raise invalid(("query", "end"), "end must be after start")
    if end_us - start_us > MAX_QUERY_RANGE_US:
        raise invalid(("query", "start"), "range longer than 400 days")
    return start_us, end_us


def night_range(
    first: date | None, last: date | None, today: date, default_nights: int
) -> tuple[date, date]:
    """First and last night (inclusive), at most 400 nights."""
    last = last or today
    first = first or last - timedelta(days=default_nights - 1)
    if last < first:
        raise invalid(("query", "last"), "last night is before first night")
    if (last - first).days >= 400:
        raise invalid(("query", "first"), "more than 400 nights")
    return first, last


def encode_cursor(onset_us: int, episode_id: str) -> str:
    """Opaque cursor after the episode ``(onset_us, episode_id)``."""
    return base64.urlsafe_b64encode(f"{onset_us}|{episode_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Inverse of :func:`encode_cursor`; 422 for anything it did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        onset, episode_id = raw.split("|", 1)
        return int(onset), episode_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid(("query", "cursor"), "not a cursor returned by this endpoint") from None
