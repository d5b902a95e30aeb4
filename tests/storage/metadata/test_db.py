"""MetadataDB against SQLite and a throwaway PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from storage.metadata import Conflict, MetadataDB, NotFound, Role

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[MetadataDB, Clock]]:
    clock = Clock()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'metadata.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    metadata = MetadataDB(url, clock=clock)
    if request.param == "postgresql":  # one database per session: start each test empty
        with metadata.engine.begin() as conn:
            conn.execute(
                text("TRUNCATE webhooks, api_keys, grants, devices, clinicians, wearers CASCADE")
            )
    yield metadata, clock
    metadata.close()


def test_people_and_devices_round_trip(db: tuple[MetadataDB, Clock]) -> None:
    metadata, _ = db
    ann = metadata.add_wearer("Ann", time_zone="Europe/Paris", wearer_id="ann")
    assert metadata.wearer("ann") == ann
    assert ann.created_at == T0 and ann.created_at.tzinfo is not None
    device = metadata.add_device("ann-left", "ann", site="left_calf", mvc_uv=410.0)
    assert metadata.device("ann-left") == device
    assert device.time_zone == "Europe/Paris"
    assert metadata.devices_of("ann") == [device]
    assert metadata.is_registered("ann-left") and not metadata.is_registered("nope")
    assert metadata.device("nope") is None
    assert metadata.set_calibration("ann-left", None).mvc_uv is None


def test_bad_references_and_duplicates_are_refused(db: tuple[MetadataDB, Clock]) -> None:
    metadata, _ = db
    metadata.add_wearer("Ann", wearer_id="ann")
    with pytest.raises(Conflict):
        metadata.add_wearer("Ann again", wearer_id="ann")
    with pytest.raises(NotFound):
        metadata.add_device("d1", "ghost")
    with pytest.raises(ValueError, match="time zone"):
        metadata.add_wearer("Zed", time_zone="Mars/Olympus")
    metadata.add_device("d1", "ann")
    with pytest.raises(Conflict):
        metadata.add_device("d1", "ann")


def test_grants_are_revocable_and_unique_while_active(db: tuple[MetadataDB, Clock]) -> None:
    metadata, clock = db
    metadata.add_wearer("Ann", wearer_id="ann")
    metadata.add_clinician("Dr C", clinician_id="carol")
    grant = metadata.grant("carol", "ann", granted_by=Role.WEARER)
    assert metadata.has_access("carol", "ann")
    assert [w.wearer_id for w in metadata.patients_of("carol")] == ["ann"]
    with pytest.raises(Conflict):
        metadata.grant("carol", "ann", granted_by=Role.ADMIN)
    clock.now = T0 + timedelta(hours=1)
    revoked = metadata.revoke_grant(grant.grant_id)
    assert revoked.revoked_at == clock.now and not revoked.active
    assert not metadata.has_access("carol", "ann")
    assert metadata.patients_of("carol") == []
    again = metadata.grant("carol", "ann", granted_by=Role.ADMIN)
    assert again.granted_by is Role.ADMIN and metadata.has_access("carol", "ann")
    assert len(metadata.grants(wearer_id="ann")) == 2


def test_keys_are_hashed_expire_and_revoke(db: tuple[MetadataDB, Clock]) -> None:
    metadata, clock = db
    metadata.add_wearer("Ann", wearer_id="ann")
    issued = metadata.create_key(
        Role.WEARER, wearer_id="ann", expires_at=T0 + timedelta(minutes=10)
    )
    principal = metadata.authenticate(issued.token)
    assert principal is not None and principal.wearer_id == "ann"
    with metadata.engine.connect() as conn:
        stored = [tuple(map(str, row)) for row in conn.execute(text("SELECT * FROM api_keys"))]
    assert not any(issued.token in cell for row in stored for cell in row)
    tampered = issued.token[:-1] + ("A" if issued.token[-1] != "A" else "B")
    assert metadata.authenticate(tampered) is None
    clock.now = T0 + timedelta(minutes=10)
    assert metadata.authenticate(issued.token) is None  # expired at once
    clock.now = T0
    metadata.revoke_key(issued.record.key_id)
    assert metadata.authenticate(issued.token) is None
    with pytest.raises(ValueError):
        metadata.create_key(Role.WEARER)  # a wearer key needs its wearer


def test_webhooks_follow_ownership_and_grants(db: tuple[MetadataDB, Clock]) -> None:
    metadata, _ = db
    metadata.add_wearer("Ann", wearer_id="ann")
    metadata.add_wearer("Bob", wearer_id="bob")
    metadata.add_device("ann-left", "ann")
    metadata.add_device("ann-right", "ann")
    metadata.add_device("bob-left", "bob")
    metadata.add_clinician("Dr C", clinician_id="carol")
    own_all = metadata.add_webhook("https://a.example/all", owner_role=Role.WEARER, owner_id="ann")
    own_right = metadata.add_webhook(
        "https://a.example/right", owner_role=Role.WEARER, owner_id="ann", device_id="ann-right"
    )
    clinic = metadata.add_webhook(
        "https://clinic.example/h", owner_role=Role.CLINICIAN, owner_id="carol"
    )
    metadata.add_webhook("https://b.example/h", owner_role=Role.WEARER, owner_id="bob")
    assert {h.webhook_id for h in metadata.webhooks_for_device("ann-left")} == {own_all.webhook_id}
    grant = metadata.grant("carol", "ann", granted_by=Role.WEARER)
    assert {h.webhook_id for h in metadata.webhooks_for_device("ann-right")} == {
        own_all.webhook_id,
        own_right.webhook_id,
        clinic.webhook_id,
    }
    metadata.revoke_grant(grant.grant_id)
    assert clinic.webhook_id not in {h.webhook_id for h in metadata.webhooks_for_device("ann-left")}
    assert metadata.webhooks_for_device("unknown") == []


@settings(max_examples=60, deadline=None)
@given(token=st.text(max_size=120))
def test_arbitrary_tokens_never_authenticate(token: str) -> None:
    metadata = MetadataDB("sqlite://")
    metadata.add_wearer("Ann", wearer_id="ann")
    metadata.create_key(Role.WEARER, wearer_id="ann")
    assert metadata.authenticate(token) is None
    metadata.close()
