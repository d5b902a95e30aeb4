"""Both store adapters behind one fixture, and a generator of realistic store records.

``store`` yields a fresh :class:`SqliteStore` or an :class:`InfluxStore` (v1 write mode) on its
own database of the session's real ``influxd``; every contract test runs against both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from detection.events import (
    Episode,
    EpisodeEvent,
    EventKind,
    Movement,
    QualityEvent,
    QualityFlag,
    SeriesPoint,
)
from storage.base import DeadLetter, HealthRecord, Store
from storage.influx import InfluxStore
from storage.sqlite import SqliteStore
from tests.servers import Influxd

SECOND_US = 1_000_000
# 2026-11-23 21:00:00 UTC, a Monday evening
NIGHT_START_US = 1_795_467_600 * SECOND_US
POSTURES = ("supine", "left", "right", "prone")


def open_influx(server: Influxd, spool_dir: Path | None, **options: object) -> InfluxStore:
    """An InfluxStore on a brand-new database of ``server`` (v1 write mode)."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    return InfluxStore(
        server.url,
        database,
        write_mode="v1",
        create_database=True,
        spool_dir=spool_dir,
        flush_interval_ms=100,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["sqlite", "influx"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each contract test runs once per adapter."""
    if request.param == "sqlite":
        opened: Store = SqliteStore(tmp_path / "results.sqlite3")
    else:
        request.applymarker(pytest.mark.integration)
        server = request.getfixturevalue("influxd")
        opened = open_influx(server, tmp_path / "spool")
    yield opened
    opened.close()


@pytest.fixture
def both(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """A SQLite store and an InfluxDB store, to compare answers directly."""
    server = request.getfixturevalue("influxd")
    pair = (SqliteStore(tmp_path / "results.sqlite3"), open_influx(server, tmp_path / "spool"))
    yield pair
    for opened in pair:
        opened.close()


def episode(
    device_id: str,
    onset_us: int,
    duration_s: float | None,
    *,
    peak: float = 8.0,
    site: str = "calf",
    got_up: bool | None = None,
    flags: tuple[QualityFlag, ...] = (),
) -> Episode:
    """An episode; ``duration_s=None`` makes it open (lasting 5 s so far)."""
    offset_us = None if duration_s is None else onset_us + round(duration_s * SECOND_US)
    return Episode(
        episode_id=f"{device_id}:{onset_us}",
        device_id=device_id,
        site=site,
        onset_us=onset_us,
        confirmed_us=onset_us + 2 * SECOND_US,
        offset_us=offset_us,
        duration_s=5.0 if duration_s is None else duration_s,
        peak_intensity=peak,
        mean_intensity=peak / 2,
        confidence=0.9,
        movement=Movement.STILL,
        got_up_after=got_up,
        quality_flags=flags,
    )


def lifecycle(final: Episode) -> list[EpisodeEvent]:
    """started -> updated -> ended events ending in ``final``."""
    started = replace(
        final, offset_us=None, duration_s=2.0, peak_intensity=final.peak_intensity / 2
    )
    updated = final if final.is_open else replace(final, offset_us=None, duration_s=4.0)
    events = [
        EpisodeEvent(EventKind.STARTED, started, final.confirmed_us),
        EpisodeEvent(EventKind.UPDATED, updated, final.confirmed_us + SECOND_US),
    ]
    if final.offset_us is not None:
        events.append(EpisodeEvent(EventKind.ENDED, final, final.offset_us))
    return events


@dataclass(frozen=True)
class Night:
    """Records of one simulated night of one device."""

    device_id: str
    start_us: int
    episodes: tuple[Episode, ...]
    series: tuple[SeriesPoint, ...]
    quality: tuple[QualityEvent, ...]
    health: tuple[HealthRecord, ...]
    dead_letters: tuple[DeadLetter, ...]

    def events(self) -> list[EpisodeEvent]:
        return [event for e in self.episodes for event in lifecycle(e)]

    def write_to(self, store: Store, chunk_s: int = 600) -> None:
        store.write_events(self.events())
        for start in range(0, len(self.series), chunk_s):
            store.write_series(self.device_id, self.series[start : start + chunk_s])
        store.write_quality(self.quality)
        store.write_health(self.health)
        store.write_dead_letters(self.dead_letters)


def make_night(
    rng: np.random.Generator,
    device_id: str = "dev-1",
    start_us: int = NIGHT_START_US,
    hours: float = 2.0,
    gap_s: tuple[int, int] = (1800, 2100),
) -> Night:
    """A night of 1 Hz series (with one EMG gap), a few cramps, faults, health, dead letters."""
    seconds = int(hours * 3600)
    envelope = rng.gamma(2.0, 2.0, seconds) + 3.0
    floor = 3.0 + 0.1 * np.sin(np.arange(seconds) / 300)
    activity = rng.exponential(0.01, seconds)
    posture_at = rng.integers(0, len(POSTURES), seconds // 600 + 1)
    series = []
    for second in range(seconds):
        in_gap = gap_s[0] <= second < gap_s[1]
        series.append(
            SeriesPoint(
                ts_us=start_us + second * SECOND_US,
                envelope_uv=None if in_gap else float(envelope[second]),
                floor_uv=None if in_gap else float(floor[second]),
                activity_g=float(activity[second]),
                posture=POSTURES[posture_at[second // 600]],
            )
        )
    onsets_s = np.sort(rng.choice(np.arange(60, seconds - 600, 120), 4, replace=False))
    episodes = []
    for number, onset_s in enumerate(onsets_s):
        duration = float(np.round(rng.uniform(5, 90), 3))
        episodes.append(
            episode(
                device_id,
                start_us + int(onset_s) * SECOND_US,
                None if number == len(onsets_s) - 1 else duration,
                peak=float(np.round(rng.uniform(3, 30), 4)),
                got_up=bool(number == 1),
                flags=(QualityFlag.MOTION_ARTIFACT,) if number == 0 else (),
            )
        )
    quality = (
        QualityEvent(
            device_id,
            QualityFlag.GAP,
            start_us + gap_s[0] * SECOND_US,
            start_us + gap_s[1] * SECOND_US,
            start_us + gap_s[1] * SECOND_US,
        ),
        QualityEvent(device_id, QualityFlag.MAINS, start_us + 4000 * SECOND_US, None, 0),
    )
    health = tuple(
        HealthRecord(
            device_id=device_id,
            stream=stream,
            arrival_us=start_us + minute * 60 * SECOND_US + 500_000,
            last_device_us=start_us + minute * 60 * SECOND_US,
            frames=minute * 240,
            samples=minute * 60_000,
            gaps=minute // 30,
            gap_samples=(minute // 30) * 1000,
            duplicates=minute % 3,
            reordered=0,
            dead_letters=minute // 10,
            frames_per_s=4.0 + minute / 100,
            lag_s=0.25 + minute / 1000,
        )
        for stream in ("emg", "acc")
        for minute in range(0, 30, 10)
    )
    dead_letters = tuple(
        DeadLetter(
            arrival_us=start_us + index * 7 * SECOND_US,
            topic=f"crampwatch/v1/{device_id}/emg",
            device_id=device_id if index % 2 else "_unknown",
            reason="bad_checksum" if index % 3 else "too_large",
            detail=f'checksum 0x{index:08x} != "expected"\nsecond line',
            payload_bytes=100 + index,
            payload_head_hex="4357" + f"{index:04x}",
        )
        for index in range(6)
    )
    return Night(
        device_id,
        start_us,
        tuple(episodes),
        tuple(series),
        quality,
        health,
        dead_letters,
    )


def assert_series_close(got: Sequence[SeriesPoint], expected: Sequence[SeriesPoint]) -> None:
    """Same bins, same postures, means equal to floating-point rounding."""
    assert [p.ts_us for p in got] == [p.ts_us for p in expected]
    assert [p.posture for p in got] == [p.posture for p in expected]
    for name in ("envelope_uv", "floor_uv", "activity_g"):
        got_values = [getattr(p, name) for p in got]
        expected_values = [getattr(p, name) for p in expected]
        assert [v is None for v in got_values] == [v is None for v in expected_values], name
        for a, b in zip(got_values, expected_values, strict=True):
            if a is not None:
                assert a == pytest.approx(b, rel=1e-12), name


def reference_downsample(
    points: Sequence[SeriesPoint], start_us: int, width_us: int
) -> list[SeriesPoint]:
    """Bin means and last posture, computed independently of both stores."""
    bins: dict[int, list[SeriesPoint]] = {}
    for p in points:
        bins.setdefault((p.ts_us - start_us) // width_us, []).append(p)
    out = []
    for index in sorted(bins):
        members = bins[index]

        def mean(name: str, members: list[SeriesPoint] = members) -> float | None:
            values = [getattr(p, name) for p in members if getattr(p, name) is not None]
            return float(np.mean(values)) if values else None

        postures = [p.posture for p in members if p.posture is not None]
        out.append(
            SeriesPoint(
                start_us + index * width_us,
                mean("envelope_uv"),
                mean("floor_uv"),
                mean("activity_g"),
                postures[-1] if postures else None,
            )
        )
    return out
