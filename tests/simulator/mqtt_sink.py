"""A real MQTT subscriber for the simulator tests: collects and decodes every frame it gets."""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from types import TracebackType

import paho.mqtt.client as mqtt

from ingest.protocol import Frame, StreamKind, Topic, decode, parse_topic
from tests.servers import wait_for


@dataclass
class Received:
    topic: Topic
    frame: Frame


@dataclass
class FrameSink:
    """Subscribes to ``crampwatch/v1/#`` with QoS 1 and keeps every decoded frame in order.

    ``persistent=True`` keeps the session (clean_session False, fixed client id) so messages
    published while it was disconnected reach it after a broker restart.
    """

    port: int
    persistent: bool = False
    received: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    subscribed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"sink-{uuid.uuid4().hex[:8]}",
            clean_session=not self.persistent,
        )
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_args: self.subscribed.set()

    def _on_connect(self, client, _userdata, _flags, reason_code, _props) -> None:
        if not reason_code.is_failure:
            client.subscribe("crampwatch/v1/#", qos=1)

    def _on_message(self, _client, _userdata, message) -> None:
        if message.topic.split("/")[2].startswith("_") or message.topic.endswith("/alerts"):
            return  # status, dead letters and alerts of other stages sharing the broker
        try:
            item = Received(parse_topic(message.topic), decode(message.payload))
        except ValueError as exc:
            with self.lock:
                self.errors.append(f"{message.topic}: {exc}")
            return
        with self.lock:
            self.received.append(item)

    def __enter__(self) -> FrameSink:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        wait_for(self.subscribed.is_set, 10, what="subscription")
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def by_stream(self) -> dict[tuple[str, StreamKind], list[Received]]:
        """Frames per (device, stream) in arrival order."""
        streams: dict[tuple[str, StreamKind], list[Received]] = defaultdict(list)
        with self.lock:
            for item in self.received:
                streams[(item.topic.device_id, item.topic.kind)].append(item)
        return streams
