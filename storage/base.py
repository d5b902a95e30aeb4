"""The one store interface used by ingest, alerts and the API, and its record types.

Two adapters implement it: :mod:`storage.influx` (production) and :mod:`storage.sqlite`
(the embedded single-machine default). A shared contract suite (``tests/storage``) runs the
same writes and queries against both and expects identical answers.

All times are integer µs since the Unix epoch (UTC, device clock unless named ``arrival``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from detection.events import Episode, EpisodeEvent, QualityEvent, SeriesPoint

MAX_QUERY_RANGE_US = 400 * 86_400 * 1_000_000  # a little over a year
MAX_SERIES_POINTS = 20_000


class StoreError(Exception):
    """Base class of storage errors."""


class StoreUnavailable(StoreError):
    """The backing database cannot be reached (writes go to the spool where there is one)."""


class QueryError(StoreError, ValueError):
    """A query the store refuses: inverted or too long a range, bad filter, unknown device."""


class UnstorableValue(StoreError, ValueError):
    """A value that cannot be stored (NaN, infinity, out of range)."""


@dataclass(frozen=True)
class HealthRecord:
    """Ingest health of one (device, stream) at ``arrival_us``.

    Counters are cumulative since the stream was first seen.
    """

    device_id: str
    stream: str  # "emg" | "acc"
    arrival_us: int  # wall clock of the ingest worker
    last_device_us: int  # device-clock end of the newest accepted frame
    frames: int
    samples: int
    gaps: int
    gap_samples: int
    duplicates: int
    reordered: int
    dead_letters: int
    frames_per_s: float
    lag_s: float  # arrival minus device time of the newest frame


@dataclass(frozen=True)
class DeadLetter:
    """A rejected MQTT message and why."""

    arrival_us: int
    topic: str
    device_id: str  # "_unknown" when the topic did not parse
    reason: str  # FrameError.reason
    detail: str
    payload_bytes: int
    payload_head_hex: str  # first bytes, for debugging


@dataclass(frozen=True)
class EpisodeQuery:
    """Filter for :meth:`Store.episodes`. Results are ordered by onset, then episode id."""

    device_ids: tuple[str, ...]
    start_us: int
    end_us: int
    min_duration_s: float = 0.0
    min_peak_intensity: float = 0.0
    site: str | None = None
    include_open: bool = True
    after_episode: tuple[int, str] | None = None  # cursor: (onset_us, episode_id) exclusive
    limit: int | None = None


@dataclass(frozen=True)
class NightSummary:
    """One night of one device. A night runs noon to noon in the wearer's local time.

    ``night`` is the ISO date of the evening the night starts.
    """

    device_id: str
    night: str
    first_data_us: int | None
    last_data_us: int | None
    episodes: int
    total_cramp_s: float
    longest_cramp_s: float
    mean_peak_intensity: float | None
    got_up: bool
    data_coverage: float  # fraction of the sleep window with EMG, 0..1
    quality_flags: tuple[str, ...]


@dataclass(frozen=True)
class WeekSummary:
    """ISO week (Monday start, wearer's local time) summary of one or more devices."""

    week: str  # e.g. "2026-W47"
    cramp_nights: int
    episodes: int
    median_duration_s: float | None
    longest_duration_s: float | None
    hour_histogram: tuple[int, ...]  # 24 bins of onset local hour


@dataclass(frozen=True)
class SpoolHealth:
    """The local write-ahead spool a store falls back to while its database is unreachable.

    A store without a spool (SQLite writes straight to disk) reports zeros.
    """

    records: int  # write batches waiting to be replayed
    bytes: int
    max_bytes: int  # beyond this, writes raise StoreUnavailable
    oldest_age_s: float | None  # wall-clock age of the oldest waiting batch
    replayed_records: int  # batches delivered from the spool since the store opened
    last_error: str | None  # why the database was last unreachable


class Store(ABC):
    """Results store. Every ``write_*`` is durable when it returns (or spooled durably)."""

    @abstractmethod
    def write_events(self, events: Sequence[EpisodeEvent]) -> None:
        """Upsert episodes by ``episode_id``; a later event replaces an earlier one."""

    @abstractmethod
    def write_quality(self, events: Sequence[QualityEvent]) -> None:
        """Upsert quality-fault intervals by (device, flag, start_us)."""

    @abstractmethod
    def write_series(self, device_id: str, points: Sequence[SeriesPoint]) -> None:
        """Write 1 Hz points; idempotent by (device, ts_us)."""

    @abstractmethod
    def write_health(self, records: Sequence[HealthRecord]) -> None:
        """Append ingest-health snapshots."""

    @abstractmethod
    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Append dead letters."""

    @abstractmethod
    def episodes(self, query: EpisodeQuery) -> list[Episode]:
        """Episodes overlapping ``[start_us, end_us)``, filtered and ordered by onset."""

    @abstractmethod
    def series(
        self, device_id: str, start_us: int, end_us: int, max_points: int = 1000
    ) -> list[SeriesPoint]:
        """1 Hz points in the range, downsampled (bin means; posture = last) to <= max_points."""

    @abstractmethod
    def quality(self, device_id: str, start_us: int, end_us: int) -> list[QualityEvent]:
        """Quality-fault intervals overlapping the range."""

    @abstractmethod
    def latest_health(self, device_ids: Sequence[str] | None = None) -> list[HealthRecord]:
        """Newest health record per (device, stream)."""

    @abstractmethod
    def dead_letters(
        self, device_id: str | None, start_us: int, end_us: int, limit: int = 1000
    ) -> list[DeadLetter]:
        """Dead letters in the range, newest first."""

    @abstractmethod
    def night_summaries(
        self, device_ids: Sequence[str], start_us: int, end_us: int, utc_offset_s: int = 0
    ) -> list[NightSummary]:
        """Per-device, per-night summaries of the nights starting in the range.

        Only nights with series data or episodes are listed (see :mod:`storage.summaries`).
        """

    @abstractmethod
    def week_summaries(
        self, device_ids: Sequence[str], start_us: int, end_us: int, utc_offset_s: int = 0
    ) -> list[WeekSummary]:
        """Per-ISO-week summaries over the given devices.

        One per ISO week of the nights starting in the range, empty weeks included; an episode
        counts in the week of its night (see :mod:`storage.summaries`).
        """

    def spool_health(self) -> SpoolHealth:
        """Size and age of writes waiting for the database (zeros for stores without a spool)."""
        return SpoolHealth(0, 0, 0, None, 0, None)

    @abstractmethod
    def ping(self) -> bool:
        """True when the backing database answers."""

    @abstractmethod
    def close(self) -> None:
        """Flush pending writes and release connections."""
