"""SQLAlchemy 2 table mappings of the metadata DB (private to :mod:`storage.metadata`)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Index,
    String,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID_LENGTH = 64
NAME_LENGTH = 200


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; metadata times must be timezone-aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Wearer(Base):
    __tablename__ = "wearers"

    wearer_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Clinician(Base):
    __tablename__ = "clinicians"

    clinician_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Device(Base):
    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    owner_id: Mapped[str] = mapped_column(
        ForeignKey("wearers.wearer_id", ondelete="CASCADE"), index=True
    )
    site: Mapped[str] = mapped_column(String(64))
    mvc_uv: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Grant(Base):
    __tablename__ = "grants"
    __table_args__ = (Index("ix_grants_pair", "clinician_id", "wearer_id"),)

    grant_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    clinician_id: Mapped[str] = mapped_column(
        ForeignKey("clinicians.clinician_id", ondelete="CASCADE")
    )
    wearer_id: Mapped[str] = mapped_column(
        ForeignKey("wearers.wearer_id", ondelete="CASCADE"), index=True
    )
    granted_by: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    role: Mapped[str] = mapped_column(String(16))
    wearer_id: Mapped[str | None] = mapped_column(
        ForeignKey("wearers.wearer_id", ondelete="CASCADE"), nullable=True
    )
    clinician_id: Mapped[str | None] = mapped_column(
        ForeignKey("clinicians.clinician_id", ondelete="CASCADE"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Webhook(Base):
    __tablename__ = "webhooks"

    webhook_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(256))
    owner_role: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    device_id: Mapped[str | None] = mapped_column(
        ForeignKey("devices.device_id", ondelete="CASCADE"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
