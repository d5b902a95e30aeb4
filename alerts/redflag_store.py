"""Stored red flags: raised once, linked to their nights, sent once, cleared when the rule stops.

A flag of a (device, rule) stays ``active`` while evaluations of later nights keep firing the
rule (its nights are merged in, nothing is sent again); the first evaluation that does not fire
clears it, and a later firing raises a new flag (sent again). Raising writes a
``redflag.raised`` event to the outbox with its webhook deliveries in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from alerts.live import wall_clock_us
from alerts.messages import AlertType, RedFlagAlert, stable_id
from alerts.models import AlertRedFlag, create_alert_tables
from alerts.outbox import OutboundEvent, record_event
from alerts.preferences import load_preferences
from alerts.redflags import RedFlagFinding, RedFlagRule, RedFlagRules, evaluate_red_flags
from alerts.webhooks import WebhookDirectory, subscriptions_for
from storage.base import NightSummary, Store


@dataclass(frozen=True)
class StoredRedFlag:
    """A red flag as the clinician sees it (times: wall-clock µs)."""

    flag_id: str
    device_id: str
    rule: RedFlagRule
    state: str  # active | cleared
    raised_night: str
    last_night: str
    nights: tuple[str, ...]
    summary: str
    detail: dict[str, Any]
    raised_us: int
    cleared_us: int | None
    event_id: str


class RedFlagStore:
    """Evaluate, keep and send red flags.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        Database for the ``alert_*`` tables.
    directory : WebhookDirectory or None
        Webhook subscriptions per device (clinicians); None sends nothing.
    rules : RedFlagRules or None
        Thresholds; defaults when None.
    clock_us : callable
        Wall clock, µs.
    on_webhook_work : callable or None
        Called after new deliveries were committed (e.g. ``WebhookDispatcher.wake``).
    """

    def __init__(
        self,
        engine: Engine,
        directory: WebhookDirectory | None = None,
        *,
        rules: RedFlagRules | None = None,
        clock_us: Callable[[], int] = wall_clock_us,
        on_webhook_work: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._directory = directory
        self.rules = rules or RedFlagRules()
        self._clock_us = clock_us
        self._on_webhook_work = on_webhook_work
        create_alert_tables(engine)

    def evaluate(
        self, device_id: str, nights: Sequence[NightSummary], as_of_night: str
    ) -> list[StoredRedFlag]:
        """Run the rules for ``as_of_night`` and record the result; return newly raised flags."""
        findings = evaluate_red_flags(
            [n for n in nights if n.device_id == device_id], as_of_night, self.rules
        )
        return self.record(device_id, as_of_night, findings)

    def evaluate_from_store(
        self, store: Store, device_id: str, as_of_night: str, utc_offset_s: int = 0
    ) -> list[StoredRedFlag]:
        """:meth:`evaluate` on the night summaries ``store`` holds for the rules' windows."""
        as_of = date.fromisoformat(as_of_night)
        days = max(self.rules.trend_days, 7)
        first = datetime.combine(as_of - timedelta(days=days - 1), time(0), tzinfo=UTC)
        end = datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=UTC)
        start_us = int(first.timestamp() * 1_000_000) - utc_offset_s * 1_000_000
        end_us = int(end.timestamp() * 1_000_000) - utc_offset_s * 1_000_000
        nights = store.night_summaries([device_id], start_us, end_us, utc_offset_s)
        return self.evaluate(device_id, nights, as_of_night)

    def record(
        self, device_id: str, as_of_night: str, findings: Sequence[RedFlagFinding]
    ) -> list[StoredRedFlag]:
        """Raise, extend or clear the device's flags for one evaluated night."""
        now_us = self._clock_us()
        firing = {f.rule: f for f in findings}
        raised: list[StoredRedFlag] = []
        webhooks = False
        subscriptions = (
            subscriptions_for(self._directory, device_id) if self._directory is not None else []
        )
        with Session(self._engine) as session, session.begin():
            active = {
                RedFlagRule(row.rule): row
                for row in session.scalars(
                    select(AlertRedFlag).where(
                        AlertRedFlag.device_id == device_id, AlertRedFlag.state == "active"
                    )
                )
            }
            for rule in RedFlagRule:
                finding = firing.get(rule)
                row = active.get(rule)
                if row is not None and as_of_night < row.last_night:
                    continue  # an older night re-evaluated: the newer verdict stands
                if finding is None:
                    if row is not None:
                        row.state = "cleared"
                        row.cleared_us = now_us
                    continue
                if row is not None:
                    row.nights = sorted(set(row.nights) | set(finding.nights))
                    row.last_night = as_of_night
                    row.detail = finding.detail
                    row.summary = finding.summary
                    continue
                flag_id = stable_id("redflag", device_id, str(rule), as_of_night)
                if session.get(AlertRedFlag, flag_id) is not None:
                    continue  # raised for this night before, then cleared: not again
                event_id = stable_id(flag_id, str(AlertType.REDFLAG_RAISED))
                row = AlertRedFlag(
                    flag_id=flag_id,
                    device_id=device_id,
                    rule=str(rule),
                    state="active",
                    raised_night=as_of_night,
                    last_night=as_of_night,
                    nights=sorted(finding.nights),
                    detail=finding.detail,
                    summary=finding.summary,
                    raised_us=now_us,
                    cleared_us=None,
                    event_id=event_id,
                )
                session.add(row)
                message = RedFlagAlert(
                    event_id=event_id,
                    flag_id=flag_id,
                    device_id=device_id,
                    rule=str(rule),
                    nights=tuple(sorted(finding.nights)),
                    summary=finding.summary,
                    detail=finding.detail,
                    emitted_us=now_us,
                )
                prefs = load_preferences(session, sorted({s.recipient_id for s in subscriptions}))
                event = OutboundEvent(
                    event_id, AlertType.REDFLAG_RAISED, device_id, message.to_json(), None
                )
                record_event(session, event, subscriptions, prefs, now_us)
                webhooks = webhooks or bool(subscriptions)
                session.flush()
                raised.append(_stored(row))
        if webhooks and self._on_webhook_work is not None:
            self._on_webhook_work()
        return raised

    def flags(
        self,
        device_ids: Sequence[str] | None = None,
        *,
        active_only: bool = False,
        limit: int = 500,
    ) -> list[StoredRedFlag]:
        """Stored flags, newest first, with the nights that triggered them."""
        query = select(AlertRedFlag).order_by(AlertRedFlag.raised_us.desc(), AlertRedFlag.flag_id)
        if device_ids is not None:
            query = query.where(AlertRedFlag.device_id.in_(list(device_ids)))
        if active_only:
            query = query.where(AlertRedFlag.state == "active")
        with Session(self._engine) as session:
            return [_stored(row) for row in session.scalars(query.limit(limit))]


def _stored(row: AlertRedFlag) -> StoredRedFlag:
    return StoredRedFlag(
        flag_id=row.flag_id,
        device_id=row.device_id,
        rule=RedFlagRule(row.rule),
        state=row.state,
        raised_night=row.raised_night,
        last_night=row.last_night,
        nights=tuple(row.nights),
        summary=row.summary,
        detail=dict(row.detail),
        raised_us=row.raised_us,
        cleared_us=row.cleared_us,
        event_id=row.event_id,
    )
