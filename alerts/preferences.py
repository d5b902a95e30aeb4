"""Per-recipient alert preferences: which events, which channels, quiet hours in local time.

Quiet hours are wall-clock times in the recipient's IANA time zone and may cross midnight
(``22:00``-``07:00``); DST changes are handled by :mod:`zoneinfo`. During quiet hours live
``cramp.*`` events are not sent (a late "cramp now" is noise) while ``redflag.*`` events are
held back until the quiet hours end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from alerts.messages import AlertType
from alerts.models import AlertPreference, create_alert_tables


class Channel(StrEnum):
    """Where an event goes."""

    MQTT = "mqtt"  # the device's live alert topic (the wearer's app)
    WEBHOOK = "webhook"  # the recipient's signed webhooks


class PreferenceError(ValueError):
    """Preferences that cannot be honoured (unknown time zone, bad quiet hours)."""


@dataclass(frozen=True)
class Preferences:
    """What one recipient (wearer, carer or clinician) wants to receive.

    Attributes
    ----------
    recipient_id : str
    time_zone : str
        IANA zone name of the recipient, e.g. ``Europe/Berlin``.
    quiet_start, quiet_end : datetime.time or None
        Local start (inclusive) and end (exclusive) of quiet hours; both or neither.
    event_types : frozenset of AlertType or None
        Events wanted; None means all.
    channels : frozenset of Channel
        Channels wanted.
    """

    recipient_id: str
    time_zone: str = "UTC"
    quiet_start: time | None = None
    quiet_end: time | None = None
    event_types: frozenset[AlertType] | None = None
    channels: frozenset[Channel] = field(default_factory=lambda: frozenset(Channel))

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PreferenceError(f"unknown time zone {self.time_zone!r}") from None
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise PreferenceError("quiet hours need both a start and an end")
        if self.quiet_start is not None and self.quiet_start == self.quiet_end:
            raise PreferenceError("quiet hours start and end must differ")

    def in_quiet_hours(self, at_us: int) -> bool:
        """Whether the UTC instant ``at_us`` (µs) falls in the recipient's quiet hours."""
        if self.quiet_start is None or self.quiet_end is None:
            return False
        local = _local(at_us, self.time_zone).time()
        if self.quiet_start < self.quiet_end:
            return self.quiet_start <= local < self.quiet_end
        return local >= self.quiet_start or local < self.quiet_end

    def quiet_hours_end_us(self, at_us: int) -> int:
        """The first UTC instant (µs) after ``at_us`` at which quiet hours end."""
        if self.quiet_end is None:
            return at_us
        zone = ZoneInfo(self.time_zone)
        local = _local(at_us, self.time_zone)
        day = local.date()
        for _ in range(3):
            end = datetime.combine(day, self.quiet_end, tzinfo=zone)
            end_us = int(end.astimezone(UTC).timestamp() * 1_000_000)
            if end_us > at_us:
                return end_us
            day += timedelta(days=1)
        raise PreferenceError("quiet hours end could not be placed")  # unreachable for real zones


@dataclass(frozen=True)
class Route:
    """Whether and from when an event may be sent to a recipient on a channel."""

    send: bool
    not_before_us: int
    reason: str = ""


def route(prefs: Preferences | None, event_type: AlertType, channel: Channel, at_us: int) -> Route:
    """Apply a recipient's preferences to one event created at ``at_us`` (UTC µs)."""
    if prefs is None:
        return Route(True, at_us)
    if channel not in prefs.channels:
        return Route(False, at_us, f"channel {channel} not wanted")
    if prefs.event_types is not None and event_type not in prefs.event_types:
        return Route(False, at_us, f"event {event_type} not wanted")
    if prefs.in_quiet_hours(at_us):
        if event_type is AlertType.REDFLAG_RAISED:
            return Route(True, prefs.quiet_hours_end_us(at_us), "held until quiet hours end")
        return Route(False, at_us, "quiet hours")
    return Route(True, at_us)


class PreferenceStore:
    """Preferences kept in the ``alert_preferences`` table of ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        create_alert_tables(engine)

    def put(self, prefs: Preferences) -> None:
        """Create or replace a recipient's preferences."""
        with Session(self._engine) as session, session.begin():
            session.merge(
                AlertPreference(
                    recipient_id=prefs.recipient_id,
                    time_zone=prefs.time_zone,
                    quiet_start=_hhmm(prefs.quiet_start),
                    quiet_end=_hhmm(prefs.quiet_end),
                    event_types=None
                    if prefs.event_types is None
                    else sorted(str(t) for t in prefs.event_types),
                    channels=sorted(str(c) for c in prefs.channels),
                )
            )

    def get(self, recipient_id: str) -> Preferences | None:
        """A recipient's preferences, or None (then everything is sent)."""
        return self.get_many([recipient_id]).get(recipient_id)

    def get_many(self, recipient_ids: list[str]) -> dict[str, Preferences]:
        """Preferences of the given recipients that have any."""
        with Session(self._engine) as session:
            return load_preferences(session, recipient_ids)

    def delete(self, recipient_id: str) -> bool:
        """Remove a recipient's preferences; True when there were any."""
        with Session(self._engine) as session, session.begin():
            row = session.get(AlertPreference, recipient_id)
            if row is None:
                return False
            session.delete(row)
            return True


def load_preferences(session: Session, recipient_ids: list[str]) -> dict[str, Preferences]:
    """Preferences of the given recipients that have any, read in ``session``."""
    if not recipient_ids:
        return {}
    rows = session.scalars(
        select(AlertPreference).where(AlertPreference.recipient_id.in_(recipient_ids))
    ).all()
    return {row.recipient_id: _from_row(row) for row in rows}


def _from_row(row: AlertPreference) -> Preferences:
    return Preferences(
        recipient_id=row.recipient_id,
        time_zone=row.time_zone,
        quiet_start=None if row.quiet_start is None else time.fromisoformat(row.quiet_start),
        quiet_end=None if row.quiet_end is None else time.fromisoformat(row.quiet_end),
        event_types=None
        if row.event_types is None
        else frozenset(AlertType(t) for t in row.event_types),
        channels=frozenset(Channel(c) for c in row.channels),
    )


def _hhmm(value: time | None) -> str | None:
    return None if value is None else value.strftime("%H:%M")


def _local(at_us: int, time_zone: str) -> datetime:
    return datetime.fromtimestamp(at_us / 1_000_000, tz=UTC).astimezone(ZoneInfo(time_zone))
