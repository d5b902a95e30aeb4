"""Shared helpers of the ingest tests: simulated nights as wire messages with their offline
detection, publishing and collecting with paho, and reading results back from a store."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from detection.offline import detect_recording
from ingest.protocol import StreamKind, Transport, topic_for
from simulator.night import simulate_night
from simulator.publisher import frame_payload, plan_frames
from storage.base import EpisodeQuery, Store

SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US
NIGHT_START_US = 1_790_000_000 * SECOND_US  # 2026-09-21, a whole second


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    kind: StreamKind
    seq: int


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


def end_session(port: int, client_id: str) -> None:
    """Discard a worker's persistent session, so the shared broker stops queuing for it."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTProtocolVersion.MQTTv5
    )
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", port, clean_start=True)  # session expiry 0: gone on disconnect
    client.loop_start()
    try:
        if not connected.wait(10):
            raise TimeoutError(f"could not connect as {client_id} to end its session")
    finally:
        client.disconnect()
        client.loop_stop()


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


@dataclass(frozen=True)
class SimNight:
    """A simulated night as wire messages, with what the detector finds in it offline."""

    device_id: str
    messages: list[Message]
    episodes: list[tuple[int, int | None]]  # (onset_us, offset_us) from detect_recording
    series_points: int
    duration_s: int
    emg_samples: int
    acc_samples: int


def sim_night(
    device_id: str,
    seed: int,
    *,
    duration_s: int = 120,
    transport: Transport = Transport.LIVE,
    scenario: str = "frequent-cramps",
    start_us: int = NIGHT_START_US,
) -> SimNight:
    """Simulate a night (1 kHz EMG, 50 Hz ACC, 1 s frames, no frame faults) and detect offline."""
    night = simulate_night(
        np.random.default_rng(seed),
        scenario,
        duration_s=duration_s,
        device_id=device_id,
        start_us=start_us,
    )
    rec = night.recording
    if rec.acc_g is None or rec.acc_rate_hz is None:
        raise ValueError("the simulated night has no accelerometer")
    plan = plan_frames(night.labels, len(rec.emg_uv), len(rec.acc_g), faults=False)
    messages = [
        Message(topic_for(device_id, p.kind, transport), frame_payload(rec, p), p.kind, p.seq)
        for p in plan
    ]
    found = detect_recording(
        rec.emg_uv,
        rec.emg_rate_hz,
        rec.acc_g,
        rec.acc_rate_hz,
        start_us=start_us,
        device_id=device_id,
    )
    return SimNight(
        device_id,
        messages,
        [(e.onset_us, e.offset_us) for e in found.episodes],
        len(found.series),
        duration_s,
        len(rec.emg_uv),
        len(rec.acc_g),
    )


def stored_episodes(store: Store, device_id: str) -> list[tuple[int, int | None]]:
    """(onset_us, offset_us) of a device's stored episodes within a day of the night start."""
    query = EpisodeQuery((device_id,), NIGHT_START_US - DAY_US, NIGHT_START_US + DAY_US)
    return [(e.onset_us, e.offset_us) for e in store.episodes(query)]


def stored_series(store: Store, device_id: str, duration_s: int) -> int:
    """Number of stored 1 Hz points of a device in the night's first ``duration_s``."""
    end_us = NIGHT_START_US + duration_s * SECOND_US
    return len(store.series(device_id, NIGHT_START_US, end_us, 20_000))
