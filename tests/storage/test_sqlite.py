"""SQLite specifics: durability settings, one writer with concurrent readers, reopening."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detection.events import SeriesPoint
from storage.base import EpisodeQuery, StoreUnavailable
from storage.factory import open_store
from storage.queries import series_bin_us
from storage.sqlite import SqliteStore
from tests.storage.conftest import (
    NIGHT_START_US,
    SECOND_US,
    assert_series_close,
    make_night,
    reference_downsample,
)

T0 = NIGHT_START_US


def test_database_uses_wal_and_full_sync(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.sqlite3")
    connection = store._connection()
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_one_writer_and_concurrent_readers(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.sqlite3")
    night = make_night(np.random.default_rng(30), hours=1.0)
    errors: list[BaseException] = []
    seen: list[list[int]] = [[], [], []]
    done = threading.Event()

    def read(counts: list[int]) -> None:
        try:
            while not done.is_set():
                points = store.series("dev-1", T0, T0 + 3600 * SECOND_US, 5000)
                store.episodes(EpisodeQuery(("dev-1",), T0, T0 + 3600 * SECOND_US))
                counts.append(len(points))
        except BaseException as exc:  # handed to the main thread, which fails the test
            errors.append(exc)

    readers = [threading.Thread(target=read, args=(counts,)) for counts in seen]
    for reader in readers:
        reader.start()
    night.write_to(store, chunk_s=60)
    done.set()
    for reader in readers:
        reader.join()
    assert errors == []
    for counts in seen:  # each reader saw whole 60-point transactions, never fewer than before
        assert counts and counts == sorted(counts)
        assert all(count % 60 == 0 for count in counts)
    assert len(store.series("dev-1", T0, T0 + 3600 * SECOND_US, 5000)) == 3600
    store.close()


def test_data_survives_reopening_through_the_factory(tmp_path: Path) -> None:
    night = make_night(np.random.default_rng(31), hours=0.5)
    first = open_store("sqlite", tmp_path)
    night.write_to(first)
    first.close()
    second = open_store("sqlite", tmp_path)
    assert second.episodes(EpisodeQuery(("dev-1",), T0, T0 + 1800 * SECOND_US)) == list(
        night.episodes
    )
    second.close()
    with sqlite3.connect(tmp_path / "results.sqlite3") as raw:
        assert raw.execute("SELECT COUNT(*) FROM series").fetchone()[0] == 1800


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.sqlite3")
    store.close()
    assert not store.ping()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.latest_health()


def test_a_returned_write_survives_the_process_dying(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    script = (
        "import os\n"
        "from detection.events import SeriesPoint\n"
        "from storage.sqlite import SqliteStore\n"
        f"store = SqliteStore({str(path)!r})\n"
        f"points = [SeriesPoint({T0} + n * 1_000_000, 1.0 + n, 1.0, None, None) for n in range(90)]\n"
        "store.write_series('dev-1', points)\n"
        "os._exit(0)  # no close, no checkpoint\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", script], check=True, cwd=root, timeout=60)
    store = SqliteStore(path)
    points = store.series("dev-1", T0, T0 + 90 * SECOND_US)
    assert [p.envelope_uv for p in points] == [1.0 + n for n in range(90)]
    store.close()


@settings(max_examples=40, deadline=None)
@given(
    seconds=st.lists(st.integers(0, 5000), unique=True, max_size=300),
    values=st.lists(st.none() | st.floats(0, 1e4), min_size=300, max_size=300),
    postures=st.lists(st.none() | st.sampled_from(["left", "right"]), min_size=300, max_size=300),
    window=st.tuples(st.integers(0, 5000), st.integers(1, 6000)),
    max_points=st.integers(1, 400),
)
def test_downsampling_matches_an_independent_reference(
    tmp_path_factory: pytest.TempPathFactory,
    seconds: list[int],
    values: list[float | None],
    postures: list[str | None],
    window: tuple[int, int],
    max_points: int,
) -> None:
    points = [
        SeriesPoint(T0 + s * SECOND_US + 137, values[n], 1.0, values[-n - 1], postures[n])
        for n, s in enumerate(sorted(seconds))
    ]
    store = SqliteStore(tmp_path_factory.mktemp("ds") / "r.sqlite3")
    store.write_series("dev-1", points)
    kept = [p for p in points if any(v is not None for v in (p.envelope_uv, p.floor_uv))]
    start_us = T0 + window[0] * SECOND_US
    end_us = start_us + window[1] * SECOND_US
    got = store.series("dev-1", start_us, end_us, max_points)
    inside = [p for p in kept if start_us <= p.ts_us < end_us]
    width_us = series_bin_us(start_us, end_us, max_points)
    assert len(got) <= max_points
    if width_us == SECOND_US:
        assert got == inside
    else:
        assert_series_close(got, reference_downsample(inside, start_us, width_us))
    store.close()
