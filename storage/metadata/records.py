"""Frozen records the metadata repository hands out (no ORM objects leave the package)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    """Who an API key speaks for."""

    WEARER = "wearer"
    CLINICIAN = "clinician"
    ADMIN = "admin"


@dataclass(frozen=True)
class WearerRecord:
    """A person who wears a device; ``time_zone`` is an IANA name such as ``Europe/Paris``."""

    wearer_id: str
    name: str
    time_zone: str
    created_at: datetime


@dataclass(frozen=True)
class ClinicianRecord:
    """A clinician who may be granted access to wearers."""

    clinician_id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class DeviceRecord:
    """A wearable, owned by exactly one wearer.

    ``site`` is the sensor site (``left_calf``); ``mvc_uv`` the calibrated maximum voluntary
    contraction EMG amplitude in µV when known; ``time_zone`` is the owner's IANA zone.
    """

    device_id: str
    owner_id: str
    site: str
    mvc_uv: float | None
    time_zone: str
    created_at: datetime


@dataclass(frozen=True)
class GrantRecord:
    """A clinician's access to one wearer; active while ``revoked_at`` is None."""

    grant_id: str
    clinician_id: str
    wearer_id: str
    granted_by: Role
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key without its secret (only a hash is stored)."""

    key_id: str
    name: str
    role: Role
    wearer_id: str | None
    clinician_id: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class IssuedKey:
    """A new key: ``token`` is shown once and never stored."""

    record: ApiKeyRecord
    token: str


@dataclass(frozen=True)
class Principal:
    """The authenticated caller behind a bearer token."""

    key_id: str
    role: Role
    wearer_id: str | None
    clinician_id: str | None


@dataclass(frozen=True)
class WebhookRecord:
    """A signed-webhook subscription, owned by a wearer or a clinician.

    ``device_id`` None means every device the owner may see.
    """

    webhook_id: str
    url: str
    secret: str
    owner_role: Role
    owner_id: str
    device_id: str | None
    created_at: datetime
