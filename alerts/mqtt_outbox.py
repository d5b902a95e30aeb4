"""MQTT publication of recorded alert events: publish from the outbox, record PUBACKs.

Events are recorded in the outbox (``alerts.outbox``) in the transaction that caused them; this
sends those with an MQTT topic at QoS 1 and marks them published once the broker acknowledged
them. One whose PUBACK was not seen is published again, with the same ``event_id``, after
``republish_after_s`` (at-least-once; receivers drop repeated ``event_id`` values).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from alerts.messages import AlertType
from alerts.models import AlertOutboxEvent
from alerts.outbox import OutboundEvent

log = logging.getLogger(__name__)

REPUBLISH_CHECK_US = 1_000_000  # unacknowledged events are looked for at most this often


class PublishReceipt(Protocol):
    """What ``publish`` returns (paho-mqtt's ``MQTTMessageInfo`` fits)."""

    rc: int

    def is_published(self) -> bool: ...

    def wait_for_publish(self, timeout: float | None = None) -> None: ...


class MqttPublisher(Protocol):
    """A connected MQTT client with its network loop running (paho-mqtt 2.x ``Client`` fits)."""

    def publish(
        self, topic: str, payload: str | bytes | None = None, qos: int = 0, retain: bool = False
    ) -> PublishReceipt: ...


class MqttOutbox:
    """Sends recorded events on MQTT and records their acknowledgements.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The database holding the outbox.
    publisher : MqttPublisher or None
        Connected MQTT client with a running loop; None sends nothing.
    publish_timeout_s : float
        How long :meth:`publish` waits for PUBACKs before leaving the rest for later, s.
    republish_after_s : float
        An unacknowledged event is published again after this long, s.
    clock_us : callable
        Wall clock, µs (when an acknowledgement was seen).
    """

    def __init__(
        self,
        engine: Engine,
        publisher: MqttPublisher | None,
        *,
        publish_timeout_s: float,
        republish_after_s: float,
        clock_us: Callable[[], int],
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._publish_timeout_s = publish_timeout_s
        self._republish_after_us = int(republish_after_s * 1_000_000)
        self._clock_us = clock_us
        self._inflight: dict[str, tuple[PublishReceipt, int]] = {}
        self._last_republish_us = 0

    def republish_due(self, now_us: int) -> int:
        """Record the PUBACKs seen since and publish again what waited too long (at most once
        a second); returns how many events were acknowledged."""
        if now_us - self._last_republish_us < REPUBLISH_CHECK_US:
            return 0
        return self._republish(now_us)

    def publish(self, events: Sequence[OutboundEvent], now_us: int) -> int:
        """Publish the events that have a topic (QoS 1), wait up to the timeout for their
        PUBACKs and record the acknowledged ones; returns how many were acknowledged."""
        sendable = [(e, e.mqtt_topic) for e in events if e.mqtt_topic is not None]
        if self._publisher is None or not sendable:
            return 0
        receipts: list[tuple[str, PublishReceipt]] = []
        for event, topic in sendable:
            receipt = self._publisher.publish(topic, event.body.encode(), qos=1)
            self._inflight[event.event_id] = (receipt, now_us)
            receipts.append((event.event_id, receipt))
        deadline = time.monotonic() + self._publish_timeout_s
        acked: dict[str, int] = {}
        for event_id, receipt in receipts:
            try:
                receipt.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:  # not connected / queue full
                log.warning("alert %s not published yet: %s", event_id, exc)
                continue
            if _acked(receipt):
                acked[event_id] = self._clock_us()
        self._mark_published(acked, {event_id for event_id, _ in receipts})
        return len(acked)

    def _republish(self, now_us: int) -> int:
        """Publish again the recorded events whose PUBACK was never seen."""
        if self._publisher is None:
            return 0
        self._last_republish_us = now_us
        with Session(self._engine) as session:
            rows = session.scalars(
                select(AlertOutboxEvent)
                .where(
                    AlertOutboxEvent.mqtt_topic.is_not(None),
                    AlertOutboxEvent.published_us.is_(None),
                )
                .order_by(AlertOutboxEvent.created_us)
                .limit(500)
            ).all()
            pending = [
                OutboundEvent(
                    r.event_id, AlertType(r.event_type), r.device_id, r.body, r.mqtt_topic
                )
                for r in rows
            ]
        acked: dict[str, int] = {}
        again: list[OutboundEvent] = []
        for event in pending:
            inflight = self._inflight.get(event.event_id)
            if inflight is not None and _acked(inflight[0]):
                acked[event.event_id] = self._clock_us()
            elif inflight is None or now_us - inflight[1] >= self._republish_after_us:
                again.append(event)
        self._mark_published(acked, set())
        return len(acked) + self.publish(again, now_us)

    def _mark_published(self, acked: dict[str, int], attempted: set[str]) -> None:
        if not acked and not attempted:
            return
        with Session(self._engine) as session, session.begin():
            for event_id in attempted:
                session.execute(
                    update(AlertOutboxEvent)
                    .where(AlertOutboxEvent.event_id == event_id)
                    .values(publish_attempts=AlertOutboxEvent.publish_attempts + 1)
                )
            for event_id, published_us in acked.items():
                session.execute(
                    update(AlertOutboxEvent)
                    .where(
                        AlertOutboxEvent.event_id == event_id,
                        AlertOutboxEvent.published_us.is_(None),
                    )
                    .values(published_us=published_us)
                )
                self._inflight.pop(event_id, None)


def _acked(receipt: PublishReceipt) -> bool:
    try:
        return receipt.is_published()
    except (RuntimeError, ValueError):
        return False
