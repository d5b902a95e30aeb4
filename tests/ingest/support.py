"""Shared helpers of the ingest tests: a small chunk-invariant detector, synthetic nights as
wire messages, and publishing with paho."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from detection.events import (
    DetectorEvent,
    Episode,
    EpisodeEvent,
    EventKind,
    QualityEvent,
    SeriesPoint,
)
from ingest.protocol import (
    SampleType,
    StreamKind,
    Transport,
    encode_binary,
    make_frame,
    topic_for,
)
from storage.base import (
    DeadLetter,
    EpisodeQuery,
    HealthRecord,
    NightSummary,
    Store,
    WeekSummary,
)

SECOND_US = 1_000_000
NIGHT_START_US = 1_790_000_000 * SECOND_US  # 2026-09-21, a whole second


class BinDetector:
    """1 s RMS bins of channel 0 above a threshold for >= 2 bins make an episode.

    Independent of how the signal is chunked; counts every sample it gets; checkpointable.
    """

    def __init__(self, device_id: str, threshold_uv: float = 30.0) -> None:
        self.device_id = device_id
        self.threshold_uv = threshold_uv
        self.bin: int | None = None
        self.sumsq = 0.0
        self.count = 0
        self.run = 0
        self.run_start = 0
        self.peak = 0.0
        self.emg_samples = 0
        self.acc_samples = 0
        self.series: list[SeriesPoint] = []

    def push_emg(
        self, samples_uv: npt.NDArray[np.float64], start_us: int, rate_hz: float
    ) -> list[DetectorEvent]:
        times = start_us + np.round(np.arange(len(samples_uv)) * 1e6 / rate_hz).astype(np.int64)
        bins = times // SECOND_US
        events: list[DetectorEvent] = []
        values = samples_uv[:, 0]
        for b in np.unique(bins):
            if self.bin is not None and int(b) != self.bin:
                events.extend(self._close_bin())
            self.bin = int(b)
            chunk = values[bins == b]
            self.sumsq += float(np.sum(chunk * chunk))
            self.count += len(chunk)
        self.emg_samples += len(samples_uv)
        return events

    def push_acc(
        self, samples_g: npt.NDArray[np.float64], start_us: int, rate_hz: float
    ) -> list[DetectorEvent]:
        self.acc_samples += len(samples_g)
        return []

    def finish(self, end_us: int | None = None) -> list[DetectorEvent]:
        events = self._close_bin() if self.bin is not None else []
        self.bin = None
        if self.run >= 2:
            events.append(self._event(EventKind.ENDED, (self.run_start + self.run) * SECOND_US))
        self.run = 0
        return events

    def pop_series(self) -> list[SeriesPoint]:
        out, self.series = self.series, []
        return out

    def snapshot(self) -> bytes:
        state = {k: v for k, v in vars(self).items() if k != "series"}
        state["series"] = [vars(p) for p in self.series]
        return json.dumps(state).encode()

    @classmethod
    def restore(cls, data: bytes) -> BinDetector:
        state = json.loads(data)
        detector = cls(state.pop("device_id"), state.pop("threshold_uv"))
        series = state.pop("series")
        vars(detector).update(state)
        detector.series = [SeriesPoint(**p) for p in series]
        return detector

    def _close_bin(self) -> list[DetectorEvent]:
        assert self.bin is not None
        rms = float(np.sqrt(self.sumsq / max(self.count, 1)))
        self.series.append(SeriesPoint(self.bin * SECOND_US, rms, self.threshold_uv, None, None))
        events: list[DetectorEvent] = []
        if rms > self.threshold_uv:
            if self.run == 0:
                self.run_start, self.peak = self.bin, 0.0
            self.run += 1
            self.peak = max(self.peak, rms)
            if self.run == 2:
                events.append(self._event(EventKind.STARTED, None))
        else:
            if self.run >= 2:
                events.append(self._event(EventKind.ENDED, self.bin * SECOND_US))
            self.run = 0
        self.sumsq, self.count = 0.0, 0
        return events

    def _event(self, kind: EventKind, offset_us: int | None) -> EpisodeEvent:
        onset_us = self.run_start * SECOND_US
        end = offset_us if offset_us is not None else (self.run_start + self.run) * SECOND_US
        episode = Episode(
            episode_id=f"{self.device_id}:{onset_us}",
            device_id=self.device_id,
            site="calf",
            onset_us=onset_us,
            confirmed_us=(self.run_start + 2) * SECOND_US,
            offset_us=offset_us,
            duration_s=(end - onset_us) / 1e6,
            peak_intensity=self.peak / self.threshold_uv,
            mean_intensity=self.peak / self.threshold_uv,
            confidence=0.9,
        )
        return EpisodeEvent(kind, episode, end)


class BinDetectorFactory:
    """Detector factory of :class:`BinDetector` for the worker."""

    def create(self, device_id: str) -> BinDetector:
        return BinDetector(device_id)

    def restore(self, data: bytes) -> BinDetector:
        return BinDetector.restore(data)


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    kind: StreamKind
    seq: int


def night_messages(
    device_id: str,
    rng: np.random.Generator,
    *,
    duration_s: int,
    episodes_s: Sequence[tuple[int, int]],
    transport: Transport = Transport.LIVE,
    emg_rate_hz: int = 1000,
    acc_rate_hz: int = 50,
    frame_s: int = 1,
    start_us: int = NIGHT_START_US,
    with_acc: bool = True,
) -> list[Message]:
    """A night as 1 s binary frames in device-time order (EMG then ACC per second).

    EMG is 5 µV noise with 100 µV bursts at ``episodes_s`` (onset, duration) in seconds.
    """
    n = duration_s * emg_rate_hz
    emg = rng.normal(0.0, 5.0, n)
    for onset, length in episodes_s:
        t = np.arange(length * emg_rate_hz) / emg_rate_hz
        emg[onset * emg_rate_hz : (onset + length) * emg_rate_hz] += 100 * np.sin(
            2 * np.pi * 80 * t
        )
    counts = np.round(emg / 0.5).astype(np.int64)  # 0.5 µV per count, int16
    acc = rng.normal(0.0, 0.01, (duration_s * acc_rate_hz, 3)) + np.array([0.0, 0.0, 1.0])
    messages = []
    for i in range(duration_s // frame_s):
        t0 = start_us + i * frame_s * SECOND_US
        e = counts[i * frame_s * emg_rate_hz : (i + 1) * frame_s * emg_rate_hz]
        frame = make_frame(
            StreamKind.EMG, emg_rate_hz, t0, i, e, scale=0.5, sample_type=SampleType.INT16
        )
        topic = topic_for(device_id, StreamKind.EMG, transport)
        messages.append(Message(topic, encode_binary(frame), StreamKind.EMG, i))
        if with_acc:
            a = acc[i * frame_s * acc_rate_hz : (i + 1) * frame_s * acc_rate_hz]
            frame = make_frame(StreamKind.ACC, acc_rate_hz, t0, i, a)
            topic = topic_for(device_id, StreamKind.ACC, transport)
            messages.append(Message(topic, encode_binary(frame), StreamKind.ACC, i))
    return messages


def publish(port: int, messages: Iterable[tuple[str, bytes]], client_id: str = "") -> int:
    """Publish every (topic, payload) with QoS 1 and wait until the broker has them all."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=60)
            if not info.is_published():
                raise TimeoutError(f"message {info.mid} was not acknowledged by the broker")
    finally:
        client.disconnect()
        client.loop_stop()
    return len(infos)


class Collector:
    """Subscribes to a topic filter and keeps (topic, payload) of what arrives."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic_filter, qos=1)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("subscription not acknowledged")

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class ResultStore(Store):
    """A small SQLite results store for the ingest tests (shared by worker processes).

    Implements the writes the worker makes and the reads the tests need; summaries are not
    part of ingest and raise NotImplementedError.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(
            "CREATE TABLE IF NOT EXISTS episodes (id TEXT PRIMARY KEY, device_id TEXT, onset_us,"
            " offset_us, duration_s, writes INTEGER DEFAULT 1);"
            "CREATE TABLE IF NOT EXISTS series (device_id TEXT, ts_us INTEGER, envelope_uv,"
            " PRIMARY KEY (device_id, ts_us));"
            "CREATE TABLE IF NOT EXISTS health (device_id, stream, arrival_us, doc);"
            "CREATE TABLE IF NOT EXISTS dead (device_id, reason, topic, detail, payload_bytes);"
        )

    def _write(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(sql, rows)
            self._db.execute("COMMIT")

    def write_events(self, events: Sequence[EpisodeEvent]) -> None:
        self._write(
            "INSERT INTO episodes VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT(id) DO UPDATE SET"
            " offset_us = excluded.offset_us, duration_s = excluded.duration_s,"
            " writes = writes + 1",
            [
                (
                    e.episode.episode_id,
                    e.episode.device_id,
                    e.episode.onset_us,
                    e.episode.offset_us,
                    e.episode.duration_s,
                )
                for e in events
            ],
        )

    def write_quality(self, events: Sequence[QualityEvent]) -> None:
        pass

    def write_series(self, device_id: str, points: Sequence[SeriesPoint]) -> None:
        self._write(
            "INSERT OR REPLACE INTO series VALUES (?, ?, ?)",
            [(device_id, p.ts_us, p.envelope_uv) for p in points],
        )

    def write_health(self, records: Sequence[HealthRecord]) -> None:
        self._write(
            "INSERT INTO health VALUES (?, ?, ?, ?)",
            [(r.device_id, r.stream, r.arrival_us, json.dumps(vars(r))) for r in records],
        )

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        self._write(
            "INSERT INTO dead VALUES (?, ?, ?, ?, ?)",
            [(d.device_id, d.reason, d.topic, d.detail, d.payload_bytes) for d in letters],
        )

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def episode_rows(self, device_id: str) -> list[tuple[int, int | None]]:
        """(onset_us, offset_us) of a device's episodes by onset."""
        return [
            (int(a), b)
            for a, b in self.rows(
                "SELECT onset_us, offset_us FROM episodes WHERE device_id = ? ORDER BY 1",
                (device_id,),
            )
        ]

    def series_count(self, device_id: str) -> int:
        return int(self.rows("SELECT count(*) FROM series WHERE device_id = ?", (device_id,))[0][0])

    def episodes(self, query: EpisodeQuery) -> list[Episode]:
        raise NotImplementedError

    def series(
        self, device_id: str, start_us: int, end_us: int, max_points: int = 1000
    ) -> list[SeriesPoint]:
        raise NotImplementedError

    def quality(self, device_id: str, start_us: int, end_us: int) -> list[QualityEvent]:
        return []

    def latest_health(self, device_ids: Sequence[str] | None = None) -> list[HealthRecord]:
        rows = self.rows(
            "SELECT doc FROM health h WHERE arrival_us = (SELECT max(arrival_us) FROM health"
            " WHERE device_id = h.device_id AND stream = h.stream)"
        )
        records = [HealthRecord(**json.loads(r[0])) for r in rows]
        return [r for r in records if device_ids is None or r.device_id in device_ids]

    def dead_letters(
        self, device_id: str | None, start_us: int, end_us: int, limit: int = 1000
    ) -> list[DeadLetter]:
        raise NotImplementedError

    def night_summaries(
        self, device_ids: Sequence[str], start_us: int, end_us: int, utc_offset_s: int = 0
    ) -> list[NightSummary]:
        raise NotImplementedError

    def week_summaries(
        self, device_ids: Sequence[str], start_us: int, end_us: int, utc_offset_s: int = 0
    ) -> list[WeekSummary]:
        raise NotImplementedError

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        self._db.close()
