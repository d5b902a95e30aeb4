"""The durable outbox: every outbound event is written once, with its webhook deliveries, in the
same transaction as the state change that caused it; channels send from there afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from alerts.messages import AlertType, stable_id
from alerts.models import AlertDelivery, AlertOutboxEvent
from alerts.preferences import Channel, Preferences, route
from alerts.webhooks import WebhookSubscription


@dataclass(frozen=True)
class OutboundEvent:
    """An event to record: its idempotency key, type, device, JSON body and MQTT topic."""

    event_id: str
    event_type: AlertType
    device_id: str
    body: str
    mqtt_topic: str | None  # None: not sent on MQTT


@dataclass(frozen=True)
class OutboxRecord:
    """A recorded event and its MQTT publication state (µs, wall clock)."""

    event_id: str
    event_type: AlertType
    device_id: str
    body: str
    mqtt_topic: str | None
    created_us: int
    published_us: int | None
    publish_attempts: int


def record_event(
    session: Session,
    event: OutboundEvent,
    subscriptions: Sequence[WebhookSubscription],
    preferences: Mapping[str, Preferences],
    now_us: int,
) -> bool:
    """Add ``event`` and its webhook deliveries to ``session``; False if it was already there.

    Subscriptions that do not want the event type, and recipients whose preferences refuse it
    (channel, type, quiet hours), get no delivery; red flags in quiet hours are held back.
    """
    if session.get(AlertOutboxEvent, event.event_id) is not None:
        return False
    session.add(
        AlertOutboxEvent(
            event_id=event.event_id,
            event_type=str(event.event_type),
            device_id=event.device_id,
            body=event.body,
            mqtt_topic=event.mqtt_topic,
            created_us=now_us,
            published_us=None,
            publish_attempts=0,
        )
    )
    for sub in subscriptions:
        if sub.event_types is not None and event.event_type not in sub.event_types:
            continue
        decision = route(
            preferences.get(sub.recipient_id), event.event_type, Channel.WEBHOOK, now_us
        )
        if not decision.send:
            continue
        delivery_id = stable_id(event.event_id, sub.subscription_id)
        if session.get(AlertDelivery, delivery_id) is not None:
            continue
        session.add(
            AlertDelivery(
                delivery_id=delivery_id,
                event_id=event.event_id,
                event_type=str(event.event_type),
                subscription_id=sub.subscription_id,
                recipient_id=sub.recipient_id,
                device_id=event.device_id,
                url=sub.url,
                status="pending",
                attempts=0,
                next_attempt_us=decision.not_before_us,
                lease_until_us=None,
                created_us=now_us,
            )
        )
    session.flush()
    return True


def to_record(row: AlertOutboxEvent) -> OutboxRecord:
    """The frozen view of an outbox row."""
    return OutboxRecord(
        event_id=row.event_id,
        event_type=AlertType(row.event_type),
        device_id=row.device_id,
        body=row.body,
        mqtt_topic=row.mqtt_topic,
        created_us=row.created_us,
        published_us=row.published_us,
        publish_attempts=row.publish_attempts,
    )
