"""A small world for the API tests: two wearers, a granted and an ungranted clinician, an admin,
their keys, and known episodes in a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from alerts.directory import MetadataDirectory
from alerts.nightly import evaluate_nights
from alerts.webhooks import DeliveryLog, WebhookDispatcher
from api.app import create_app
from detection.events import (
    Episode,
    EpisodeEvent,
    EventKind,
    Movement,
    QualityEvent,
    QualityFlag,
    SeriesPoint,
)
from storage.base import Store
from storage.localtime import to_us
from storage.metadata import MetadataDB, Role
from storage.sqlite import SqliteStore
from tests.storage.metadata.conftest import postgres_url  # noqa: F401 (shared fixture)

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # a Wednesday morning


@dataclass
class Clock:
    """A settable clock for the app and the metadata DB."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


def make_episode(
    device_id: str,
    onset: datetime,
    duration_s: float,
    *,
    site: str = "left_calf",
    peak: float = 20.0,
    got_up: bool = False,
) -> Episode:
    onset_us = to_us(onset)
    return Episode(
        episode_id=f"{device_id}:{onset_us}",
        device_id=device_id,
        site=site,
        onset_us=onset_us,
        confirmed_us=onset_us + 2_000_000,
        offset_us=onset_us + int(duration_s * 1e6),
        duration_s=duration_s,
        peak_intensity=peak,
        mean_intensity=peak / 2,
        confidence=0.9,
        movement=Movement.STILL,
        got_up_after=got_up,
    )


def store_episodes(store: Store, episodes: list[Episode]) -> None:
    store.write_events(
        [EpisodeEvent(EventKind.ENDED, e, e.offset_us or e.onset_us) for e in episodes]
    )


def night_series(start: datetime, hours: float, *, step_s: int = 10) -> list[SeriesPoint]:
    """A plausible 1 Hz series (every ``step_s`` s to stay small) with one noisy bump."""
    points = []
    start_us = to_us(start)
    for k in range(int(hours * 3600 / step_s)):
        ts_us = start_us + k * step_s * 1_000_000
        bump = 30.0 if 3600 <= k * step_s < 3700 else 0.0
        points.append(
            SeriesPoint(
                ts_us=ts_us,
                envelope_uv=4.0 + bump + (k % 7) * 0.2,
                floor_uv=3.5,
                activity_g=0.01 + (0.2 if k % 97 == 0 else 0.0),
                posture="supine" if (k // 300) % 2 == 0 else "left",
            )
        )
    return points


@dataclass
class World:
    client: TestClient
    store: SqliteStore
    metadata: MetadataDB
    clock: Clock
    tokens: dict[str, str] = field(default_factory=dict)  # who -> bearer token
    ids: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, who: str, url: str, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.client.get(url, headers=self.headers(who), **kwargs)

    def post(self, who: str, url: str, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.client.post(url, headers=self.headers(who), **kwargs)

    def dispatcher(self, http: httpx.Client) -> WebhookDispatcher:
        """A webhook dispatcher on the app's alert tables, on the world's clock."""
        return WebhookDispatcher(
            self.metadata.engine,
            MetadataDirectory(self.metadata),
            http=http,
            rng=np.random.default_rng(3),
            clock_s=lambda: self.clock.now.timestamp(),
            max_attempts=2,
        )


def dead_delivery(world: World) -> str:
    """The id of a dead-lettered delivery to a new webhook of Ann's.

    Ann's history raises red flags for the night of 23 Nov; the webhook's plain-http URL on a
    public host is refused by the dispatcher before any request, which dead-letters it.
    """
    hook = world.metadata.add_webhook(
        "http://ann.example/hook", owner_role=Role.WEARER, owner_id="ann"
    )
    raised = evaluate_nights(
        world.client.app.state.red_flag_store,  # type: ignore[attr-defined]
        world.store,
        ["ann-left"],
        date(2026, 11, 23),
        "Europe/Paris",
    )
    assert raised, "Ann's history raises flags"
    with httpx.Client() as http:
        world.dispatcher(http).deliver_due()
    log: DeliveryLog = world.client.app.state.delivery_log  # type: ignore[attr-defined]
    dead = [d for d in log.dead_letters() if d.subscription_id == hook.webhook_id]
    assert dead and "insecure_url" in (dead[0].last_error or "")
    return dead[0].delivery_id


# Ann (Paris): cramps on the nights of 17, 19, 20 and 23 Nov; one 6-minute episode on the 23rd.
ANN_EPISODES = (
    (datetime(2026, 11, 17, 23, 30, tzinfo=UTC), 60.0),
    (datetime(2026, 11, 19, 1, 15, tzinfo=UTC), 90.0),  # night of the 18th (local 02:15)
    (datetime(2026, 11, 20, 2, 0, tzinfo=UTC), 30.0),  # night of the 19th
    (datetime(2026, 11, 20, 4, 0, tzinfo=UTC), 120.0),  # night of the 19th
    (datetime(2026, 11, 23, 22, 0, tzinfo=UTC), 360.0),  # night of the 23rd
)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = Clock()
    metadata = MetadataDB(f"sqlite:///{tmp_path / 'metadata.sqlite3'}", clock=clock)
    store = SqliteStore(tmp_path / "results.sqlite3")
    ann = metadata.add_wearer("Ann", time_zone="Europe/Paris", wearer_id="ann")
    bob = metadata.add_wearer("Bob", time_zone="America/New_York", wearer_id="bob")
    metadata.add_device("ann-left", ann.wearer_id, site="left_calf", mvc_uv=400.0)
    metadata.add_device("bob-right", bob.wearer_id, site="right_calf")
    carol = metadata.add_clinician("Dr Carol", clinician_id="carol")
    metadata.add_clinician("Dr Dave", clinician_id="dave")
    grant = metadata.grant(carol.clinician_id, ann.wearer_id, granted_by=Role.WEARER)
    expires = NOW + timedelta(days=30)
    tokens = {
        "ann": metadata.create_key(Role.WEARER, wearer_id="ann", expires_at=expires).token,
        "bob": metadata.create_key(Role.WEARER, wearer_id="bob", expires_at=expires).token,
        "carol": metadata.create_key(
            Role.CLINICIAN, clinician_id="carol", expires_at=expires
        ).token,
        "dave": metadata.create_key(Role.CLINICIAN, clinician_id="dave", expires_at=expires).token,
        "admin": metadata.create_key(Role.ADMIN, expires_at=expires).token,
    }
    store_episodes(store, [make_episode("ann-left", t, d) for t, d in ANN_EPISODES])
    store_episodes(
        store,
        [
            make_episode(
                "bob-right", datetime(2026, 11, 22, 5, 0, tzinfo=UTC), 45.0, site="right_calf"
            )
        ],
    )
    store.write_series("ann-left", night_series(datetime(2026, 11, 23, 21, 0, tzinfo=UTC), 9))
    lead_off_us = to_us(datetime(2026, 11, 24, 2, 0, tzinfo=UTC))
    store.write_quality(
        [
            QualityEvent(
                "ann-left", QualityFlag.LEAD_OFF, lead_off_us, lead_off_us + 600_000_000, 0
            ),
            QualityEvent("ann-left", QualityFlag.GAP, lead_off_us, lead_off_us + 300_000_000, 0),
        ]
    )
    app = create_app(store=store, metadata=metadata, clock=clock, rate_limit_per_min=10_000)
    with TestClient(app) as client:
        yield World(
            client=client,
            store=store,
            metadata=metadata,
            clock=clock,
            tokens=tokens,
            ids={"grant": grant.grant_id},
        )
    store.close()
    metadata.close()
