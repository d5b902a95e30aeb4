"""Publish nights over MQTT through the real wire protocol, live-like or as an end-of-night sync.

Frames of ~1 s per stream go out with QoS 1 on ``crampwatch/v1/{device_id}/{emg|acc}`` (live)
or ``crampwatch/v1/{device_id}/sync/{emg|acc}`` (sync). Live frames leave when their last
sample would have been recorded, at ``speed`` x real time (``speed=None``: as fast as the broker
acknowledges). The frame-level faults in a night's labels (gaps, duplicated and out-of-order
frames, clock drift and jumps) are applied exactly as labelled by
:func:`simulator.frames.plan_frames`, so a subscriber can check every frame against the labels.

Usable from code: :func:`publish_nights` runs in any thread, stops when its ``stop`` event is
set and reports progress through a callback.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ingest.protocol import StreamKind, Transport, topic_for
from simulator.frames import (
    DEFAULT_FRAME_S,
    SYNC_FRAME_S,
    PlannedFrame,
    frame_payload,
    largest_frame_s,
    plan_frames,
)
from simulator.labels import NightLabels
from simulator.recording import Recording

__all__ = [
    "BrokerAddress",
    "DeviceNight",
    "PlannedFrame",
    "PublishError",
    "PublishOptions",
    "PublishProgress",
    "PublishReport",
    "frame_payload",
    "plan_frames",
    "publish_nights",
]


class PublishError(RuntimeError):
    """The broker could not be reached or refused the connection."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where to publish, parsed from ``mqtt://[user:pass@]host[:port]`` (``mqtts://`` for TLS)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        """Parse a broker URL; raise ``ValueError`` with the allowed form otherwise."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"broker URL {url!r} is not mqtt://host[:port] or mqtts://host[:port]")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ValueError(f"broker URL {url!r} has a bad port") from None
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )


@dataclass(frozen=True)
class DeviceNight:
    """One device's night to publish: samples plus the labels whose frame faults apply."""

    recording: Recording
    labels: NightLabels

    @property
    def device_id(self) -> str:
        return self.labels.device_id


@dataclass(frozen=True)
class PublishOptions:
    """How to publish.

    Attributes
    ----------
    speed : float or None
        Live pacing: ``speed`` x real time; None sends as fast as the broker acknowledges.
    sync : bool
        End-of-night bulk sync on the ``sync/`` topics (sent as fast as possible).
    json : bool
        JSON frames instead of binary.
    frame_s : float or None
        Frame length, seconds; None: 1 s live, and for a sync the longest frame up to 30 s
        that the protocol's limits allow (a 8 h night is then about 2,000 frames, not 57,600).
    frame_faults : bool
        Apply the labels' frame faults.
    connections : int or None
        MQTT connections to spread devices over (a device always uses the same one, so its
        frames stay in order); None: one per device, at most 4 (fastest on a small machine).
    max_in_flight : int
        Unacknowledged QoS 1 messages allowed per connection (back-pressure).
    client_id_prefix : str
    connect_timeout_s : float
        How long the first connection may take before :class:`PublishError`.
    """

    speed: float | None = 1.0
    sync: bool = False
    json: bool = False
    frame_s: float | None = None
    frame_faults: bool = True
    connections: int | None = None
    max_in_flight: int = 100
    client_id_prefix: str = "crampwatch-sim"
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.speed is not None and not self.speed > 0:
            raise ValueError(f"speed must be positive or None (max), got {self.speed}")
        if self.frame_s is not None and not 0.05 <= self.frame_s <= 60:
            raise ValueError(f"frame_s must be 0.05-60 s, got {self.frame_s}")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")


@dataclass(frozen=True)
class PublishProgress:
    """Counters so far; ``frames_total`` counts every planned frame of every device."""

    frames_total: int
    frames_sent: int
    frames_acked: int
    bytes_sent: int
    elapsed_s: float
    reconnects: int


@dataclass(frozen=True)
class PublishReport:
    """Outcome of :func:`publish_nights`."""

    devices: int
    frames_total: int
    frames_sent: int
    frames_acked: int
    bytes_sent: int
    elapsed_s: float
    reconnects: int
    stopped: bool

    @property
    def frames_per_s(self) -> float:
        """Acknowledged frames per second of wall time."""
        return self.frames_acked / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class _Connection:
    """One paho client, its in-flight window and counters (updated from paho's thread)."""

    client: mqtt.Client
    slots: threading.Semaphore
    connected: threading.Event = field(default_factory=threading.Event)
    acked: int = 0
    connects: int = 0
    refused: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


def _open_connection(address: BrokerAddress, client_id: str, max_in_flight: int) -> _Connection:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    conn = _Connection(client, threading.Semaphore(max_in_flight))
    client.max_inflight_messages_set(max_in_flight)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set()

    def on_connect(_c, _u, _flags, reason_code, _props) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            conn.refused = str(reason_code)
            return
        with conn.lock:
            conn.connects += 1
        conn.connected.set()

    def on_disconnect(_c, _u, _flags, _reason_code, _props) -> None:  # type: ignore[no-untyped-def]
        conn.connected.clear()

    def on_publish(_c, _u, _mid, _reason_code, _props) -> None:  # type: ignore[no-untyped-def]
        with conn.lock:
            conn.acked += 1
        conn.slots.release()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_publish = on_publish
    client.connect_async(address.host, address.port, keepalive=30)
    client.loop_start()
    return conn


def publish_nights(
    nights: Sequence[DeviceNight],
    broker_url: str,
    options: PublishOptions | None = None,
    *,
    stop: threading.Event | None = None,
    progress: Callable[[PublishProgress], None] | None = None,
    progress_interval_s: float = 0.5,
) -> PublishReport:
    """Publish every night's frames over MQTT (QoS 1) and wait for every acknowledgement.

    A lost connection is re-opened (1-5 s back-off) and unacknowledged frames are re-sent; the
    call waits through an outage until the broker is back or ``stop`` is set.

    Parameters
    ----------
    nights : sequence of DeviceNight
        One per device (device ids must differ); all start together.
    broker_url : str
        ``mqtt://[user:pass@]host:port``.
    options : PublishOptions
    stop : threading.Event, optional
        Set it to stop early; the report then has ``stopped=True``.
    progress : callable, optional
        Called with a :class:`PublishProgress` about every ``progress_interval_s`` seconds and
        once at the end.

    Raises
    ------
    PublishError
        No connection within ``options.connect_timeout_s``, or the broker refused it.
    """
    options = options or PublishOptions()
    stop = stop or threading.Event()
    address = BrokerAddress.from_url(broker_url)
    ids = [n.device_id for n in nights]
    if len(set(ids)) != len(ids):
        raise ValueError("device ids of the nights must differ")
    n_conn = max(1, min(len(nights), options.connections or 4))
    run_id = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    conns = [
        _open_connection(address, f"{options.client_id_prefix}-{run_id}-{k}", options.max_in_flight)
        for k in range(n_conn)
    ]
    started = time.monotonic()
    sent = sent_bytes = 0
    total = 0
    try:
        _wait_connected(conns, address, options.connect_timeout_s, stop)
        transport = Transport.SYNC if options.sync else Transport.LIVE
        plans = [
            plan_frames(
                n.labels,
                n.recording.emg_uv.shape[0],
                0 if n.recording.acc_g is None else n.recording.acc_g.shape[0],
                frame_s=_frame_s(options, n.recording),
                faults=options.frame_faults,
            )
            for n in nights
        ]
        total = sum(len(p) for p in plans)
        topics = [
            {kind: topic_for(n.device_id, kind, transport) for kind in StreamKind} for n in nights
        ]
        pace = None if options.sync else options.speed
        last_report = 0.0
        for device, planned in _merged(plans):
            if stop.is_set():
                break
            if pace is not None:
                delay = started + planned.due_s / pace - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
            conn = conns[device % n_conn]
            if not _acquire(conn.slots, stop):
                break
            payload = frame_payload(nights[device].recording, planned, json=options.json)
            conn.client.publish(topics[device][planned.kind], payload, qos=1)
            sent += 1
            sent_bytes += len(payload)
            now = time.monotonic()
            if progress is not None and now - last_report >= progress_interval_s:
                last_report = now
                progress(_progress(conns, total, sent, sent_bytes, started))
        _drain(conns, sent, stop)
    finally:
        for conn in conns:
            conn.client.disconnect()
            conn.client.loop_stop()
    final = _progress(conns, total, sent, sent_bytes, started)
    if progress is not None:
        progress(final)
    return PublishReport(
        devices=len(nights),
        frames_total=total,
        frames_sent=sent,
        frames_acked=final.frames_acked,
        bytes_sent=sent_bytes,
        elapsed_s=final.elapsed_s,
        reconnects=final.reconnects,
        stopped=stop.is_set() or sent < total,
    )


def _frame_s(options: PublishOptions, rec: Recording) -> float:
    """Frame length for one device: as asked, or the default of the transport."""
    if options.frame_s is not None:
        return options.frame_s
    if not options.sync:
        return DEFAULT_FRAME_S
    return min(SYNC_FRAME_S, largest_frame_s(rec, json=options.json))


def _merged(plans: list[list[PlannedFrame]]) -> Iterator[tuple[int, PlannedFrame]]:
    """Frames of all devices in due order (device order breaks ties)."""
    heap = [(plan[0].due_s, device, 0) for device, plan in enumerate(plans) if plan]
    heapq.heapify(heap)
    while heap:
        _due, device, index = heapq.heappop(heap)
        plan = plans[device]
        yield device, plan[index]
        if index + 1 < len(plan):
            heapq.heappush(heap, (plan[index + 1].due_s, device, index + 1))


def _wait_connected(
    conns: list[_Connection], address: BrokerAddress, timeout_s: float, stop: threading.Event
) -> None:
    deadline = time.monotonic() + timeout_s
    for conn in conns:
        while not conn.connected.wait(0.05):
            if conn.refused:
                raise PublishError(f"broker {address.host}:{address.port} refused: {conn.refused}")
            if stop.is_set():
                return
            if time.monotonic() > deadline:
                raise PublishError(
                    f"no connection to broker {address.host}:{address.port} within {timeout_s:g} s"
                )


def _acquire(slots: threading.Semaphore, stop: threading.Event) -> bool:
    while not slots.acquire(timeout=0.2):
        if stop.is_set():
            return False
    return True


def _drain(conns: list[_Connection], sent: int, stop: threading.Event) -> None:
    """Wait until every sent frame is acknowledged (paho re-sends after reconnects)."""
    while sum(c.acked for c in conns) < sent and not stop.wait(0.01):
        pass


def _progress(
    conns: list[_Connection], total: int, sent: int, sent_bytes: int, started: float
) -> PublishProgress:
    return PublishProgress(
        frames_total=total,
        frames_sent=sent,
        frames_acked=sum(c.acked for c in conns),
        bytes_sent=sent_bytes,
        elapsed_s=time.monotonic() - started,
        reconnects=sum(max(0, c.connects - 1) for c in conns),
    )
