"""The MQTT edge of the ingest worker: paho-mqtt 2.x client, decoding, bounded queue, acks.

The paho callback only turns a message into a typed :class:`Inbound` or :class:`Rejected` item
and puts it on a bounded queue. A full queue blocks the callback, so paho stops reading the
socket and, with MQTT 5 Receive Maximum set to the queue size, the broker stops sending: memory
stays bounded and nothing is dropped. Messages are acknowledged only by :meth:`Intake.ack`,
which the processing thread calls after the message's effect is durable.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.protocol import TOPIC_PREFIX, Frame, FrameError, Topic, decode, parse_topic
from storage.base import DeadLetter

log = logging.getLogger(__name__)

SUBSCRIPTION = f"{TOPIC_PREFIX}/#"
DEAD_TOPIC = f"{TOPIC_PREFIX}/_dead/{{device_id}}"
STATUS_TOPIC = f"{TOPIC_PREFIX}/_workers/{{worker}}/status"
UNKNOWN_DEVICE = "_unknown"
OUTBOUND_LEVELS = frozenset({"alerts"})  # crampwatch/v1/{device_id}/alerts... is not ingest
SESSION_EXPIRY_S = 7 * 86_400
HEAD_BYTES = 32
MAX_TOPIC_CHARS = 1024
MAX_DETAIL_CHARS = 1024


@dataclass(frozen=True)
class BrokerConfig:
    """Where and how to connect.

    Attributes
    ----------
    client_id : str
        Stable MQTT client id of this worker; the persistent session is keyed by it.
    tls : bool
        Connect with TLS (system CA store).
    """

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30
    tls: bool = False
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    mqtt_version: Literal[5, 311] = 5  # 311: MQTT 3.1.1 with clean_session=False


@dataclass(frozen=True)
class Inbound:
    """A valid frame waiting to be processed; ``mid``/``qos`` acknowledge it."""

    mid: int
    qos: int
    topic: Topic
    frame: Frame
    arrival_us: int
    payload_bytes: int
    payload_head_hex: str


@dataclass(frozen=True)
class Rejected:
    """A message that failed decoding; ``stream`` is its topic's stream label when known."""

    mid: int
    qos: int
    letter: DeadLetter
    stream: str | None


def owner_of(device_id: str, worker_count: int) -> int:
    """Index of the worker that owns ``device_id``: crc32 of its UTF-8 bytes mod the count."""
    return zlib.crc32(device_id.encode()) % worker_count


def dead_letter(
    topic: str, device_id: str, error: FrameError, payload: bytes, arrival_us: int
) -> DeadLetter:
    """The dead-letter record of a rejected message."""
    return DeadLetter(
        arrival_us=arrival_us,
        topic=_printable(topic, MAX_TOPIC_CHARS),
        device_id=device_id,
        reason=error.reason,
        detail=_printable(error.detail, MAX_DETAIL_CHARS),
        payload_bytes=len(payload),
        payload_head_hex=payload[:HEAD_BYTES].hex(),
    )


def _printable(text: str, max_chars: int) -> str:
    """Text a store accepts: no NUL characters, at most ``max_chars`` long."""
    text = text.replace("\x00", "\\x00")
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def _is_outbound(topic: str) -> bool:
    """Topics under the prefix that other stages publish (worker status, dead letters, alerts)."""
    levels = topic.split("/")
    if levels[:2] != TOPIC_PREFIX.split("/") or len(levels) < 3:
        return False
    return levels[2].startswith("_") or (len(levels) >= 4 and levels[3] in OUTBOUND_LEVELS)


class Intake:
    """The broker connection of one worker.

    Parameters
    ----------
    broker : BrokerConfig
    worker_name : str
        Used in the status topic.
    owns : callable
        Device id -> whether this worker processes it; others are acknowledged unprocessed.
    queue_frames : int
        Capacity of the queue to the processing thread.
    clock_us : callable
        Wall clock, µs since the epoch (arrival times).
    """

    def __init__(
        self,
        broker: BrokerConfig,
        worker_name: str,
        owns: Callable[[str], bool],
        queue_frames: int,
        clock_us: Callable[[], int],
    ) -> None:
        self.broker = broker
        self.owns = owns
        self.clock_us = clock_us
        self.items: queue.Queue[Inbound | Rejected] = queue.Queue(maxsize=queue_frames)
        self.status_topic = STATUS_TOPIC.format(worker=worker_name)
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self.received = 0
        self.redelivered = 0  # messages the broker flagged DUP (sent before, not acknowledged)
        self.not_owned = 0
        self.ignored = 0
        self.queue_full_waits = 0
        self.connects = 0
        if broker.mqtt_version == 5:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=broker.client_id,
                protocol=MQTTProtocolVersion.MQTTv5,
                manual_ack=True,
            )
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=broker.client_id,
                protocol=MQTTProtocolVersion.MQTTv311,
                clean_session=False,
                manual_ack=True,
            )
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            client.tls_set()
        client.will_set(self.status_topic, _status("offline"), qos=1, retain=True)
        client.reconnect_delay_set(broker.reconnect_min_s, broker.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client
        self._receive_maximum = min(queue_frames, 65_535)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background (reconnecting with backoff) and start the network loop."""
        if self.broker.mqtt_version == 5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            props.ReceiveMaximum = self._receive_maximum
            self.client.connect_async(
                self.broker.host,
                self.broker.port,
                self.broker.keepalive_s,
                clean_start=False,
                properties=props,
            )
        else:
            self.client.connect_async(self.broker.host, self.broker.port, self.broker.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        """Publish the offline status, disconnect cleanly (the session stays) and stop."""
        self.stopping.set()
        if self.connected.is_set():
            info = self.client.publish(self.status_topic, _status("offline"), qos=1, retain=True)
            info.wait_for_publish(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()

    # ------------------------------------------------------------------ called by processing

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge one message (after its effect is durable)."""
        if qos > 0:
            self.client.ack(mid, qos)

    def publish_dead_letter(self, letter: DeadLetter) -> None:
        """Publish a dead letter on ``crampwatch/v1/_dead/{device_id}`` (QoS 1, JSON)."""
        doc = {
            "arrival_us": letter.arrival_us,
            "topic": letter.topic,
            "device_id": letter.device_id,
            "reason": letter.reason,
            "detail": letter.detail,
            "payload_bytes": letter.payload_bytes,
            "payload_head_hex": letter.payload_head_hex,
        }
        self.client.publish(DEAD_TOPIC.format(device_id=letter.device_id), json.dumps(doc), qos=1)

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        self.connects += 1
        if self.broker.mqtt_version == 5:
            client.subscribe(SUBSCRIPTION, options=SubscribeOptions(qos=1, noLocal=True))
        else:
            client.subscribe(SUBSCRIPTION, qos=1)
        client.publish(self.status_topic, _status("online"), qos=1, retain=True)
        self.connected.set()
        log.info("connected (session present: %s)", flags.session_present)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        if not self.stopping.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        arrival_us = self.clock_us()
        self.received += 1
        if message.dup:
            self.redelivered += 1
        item = self._classify(message, arrival_us)
        if item is None:
            self.ack(message.mid, message.qos)
            return
        self._put(item)

    def _classify(self, message: mqtt.MQTTMessage, arrival_us: int) -> Inbound | Rejected | None:
        """Decode at the edge; None means acknowledge and ignore (outbound or not ours)."""
        topic_name = message.topic
        payload = bytes(message.payload)
        try:
            topic = parse_topic(topic_name)
        except FrameError as error:
            if _is_outbound(topic_name):
                self.ignored += 1
                return None
            if not self.owns(UNKNOWN_DEVICE):
                self.not_owned += 1
                return None
            letter = dead_letter(topic_name, UNKNOWN_DEVICE, error, payload, arrival_us)
            return Rejected(message.mid, message.qos, letter, None)
        if not self.owns(topic.device_id):
            self.not_owned += 1
            return None
        try:
            frame = decode(payload)
        except FrameError as error:
            letter = dead_letter(topic_name, topic.device_id, error, payload, arrival_us)
            return Rejected(message.mid, message.qos, letter, topic.kind.label)
        if frame.kind is not topic.kind:
            mismatch = FrameError(
                "kind_mismatch",
                f"{frame.kind.label} frame published on the {topic.kind.label} topic",
            )
            letter = dead_letter(topic_name, topic.device_id, mismatch, payload, arrival_us)
            return Rejected(message.mid, message.qos, letter, topic.kind.label)
        head = payload[:HEAD_BYTES].hex()
        return Inbound(message.mid, message.qos, topic, frame, arrival_us, len(payload), head)

    def _put(self, item: Inbound | Rejected) -> None:
        """Block while the queue is full (back-pressure); never drop."""
        try:
            self.items.put_nowait(item)
            return
        except queue.Full:
            self.queue_full_waits += 1
        while not self.stopping.is_set():
            try:
                self.items.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        # stopping: the message stays unacknowledged and is redelivered to the next session


def _status(state: str) -> str:
    return json.dumps({"state": state})
