"""Keys, grants, rate limits, validation errors, health/readiness/metrics, and logs."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from api.ratelimit import RateLimiter
from storage.metadata import MetadataDB, Role
from storage.sqlite import SqliteStore
from tests.api.conftest import NOW, Clock, World, make_episode, store_episodes


def test_revoked_grant_stops_access_at_once(world: World) -> None:
    assert world.get("carol", "/v1/wearers/ann/episodes").status_code == 200
    revoked = world.client.delete(
        f"/v1/wearers/ann/grants/{world.ids['grant']}", headers=world.headers("ann")
    )
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert world.get("carol", "/v1/wearers/ann/episodes").status_code == 404
    assert world.get("carol", "/v1/patients").json()["count"] == 0


def test_expired_key_stops_at_once(world: World) -> None:
    assert world.get("ann", "/v1/me").status_code == 200
    world.clock.now = NOW + timedelta(days=30)  # the keys' expiry
    answer = world.get("ann", "/v1/me")
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"


def test_revoked_key_stops_at_once(world: World) -> None:
    issued = world.client.post(
        "/v1/keys",
        headers=world.headers("admin"),
        json={"role": "clinician", "clinician_id": "carol", "expires_in_days": 1},
    ).json()
    bearer = {"Authorization": f"Bearer {issued['token']}"}
    assert world.client.get("/v1/patients", headers=bearer).status_code == 200
    listed = world.client.get("/v1/keys", headers=world.headers("admin")).text
    assert issued["token"] not in listed
    world.client.delete(f"/v1/keys/{issued['key_id']}", headers=world.headers("admin"))
    assert world.client.get("/v1/patients", headers=bearer).status_code == 401


@pytest.mark.parametrize("token", ["", "cw_", "cw_123456789012_x", "Basic abc", "x" * 500])
def test_malformed_tokens_are_401(world: World, token: str) -> None:
    answer = world.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code in (401, 403) and "ann" not in answer.text


def test_rate_limit_per_key(world: World) -> None:
    app = create_app(
        store=world.store, metadata=world.metadata, clock=world.clock, rate_limit_per_min=3
    )
    with TestClient(app) as client:
        codes = [client.get("/v1/me", headers=world.headers("ann")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = client.get("/v1/me", headers=world.headers("ann"))
        assert int(limited.headers["retry-after"]) >= 1
        assert client.get("/v1/me", headers=world.headers("bob")).status_code == 200
        bad = {"Authorization": "Bearer cw_000000000000_guess"}
        codes = [client.get("/v1/me", headers=bad).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]


def test_token_bucket_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert all(limiter.take("k") == 0.0 for _ in range(60))
    assert limiter.take("k") == pytest.approx(1.0)
    now[0] = 1.0
    assert limiter.take("k") == 0.0 and limiter.take("k") > 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"start": "2026-11-01T00:00:00"}, "start"),
        ({"start": "2026-11-20T00:00:00Z", "end": "2026-11-01T00:00:00Z"}, "end"),
        ({"start": "2024-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "start"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"site": "Left Calf!"}, "site"),
        ({"min_duration_s": -1}, "min_duration_s"),
    ],
)
def test_validation_errors_name_the_field(world: World, params: dict, field: str) -> None:  # type: ignore[type-arg]
    answer = world.get("carol", "/v1/wearers/ann/episodes", params=params)
    assert answer.status_code == 422
    error = answer.json()["detail"][0]
    assert error["loc"] == ["query", field] and error["msg"]


def test_body_validation_error_shape(world: World) -> None:
    answer = world.client.post(
        "/v1/devices",
        headers=world.headers("admin"),
        json={"device_id": "bad id with spaces", "owner_id": "ann"},
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "device_id"]
    unknown_tz = world.client.post(
        "/v1/wearers", headers=world.headers("admin"), json={"name": "Z", "time_zone": "Nowhere"}
    )
    assert unknown_tz.json()["detail"][0]["loc"] == ["body", "time_zone"]


def test_health_readiness_and_metrics(world: World) -> None:
    assert world.client.get("/healthz").json() == {"status": "ok"}
    ready = world.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"store": True, "metadata": True}
    world.get("carol", "/v1/wearers/ann/episodes")
    metrics = world.client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    line = next(
        x
        for x in metrics.text.splitlines()
        if x.startswith("crampwatch_api_requests_total") and "/episodes" in x
    )
    assert 'route="/v1/wearers/{wearer_id}/episodes"' in line and line.endswith(" 1.0")
    assert "ann" not in metrics.text


def test_readiness_fails_when_a_dependency_does(world: World) -> None:
    def broken() -> bool:
        raise ConnectionRefusedError("broker down")

    app = create_app(
        store=world.store,
        metadata=world.metadata,
        readiness={"broker": lambda: False, "other": broken},
    )
    with TestClient(app) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"] == {
        "store": True,
        "metadata": True,
        "broker": False,
        "other": False,
    }


def test_no_secrets_in_logs(world: World, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        world.get("ann", "/v1/me")
        world.client.get("/v1/me", headers={"Authorization": "Bearer cw_000000000000_secret"})
        issued = world.client.post(
            "/v1/keys", headers=world.headers("admin"), json={"role": "admin"}
        ).json()
    secrets = [*world.tokens.values(), issued["token"], "cw_000000000000_secret"]
    assert caplog.records  # something was logged at DEBUG
    assert not any(secret in caplog.text for secret in secrets)


@pytest.mark.integration
def test_access_rules_hold_with_postgresql_metadata(postgres_url: str, tmp_path: Path) -> None:
    clock = Clock()
    metadata = MetadataDB(postgres_url, clock=clock)
    with metadata.engine.begin() as conn:
        conn.execute(text("TRUNCATE webhooks, api_keys, grants, devices, clinicians, wearers"))
    store = SqliteStore(tmp_path / "results.sqlite3")
    metadata.add_wearer("Ann", time_zone="Europe/Paris", wearer_id="ann")
    metadata.add_wearer("Bob", wearer_id="bob")
    metadata.add_device("ann-left", "ann", site="left_calf")
    metadata.add_clinician("Dr C", clinician_id="carol")
    grant = metadata.grant("carol", "ann", granted_by=Role.WEARER)
    expires = NOW + timedelta(hours=1)
    keys = {
        who: metadata.create_key(role, expires_at=expires, **ids).token
        for who, role, ids in (
            ("ann", Role.WEARER, {"wearer_id": "ann"}),
            ("bob", Role.WEARER, {"wearer_id": "bob"}),
            ("carol", Role.CLINICIAN, {"clinician_id": "carol"}),
        )
    }
    store_episodes(store, [make_episode("ann-left", NOW - timedelta(days=1), 80.0)])
    app = create_app(store=store, metadata=metadata, clock=clock)
    url = "/v1/wearers/ann/episodes"
    with TestClient(app) as client:

        def get(who: str) -> int:
            return client.get(url, headers={"Authorization": f"Bearer {keys[who]}"}).status_code

        assert (get("ann"), get("carol"), get("bob")) == (200, 200, 404)
        metadata.revoke_grant(grant.grant_id)
        assert get("carol") == 404
        clock.now = expires
        assert get("ann") == 401
    store.close()
    metadata.close()
