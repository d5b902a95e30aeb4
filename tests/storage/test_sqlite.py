"""SQLite specifics: durability settings, one writer with concurrent readers, reopening."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from storage.base import EpisodeQuery, StoreUnavailable
from storage.factory import open_store
from storage.sqlite import SqliteStore
from tests.storage.conftest import NIGHT_START_US, SECOND_US, make_night

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
