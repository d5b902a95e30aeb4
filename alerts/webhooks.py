"""Signed webhook delivery from the durable outbox, with retries, backoff and a dead-letter list.

Each pending row of ``alert_deliveries`` is POSTed (JSON body = the alert document) with the
headers ``CrampWatch-Signature`` (see :mod:`alerts.signing`), ``Idempotency-Key`` (the event id),
``CrampWatch-Event`` and ``CrampWatch-Delivery``. A 2xx answer delivers it. A transport error,
408, 425, 429 or 5xx is retried after an exponential backoff with equal jitter
(``d = min(max, base·2^(n-1))``, wait uniform in ``[d/2, d]``; ``Retry-After`` is honoured up to
``max``); any other answer, or the last allowed attempt failing, moves it to the dead-letter list.
Rows are claimed with a lease, so several dispatchers on one database never send a row twice at
once; a dispatcher killed after the receiver answered but before the row was marked re-sends it
with the same ``Idempotency-Key``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import urlsplit

import httpx
import numpy as np
from sqlalchemy import Engine, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from alerts.messages import AlertType
from alerts.models import AlertDelivery, AlertOutboxEvent, create_alert_tables
from alerts.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)
from storage.metadata import WebhookRecord

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_RETRY_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class WebhookSubscription:
    """A recipient's webhook endpoint for a device's events.

    Attributes
    ----------
    subscription_id, recipient_id : str
    url : str
        ``https://`` endpoint (``http://`` only for loopback hosts).
    secret : str
        HMAC key shared with the receiver (never shown in ``repr``).
    event_types : frozenset of AlertType or None
        Events this endpoint wants; None means all.
    """

    subscription_id: str
    recipient_id: str
    url: str
    secret: str = field(repr=False)
    event_types: frozenset[AlertType] | None = None


class WebhookDirectory(Protocol):
    """Where subscriptions come from.

    :class:`storage.metadata.MetadataDB` fits as it is (its ``WebhookRecord`` rows are read as
    subscriptions for every event type, recipient = the webhook's owner).
    """

    def webhooks_for_device(
        self, device_id: str
    ) -> Sequence[WebhookSubscription] | Sequence[WebhookRecord]:
        """Every webhook subscription that should hear about ``device_id``."""
        ...


def subscriptions_for(directory: WebhookDirectory, device_id: str) -> list[WebhookSubscription]:
    """The directory's subscriptions for ``device_id``, as :class:`WebhookSubscription`."""
    subscriptions: list[WebhookSubscription] = []
    for item in directory.webhooks_for_device(device_id):
        if isinstance(item, WebhookSubscription):
            subscriptions.append(item)
        else:
            subscriptions.append(
                WebhookSubscription(
                    subscription_id=item.webhook_id,
                    recipient_id=item.owner_id,
                    url=item.url,
                    secret=item.secret,
                )
            )
    return subscriptions


@dataclass(frozen=True)
class DeliveryRecord:
    """One webhook delivery as the API shows it (times: wall-clock µs)."""

    delivery_id: str
    event_id: str
    event_type: AlertType
    subscription_id: str
    recipient_id: str
    device_id: str
    url: str
    status: str  # pending | delivered | dead
    attempts: int
    next_attempt_us: int
    last_error: str | None
    last_status_code: int | None
    created_us: int
    finished_us: int | None


def backoff_delay_s(attempt: int, base_s: float, max_s: float, rng: np.random.Generator) -> float:
    """Wait before retry number ``attempt`` (1 = after the first failure), s, equal jitter."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    ceiling = min(max_s, base_s * 2.0 ** min(attempt - 1, 60))
    return float(ceiling / 2.0 + rng.uniform(0.0, ceiling / 2.0))


def url_problem(url: str, allow_http_hosts: frozenset[str] = LOOPBACK_HOSTS) -> str | None:
    """Why ``url`` may not receive webhooks, or None when it may."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in allow_http_hosts:
        return None
    return f"webhook URL {url!r} must be https:// (http:// only for {sorted(allow_http_hosts)})"


class DeliveryLog:
    """Read and requeue webhook deliveries (what the API shows as the dead-letter list)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        create_alert_tables(engine)

    def deliveries(
        self,
        *,
        device_ids: Sequence[str] | None = None,
        subscription_ids: Sequence[str] | None = None,
        status: str | None = None,
        since_us: int | None = None,
        limit: int = 100,
    ) -> list[DeliveryRecord]:
        """Deliveries, newest first, optionally by device, subscription (webhook id), status
        and creation time; an empty id list matches nothing."""
        query = select(AlertDelivery).order_by(
            AlertDelivery.created_us.desc(), AlertDelivery.delivery_id
        )
        if device_ids is not None:
            query = query.where(AlertDelivery.device_id.in_(list(device_ids)))
        if subscription_ids is not None:
            query = query.where(AlertDelivery.subscription_id.in_(list(subscription_ids)))
        if status is not None:
            query = query.where(AlertDelivery.status == status)
        if since_us is not None:
            query = query.where(AlertDelivery.created_us >= since_us)
        with Session(self._engine) as session:
            return [_record(row) for row in session.scalars(query.limit(limit))]

    def delivery(self, delivery_id: str) -> DeliveryRecord | None:
        """One delivery by id, or None."""
        with Session(self._engine) as session:
            row = session.get(AlertDelivery, delivery_id)
            return None if row is None else _record(row)

    def dead_letters(
        self,
        *,
        device_ids: Sequence[str] | None = None,
        since_us: int | None = None,
        limit: int = 100,
    ) -> list[DeliveryRecord]:
        """Deliveries that finally failed, newest first."""
        return self.deliveries(device_ids=device_ids, status="dead", since_us=since_us, limit=limit)

    def requeue(self, delivery_id: str, now_us: int) -> bool:
        """Put a dead delivery back in the queue with a fresh attempt budget."""
        with Session(self._engine) as session, session.begin():
            result = session.execute(
                update(AlertDelivery)
                .where(AlertDelivery.delivery_id == delivery_id, AlertDelivery.status == "dead")
                .values(status="pending", attempts=0, next_attempt_us=now_us, finished_us=None)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Outcome:
    status: str  # delivered | retry | dead
    error: str | None
    status_code: int | None
    retry_after_s: float | None = None


class WebhookDispatcher:
    """Delivers pending webhook rows; run :meth:`deliver_due` yourself or :meth:`start` a thread.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        Database holding the ``alert_*`` tables.
    directory : WebhookDirectory
        Looks up each subscription's current secret (a removed subscription is dead-lettered).
    http : httpx.Client
        Client used for the POSTs (the caller owns and closes it).
    rng : numpy.random.Generator
        Source of the backoff jitter.
    clock_s : callable
        Current Unix time, s (wall clock by default; tests inject a simulated one).
    sleep : callable or None
        ``sleep(seconds)`` used by the thread between passes; None waits on an event that
        :meth:`wake` and :meth:`stop` interrupt.
    max_attempts : int
        Attempts before a delivery is dead-lettered.
    backoff_base_s, backoff_max_s : float
        Backoff of the first retry and the cap, s.
    timeout_s : float
        Per-attempt HTTP timeout, s.
    """

    def __init__(
        self,
        engine: Engine,
        directory: WebhookDirectory,
        *,
        http: httpx.Client,
        rng: np.random.Generator,
        clock_s: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        max_attempts: int = 8,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 600.0,
        timeout_s: float = 5.0,
        batch_size: int = 20,
        allow_http_hosts: frozenset[str] = LOOPBACK_HOSTS,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if not 0 < backoff_base_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_base_s <= backoff_max_s")
        self._engine = engine
        self._directory = directory
        self._http = http
        self._rng = rng
        self._clock_s = clock_s
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._base_s = backoff_base_s
        self._max_s = backoff_max_s
        self._timeout_s = timeout_s
        self._batch_size = batch_size
        self._allow_http_hosts = allow_http_hosts
        self._lease_us = int((timeout_s * 2 + 30) * 1_000_000)
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner = uuid.uuid4().hex[:8]
        create_alert_tables(engine)

    def _now_us(self) -> int:
        return int(self._clock_s() * 1_000_000)

    def deliver_due(self) -> int:
        """Attempt every delivery that is due now (up to the batch size); return attempts made."""
        now_us = self._now_us()
        with Session(self._engine) as session:
            due = session.scalars(
                select(AlertDelivery.delivery_id)
                .where(
                    AlertDelivery.status == "pending",
                    AlertDelivery.next_attempt_us <= now_us,
                    or_(
                        AlertDelivery.lease_until_us.is_(None),
                        AlertDelivery.lease_until_us < now_us,
                    ),
                )
                .order_by(AlertDelivery.next_attempt_us)
                .limit(self._batch_size)
            ).all()
        secrets: dict[str, dict[str, WebhookSubscription]] = {}
        attempts = 0
        for delivery_id in due:
            row = self._claim(delivery_id, now_us)
            if row is None:
                continue
            if row.device_id not in secrets:
                subs = subscriptions_for(self._directory, row.device_id)
                secrets[row.device_id] = {s.subscription_id: s for s in subs}
            subscription = secrets[row.device_id].get(row.subscription_id)
            outcome = self._attempt(row, subscription)
            attempts += 1
            self._finish(row, outcome)
        return attempts

    def next_due_s(self) -> float | None:
        """Unix time (s) of the earliest pending attempt, or None when nothing is pending."""
        with Session(self._engine) as session:
            earliest = session.scalar(
                select(AlertDelivery.next_attempt_us)
                .where(AlertDelivery.status == "pending")
                .order_by(AlertDelivery.next_attempt_us)
                .limit(1)
            )
        return None if earliest is None else earliest / 1_000_000

    def run(self, idle_s: float = 1.0) -> None:
        """Deliver until :meth:`stop`: a pass, then wait until the next due attempt (<= idle_s)."""
        while not self._stopping.is_set():
            try:
                self.deliver_due()
                next_due = self.next_due_s()
            except SQLAlchemyError:  # the thread must outlive a database hiccup
                log.exception("webhook delivery pass failed; retrying in %.1f s", idle_s)
                next_due = None
            wait_s = idle_s if next_due is None else min(idle_s, next_due - self._clock_s())
            if wait_s > 0 and not self._stopping.is_set():
                if self._sleep is not None:
                    self._sleep(wait_s)
                else:
                    self._wakeup.wait(wait_s)
                    self._wakeup.clear()

    def start(self, idle_s: float = 1.0) -> None:
        """Run :meth:`run` in a daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self.run, args=(idle_s,), name="webhook-dispatcher", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        """New deliveries were queued: start the next pass now."""
        self._wakeup.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after the attempt in progress."""
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _claim(self, delivery_id: str, now_us: int) -> AlertDelivery | None:
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            result = session.execute(
                update(AlertDelivery)
                .where(
                    AlertDelivery.delivery_id == delivery_id,
                    AlertDelivery.status == "pending",
                    or_(
                        AlertDelivery.lease_until_us.is_(None),
                        AlertDelivery.lease_until_us < now_us,
                    ),
                )
                .values(lease_until_us=now_us + self._lease_us)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return None  # another dispatcher holds it
            return session.get(AlertDelivery, delivery_id)

    def _attempt(self, row: AlertDelivery, sub: WebhookSubscription | None) -> _Outcome:
        if sub is None:
            return _Outcome("dead", "subscription_removed: the subscription no longer exists", None)
        problem = url_problem(sub.url, self._allow_http_hosts)
        if problem is not None:
            return _Outcome("dead", f"insecure_url: {problem}", None)
        with Session(self._engine) as session:
            event = session.get(AlertOutboxEvent, row.event_id)
            if event is None:
                return _Outcome("dead", "missing_event: the outbox event is gone", None)
            body = event.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "CrampWatch-Webhooks/1",
            SIGNATURE_HEADER: signature_header(sub.secret, body, int(self._clock_s())),
            IDEMPOTENCY_HEADER: row.event_id,
            EVENT_HEADER: row.event_type,
            DELIVERY_HEADER: row.delivery_id,
        }
        try:
            response = self._http.post(
                sub.url, content=body, headers=headers, timeout=self._timeout_s
            )
        except httpx.InvalidURL as exc:
            return _Outcome("dead", f"invalid_url: {exc}", None)
        except httpx.HTTPError as exc:
            return _Outcome("retry", f"transport: {type(exc).__name__}: {exc}"[:500], None)
        code = response.status_code
        if 200 <= code < 300:
            return _Outcome("delivered", None, code)
        error = f"http_{code}: {response.text[:200]}"
        if code in _RETRY_STATUS or code >= 500:
            return _Outcome("retry", error, code, _retry_after_s(response, self._clock_s()))
        return _Outcome("dead", error, code)

    def _finish(self, row: AlertDelivery, outcome: _Outcome) -> None:
        now_us = self._now_us()
        attempts = row.attempts + 1
        status = outcome.status
        next_us = row.next_attempt_us
        if status == "retry":
            if attempts >= self._max_attempts:
                status = "dead"
            else:
                status = "pending"
                delay_s = backoff_delay_s(attempts, self._base_s, self._max_s, self._rng)
                if outcome.retry_after_s is not None:
                    delay_s = max(delay_s, min(outcome.retry_after_s, self._max_s))
                next_us = now_us + int(delay_s * 1_000_000)
        with Session(self._engine) as session, session.begin():
            session.execute(
                update(AlertDelivery)
                .where(AlertDelivery.delivery_id == row.delivery_id)
                .values(
                    status=status,
                    attempts=attempts,
                    next_attempt_us=next_us,
                    lease_until_us=None,
                    last_error=outcome.error,
                    last_status_code=outcome.status_code,
                    finished_us=None if status == "pending" else now_us,
                )
            )
        if status == "dead":
            log.warning("webhook delivery %s dead-lettered: %s", row.delivery_id, outcome.error)


def _retry_after_s(response: httpx.Response, now_s: float) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now_s)
    except (TypeError, ValueError):
        return None


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
