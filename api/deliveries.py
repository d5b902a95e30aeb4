"""Webhook deliveries by subscription and by id (what :class:`alerts.webhooks.DeliveryLog`
lists by device), read from the ``alert_deliveries`` table on the metadata engine."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from alerts.messages import AlertType
from alerts.models import AlertDelivery
from alerts.webhooks import DeliveryRecord


def deliveries_of_webhooks(
    engine: Engine,
    webhook_ids: Sequence[str],
    *,
    status: str | None = None,
    since_us: int | None = None,
    limit: int = 100,
) -> list[DeliveryRecord]:
    """Deliveries to the given webhooks, newest first.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        Database holding the ``alert_*`` tables.
    webhook_ids : sequence of str
        Subscriptions (webhook ids) whose deliveries are wanted; empty gives nothing.
    status : str, optional
        ``pending``, ``delivered`` or ``dead``.
    since_us : int, optional
        Only deliveries created at or after this wall-clock time, µs since the epoch.
    limit : int
        Most rows returned.
    """
    if not webhook_ids:
        return []
    query = (
        select(AlertDelivery)
        .where(AlertDelivery.subscription_id.in_(list(webhook_ids)))
        .order_by(AlertDelivery.created_us.desc(), AlertDelivery.delivery_id)
    )
    if status is not None:
        query = query.where(AlertDelivery.status == status)
    if since_us is not None:
        query = query.where(AlertDelivery.created_us >= since_us)
    with Session(engine) as session:
        return [_record(row) for row in session.scalars(query.limit(limit))]


def delivery(engine: Engine, delivery_id: str) -> DeliveryRecord | None:
    """One delivery by id, or None."""
    with Session(engine) as session:
        row = session.get(AlertDelivery, delivery_id)
        return None if row is None else _record(row)


def _record(row: AlertDelivery) -> DeliveryRecord:
    return DeliveryRecord(
        delivery_id=row.delivery_id,
        event_id=row.event_id,
        event_type=AlertType(row.event_type),
        subscription_id=row.subscription_id,
        recipient_id=row.recipient_id,
        device_id=row.device_id,
        url=row.url,
        status=row.status,
        attempts=row.attempts,
        next_attempt_us=row.next_attempt_us,
        last_error=row.last_error,
        last_status_code=row.last_status_code,
        created_us=row.created_us,
        finished_us=row.finished_us,
    )
