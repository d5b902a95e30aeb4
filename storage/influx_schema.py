"""The InfluxDB schema: records to line protocol (via influxdb-client's ``Point``) and back.

Measurements, tags (low cardinality only), fields and timestamps are described in
``docs/storage.md``. Every point carries all of its fields, using sentinels for "not known yet"
(``-1``), so an upsert (same measurement, tag set and timestamp) replaces the whole record. The
one exception is ``series``, whose fields are merged on purpose (see :func:`series_line`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from influxdb_client.client.write.point import Point as _Point
from influxdb_client.domain.write_precision import WritePrecision

from detection.events import Episode, Movement, QualityEvent, QualityFlag, SeriesPoint
from storage.base import DeadLetter, HealthRecord

EPISODES: Final = "episodes"
QUALITY: Final = "quality"
SERIES: Final = "series"
HEALTH: Final = "health"
DEAD_LETTERS: Final = "dead_letters"
MEASUREMENTS: Final = (EPISODES, QUALITY, SERIES, HEALTH, DEAD_LETTERS)
UNKNOWN: Final = -1
_US: Final = WritePrecision.US
Point: Any = _Point  # influxdb-client's Point has no type annotations

Row = Mapping[str, Any]


def _line(point: Any) -> str:
    return str(point.to_line_protocol(_US))


def episode_line(e: Episode) -> str:
    """``episodes,device_id=…,site=… <fields> <onset_us>``."""
    got_up = UNKNOWN if e.got_up_after is None else int(e.got_up_after)
    point = (
        Point(EPISODES)
        .tag("device_id", e.device_id)
        .tag("site", e.site)
        .field("episode_id", e.episode_id)
        .field("confirmed_us", int(e.confirmed_us))
        .field("offset_us", UNKNOWN if e.offset_us is None else int(e.offset_us))
        .field("duration_s", float(e.duration_s))
        .field("peak_intensity", float(e.peak_intensity))
        .field("mean_intensity", float(e.mean_intensity))
        .field("confidence", float(e.confidence))
        .field("movement", e.movement.value)
        .field("got_up_after", got_up)
        .field("peak_mvc_pct", float(UNKNOWN if e.peak_mvc_pct is None else e.peak_mvc_pct))
        .field("mean_mvc_pct", float(UNKNOWN if e.mean_mvc_pct is None else e.mean_mvc_pct))
        .field("quality_flags", ",".join(flag.value for flag in e.quality_flags))
        .time(e.onset_us, _US)
    )
    return _line(point)


def episode_from_row(row: Row) -> Episode:
    """An :class:`Episode` from a ``SELECT * FROM episodes`` row (``epoch=u``)."""
    offset_us = int(row["offset_us"])
    got_up = int(row["got_up_after"])
    peak_mvc = float(row["peak_mvc_pct"])
    mean_mvc = float(row["mean_mvc_pct"])
    return Episode(
        episode_id=row["episode_id"],
        device_id=row["device_id"],
        site=row["site"],
        onset_us=int(row["time"]),
        confirmed_us=int(row["confirmed_us"]),
        offset_us=None if offset_us == UNKNOWN else offset_us,
        duration_s=float(row["duration_s"]),
        peak_intensity=float(row["peak_intensity"]),
        mean_intensity=float(row["mean_intensity"]),
        confidence=float(row["confidence"]),
        movement=Movement(row["movement"]),
        got_up_after=None if got_up == UNKNOWN else bool(got_up),
        peak_mvc_pct=None if peak_mvc == UNKNOWN else peak_mvc,
        mean_mvc_pct=None if mean_mvc == UNKNOWN else mean_mvc,
        quality_flags=tuple(QualityFlag(f) for f in row["quality_flags"].split(",") if f),
    )


def quality_line(q: QualityEvent) -> str:
    """``quality,device_id=…,flag=… end_us=…i,at_us=…i <start_us>``."""
    point = (
        Point(QUALITY)
        .tag("device_id", q.device_id)
        .tag("flag", q.flag.value)
        .field("end_us", UNKNOWN if q.end_us is None else int(q.end_us))
        .field("at_us", int(q.at_us))
        .time(q.start_us, _US)
    )
    return _line(point)


def quality_from_row(row: Row) -> QualityEvent:
    """A :class:`QualityEvent` from a ``SELECT * FROM quality`` row."""
    end_us = int(row["end_us"])
    return QualityEvent(
        device_id=row["device_id"],
        flag=QualityFlag(row["flag"]),
        start_us=int(row["time"]),
        end_us=None if end_us == UNKNOWN else end_us,
        at_us=int(row["at_us"]),
    )


def series_line(device_id: str, p: SeriesPoint) -> str:
    """``series,device_id=… envelope_uv=…,floor_uv=…,activity_g=…,posture="…" <ts_us>``.

    Fields that are None are left out, so a rewrite of the same second keeps the values it
    does not carry (the SQLite store merges the same way).
    """
    point = Point(SERIES).tag("device_id", device_id).time(p.ts_us, _US)
    for name, value in (
        ("envelope_uv", p.envelope_uv),
        ("floor_uv", p.floor_uv),
        ("activity_g", p.activity_g),
    ):
        if value is not None:
            point.field(name, float(value))
    if p.posture is not None:
        point.field("posture", p.posture)
    return _line(point)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def series_from_row(row: Row) -> SeriesPoint:
    """A :class:`SeriesPoint` from a raw or aggregated ``series`` row."""
    return SeriesPoint(
        ts_us=int(row["time"]),
        envelope_uv=_float_or_none(row.get("envelope_uv")),
        floor_uv=_float_or_none(row.get("floor_uv")),
        activity_g=_float_or_none(row.get("activity_g")),
        posture=row.get("posture"),
    )


_HEALTH_COUNTS: Final = (
    "last_device_us",
    "frames",
    "samples",
    "gaps",
    "gap_samples",
    "duplicates",
    "reordered",
    "dead_letters",
)


def health_line(h: HealthRecord) -> str:
    """``health,device_id=…,stream=… <counters> <arrival_us>``."""
    point = Point(HEALTH).tag("device_id", h.device_id).tag("stream", h.stream)
    for name in _HEALTH_COUNTS:
        point.field(name, int(getattr(h, name)))
    point.field("frames_per_s", float(h.frames_per_s)).field("lag_s", float(h.lag_s))
    return _line(point.time(h.arrival_us, _US))


def health_from_row(row: Row) -> HealthRecord:
    """A :class:`HealthRecord` from a ``health`` row."""
    counts = {name: int(row[name]) for name in _HEALTH_COUNTS}
    return HealthRecord(
        device_id=row["device_id"],
        stream=row["stream"],
        arrival_us=int(row["time"]),
        frames_per_s=float(row["frames_per_s"]),
        lag_s=float(row["lag_s"]),
        **counts,
    )


def dead_letter_line(d: DeadLetter) -> str:
    """``dead_letters,reason=… topic=…,device_id=…,… <arrival_us>``.

    The device id is a field, not a tag: it comes from an untrusted topic and would otherwise
    let any client create unbounded series.
    """
    point = (
        Point(DEAD_LETTERS)
        .tag("reason", d.reason)
        .field("topic", d.topic)
        .field("device_id", d.device_id)
        .field("detail", d.detail)
        .field("payload_bytes", int(d.payload_bytes))
        .field("payload_head_hex", d.payload_head_hex)
        .time(d.arrival_us, _US)
    )
    return _line(point)


def dead_letter_from_row(row: Row) -> DeadLetter:
    """A :class:`DeadLetter` from a ``dead_letters`` row."""
    return DeadLetter(
        arrival_us=int(row["time"]),
        topic=row["topic"],
        device_id=row["device_id"],
        reason=row["reason"],
        detail=row["detail"],
        payload_bytes=int(row["payload_bytes"]),
        payload_head_hex=row["payload_head_hex"],
    )


def quote_ident(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_str(value: str) -> str:
    """An InfluxQL single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
