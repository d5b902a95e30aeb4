"""The ingest worker against a real mosquitto with the real detector and SQLite store: dead
letters, live + sync, scale-out, broker restart, back-pressure and store outage, throughput."""

from __future__ import annotations

import json
import os
import struct
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from detection.events import DetectorEvent, EpisodeEvent, EventKind, SeriesPoint
from ingest.checkpoint import Checkpoint
from ingest.detectors import StreamDetectorFactory
from ingest.intake import BrokerConfig, owner_of
from ingest.protocol import (
    SampleType,
    StreamKind,
    Transport,
    decode,
    encode_binary,
    encode_json,
    make_frame,
    topic_for,
)
from ingest.worker import IngestWorker, wall_clock_us
from storage.base import StoreUnavailable
from storage.influx import InfluxStore
from storage.sqlite import SqliteStore
from tests.ingest.support import (
    DAY_US,
    NIGHT_START_US,
    SECOND_US,
    Collector,
    Message,
    SimNight,
    end_session,
    publish,
    sim_night,
    stored_episodes,
    stored_series,
)
from tests.servers import Influxd, Mosquitto, wait_for

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


class SlowFlakyStore(SqliteStore):
    """The real SQLite store with slow series writes and a few injected outages."""

    delay_s = 0.0
    failures_left = 0

    def write_series(self, device_id: str, points: Sequence[SeriesPoint]) -> None:
        time.sleep(self.delay_s)
        if self.failures_left > 0:
            self.failures_left -= 1
            raise StoreUnavailable("injected outage")
        super().write_series(device_id, points)


@pytest.fixture
def make_worker(
    tmp_path: Path, store: SqliteStore, mosquitto: Mosquitto
) -> Iterator[Callable[..., IngestWorker]]:
    """Builds started workers (real detector); stops them before the store closes and ends
    their sessions on the shared broker."""
    shared_port = [mosquitto.port]
    workers: list[IngestWorker] = []

    def build(port: int, store: SqliteStore, name: str = "w", **options: object) -> IngestWorker:
        options = {"idle_flush_s": 0.5, "finish_after_s": 2.0, "health_interval_s": 0.2, **options}
        broker = BrokerConfig("127.0.0.1", port, f"{name}-{uuid.uuid4().hex[:8]}")
        worker = IngestWorker(
            broker,
            store,
            StreamDetectorFactory(),
            tmp_path / name,
            **options,  # type: ignore[arg-type]
        )
        worker.start()
        wait_for(worker.intake.connected.is_set, 10, what="worker connected")
        workers.append(worker)
        return worker

    yield build
    for worker in workers:
        worker.stop()
        if worker.intake.broker.port == shared_port[0]:
            end_session(worker.intake.broker.port, worker.intake.broker.client_id)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    results = SqliteStore(tmp_path / "results.sqlite3")
    yield results
    results.close()


def own_broker(workdir: Path) -> Mosquitto:
    """A broker this test restarts. Started as root, mosquitto drops to the ``mosquitto`` user
    and cannot write its persistence file in a root-owned temp dir, so sessions would not
    survive a restart; ``user root`` keeps it able to."""
    extra = "user root\n" if os.geteuid() == 0 else ""
    broker = Mosquitto.create(workdir, extra_conf=extra)
    broker.start()
    return broker


def pairs(messages: Sequence[Message]) -> list[tuple[str, bytes]]:
    return [(m.topic, m.payload) for m in messages]


def wait_for_night(store: SqliteStore, night: SimNight, timeout_s: float = 30) -> None:
    """Until the device's episodes and 1 Hz series are all stored."""
    wait_for(
        lambda: (
            stored_episodes(store, night.device_id) == night.episodes
            and stored_series(store, night.device_id, night.duration_s) == night.series_points
        ),
        timeout_s,
        what=f"the night of {night.device_id}",
    )


def sealed(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def malformed(valid: bytes) -> dict[str, bytes]:
    """Payloads that must be rejected, by the reason they must be rejected with."""
    body = valid[:-4]
    doc = encode_json(decode(valid)).decode()
    return {
        "bad_crc": body + bytes(4),
        "unsupported_version": sealed(body[:2] + b"\x07" + body[3:]),
        "bad_rate": sealed(body[:8] + struct.pack("<I", 9_000_000) + body[12:]),
        "truncated": valid[:30],
        "bad_magic": b"ZZ" + valid[2:],
        "nan": doc.replace('"samples":[[', '"samples":[[NaN],[', 1).encode(),
        "too_large": b"CW" + bytes(1 << 20),
    }


def test_malformed_frames_are_dead_lettered_and_good_frames_all_processed(
    mosquitto: Mosquitto, make_worker: Callable[..., IngestWorker], store: SqliteStore
) -> None:
    device = f"dl-{uuid.uuid4().hex[:6]}"
    good = sim_night(device, 5, duration_s=120)
    variants = malformed(good.messages[0].payload)
    emg_topic = topic_for(device, StreamKind.EMG)
    rotation = [*(r for r in variants if r != "too_large"), "bad_topic", "unregistered"]
    bad: list[tuple[str, bytes, str]] = []
    for i in range(1000):
        reason = "too_large" if i < 10 else rotation[i % len(rotation)]
        if reason == "bad_topic":
            bad.append((f"crampwatch/v1/{device}/eeg", good.messages[0].payload, reason))
        elif reason == "unregistered":
            bad.append((topic_for("intruder-1", StreamKind.EMG), good.messages[0].payload, reason))
        else:
            bad.append((emg_topic, variants[reason], reason))
    stream: list[tuple[str, bytes]] = []
    per_good = len(bad) // len(good.messages) + 1
    for i, message in enumerate(good.messages):
        stream.append((message.topic, message.payload))
        stream.extend((t, p) for t, p, _ in bad[i * per_good : (i + 1) * per_good])
    dead = Collector(mosquitto.port, "crampwatch/v1/_dead/#")
    worker = make_worker(mosquitto.port, store, is_registered=lambda d: d != "intruder-1")
    publish(mosquitto.port, stream)
    wait_for(lambda: worker.stats().dead_letters >= 1000, 60, what="dead letters")
    wait_for_night(store, good)
    now = wall_clock_us()
    letters = store.dead_letters(None, now - DAY_US, now + DAY_US, limit=5000)
    assert Counter(d.reason for d in letters) == Counter(r for _, _, r in bad)
    wait_for(lambda: len(dead.messages) >= 1000, 20, what="published dead letters")
    dead.close()
    assert Counter(json.loads(p)["reason"] for _, p in dead.messages) == Counter(
        r for _, _, r in bad
    )
    stats = worker.stats()
    assert stats.frames_released == len(good.messages) and stats.dead_letters == 1000
    health = {(h.device_id, h.stream): h for h in worker.health_snapshot()}
    assert health[(device, "emg")].frames == 120
    assert health[(device, "emg")].samples == good.emg_samples
    on_emg_topic = sum(1 for topic, _, _ in bad if topic == emg_topic)
    assert health[(device, "emg")].dead_letters == on_emg_topic


def test_live_then_bulk_sync_has_no_duplicates_and_sync_alone_gives_the_same_night(
    mosquitto: Mosquitto, make_worker: Callable[..., IngestWorker], store: SqliteStore
) -> None:
    tag = uuid.uuid4().hex[:6]
    live = sim_night(f"live-{tag}", 3, duration_s=300)
    resync = sim_night(f"live-{tag}", 3, duration_s=300, transport=Transport.SYNC)
    synced = sim_night(f"sync-{tag}", 3, duration_s=300, transport=Transport.SYNC)
    order = np.random.default_rng(3).permutation(len(synced.messages))
    log = EventLog()
    worker = make_worker(mosquitto.port, store, sinks=[log], reorder_window_s=2.0)
    publish(mosquitto.port, pairs(live.messages))
    wait_for_night(store, live)
    publish(
        mosquitto.port,
        pairs([resync.messages[i] for i in order]) + pairs([synced.messages[i] for i in order]),
    )
    wait_for_night(store, synced)
    wait_for(lambda: worker.stats().duplicates >= len(resync.messages), 10, what="duplicates")
    assert worker.stats().duplicates == len(resync.messages)
    assert len(log.ended(live.device_id)) == len(live.episodes)  # nothing new from the re-sync
    assert len(log.ended(synced.device_id)) == len(synced.episodes) >= 2
    assert stored_episodes(store, live.device_id) == live.episodes


def test_two_workers_share_devices_and_every_episode_comes_out_once(
    mosquitto: Mosquitto, make_worker: Callable[..., IngestWorker], store: SqliteStore
) -> None:
    tag = uuid.uuid4().hex[:6]
    nights = [sim_night(f"d{i}-{tag}", i, duration_s=120) for i in range(6)]
    assert {owner_of(n.device_id, 2) for n in nights} == {0, 1}
    log = EventLog()
    workers = [
        make_worker(mosquitto.port, store, f"w{i}", sinks=[log], worker_index=i, worker_count=2)
        for i in range(2)
    ]
    interleaved = [m for group in zip(*(n.messages for n in nights), strict=True) for m in group]
    publish(mosquitto.port, pairs(interleaved))
    for night in nights:
        wait_for_night(store, night)
        wait_for(lambda n=night: len(log.ended(n.device_id)) >= len(n.episodes), 10)
    time.sleep(0.5)  # a second copy would come from the other worker's session within this
    for night in nights:
        ended = log.ended(night.device_id)
        assert len(ended) == len(set(ended)) == len(night.episodes) >= 1, night.device_id
    for i, worker in enumerate(workers):
        mine = {n.device_id for n in nights if owner_of(n.device_id, 2) == i}
        assert {r.device_id for r in worker.health_snapshot()} == mine
        processed = sum(len(n.messages) for n in nights if n.device_id in mine)
        assert worker.stats().frames_accepted == processed
        assert worker.stats().not_owned == len(interleaved) - processed


def test_broker_restart_reconnects_and_loses_nothing(
    make_worker: Callable[..., IngestWorker], store: SqliteStore, tmp_path: Path
) -> None:
    broker = own_broker(tmp_path / "broker")
    try:
        night = sim_night(f"br-{uuid.uuid4().hex[:6]}", 2, duration_s=300)
        worker = make_worker(broker.port, store, finish_after_s=30.0)
        publish(broker.port, pairs(night.messages[:200]))
        wait_for(lambda: worker.stats().frames_accepted >= 200, 20, what="first part")
        broker.restart()
        publish(broker.port, pairs(night.messages[200:400]))  # queued in the worker's session
        wait_for(lambda: worker.stats().connects >= 2, 30, what="reconnect")
        publish(broker.port, pairs(night.messages[400:]))
        wait_for(lambda: worker.stats().frames_accepted >= len(night.messages), 30, what="all")
        worker.finish_after_us = 0  # end of data now
        wait_for_night(store, night)
        health = {h.stream: h for h in worker.health_snapshot()}
        assert health["emg"].samples == night.emg_samples
        assert health["acc"].samples == night.acc_samples
        assert health["emg"].gaps == health["acc"].gaps == 0
    finally:
        broker.stop()


def test_a_restart_between_snapshots_replays_the_log_into_the_same_night(
    mosquitto: Mosquitto, store: SqliteStore, tmp_path: Path
) -> None:
    night = sim_night(f"rl-{uuid.uuid4().hex[:6]}", 5, duration_s=180)
    half = len(night.messages) // 2
    config = BrokerConfig("127.0.0.1", mosquitto.port, f"rl-{uuid.uuid4().hex[:8]}")
    log = EventLog()

    def worker() -> IngestWorker:
        w = IngestWorker(
            config,
            store,
            StreamDetectorFactory(),
            tmp_path / "rl",
            idle_flush_s=0.5,
            finish_after_s=2.0,
            max_batch=8,  # many commits, each appending to the log
            snapshot_every_frames=100_000,  # only the new detector is snapshotted
            sinks=[log],
        )
        w.start()
        wait_for(w.intake.connected.is_set, 10, what="worker connected")
        return w

    first = worker()
    try:
        publish(mosquitto.port, pairs(night.messages[:half]))
        wait_for(lambda: first.stats().acked == half, 30, what="first half")
    finally:
        first.stop()
    checkpoint = Checkpoint(tmp_path / "rl" / "ingest-0.sqlite")
    saved = checkpoint.load(night.device_id)
    checkpoint.close()
    assert saved is not None and saved.detector is not None
    assert len(saved.replay) > half // 2  # the detector state lives mostly in the log
    second = worker()
    try:
        publish(mosquitto.port, pairs(night.messages[half:]))
        wait_for_night(store, night)
        wait_for(lambda: len(log.ended(night.device_id)) >= len(night.episodes), 10)
    finally:
        second.stop()
        end_session(mosquitto.port, config.client_id)
    ended = log.ended(night.device_id)
    assert len(ended) == len(set(ended)) == len(night.episodes) >= 1  # replay hands out nothing


def test_slow_and_failing_store_slows_intake_and_loses_nothing(
    mosquitto: Mosquitto, make_worker: Callable[..., IngestWorker], tmp_path: Path
) -> None:
    store = SlowFlakyStore(tmp_path / "slow.sqlite3")
    store.delay_s, store.failures_left = 0.02, 3
    night = sim_night(f"bp-{uuid.uuid4().hex[:6]}", 4, duration_s=120)
    worker = make_worker(mosquitto.port, store, queue_frames=20, max_batch=10)
    largest = 0
    done = threading.Event()

    def watch() -> None:  # messages taken from the broker and not yet acknowledged
        nonlocal largest
        while not done.is_set():
            stats = worker.stats()
            largest = max(largest, stats.received - stats.ignored - stats.acked)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        publish(mosquitto.port, pairs(night.messages))
        wait_for_night(store, night, 60)
    finally:
        done.set()
        watcher.join()
    stats = worker.stats()
    # without back-pressure all 240 frames would be taken in during the outages; bounded by
    # the queue (20) + the batch in hand (10) + the message the MQTT loop is waiting to put
    assert largest <= 20 + 10 + 1
    assert stats.queue_full_waits > 0
    assert stats.store_retries == 3
    assert stats.frames_released == len(night.messages) and stats.duplicates == 0
    store.close()


def test_the_store_writes_of_a_batch_are_all_or_nothing(store: SqliteStore) -> None:
    points = [SeriesPoint(NIGHT_START_US + i * 10**6, 1.0, 0.5, None, None) for i in range(3)]
    with pytest.raises(StoreUnavailable), store.grouped():
        store.write_series("grp-a", points)
        store.write_series("grp-b", points)
        raise StoreUnavailable("outage in the middle of a batch")
    end_us = NIGHT_START_US + 3 * 10**6  # 1 s points, not binned
    assert store.series("grp-a", NIGHT_START_US, end_us) == []
    with store.grouped():
        store.write_series("grp-a", points)
        store.write_series("grp-b", points)
    assert store.series("grp-b", NIGHT_START_US, end_us) == points
    store.write_series("grp-c", points)  # outside a group: a transaction of its own
    assert len(store.series("grp-c", NIGHT_START_US, end_us)) == 3


def drain_rate(
    store: SqliteStore, workdir: Path, messages: list[tuple[str, bytes]], **options: object
) -> tuple[float, IngestWorker]:
    """Frames/s one worker takes to process ``messages`` queued at the broker for its session."""
    broker = own_broker(workdir / "broker")
    try:
        client_id = f"tp-{uuid.uuid4().hex[:6]}"

        def worker() -> IngestWorker:
            return IngestWorker(
                BrokerConfig("127.0.0.1", broker.port, client_id),
                store,
                StreamDetectorFactory(),
                workdir / "tp",
                idle_flush_s=0.5,
                **options,  # type: ignore[arg-type]
            )

        first = worker()
        first.start()  # creates the persistent session, then goes away
        wait_for(first.intake.connected.is_set, 10)
        first.stop()
        publish(broker.port, messages)
        second = worker()
        started = time.monotonic()
        second.start()
        try:
            wait_for(lambda: second.stats().acked >= len(messages), 300)
            elapsed = time.monotonic() - started
        finally:
            second.stop()
        return len(messages) / elapsed, second
    finally:
        broker.stop()


@pytest.mark.slow
def test_throughput_of_one_worker_on_1khz_emg_frames(
    store: SqliteStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    devices = [f"tp{i}" for i in range(10)]
    frames_per_device = 200
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
                sample_type=SampleType.INT16,
            )
            messages.append((topic_for(d, StreamKind.EMG), encode_binary(frame)))
    rate, worker = drain_rate(store, tmp_path, messages, reorder_window_s=0.0)
    with capsys.disabled():
        print(
            f"\none worker: {len(messages)} 1 s frames of 1 kHz EMG (10 devices) in "
            f"{len(messages) / rate:.2f} s = {rate:.0f} frames/s"
        )
    assert worker.stats().frames_accepted == len(messages)
    assert rate > 50


@pytest.mark.slow
def test_throughput_of_one_worker_on_many_wearers(
    store: SqliteStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """300 wearers x 10 s, each second one 1 kHz EMG and one 50 Hz ACC frame: every batch
    touches hundreds of devices, as with many live wearers."""
    devices = [f"mw{i}" for i in range(300)]
    seconds = 10
    rng = np.random.default_rng(1)
    messages = []
    for i in range(seconds):
        start_us = NIGHT_START_US + i * 10**6
        for d in devices:
            emg = make_frame(
                StreamKind.EMG,
                1000,
                start_us,
                i,
                rng.integers(-200, 200, 1000),
                scale=0.5,
                sample_type=SampleType.INT16,
            )
            acc = make_frame(
                StreamKind.ACC, 50, start_us, i, rng.normal(0, 0.02, (50, 3)).astype(np.float32)
            )
            messages.append((topic_for(d, StreamKind.EMG), encode_binary(emg)))
            messages.append((topic_for(d, StreamKind.ACC), encode_binary(acc)))
    rate, worker = drain_rate(store, tmp_path, messages)
    stats = worker.stats()
    with capsys.disabled():
        print(
            f"\none worker: {len(devices)} wearers x {seconds} s (EMG 1 kHz + ACC 50 Hz) = "
            f"{len(messages)} frames in {len(messages) / rate:.2f} s = {rate:.0f} frames/s "
            f"= {rate / 2:.0f} live wearers"
        )
    assert stats.frames_accepted == len(messages) and stats.duplicates == stats.late == 0
    assert rate > 50


def test_mqtt_3_on_the_embedded_broker_keeps_the_session_across_a_worker_restart(
    store: SqliteStore, tmp_path: Path
) -> None:
    from crampwatch.broker import EmbeddedBroker

    night = sim_night(f"emb-{uuid.uuid4().hex[:6]}", 1, duration_s=120)
    half = len(night.messages) // 2
    with EmbeddedBroker(port=0) as broker:
        config = BrokerConfig(
            "127.0.0.1",
            broker.port,
            f"emb-{uuid.uuid4().hex[:6]}",
            username="ingest",
            mqtt_version=311,
        )

        def worker() -> IngestWorker:
            w = IngestWorker(
                config,
                store,
                StreamDetectorFactory(),
                tmp_path / "emb",
                idle_flush_s=0.5,
                finish_after_s=2.0,
            )
            w.start()
            wait_for(w.intake.connected.is_set, 10, what="connected to the embedded broker")
            return w

        first = worker()
        publish_as_user(broker.port, pairs(night.messages[:half]))
        wait_for(lambda: first.stats().frames_accepted == half, 30, what="first half")
        first.stop()
        publish_as_user(broker.port, pairs(night.messages[half:]))  # queued for the session
        second = worker()
        try:
            wait_for_night(store, night)
        finally:
            second.stop()
        assert second.stats().frames_accepted == len(night.messages) - half


def publish_as_user(port: int, messages: list[tuple[str, bytes]]) -> None:
    """Publish to the embedded broker, which refuses anonymous clients."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    client.username_pw_set("device")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for info in [client.publish(t, p, qos=1) for t, p in messages]:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.integration
def test_a_series_influxdb_refuses_when_the_batch_is_sent_counts_as_unstorable(
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxd: Influxd,
    make_worker: Callable[..., IngestWorker],
) -> None:
    """The worker's writes of a batch go to InfluxDB in one request; a call the server refuses
    then (a field type conflict) is dropped and counted, and the other calls are stored."""
    store = InfluxStore(
        influxd.url,
        f"t_{uuid.uuid4().hex[:12]}",
        write_mode="v1",
        create_database=True,
        spool_dir=tmp_path / "spool",
        flush_interval_ms=100,
    )
    later = NIGHT_START_US + 30 * DAY_US  # another shard
    good = sim_night(f"ok-{uuid.uuid4().hex[:6]}", 21, duration_s=20, scenario="quiet")
    bad = sim_night(
        f"bad-{uuid.uuid4().hex[:6]}", 22, duration_s=20, scenario="quiet", start_us=later
    )
    # a string envelope in the later shard: every float envelope there is a type conflict
    store._writer.deliver([f'series,device_id=other envelope_uv="text" {later}'])
    worker = make_worker(mosquitto.port, store)
    publish(mosquitto.port, pairs(good.messages) + pairs(bad.messages))
    wait_for(lambda: stored_series(store, good.device_id, 20) == good.series_points, 60)
    wait_for(lambda: worker.stats().unstorable >= 1, 30, what="the refused series counted")
    assert store.series(bad.device_id, later, later + 30 * SECOND_US) == []
    assert worker.stats().unstorable == store.refused_in_groups
    assert worker.failure is None
    worker.stop()
    store.close()
