"""Nights and weeks in the wearer's local time, converted to µs since the epoch (UTC)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

NIGHT_START = time(12, 0)  # a night runs noon to noon, local time


def to_us(moment: datetime) -> int:
    """µs since the epoch of a timezone-aware datetime."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime; give a UTC offset, e.g. 2026-11-20T23:00:00Z")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(ts_us: int) -> datetime:
    """Timezone-aware UTC datetime of µs since the epoch."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_us)


def night_window_us(night: date, time_zone: str) -> tuple[int, int]:
    """``[start_us, end_us)`` of the night starting on the evening of ``night`` (noon to noon)."""
    zone = ZoneInfo(time_zone)
    start = datetime.combine(night, NIGHT_START, tzinfo=zone)
    end = datetime.combine(night + timedelta(days=1), NIGHT_START, tzinfo=zone)
    return to_us(start), to_us(end)


def night_of(ts_us: int, time_zone: str) -> date:
    """The night (ISO date of its evening) a device time falls in."""
    local = from_us(ts_us).astimezone(ZoneInfo(time_zone))
    return (local - timedelta(hours=12)).date()


def utc_offset_s(time_zone: str, at_us: int) -> int:
    """The zone's UTC offset at ``at_us``, seconds (what the store's night/week split uses)."""
    offset = from_us(at_us).astimezone(ZoneInfo(time_zone)).utcoffset()
    return 0 if offset is None else int(offset.total_seconds())


def iso_week(day: date) -> str:
    """``YYYY-Www`` of a date."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def iso_weeks_between(first: date, last: date) -> list[str]:
    """Every ISO week touching ``[first, last]``, in order."""
    monday = first - timedelta(days=first.weekday())
    weeks = []
    while monday <= last:
        weeks.append(iso_week(monday))
        monday += timedelta(days=7)
    return weeks


def night_segments(first: date, last: date, time_zone: str) -> list[tuple[int, int, int]]:
    """``(start_us, end_us, utc_offset_s)`` runs of consecutive nights with one UTC offset.

    The store splits nights at a fixed offset; asking it once per run keeps every night right
    across daylight-saving changes.
    """
    segments: list[tuple[int, int, int]] = []
    night = first
    while night <= last:
        start_us, end_us = night_window_us(night, time_zone)
        offset_s = utc_offset_s(time_zone, start_us)
        if segments and segments[-1][2] == offset_s and segments[-1][1] == start_us:
            segments[-1] = (segments[-1][0], end_us, offset_s)
        else:
            segments.append((start_us, end_us, offset_s))
        night += timedelta(days=1)
    return segments
