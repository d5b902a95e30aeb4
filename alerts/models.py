"""Durable alert state: lifecycles, the outbound event log, webhook deliveries, red flags, prefs.

The tables live in their own :class:`AlertBase` metadata (every name starts with ``alert_``) so
they can share the metadata database's engine without touching its schema. All times are integer
µs since the Unix epoch (UTC); ``*_device_us`` columns are on the device clock, the others on the
clock of the process that wrote them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Engine, Float, Index, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class AlertBase(DeclarativeBase):
    """Declarative base of the alert tables (own :class:`MetaData`)."""

    metadata = MetaData()


class AlertLifecycle(AlertBase):
    """One live alert: open at the first confirmed episode, resolved after the merge gap."""

    __tablename__ = "alert_lifecycles"

    alert_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128))
    site: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # open | paused | closing | resolved
    first_episode_id: Mapped[str] = mapped_column(String(256))
    active_episode_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    active_onset_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # device
    active_seen_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # device
    onset_device_us: Mapped[int] = mapped_column(BigInteger)
    confirmed_device_us: Mapped[int] = mapped_column(BigInteger)
    offset_device_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    active_s: Mapped[float] = mapped_column(Float, default=0.0)  # sum over closed episodes
    open_episode_s: Mapped[float] = mapped_column(Float, default=0.0)  # the active one so far
    peak_intensity: Mapped[float] = mapped_column(Float)
    intensity_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # Σ mean × duration
    peak_mvc_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    confidence: Mapped[float] = mapped_column(Float)
    episode_count: Mapped[int] = mapped_column(Integer, default=1)
    paused_at_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # arrival clock
    # (for ``closing``: when a new cramp started while this one's end was still unreported)
    created_us: Mapped[int] = mapped_column(BigInteger)
    resolved_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (Index("ix_alert_lifecycles_device_state", "device_id", "site", "state"),)


class AlertEpisodeLink(AlertBase):
    """Which lifecycle a detector episode belongs to (the idempotency record for replays)."""

    __tablename__ = "alert_episode_links"

    episode_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(64), index=True)
    ended: Mapped[bool] = mapped_column(Boolean, default=False)


class AlertOutboxEvent(AlertBase):
    """Every outbound event, once; ``event_id`` is its idempotency key on every channel."""

    __tablename__ = "alert_outbox"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[str] = mapped_column(String(128), index=True)
    body: Mapped[str] = mapped_column(String)  # the JSON document sent on every channel
    mqtt_topic: Mapped[str | None] = mapped_column(String(256), nullable=True)  # None: no MQTT
    created_us: Mapped[int] = mapped_column(BigInteger)
    published_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # PUBACK seen
    publish_attempts: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_alert_outbox_unpublished", "mqtt_topic", "published_us"),)


class AlertDelivery(AlertBase):
    """One webhook delivery of one outbound event to one subscription."""

    __tablename__ = "alert_deliveries"

    delivery_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    event_type: Mapped[str] = mapped_column(String(32))
    subscription_id: Mapped[str] = mapped_column(String(128))
    recipient_id: Mapped[str] = mapped_column(String(128))
    device_id: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_us: Mapped[int] = mapped_column(BigInteger)
    lease_until_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(512), nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_us: Mapped[int] = mapped_column(BigInteger)
    finished_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (Index("ix_alert_deliveries_due", "status", "next_attempt_us"),)


class AlertRedFlag(AlertBase):
    """A red flag raised for a device; active while its rule keeps firing, sent once."""

    __tablename__ = "alert_redflags"

    flag_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128))
    rule: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))  # active | cleared
    raised_night: Mapped[str] = mapped_column(String(10))
    last_night: Mapped[str] = mapped_column(String(10))
    nights: Mapped[list[str]] = mapped_column(JSON)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[str] = mapped_column(String(512))
    raised_us: Mapped[int] = mapped_column(BigInteger)
    cleared_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    event_id: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_alert_redflags_device_rule", "device_id", "rule", "state"),)


class AlertPreference(AlertBase):
    """A recipient's alert preferences (see :class:`alerts.preferences.Preferences`)."""

    __tablename__ = "alert_preferences"

    recipient_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    time_zone: Mapped[str] = mapped_column(String(64))
    quiet_start: Mapped[str | None] = mapped_column(String(5), nullable=True)  # "HH:MM"
    quiet_end: Mapped[str | None] = mapped_column(String(5), nullable=True)
    event_types: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # None: all
    channels: Mapped[list[str]] = mapped_column(JSON)


def create_alert_tables(engine: Engine) -> None:
    """Create the ``alert_*`` tables that do not exist yet (idempotent)."""
    AlertBase.metadata.create_all(engine, checkfirst=True)
