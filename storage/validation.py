"""Checks every adapter runs before it touches its database.

Writes: values that cannot be stored raise :class:`~storage.base.UnstorableValue` naming the
record and field. Queries: inverted or too long ranges, bad filters and (when the store was given
a device registry) unknown devices raise :class:`~storage.base.QueryError`. Both adapters call the
same functions, so they refuse the same things with the same messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from detection.events import (
    Episode,
    EpisodeEvent,
    Movement,
    QualityEvent,
    QualityFlag,
    SeriesPoint,
)
from ingest.protocol import DEVICE_ID_PATTERN
from storage.base import (
    MAX_QUERY_RANGE_US,
    MAX_SERIES_POINTS,
    DeadLetter,
    EpisodeQuery,
    HealthRecord,
    QueryError,
    UnstorableValue,
)

INT64_MAX: Final = 2**63 - 1
MAX_TIME_US: Final = INT64_MAX // 1000  # 2262-04-11: InfluxDB keeps int64 nanoseconds
SITE_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
REASON_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
POSTURE_PATTERN: Final = re.compile(r"^[a-z_]{1,16}$")
STREAMS: Final = ("emg", "acc")
MAX_TEXT_CHARS: Final = 4096
MAX_UTC_OFFSET_S: Final = 14 * 3600
MAX_EPISODE_LIMIT: Final = 100_000
MAX_DEAD_LETTER_LIMIT: Final = 10_000

DeviceRegistry = Callable[[str], bool]
"""``is_registered(device_id) -> bool``; when a store has one, queries name known devices only."""


def _finite(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnstorableValue(f"{what} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise UnstorableValue(f"{what} is {value!r}; NaN and infinity cannot be stored")
    return float(value)


def _optional_finite(value: float | None, what: str) -> float | None:
    return None if value is None else _finite(value, what)


def _time_us(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnstorableValue(f"{what} must be an integer µs timestamp, got {value!r}")
    if not 0 <= value <= MAX_TIME_US:
        raise UnstorableValue(f"{what} = {value} is outside 0..{MAX_TIME_US} µs (1970-2262)")
    return value


def _count(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
        raise UnstorableValue(f"{what} must be an integer in 0..2**63-1, got {value!r}")
    return value


def _text(value: str, what: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(value, str):
        raise UnstorableValue(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise UnstorableValue(f"{what} is {len(value)} characters; at most {max_chars}")
    if "\x00" in value:
        raise UnstorableValue(f"{what} contains a NUL character")
    return value


def _device(value: str, what: str) -> str:
    if not isinstance(value, str) or not DEVICE_ID_PATTERN.match(value):
        raise UnstorableValue(f"{what} {value!r} is not a device id (1-64 of A-Z a-z 0-9 _ . -)")
    return value


def check_episode(episode: Episode) -> Episode:
    """Refuse an episode that cannot be stored; return it unchanged."""
    what = f"episode {episode.episode_id!r}"
    _device(episode.device_id, f"{what} device_id")
    if not isinstance(episode.site, str) or not SITE_PATTERN.match(episode.site):
        raise UnstorableValue(f"{what} site {episode.site!r} is not 1-32 of A-Z a-z 0-9 _ . -")
    _time_us(episode.onset_us, f"{what} onset_us")
    if episode.episode_id != f"{episode.device_id}:{episode.onset_us}":
        raise UnstorableValue(
            f"{what}: episode_id must be '<device_id>:<onset_us>' "
            f"({episode.device_id}:{episode.onset_us})"
        )
    _time_us(episode.confirmed_us, f"{what} confirmed_us")
    if episode.offset_us is not None:
        _time_us(episode.offset_us, f"{what} offset_us")
        if episode.offset_us < episode.onset_us:
            raise UnstorableValue(f"{what} ends before it starts")
    if _finite(episode.duration_s, f"{what} duration_s") < 0:
        raise UnstorableValue(f"{what} duration_s is negative")
    for name in ("peak_intensity", "mean_intensity"):
        if _finite(getattr(episode, name), f"{what} {name}") < 0:
            raise UnstorableValue(f"{what} {name} is negative")
    if not 0.0 <= _finite(episode.confidence, f"{what} confidence") <= 1.0:
        raise UnstorableValue(f"{what} confidence {episode.confidence} is outside 0..1")
    for name in ("peak_mvc_pct", "mean_mvc_pct"):
        value = _optional_finite(getattr(episode, name), f"{what} {name}")
        if value is not None and value < 0:
            raise UnstorableValue(f"{what} {name} is negative")
    if not isinstance(episode.movement, Movement):
        raise UnstorableValue(f"{what} movement {episode.movement!r} is not a Movement")
    if episode.got_up_after not in (None, True, False):
        raise UnstorableValue(f"{what} got_up_after must be True, False or None")
    for flag in episode.quality_flags:
        if not isinstance(flag, QualityFlag):
            raise UnstorableValue(f"{what} quality flag {flag!r} is not a QualityFlag")
    return episode


def latest_episodes(events: Iterable[EpisodeEvent]) -> list[Episode]:
    """Check every event's episode; keep the last state of each episode, in write order.

    A later event of an episode (in the order given, across calls too) replaces an earlier
    one; the detector emits them in signal order, so the last one is the newest state.
    """
    latest: dict[str, Episode] = {}
    for event in events:
        if not isinstance(event, EpisodeEvent):
            raise UnstorableValue(f"write_events takes EpisodeEvents, got {type(event).__name__}")
        episode = check_episode(event.episode)
        latest.pop(episode.episode_id, None)
        latest[episode.episode_id] = episode
    return list(latest.values())


def check_quality(event: QualityEvent) -> QualityEvent:
    """Refuse a quality interval that cannot be stored; return it unchanged."""
    if not isinstance(event, QualityEvent):
        raise UnstorableValue(f"write_quality takes QualityEvents, got {type(event).__name__}")
    what = f"quality event {event.device_id}/{event.flag}@{event.start_us}"
    _device(event.device_id, f"{what} device_id")
    if not isinstance(event.flag, QualityFlag):
        raise UnstorableValue(f"{what} flag {event.flag!r} is not a QualityFlag")
    _time_us(event.start_us, f"{what} start_us")
    _time_us(event.at_us, f"{what} at_us")
    if event.end_us is not None and _time_us(event.end_us, f"{what} end_us") < event.start_us:
        raise UnstorableValue(f"{what} ends before it starts")
    return event


def check_series(device_id: str, points: Sequence[SeriesPoint]) -> list[SeriesPoint]:
    """Refuse points that cannot be stored; return the points that carry a value.

    A point whose four values are all None holds no information and is not stored (by either
    adapter), so both report the same series.
    """
    _device(device_id, "series device_id")
    kept = []
    for point in points:
        if not isinstance(point, SeriesPoint):
            raise UnstorableValue(f"write_series takes SeriesPoints, got {type(point).__name__}")
        what = f"series point {device_id}@{point.ts_us}"
        _time_us(point.ts_us, f"{what} ts_us")
        _optional_finite(point.envelope_uv, f"{what} envelope_uv")
        _optional_finite(point.floor_uv, f"{what} floor_uv")
        _optional_finite(point.activity_g, f"{what} activity_g")
        if point.posture is not None and (
            not isinstance(point.posture, str) or not POSTURE_PATTERN.match(point.posture)
        ):
            raise UnstorableValue(f"{what} posture {point.posture!r} is not 1-16 of a-z _")
        values = (point.envelope_uv, point.floor_uv, point.activity_g, point.posture)
        if any(value is not None for value in values):
            kept.append(point)
    return kept


def check_health(record: HealthRecord) -> HealthRecord:
    """Refuse a health record that cannot be stored; return it unchanged."""
    if not isinstance(record, HealthRecord):
        raise UnstorableValue(f"write_health takes HealthRecords, got {type(record).__name__}")
    what = f"health record {record.device_id}/{record.stream}@{record.arrival_us}"
    _device(record.device_id, f"{what} device_id")
    if record.stream not in STREAMS:
        raise UnstorableValue(f"{what} stream {record.stream!r} is not one of {STREAMS}")
    _time_us(record.arrival_us, f"{what} arrival_us")
    _time_us(record.last_device_us, f"{what} last_device_us")
    for name in ("frames", "samples", "gaps", "gap_samples", "duplicates", "reordered"):
        _count(getattr(record, name), f"{what} {name}")
    _count(record.dead_letters, f"{what} dead_letters")
    _finite(record.frames_per_s, f"{what} frames_per_s")
    _finite(record.lag_s, f"{what} lag_s")
    return record


def check_dead_letter(letter: DeadLetter) -> DeadLetter:
    """Refuse a dead letter that cannot be stored; return it unchanged."""
    if not isinstance(letter, DeadLetter):
        raise UnstorableValue(f"write_dead_letters takes DeadLetters, got {type(letter).__name__}")
    what = f"dead letter {letter.reason}@{letter.arrival_us}"
    _time_us(letter.arrival_us, f"{what} arrival_us")
    if not isinstance(letter.reason, str) or not REASON_PATTERN.match(letter.reason):
        raise UnstorableValue(f"{what} reason {letter.reason!r} is not 1-40 of a-z 0-9 _")
    _text(letter.topic, f"{what} topic", 1024)
    _text(letter.device_id, f"{what} device_id", 256)
    _text(letter.detail, f"{what} detail")
    _text(letter.payload_head_hex, f"{what} payload_head_hex", 1024)
    _count(letter.payload_bytes, f"{what} payload_bytes")
    return letter


def check_range(start_us: int, end_us: int) -> None:
    """Refuse an inverted, empty, negative or longer-than-:data:`MAX_QUERY_RANGE_US` range."""
    for name, value in (("start_us", start_us), ("end_us", end_us)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIME_US:
            raise QueryError(
                f"{name} must be an integer µs time in 0..{MAX_TIME_US}, got {value!r}"
            )
    if end_us <= start_us:
        raise QueryError(f"inverted or empty range: end_us {end_us} <= start_us {start_us}")
    if end_us - start_us > MAX_QUERY_RANGE_US:
        days = (end_us - start_us) / 86_400e6
        limit_days = MAX_QUERY_RANGE_US / 86_400e6
        raise QueryError(f"range of {days:.1f} days is longer than the {limit_days:.0f}-day limit")


def check_devices(device_ids: Iterable[str], registry: DeviceRegistry | None) -> tuple[str, ...]:
    """Refuse an empty list, malformed ids and (with a registry) unknown devices."""
    if isinstance(device_ids, str):
        raise QueryError("device_ids must be a sequence of ids, not one string")
    ids = tuple(device_ids)
    if not ids:
        raise QueryError("no device ids given")
    for device_id in ids:
        if not isinstance(device_id, str) or not DEVICE_ID_PATTERN.match(device_id):
            raise QueryError(f"device id {device_id!r} is not 1-64 of A-Z a-z 0-9 _ . -")
        if registry is not None and not registry(device_id):
            raise QueryError(f"unknown device {device_id!r}")
    return tuple(dict.fromkeys(ids))


def check_episode_query(query: EpisodeQuery, registry: DeviceRegistry | None) -> None:
    """Refuse a bad :class:`EpisodeQuery` (range, devices, filters, cursor, limit)."""
    check_range(query.start_us, query.end_us)
    check_devices(query.device_ids, registry)
    for name in ("min_duration_s", "min_peak_intensity"):
        value = getattr(query, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise QueryError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise QueryError(f"{name} must be a finite number >= 0, got {value!r}")
    if query.site is not None and (
        not isinstance(query.site, str) or not SITE_PATTERN.match(query.site)
    ):
        raise QueryError(f"site filter {query.site!r} is not 1-32 of A-Z a-z 0-9 _ . -")
    if query.limit is not None and (
        isinstance(query.limit, bool)
        or not isinstance(query.limit, int)
        or not 1 <= query.limit <= MAX_EPISODE_LIMIT
    ):
        raise QueryError(f"limit must be an integer in 1..{MAX_EPISODE_LIMIT}, got {query.limit!r}")
    if query.after_episode is not None:
        cursor = query.after_episode
        if (
            not isinstance(cursor, tuple)
            or len(cursor) != 2
            or isinstance(cursor[0], bool)
            or not isinstance(cursor[0], int)
            or not isinstance(cursor[1], str)
        ):
            raise QueryError(
                f"after_episode must be (onset_us: int, episode_id: str), got {cursor!r}"
            )


def check_max_points(max_points: int) -> None:
    """Refuse a downsampling target outside 1..:data:`MAX_SERIES_POINTS`."""
    if (
        isinstance(max_points, bool)
        or not isinstance(max_points, int)
        or not 1 <= max_points <= MAX_SERIES_POINTS
    ):
        raise QueryError(
            f"max_points must be an integer in 1..{MAX_SERIES_POINTS}, got {max_points!r}"
        )


def check_limit(limit: int, maximum: int = MAX_DEAD_LETTER_LIMIT) -> None:
    """Refuse a result limit outside 1..maximum."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise QueryError(f"limit must be an integer in 1..{maximum}, got {limit!r}")


def check_utc_offset(utc_offset_s: int) -> None:
    """Refuse a UTC offset that no time zone has (beyond ±14 h) or that is not whole seconds."""
    if isinstance(utc_offset_s, bool) or not isinstance(utc_offset_s, int):
        raise QueryError(f"utc_offset_s must be an integer number of seconds, got {utc_offset_s!r}")
    if abs(utc_offset_s) > MAX_UTC_OFFSET_S:
        raise QueryError(f"utc_offset_s {utc_offset_s} is beyond ±14 h")
