"""The embedded store: one SQLite file (WAL) under the data dir, nothing to install.

One writer thread (ingest) and any number of reader threads (the API) share a store: each thread
gets its own connection, writes are serialised by a lock and committed with
``synchronous=FULL``, so a returned ``write_*`` survives a power cut (ingest acks after it).
All upserts are idempotent and follow the same rules as :class:`storage.influx.InfluxStore`.
:meth:`SqliteStore.grouped` puts a thread's writes into one transaction (one disk sync).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from detection.events import (
    Episode,
    EpisodeEvent,
    Movement,
    QualityEvent,
    QualityFlag,
    SeriesPoint,
)
from storage import validation
from storage.base import (
    DeadLetter,
    EpisodeQuery,
    HealthRecord,
    QueryError,
    StoreUnavailable,
)
from storage.queries import (
    QUALITY_LOOKBACK_US,
    SECOND_US,
    episode_onset_floor_us,
    select_episodes,
    select_quality,
    series_bin_us,
)
from storage.summaries import (
    DAY_US,
    NOON_US,
    NightData,
)
from storage.summarizing import SummarizingStore
from storage.validation import DeviceRegistry

SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS episodes (
    episode_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    site TEXT NOT NULL,
    onset_us INTEGER NOT NULL,
    confirmed_us INTEGER NOT NULL,
    offset_us INTEGER,
    duration_s REAL NOT NULL,
    peak_intensity REAL NOT NULL,
    mean_intensity REAL NOT NULL,
    confidence REAL NOT NULL,
    movement TEXT NOT NULL,
    got_up_after INTEGER,
    peak_mvc_pct REAL,
    mean_mvc_pct REAL,
    quality_flags TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS episodes_device_onset ON episodes (device_id, onset_us);
CREATE TABLE IF NOT EXISTS series (
    device_id TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    envelope_uv REAL,
    floor_uv REAL,
    activity_g REAL,
    posture TEXT,
    PRIMARY KEY (device_id, ts_us)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quality (
    device_id TEXT NOT NULL,
    flag TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER,
    at_us INTEGER NOT NULL,
    PRIMARY KEY (device_id, flag, start_us)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS quality_device_start ON quality (device_id, start_us);
CREATE TABLE IF NOT EXISTS health (
    device_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    arrival_us INTEGER NOT NULL,
    last_device_us INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    gaps INTEGER NOT NULL,
    gap_samples INTEGER NOT NULL,
    duplicates INTEGER NOT NULL,
    reordered INTEGER NOT NULL,
    dead_letters INTEGER NOT NULL,
    frames_per_s REAL NOT NULL,
    lag_s REAL NOT NULL,
    PRIMARY KEY (device_id, stream, arrival_us)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    reason TEXT NOT NULL,
    arrival_us INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload_bytes INTEGER NOT NULL,
    payload_head_hex TEXT NOT NULL,
    PRIMARY KEY (reason, arrival_us)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dead_letters_arrival ON dead_letters (arrival_us);
CREATE INDEX IF NOT EXISTS dead_letters_device ON dead_letters (device_id, arrival_us);
"""
_EPISODE_COLUMNS: Final = (
    "episode_id, device_id, site, onset_us, confirmed_us, offset_us, duration_s, "
    "peak_intensity, mean_intensity, confidence, movement, got_up_after, peak_mvc_pct, "
    "mean_mvc_pct, quality_flags"
)
_HEALTH_COLUMNS: Final = (
    "device_id, stream, arrival_us, last_device_us, frames, samples, gaps, gap_samples, "
    "duplicates, reordered, dead_letters, frames_per_s, lag_s"
)
_DEAD_LETTER_COLUMNS: Final = (
    "arrival_us, topic, device_id, reason, detail, payload_bytes, payload_head_hex"
)


class SqliteStore(SummarizingStore):
    """Results in one SQLite file.

    Parameters
    ----------
    path : str or Path
        Database file; created with its schema when missing. ``":memory:"`` is not supported
        (each thread has its own connection).
    device_registry : callable, optional
        ``is_registered(device_id) -> bool``; when given, queries naming other devices raise
        :class:`QueryError` ("unknown device").
    busy_timeout_s : float
        How long a statement waits for a lock held by another process.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device_registry: DeviceRegistry | None = None,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = Path(path)
        if str(path) == ":memory:":
            raise ValueError("SqliteStore needs a file path; ':memory:' is per connection")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._registry = device_registry
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._write_lock = threading.Lock()
        # One read at a time per store. The sqlite3 module releases the interpreter lock for
        # every row it steps, so concurrent readers in one process hand it over row by row and
        # burn more CPU than they read (docs/performance.md: API at 8 connections).
        self._read_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        with self._write_lock:
            try:
                self._connection().executescript(
                    f"BEGIN IMMEDIATE;\n{_SCHEMA}\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
                )
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot create the schema in {self.path}: {exc}") from exc

    # -- connections -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailable(f"store {self.path} is closed")
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(
                    self.path,
                    timeout=self._busy_timeout_s,
                    isolation_level=None,
                    check_same_thread=False,
                )
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = FULL")
                db.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc

    # a grouped call is refused when it is made (it raises), never when the block ends
    refused_in_groups = 0

    @contextmanager
    def grouped(self) -> Iterator[None]:
        """Run the calling thread's ``write_*`` calls inside one transaction, committed (and
        synced) when the block ends and rolled back entirely when it raises."""
        if getattr(self._local, "grouped", False):
            raise RuntimeError("grouped() blocks do not nest")
        with self._write_lock, self._transaction():
            self._local.grouped = True
            try:
                yield
            finally:
                self._local.grouped = False

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """The connection to write on: inside :meth:`grouped` its open transaction, otherwise
        a transaction of its own."""
        if getattr(self._local, "grouped", False):
            yield self._connection()
            return
        with self._write_lock, self._transaction() as db:
            yield db

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._read_lock:
                return self._connection().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc

    # -- writes ------------------------------------------------------------------------------

    def write_events(self, events: Sequence[EpisodeEvent]) -> None:
        rows = [_episode_row(e) for e in validation.latest_episodes(events)]
        if not rows:
            return
        with self._writing() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO episodes ({_EPISODE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def write_quality(self, events: Sequence[QualityEvent]) -> None:
        rows = [
            (e.device_id, e.flag.value, e.start_us, e.end_us, e.at_us)
            for e in map(validation.check_quality, events)
        ]
        if not rows:
            return
        with self._writing() as db:
            db.executemany(
                "INSERT OR REPLACE INTO quality (device_id, flag, start_us, end_us, at_us) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def write_series(self, device_id: str, points: Sequence[SeriesPoint]) -> None:
        rows = [
            (
                device_id,
                p.ts_us,
                _float_or_none(p.envelope_uv),
                _float_or_none(p.floor_uv),
                _float_or_none(p.activity_g),
                p.posture,
            )
            for p in validation.check_series(device_id, points)
        ]
        if not rows:
            return
        with self._writing() as db:
            db.executemany(
                "INSERT INTO series (device_id, ts_us, envelope_uv, floor_uv, activity_g, posture) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, ts_us) DO UPDATE SET "
                "envelope_uv = COALESCE(excluded.envelope_uv, envelope_uv), "
                "floor_uv = COALESCE(excluded.floor_uv, floor_uv), "
                "activity_g = COALESCE(excluded.activity_g, activity_g), "
                "posture = COALESCE(excluded.posture, posture)",
                rows,
            )

    def write_health(self, records: Sequence[HealthRecord]) -> None:
        rows = [
            (
                r.device_id,
                r.stream,
                r.arrival_us,
                r.last_device_us,
                r.frames,
                r.samples,
                r.gaps,
                r.gap_samples,
                r.duplicates,
                r.reordered,
                r.dead_letters,
                float(r.frames_per_s),
                float(r.lag_s),
            )
            for r in map(validation.check_health, records)
        ]
        if not rows:
            return
        with self._writing() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO health ({_HEALTH_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        rows = [
            (
                d.arrival_us,
                d.topic,
                d.device_id,
                d.reason,
                d.detail,
                d.payload_bytes,
                d.payload_head_hex,
            )
            for d in map(validation.check_dead_letter, letters)
        ]
        if not rows:
            return
        with self._writing() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO dead_letters ({_DEAD_LETTER_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    # -- reads -------------------------------------------------------------------------------

    def _episode_rows(
        self, device_ids: Sequence[str], from_us: int, end_us: int
    ) -> list[tuple[Any, ...]]:
        """Rows of the episodes of the devices with onset in ``[from_us, end_us)``, in page
        order (BINARY collation orders the ids as Python compares them: UTF-8 keeps code
        point order)."""
        marks = ", ".join("?" * len(device_ids))
        return self._rows(
            f"SELECT {_EPISODE_COLUMNS} FROM episodes WHERE device_id IN ({marks}) "
            "AND onset_us >= ? AND onset_us < ? ORDER BY onset_us, episode_id",
            (*device_ids, from_us, end_us),
        )

    def _episode_candidates(
        self, device_ids: Sequence[str], from_us: int, end_us: int
    ) -> list[Episode]:
        """Episodes of the devices with onset in ``[from_us, end_us)``."""
        return [_episode_from_row(row) for row in self._episode_rows(device_ids, from_us, end_us)]

    def episodes(self, query: EpisodeQuery) -> list[Episode]:
        validation.check_episode_query(query, self._registry)
        devices = validation.check_devices(query.device_ids, None)
        rows = self._episode_rows(devices, episode_onset_floor_us(query), query.end_us)
        # episodes are built only until the page is full
        return select_episodes((_episode_from_row(row) for row in rows), query, ordered=True)

    def series(
        self, device_id: str, start_us: int, end_us: int, max_points: int = 1000
    ) -> list[SeriesPoint]:
        validation.check_range(start_us, end_us)
        validation.check_devices((device_id,), self._registry)
        validation.check_max_points(max_points)
        width_us = series_bin_us(start_us, end_us, max_points)
        where = "WHERE device_id = ? AND ts_us >= ? AND ts_us < ?"
        params = (device_id, start_us, end_us)
        if width_us == SECOND_US:
            rows = self._rows(
                "SELECT ts_us, envelope_uv, floor_uv, activity_g, posture FROM series "
                f"{where} ORDER BY ts_us",
                params,
            )
            return [SeriesPoint(*row) for row in rows]
        bin_sql = f"(ts_us - {start_us}) / {width_us}"
        means = self._rows(
            f"SELECT {bin_sql} AS bin, AVG(envelope_uv), AVG(floor_uv), AVG(activity_g) "
            f"FROM series {where} GROUP BY bin ORDER BY bin",
            params,
        )
        postures = dict(
            (row[0], row[2])
            for row in self._rows(
                f"SELECT {bin_sql} AS bin, MAX(ts_us), posture FROM series {where} "
                "AND posture IS NOT NULL GROUP BY bin",
                params,
            )
        )
        return [
            SeriesPoint(
                start_us + bin_index * width_us, envelope, floor, activity, postures.get(bin_index)
            )
            for bin_index, envelope, floor, activity in means
        ]

    def _quality_candidates(
        self, device_ids: Sequence[str], start_us: int, end_us: int
    ) -> list[QualityEvent]:
        marks = ", ".join("?" * len(device_ids))
        rows = self._rows(
            f"SELECT device_id, flag, start_us, end_us, at_us FROM quality "
            f"WHERE device_id IN ({marks}) AND start_us >= ? AND start_us < ?",
            (*device_ids, start_us - QUALITY_LOOKBACK_US, end_us),
        )
        return [QualityEvent(d, QualityFlag(f), s, e, a) for d, f, s, e, a in rows]

    def quality(self, device_id: str, start_us: int, end_us: int) -> list[QualityEvent]:
        validation.check_range(start_us, end_us)
        validation.check_devices((device_id,), self._registry)
        candidates = self._quality_candidates((device_id,), start_us, end_us)
        return select_quality(candidates, device_id, start_us, end_us)

    def latest_health(self, device_ids: Sequence[str] | None = None) -> list[HealthRecord]:
        params: tuple[str, ...] = ()
        where = ""
        if device_ids is not None:
            params = validation.check_devices(device_ids, self._registry)
            where = f"WHERE device_id IN ({', '.join('?' * len(params))})"
        rows = self._rows(
            f"SELECT {_HEALTH_COLUMNS} FROM health AS h {where} "
            f"{'AND' if where else 'WHERE'} arrival_us = (SELECT MAX(arrival_us) FROM health "
            "WHERE device_id = h.device_id AND stream = h.stream) ORDER BY device_id, stream",
            params,
        )
        return [HealthRecord(*row) for row in rows]

    def dead_letters(
        self, device_id: str | None, start_us: int, end_us: int, limit: int = 1000
    ) -> list[DeadLetter]:
        validation.check_range(start_us, end_us)
        validation.check_limit(limit)
        if device_id is not None and not isinstance(device_id, str):
            raise QueryError(f"device_id must be a string or None, got {device_id!r}")
        where = "WHERE arrival_us >= ? AND arrival_us < ?"
        params: tuple[Any, ...] = (start_us, end_us)
        if device_id is not None:
            where += " AND device_id = ?"
            params += (device_id,)
        rows = self._rows(
            f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters {where} "
            "ORDER BY arrival_us DESC, reason LIMIT ?",
            (*params, limit),
        )
        return [DeadLetter(*row) for row in rows]

    def _night_data(
        self, device_ids: Sequence[str], start_us: int, end_us: int, utc_offset_s: int
    ) -> list[NightData]:
        marks = ", ".join("?" * len(device_ids))
        shift_us = utc_offset_s * SECOND_US - NOON_US + 2 * DAY_US
        rows = self._rows(
            f"SELECT device_id, (ts_us + {shift_us}) / {DAY_US} - 2 AS night, MIN(ts_us), "
            f"MAX(ts_us), COUNT(envelope_uv) FROM series WHERE device_id IN ({marks}) "
            "AND ts_us >= ? AND ts_us < ? GROUP BY device_id, night",
            (*device_ids, start_us, end_us),
        )
        return [NightData(*row) for row in rows]

    # -- lifecycle ---------------------------------------------------------------------------

    def ping(self) -> bool:
        try:
            self._rows("SELECT 1")
        except StoreUnavailable:
            return False
        return True

    def close(self) -> None:
        with self._connections_lock:
            self._closed = True
            for db in self._connections:
                db.close()
            self._connections.clear()


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


def _episode_row(e: Episode) -> tuple[Any, ...]:
    return (
        e.episode_id,
        e.device_id,
        e.site,
        e.onset_us,
        e.confirmed_us,
        e.offset_us,
        float(e.duration_s),
        float(e.peak_intensity),
        float(e.mean_intensity),
        float(e.confidence),
        e.movement.value,
        None if e.got_up_after is None else int(e.got_up_after),
        _float_or_none(e.peak_mvc_pct),
        _float_or_none(e.mean_mvc_pct),
        ",".join(flag.value for flag in e.quality_flags),
    )


def _episode_from_row(row: Sequence[Any]) -> Episode:
    (eid, device, site, onset, confirmed, offset, duration, peak, mean, confidence) = row[:10]
    movement, got_up, peak_mvc, mean_mvc, flags = row[10:]
    return Episode(
        episode_id=eid,
        device_id=device,
        site=site,
        onset_us=onset,
        confirmed_us=confirmed,
        offset_us=offset,
        duration_s=duration,
        peak_intensity=peak,
        mean_intensity=mean,
        confidence=confidence,
        movement=Movement(movement),
        got_up_after=None if got_up is None else bool(got_up),
        peak_mvc_pct=peak_mvc,
        mean_mvc_pct=mean_mvc,
        quality_flags=tuple(QualityFlag(f) for f in flags.split(",") if f),
    )
