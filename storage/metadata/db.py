"""The metadata repository: one class, SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import create_engine, event, or_, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from storage.metadata.errors import Conflict, MetadataError, NotFound
from storage.metadata.models import (
    ApiKey,
    Base,
    Clinician,
    Device,
    Grant,
    Wearer,
    Webhook,
)
from storage.metadata.records import (
    ApiKeyRecord,
    ClinicianRecord,
    DeviceRecord,
    GrantRecord,
    IssuedKey,
    Principal,
    Role,
    WearerRecord,
    WebhookRecord,
)

TOKEN_PREFIX = "cw"


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_time_zone(name: str) -> str:
    """Return ``name`` if it is a known IANA time zone, else raise ValueError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name like Europe/Paris"
        ) from None
    return name


class MetadataDB:
    """Wearers, devices, clinicians, grants, API keys and webhooks.

    Parameters
    ----------
    url : str
        SQLAlchemy URL: ``sqlite:///path.db``, ``sqlite://`` (in memory) or
        ``postgresql+psycopg://user@host/db``. Tables are created when missing.
    clock : callable, optional
        Returns the current timezone-aware UTC time (tests pass their own).
    """

    def __init__(self, url: str, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self.engine = self._make_engine(url)
        try:
            Base.metadata.create_all(self.engine)
        except OperationalError as exc:
            raise MetadataError(
                f"metadata DB at {self.engine.url!r} unreachable: {exc.orig}"
            ) from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @staticmethod
    def _make_engine(url: str) -> Engine:
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_pre_ping"] = True
        engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA busy_timeout=5000")
                # WAL: readers (API, ingest, alerts) never wait for a writer; NORMAL is
                # durable across application crashes, fsync at checkpoints.
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()

        return engine

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except OperationalError:
            return False
        return True

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    # -- wearers and clinicians ---------------------------------------------------------------

    def add_wearer(
        self, name: str, *, time_zone: str = "UTC", wearer_id: str | None = None
    ) -> WearerRecord:
        """Create a wearer; ``time_zone`` is an IANA name (nights run noon to noon there)."""
        row = Wearer(
            wearer_id=wearer_id or _new_id("w"),
            name=name,
            time_zone=check_time_zone(time_zone),
            created_at=self._clock(),
        )
        self._insert(row, f"wearer {row.wearer_id} already exists")
        return _wearer(row)

    def wearer(self, wearer_id: str) -> WearerRecord | None:
        """The wearer or None."""
        with self._tx() as session:
            row = session.get(Wearer, wearer_id)
            return None if row is None else _wearer(row)

    def wearers(self) -> list[WearerRecord]:
        """Every wearer, by id."""
        with self._tx() as session:
            return [_wearer(r) for r in session.scalars(select(Wearer).order_by(Wearer.wearer_id))]

    def add_clinician(self, name: str, *, clinician_id: str | None = None) -> ClinicianRecord:
        """Create a clinician."""
        row = Clinician(
            clinician_id=clinician_id or _new_id("c"), name=name, created_at=self._clock()
        )
        self._insert(row, f"clinician {row.clinician_id} already exists")
        return _clinician(row)

    def clinician(self, clinician_id: str) -> ClinicianRecord | None:
        """The clinician or None."""
        with self._tx() as session:
            row = session.get(Clinician, clinician_id)
            return None if row is None else _clinician(row)

    def clinicians(self) -> list[ClinicianRecord]:
        """Every clinician, by id."""
        with self._tx() as session:
            rows = session.scalars(select(Clinician).order_by(Clinician.clinician_id))
            return [_clinician(r) for r in rows]

    # -- devices --------------------------------------------------------------------------------

    def add_device(
        self, device_id: str, owner_id: str, *, site: str = "calf", mvc_uv: float | None = None
    ) -> DeviceRecord:
        """Register a device owned by ``owner_id`` at sensor ``site`` (e.g. ``left_calf``)."""
        if mvc_uv is not None and not (0 < mvc_uv < 1e6):
            raise ValueError(f"mvc_uv must be in (0, 1e6) µV, got {mvc_uv}")
        with self._tx() as session:
            owner = session.get(Wearer, owner_id)
            if owner is None:
                raise NotFound(f"wearer {owner_id} does not exist")
            time_zone = owner.time_zone
        row = Device(
            device_id=device_id,
            owner_id=owner_id,
            site=site,
            mvc_uv=mvc_uv,
            created_at=self._clock(),
        )
        self._insert(row, f"device {device_id} already exists")
        return _device(row, time_zone)

    def device(self, device_id: str) -> DeviceRecord | None:
        """The device (with its owner's time zone) or None."""
        with self._tx() as session:
            found = session.execute(
                select(Device, Wearer.time_zone)
                .join(Wearer, Wearer.wearer_id == Device.owner_id)
                .where(Device.device_id == device_id)
            ).first()
            return None if found is None else _device(found[0], found[1])

    def is_registered(self, device_id: str) -> bool:
        """True when the device exists."""
        with self._tx() as session:
            return session.get(Device, device_id) is not None

    def devices_of(self, wearer_id: str) -> list[DeviceRecord]:
        """The wearer's devices, by id."""
        with self._tx() as session:
            rows = session.execute(
                select(Device, Wearer.time_zone)
                .join(Wearer, Wearer.wearer_id == Device.owner_id)
                .where(Device.owner_id == wearer_id)
                .order_by(Device.device_id)
            ).all()
            return [_device(d, tz) for d, tz in rows]

    def devices(self) -> list[DeviceRecord]:
        """Every device, by id."""
        with self._tx() as session:
            rows = session.execute(
                select(Device, Wearer.time_zone)
                .join(Wearer, Wearer.wearer_id == Device.owner_id)
                .order_by(Device.device_id)
            ).all()
            return [_device(d, tz) for d, tz in rows]

    def set_calibration(self, device_id: str, mvc_uv: float | None) -> DeviceRecord:
        """Set or clear a device's MVC calibration, µV."""
        if mvc_uv is not None and not (0 < mvc_uv < 1e6):
            raise ValueError(f"mvc_uv must be in (0, 1e6) µV, got {mvc_uv}")
        with self._tx() as session:
            row = session.get(Device, device_id)
            if row is None:
                raise NotFound(f"device {device_id} does not exist")
            row.mvc_uv = mvc_uv
        found = self.device(device_id)
        if found is None:
            raise NotFound(f"device {device_id} does not exist")
        return found

    # -- grants ---------------------------------------------------------------------------------

    def grant(self, clinician_id: str, wearer_id: str, *, granted_by: Role) -> GrantRecord:
        """Give a clinician access to a wearer's data; one active grant per pair."""
        if granted_by not in (Role.WEARER, Role.ADMIN):
            raise ValueError("grants are given by the wearer or an admin")
        with self._tx() as session:
            if session.get(Clinician, clinician_id) is None:
                raise NotFound(f"clinician {clinician_id} does not exist")
            if session.get(Wearer, wearer_id) is None:
                raise NotFound(f"wearer {wearer_id} does not exist")
            if self._active_grant(session, clinician_id, wearer_id) is not None:
                raise Conflict(f"clinician {clinician_id} already has access to {wearer_id}")
            row = Grant(
                grant_id=_new_id("g"),
                clinician_id=clinician_id,
                wearer_id=wearer_id,
                granted_by=str(granted_by),
                created_at=self._clock(),
                revoked_at=None,
            )
            session.add(row)
        return _grant(row)

    def revoke_grant(self, grant_id: str) -> GrantRecord:
        """Revoke a grant; access stops with the next request."""
        with self._tx() as session:
            row = session.get(Grant, grant_id)
            if row is None:
                raise NotFound(f"grant {grant_id} does not exist")
            if row.revoked_at is None:
                row.revoked_at = self._clock()
            return _grant(row)

    def grant_by_id(self, grant_id: str) -> GrantRecord | None:
        """The grant or None."""
        with self._tx() as session:
            row = session.get(Grant, grant_id)
            return None if row is None else _grant(row)

    def grants(
        self, *, wearer_id: str | None = None, clinician_id: str | None = None
    ) -> list[GrantRecord]:
        """Grants (active and revoked) of a wearer and/or a clinician, oldest first."""
        query = select(Grant).order_by(Grant.created_at, Grant.grant_id)
        if wearer_id is not None:
            query = query.where(Grant.wearer_id == wearer_id)
        if clinician_id is not None:
            query = query.where(Grant.clinician_id == clinician_id)
        with self._tx() as session:
            return [_grant(r) for r in session.scalars(query)]

    def has_access(self, clinician_id: str, wearer_id: str) -> bool:
        """True while the clinician holds an active grant for the wearer."""
        with self._tx() as session:
            return self._active_grant(session, clinician_id, wearer_id) is not None

    def patients_of(self, clinician_id: str) -> list[WearerRecord]:
        """Wearers the clinician currently has access to, by id."""
        with self._tx() as session:
            rows = session.scalars(
                select(Wearer)
                .join(Grant, Grant.wearer_id == Wearer.wearer_id)
                .where(Grant.clinician_id == clinician_id, Grant.revoked_at.is_(None))
                .order_by(Wearer.wearer_id)
            )
            return [_wearer(r) for r in rows]

    @staticmethod
    def _active_grant(session: Session, clinician_id: str, wearer_id: str) -> Grant | None:
        return session.scalars(
            select(Grant).where(
                Grant.clinician_id == clinician_id,
                Grant.wearer_id == wearer_id,
                Grant.revoked_at.is_(None),
            )
        ).first()

    # -- API keys -------------------------------------------------------------------------------

    def create_key(
        self,
        role: Role,
        *,
        wearer_id: str | None = None,
        clinician_id: str | None = None,
        name: str = "",
        expires_at: datetime | None = None,
    ) -> IssuedKey:
        """Issue an API key; the returned token is the only copy of the secret.

        A wearer key needs ``wearer_id``, a clinician key ``clinician_id``, an admin key neither.
        """
        role = Role(role)
        if (role is Role.WEARER) != (wearer_id is not None) or (role is Role.CLINICIAN) != (
            clinician_id is not None
        ):
            raise ValueError(f"a {role} key needs exactly the matching wearer/clinician id")
        if expires_at is not None and expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        key_id = uuid.uuid4().hex[:12]
        token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        with self._tx() as session:
            if wearer_id is not None and session.get(Wearer, wearer_id) is None:
                raise NotFound(f"wearer {wearer_id} does not exist")
            if clinician_id is not None and session.get(Clinician, clinician_id) is None:
                raise NotFound(f"clinician {clinician_id} does not exist")
            row = ApiKey(
                key_id=key_id,
                secret_sha256=_sha256(token),
                name=name,
                role=str(role),
                wearer_id=wearer_id,
                clinician_id=clinician_id,
                created_at=self._clock(),
                expires_at=expires_at,
                revoked_at=None,
            )
            session.add(row)
        return IssuedKey(record=_key(row), token=token)

    def revoke_key(self, key_id: str) -> ApiKeyRecord:
        """Revoke a key; it stops working with the next request."""
        with self._tx() as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                raise NotFound(f"API key {key_id} does not exist")
            if row.revoked_at is None:
                row.revoked_at = self._clock()
            return _key(row)

    def key(self, key_id: str) -> ApiKeyRecord | None:
        """The key's record (never its secret) or None."""
        with self._tx() as session:
            row = session.get(ApiKey, key_id)
            return None if row is None else _key(row)

    def api_keys(self) -> list[ApiKeyRecord]:
        """Every key's record, oldest first."""
        with self._tx() as session:
            rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.key_id))
            return [_key(r) for r in rows]

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked, unexpired token, else None."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != 12:
            return None
        with self._tx() as session:
            row = session.get(ApiKey, parts[1])
            if row is None or not hmac.compare_digest(row.secret_sha256, _sha256(token)):
                return None
            if row.revoked_at is not None:
                return None
            if row.expires_at is not None and row.expires_at <= self._clock():
                return None
            return Principal(
                key_id=row.key_id,
                role=Role(row.role),
                wearer_id=row.wearer_id,
                clinician_id=row.clinician_id,
            )

    # -- webhooks -------------------------------------------------------------------------------

    def add_webhook(
        self,
        url: str,
        *,
        owner_role: Role,
        owner_id: str,
        device_id: str | None = None,
        secret: str | None = None,
    ) -> WebhookRecord:
        """Subscribe ``url`` to the episodes of the owner's devices (or one device).

        The secret signs deliveries; a random one is made when none is given.
        """
        owner_role = Role(owner_role)
        with self._tx() as session:
            owner_model = {Role.WEARER: Wearer, Role.CLINICIAN: Clinician}.get(owner_role)
            if owner_model is None:
                raise ValueError("a webhook is owned by a wearer or a clinician")
            if session.get(owner_model, owner_id) is None:
                raise NotFound(f"{owner_role} {owner_id} does not exist")
            if device_id is not None and session.get(Device, device_id) is None:
                raise NotFound(f"device {device_id} does not exist")
            row = Webhook(
                webhook_id=_new_id("wh"),
                url=url,
                secret=secret or secrets.token_urlsafe(32),
                owner_role=str(owner_role),
                owner_id=owner_id,
                device_id=device_id,
                created_at=self._clock(),
            )
            session.add(row)
        return _webhook(row)

    def webhook(self, webhook_id: str) -> WebhookRecord | None:
        """The webhook or None."""
        with self._tx() as session:
            row = session.get(Webhook, webhook_id)
            return None if row is None else _webhook(row)

    def webhooks_of(self, owner_role: Role, owner_id: str) -> list[WebhookRecord]:
        """The owner's webhooks, oldest first."""
        with self._tx() as session:
            rows = session.scalars(
                select(Webhook)
                .where(Webhook.owner_role == str(owner_role), Webhook.owner_id == owner_id)
                .order_by(Webhook.created_at, Webhook.webhook_id)
            )
            return [_webhook(r) for r in rows]

    def delete_webhook(self, webhook_id: str) -> None:
        """Remove a webhook."""
        with self._tx() as session:
            row = session.get(Webhook, webhook_id)
            if row is None:
                raise NotFound(f"webhook {webhook_id} does not exist")
            session.delete(row)

    def webhooks_for_device(self, device_id: str) -> list[WebhookRecord]:
        """Webhooks that receive this device's events.

        The owner's webhooks (for all devices or this one) and those of clinicians who hold an
        active grant for the owner.
        """
        with self._tx() as session:
            device = session.get(Device, device_id)
            if device is None:
                return []
            clinicians = select(Grant.clinician_id).where(
                Grant.wearer_id == device.owner_id, Grant.revoked_at.is_(None)
            )
            rows = session.scalars(
                select(Webhook)
                .where(
                    or_(Webhook.device_id.is_(None), Webhook.device_id == device_id),
                    or_(
                        (Webhook.owner_role == str(Role.WEARER))
                        & (Webhook.owner_id == device.owner_id),
                        (Webhook.owner_role == str(Role.CLINICIAN))
                        & Webhook.owner_id.in_(clinicians),
                    ),
                )
                .order_by(Webhook.created_at, Webhook.webhook_id)
            )
            return [_webhook(r) for r in rows]

    # -- helpers --------------------------------------------------------------------------------

    def _insert(self, row: Base, conflict_message: str) -> None:
        try:
            with self._tx() as session:
                session.add(row)
        except IntegrityError:
            raise Conflict(conflict_message) from None


def _wearer(row: Wearer) -> WearerRecord:
    return WearerRecord(row.wearer_id, row.name, row.time_zone, row.created_at)


def _clinician(row: Clinician) -> ClinicianRecord:
    return ClinicianRecord(row.clinician_id, row.name, row.created_at)


def _device(row: Device, time_zone: str) -> DeviceRecord:
    return DeviceRecord(
        device_id=row.device_id,
        owner_id=row.owner_id,
        site=row.site,
        mvc_uv=row.mvc_uv,
        time_zone=time_zone,
        created_at=row.created_at,
    )


def _grant(row: Grant) -> GrantRecord:
    return GrantRecord(
        grant_id=row.grant_id,
        clinician_id=row.clinician_id,
        wearer_id=row.wearer_id,
        granted_by=Role(row.granted_by),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _key(row: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row.key_id,
        name=row.name,
        role=Role(row.role),
        wearer_id=row.wearer_id,
        clinician_id=row.clinician_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _webhook(row: Webhook) -> WebhookRecord:
    return WebhookRecord(
        webhook_id=row.webhook_id,
        url=row.url,
        secret=row.secret,
        owner_role=Role(row.owner_role),
        owner_id=row.owner_id,
        device_id=row.device_id,
        created_at=row.created_at,
    )
