"""A worker behind on its queue judges quiet devices by the messages it has seen.

The processing thread is driven batch by batch here, as its loop does, with a clock of the
test's own; no broker is needed because nothing is received or acknowledged over MQTT (QoS 0
items are acknowledged with no message to the broker).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ingest.detectors import StreamDetectorFactory
from ingest.intake import BrokerConfig, Inbound
from ingest.protocol import StreamKind, Topic, Transport, make_frame
from ingest.worker import IngestWorker
from storage.sqlite import SqliteStore

T0 = 1_790_000_000_000_000
S = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now_us = T0

    def __call__(self) -> int:
        return self.now_us


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[IngestWorker, Clock]]:
    clock = Clock()
    store = SqliteStore(tmp_path / "results.sqlite3")
    w = IngestWorker(
        BrokerConfig("127.0.0.1", 1, "backlog-test"),  # never started: no connection is made
        store,
        StreamDetectorFactory(),
        tmp_path,
        idle_flush_s=1.0,
        finish_after_s=3.0,
        clock_us=clock,
    )
    yield w, clock
    w.checkpoint.close()
    store.close()


def emg_item(seq: int, arrival_us: int) -> Inbound:
    samples = np.random.default_rng(seq).normal(0, 20, 1000).astype(np.float32)
    frame = make_frame(StreamKind.EMG, 1000.0, T0 + seq * S, seq, samples)
    topic = Topic("dev-1", StreamKind.EMG, Transport.LIVE)
    return Inbound(seq + 1, 0, topic, frame, arrival_us, 4036, "")


def process(w: IngestWorker, clock: Clock, batch: list[Inbound], now_us: int) -> None:
    clock.now_us = now_us
    w._process_with_retry(list(batch))


def test_a_backlog_longer_than_the_idle_flush_declares_no_gap(
    worker: tuple[IngestWorker, Clock],
) -> None:
    w, clock = worker
    # frame 1 comes late, as a broker may deliver; the worker is 2 s behind its queue
    early = [emg_item(0, T0), emg_item(2, T0 + 10_000), emg_item(3, T0 + 20_000)]
    w.intake.items.put_nowait(emg_item(4, T0 + 30_000))  # still waiting: a backlog
    process(w, clock, early, T0 + 2 * S)
    assert w.intake.items.get_nowait().frame.seq == 4
    process(w, clock, [emg_item(1, T0 + 40_000)], T0 + 2 * S + 50_000)
    assert w.stats().late == 0
    process(w, clock, [], T0 + 10 * S)  # queue empty, device quiet: what is held goes out
    stats = w.stats()
    assert stats.frames_released == 4  # 0-3 in order, none lost
    assert [h.gaps for h in w.health_snapshot()] == [0]


def test_a_device_quiet_once_the_queue_is_empty_is_flushed_with_a_gap(
    worker: tuple[IngestWorker, Clock],
) -> None:
    w, clock = worker
    early = [emg_item(0, T0), emg_item(2, T0 + 10_000), emg_item(3, T0 + 20_000)]
    process(w, clock, early, T0 + 2 * S)  # nothing queued: the device has been quiet 2 s
    process(w, clock, [emg_item(1, T0 + 40_000)], T0 + 2 * S + 50_000)
    stats = w.stats()
    assert stats.late == 1  # frame 1 fell into the declared gap
    assert stats.frames_released == 3  # 0, then 2 and 3 after the gap
    assert [h.gaps for h in w.health_snapshot()] == [1]
