"""The ingest worker against a real mosquitto: dead letters, live + sync, scale-out, broker
restart, and the frames/s one worker sustains."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from detection.events import DetectorEvent, EpisodeEvent, EventKind
from ingest.intake import BrokerConfig, owner_of
from ingest.protocol import StreamKind, Transport, decode, encode_json, make_frame, topic_for
from ingest.worker import IngestWorker
from tests.ingest.support import (
    NIGHT_START_US,
    BinDetector,
    BinDetectorFactory,
    Collector,
    Message,
    ResultStore,
    night_messages,
    publish,
)
from tests.servers import Mosquitto, wait_for

pytestmark = pytest.mark.integration


class EventLog:
    """An event sink that remembers every event it was handed."""

    def __init__(self) -> None:
        self.events: list[tuple[str, DetectorEvent]] = []
        self._lock = threading.Lock()

    def handle(self, device_id: str, events: Sequence[DetectorEvent], arrival_us: int) -> None:
        with self._lock:
            self.events.extend((device_id, e) for e in events)

    def ended(self, device_id: str) -> list[str]:
        with self._lock:
            return [
                e.episode.episode_id
                for d, e in self.events
                if d == device_id and isinstance(e, EpisodeEvent) and e.kind is EventKind.ENDED
            ]


def reference(messages: Sequence[Message], device_id: str) -> tuple[list[tuple[int, int]], int]:
    """Episodes (onset, offset) and series points of the night pushed once, in order."""
    detector = BinDetector(device_id)
    events: list[DetectorEvent] = []
    frames = sorted((decode(m.payload) for m in messages), key=lambda f: (f.start_us, f.kind))
    for f in frames:
        push = detector.push_emg if f.kind is StreamKind.EMG else detector.push_acc
        events += push(f.physical(), f.start_us, f.rate_hz)
    events += detector.finish()
    ended = [
        (e.episode.onset_us, e.episode.offset_us)
        for e in events
        if isinstance(e, EpisodeEvent) and e.kind is EventKind.ENDED
    ]
    return ended, len(detector.pop_series())  # type: ignore[misc]


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Callable[..., IngestWorker]]:
    workers: list[IngestWorker] = []

    def build(port: int, store: ResultStore, name: str = "w", **options: object) -> IngestWorker:
        options = {"idle_flush_s": 0.5, "finish_after_s": 2.0, "health_interval_s": 0.2, **options}
        broker = BrokerConfig("127.0.0.1", port, f"{name}-{uuid.uuid4().hex[:8]}")
        worker = IngestWorker(
            broker,
            store,
            BinDetectorFactory(),
            tmp_path / name,
            **options,  # type: ignore[arg-type]
        )
        worker.start()
        wait_for(worker.intake.connected.is_set, 10, what="worker connected")
        workers.append(worker)
        return worker

    yield build
    for worker in workers:
        if worker._thread is not None:
            worker.stop()


def own_broker(workdir: Path) -> Mosquitto:
    """A broker this test restarts. Started as root, mosquitto drops to the ``mosquitto`` user
    and cannot write its persistence file in a root-owned temp dir, so sessions would not
    survive a restart; ``user root`` keeps it able to."""
    extra = "user root\n" if os.geteuid() == 0 else ""
    broker = Mosquitto.create(workdir, extra_conf=extra)
    broker.start()
    return broker


def store_at(tmp_path: Path, name: str = "results.sqlite") -> ResultStore:
    return ResultStore(tmp_path / name)


def pairs(messages: Sequence[Message]) -> list[tuple[str, bytes]]:
    return [(m.topic, m.payload) for m in messages]


def test_malformed_frames_are_dead_lettered_and_good_frames_all_processed(
    mosquitto: Mosquitto, make_worker: Callable[..., IngestWorker], tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    device = f"dl-{uuid.uuid4().hex[:6]}"
    good = night_messages(device, rng, duration_s=120, episodes_s=[(30, 8), (90, 6)])
    valid = good[0].payload
    crc_fixed = _bad_variants(valid)
    emg_topic = topic_for(device, StreamKind.EMG)
    bad: list[tuple[str, bytes, str]] = []
    for i in range(1000):
        reason = (
            "too_large"
            if i < 10
            else [
                "bad_crc",
                "unsupported_version",
                "bad_rate",
                "nan",
                "bad_topic",
                "truncated",
                "bad_magic",
                "unregistered",
            ][i % 8]
        )
        if reason == "too_large":
            bad.append((emg_topic, b"CW" + bytes(1 << 20), reason))
        elif reason == "bad_topic":
            bad.append((f"crampwatch/v1/{device}/eeg", valid, reason))
        elif reason == "unregistered":
            bad.append((topic_for("intruder-1", StreamKind.EMG), valid, reason))
        elif reason == "nan":
            doc = json.loads(encode_json(decode(valid)))
            bad.append((emg_topic, json.dumps(doc).replace("[", "[NaN,", 2).encode()[:], reason))
        else:
            bad.append((emg_topic, crc_fixed[reason], reason))
    stream: list[tuple[str, bytes]] = []
    for i, message in enumerate(good):
        stream.append((message.topic, message.payload))
        stream.extend((t, p) for t, p, _ in bad[i * 5 : i * 5 + 5])
    stream.extend((t, p) for t, p, _ in bad[len(good) * 5 :])
    store = store_at(tmp_path)
    dead = Collector(mosquitto.port, "crampwatch/v1/_dead/#")
    worker = make_worker(mosquitto.port, store, is_registered=lambda d: d != "intruder-1")
    publish(mosquitto.port, stream)
    wait_for(lambda: worker.stats().dead_letters >= 1000, 60, what="dead letters")
    expected_episodes, expected_series = reference(good, device)
    wait_for(lambda: store.series_count(device) == expected_series, 30, what="series")
    wait_for(lambda: len(store.episode_rows(device)) == len(expected_episodes), 10)
    assert store.episode_rows(device) == expected_episodes
    rows = store.rows("SELECT reason, count(*) FROM dead GROUP BY reason")
    expected_reasons: dict[str, int] = {}
    for _, _, reason in bad:
        expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    assert dict(rows) == expected_reasons
    wait_for(lambda: len(dead.messages) >= 1000, 20, what="published dead letters")
    dead.close()
    published = [json.loads(p) for _, p in dead.messages]
    assert sorted(d["reason"] for d in published) == sorted(r for _, _, r in bad)
    stats = worker.stats()
    assert stats.frames_released == len(good) and stats.dead_letters == 1000
    health = {(h.device_id, h.stream): h for h in worker.health_snapshot()}
    assert health[(device, "emg")].frames == 120
    on_emg_topic = sum(1 for topic, _, _ in bad if topic == emg_topic)
    assert health[(device, "emg")].dead_letters == on_emg_topic


def _bad_variants(valid: bytes) -> dict[str, bytes]:
    import struct
    import zlib

    def sealed(body: bytes) -> bytes:
        return body + struct.pack("<I", zlib.crc32(body))

    body = valid[:-4]
    return {
        "bad_crc": valid[:-4] + bytes(4),
        "unsupported_version": sealed(body[:2] + b"\x07" + body[3:]),
        "bad_rate": sealed(body[:8] + struct.pack("<I", 9_000_000) + body[12:]),
        "truncated": valid[:30],
        "bad_magic": b"ZZ" + valid[2:],
    }


def test_live_then_bulk_sync_has_no_duplicates_and_sync_alone_gives_the_same_night(
    mosquitto: Mosquitto, make_worker: Callable[..., IngestWorker], tmp_path: Path
) -> None:
    rng_seed = 11
    tag = uuid.uuid4().hex[:6]
    live_dev, sync_dev = f"live-{tag}", f"sync-{tag}"
    episodes = [(40, 10), (200, 7), (290, 5)]
    live = night_messages(
        live_dev, np.random.default_rng(rng_seed), duration_s=300, episodes_s=episodes
    )
    resync = night_messages(
        live_dev,
        np.random.default_rng(rng_seed),
        duration_s=300,
        episodes_s=episodes,
        transport=Transport.SYNC,
    )
    sync = night_messages(
        sync_dev,
        np.random.default_rng(rng_seed),
        duration_s=300,
        episodes_s=episodes,
        transport=Transport.SYNC,
    )
    order = np.random.default_rng(3).permutation(len(sync))
    log = EventLog()
    store = store_at(tmp_path)
    worker = make_worker(mosquitto.port, store, sinks=[log], reorder_window_s=2.0)
    publish(mosquitto.port, pairs(live))
    expected, series = reference(live, live_dev)
    wait_for(lambda: len(log.ended(live_dev)) == len(expected), 30, what="live episodes")
    publish(mosquitto.port, pairs([resync[i] for i in order]) + pairs([sync[i] for i in order]))
    wait_for(lambda: len(log.ended(sync_dev)) == len(expected), 30, what="synced episodes")
    wait_for(lambda: worker.stats().duplicates >= len(resync), 10, what="duplicates")
    assert worker.stats().duplicates == len(resync)
    assert len(log.ended(live_dev)) == len(expected)  # nothing new from the re-sync
    assert store.episode_rows(live_dev) == store.episode_rows(sync_dev) == expected
    for device in (live_dev, sync_dev):  # the last second closes when the detector finishes
        wait_for(lambda d=device: store.series_count(d) == series, 10, what="series")


def test_two_workers_share_devices_and_every_episode_comes_out_once(
    mosquitto: Mosquitto, make_worker: Callable[..., IngestWorker], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    devices = [f"d{i}-{tag}" for i in range(8)]
    assert {owner_of(d, 2) for d in devices} == {0, 1}
    nights = {
        d: night_messages(
            d, np.random.default_rng(i), duration_s=60, episodes_s=[(10 + i, 5), (40, 4 + i % 3)]
        )
        for i, d in enumerate(devices)
    }
    log = EventLog()
    store = store_at(tmp_path)
    workers = [
        make_worker(mosquitto.port, store, f"w{i}", sinks=[log], worker_index=i, worker_count=2)
        for i in range(2)
    ]
    interleaved = [m for group in zip(*nights.values(), strict=True) for m in group]
    publish(mosquitto.port, pairs(interleaved))
    for device, messages in nights.items():
        expected, _ = reference(messages, device)
        wait_for(lambda d=device, n=len(expected): len(log.ended(d)) >= n, 30, what=device)
    time.sleep(0.5)  # a second copy would come from the other worker's session within this
    for device, messages in nights.items():
        expected, _ = reference(messages, device)
        ended = log.ended(device)
        assert len(ended) == len(set(ended)) == len(expected), device
        assert store.episode_rows(device) == expected
    for i, worker in enumerate(workers):
        seen = {r.device_id for r in worker.health_snapshot()}
        assert seen == {d for d in devices if owner_of(d, 2) == i}
        assert worker.stats().not_owned == len(interleaved) - sum(len(nights[d]) for d in seen)


def test_broker_restart_reconnects_and_loses_nothing(
    make_worker: Callable[..., IngestWorker], tmp_path: Path
) -> None:
    broker = own_broker(tmp_path / "broker")
    try:
        device = f"br-{uuid.uuid4().hex[:6]}"
        night = night_messages(
            device, np.random.default_rng(2), duration_s=200, episodes_s=[(50, 6), (150, 9)]
        )
        store = store_at(tmp_path)
        worker = make_worker(broker.port, store, finish_after_s=30.0)
        publish(broker.port, pairs(night[:200]))
        wait_for(lambda: worker.stats().frames_accepted >= 200, 20, what="first half")
        broker.restart()
        publish(broker.port, pairs(night[200:300]))  # queued in the worker's session
        wait_for(lambda: worker.stats().connects >= 2, 30, what="reconnect")
        publish(broker.port, pairs(night[300:]))
        wait_for(lambda: worker.stats().frames_accepted >= len(night), 30, what="all frames")
        expected, series = reference(night, device)
        worker.finish_after_us = 0  # end of data now
        wait_for(lambda: store.series_count(device) == series, 20, what="series")
        assert store.episode_rows(device) == expected
    finally:
        broker.stop()


@pytest.mark.slow
def test_throughput_of_one_worker_on_1khz_emg_frames(
    make_worker: Callable[..., IngestWorker], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = own_broker(tmp_path / "broker")
    try:
        devices = [f"tp{i}" for i in range(10)]
        frames_per_device = 300
        rng = np.random.default_rng(0)
        messages = []
        for i in range(frames_per_device):
            for d in devices:
                counts = rng.integers(-200, 200, 1000)
                frame = make_frame(
                    StreamKind.EMG,
                    1000,
                    NIGHT_START_US + i * 10**6,
                    i,
                    counts,
                    scale=0.5,
                    sample_type=_int16(),
                )
                messages.append((topic_for(d, StreamKind.EMG), _encode(frame)))
        store = store_at(tmp_path)
        worker = make_worker(broker.port, store, "tp", reorder_window_s=0.0)
        client_id = worker.intake.broker.client_id
        worker.stop()  # the session stays: publish while it is away, then time the catch-up
        publish(broker.port, messages)
        restarted = IngestWorker(
            BrokerConfig("127.0.0.1", broker.port, client_id),
            store,
            BinDetectorFactory(),
            tmp_path / "tp2",
            reorder_window_s=0.0,
            idle_flush_s=0.5,
        )
        started = time.monotonic()
        restarted.start()
        try:
            wait_for(lambda: restarted.stats().frames_accepted >= len(messages), 120)
            elapsed = time.monotonic() - started
        finally:
            restarted.stop()
        rate = len(messages) / elapsed
        with capsys.disabled():
            print(
                f"\none worker: {len(messages)} 1 s 1 kHz EMG frames in {elapsed:.2f} s "
                f"= {rate:.0f} frames/s"
            )
        assert rate > 100
    finally:
        broker.stop()


def _int16():  # type: ignore[no-untyped-def]
    from ingest.protocol import SampleType

    return SampleType.INT16


def _encode(frame):  # type: ignore[no-untyped-def]
    from ingest.protocol import encode_binary

    return encode_binary(frame)
