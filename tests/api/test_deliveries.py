"""Webhook deliveries through the API: owners see their own webhooks' deliveries only, admins
see all and requeue a dead letter, which a real receiver then gets once more."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi.testclient import TestClient

from alerts.webhooks import WebhookDispatcher
from api.app import create_app
from storage.metadata import Role
from tests.alerts.builders import WebhookReceiver
from tests.api.conftest import World, dead_delivery
from tests.servers import free_port

DELIVERIES = "/v1/me/webhooks/deliveries"


@dataclass
class Hooks:
    """Ann's webhook answers 200, Carol's ``carol_code`` (410 at first); both watch Ann."""

    world: World
    ann: WebhookReceiver
    carol: WebhookReceiver
    ann_hook: str
    carol_hook: str
    dispatcher: WebhookDispatcher
    carol_code: int = 410


@pytest.fixture
def hooks(world: World) -> Iterator[Hooks]:
    with (
        WebhookReceiver(free_port()) as ann,
        WebhookReceiver(free_port()) as carol,
        httpx.Client() as http,
    ):
        ann_hook = world.metadata.add_webhook(ann.url, owner_role=Role.WEARER, owner_id="ann")
        carol_hook = world.metadata.add_webhook(
            carol.url, owner_role=Role.CLINICIAN, owner_id="carol"
        )
        world.metadata.add_webhook("https://bob.example/h", owner_role=Role.WEARER, owner_id="bob")
        raised = world.post("carol", "/v1/wearers/ann/red-flags/evaluate").json()
        assert raised["count"] == 3  # frequent nights, a long episode, sensor mostly off
        found = Hooks(
            world, ann, carol, ann_hook.webhook_id, carol_hook.webhook_id, world.dispatcher(http)
        )
        carol.respond = lambda hit: found.carol_code
        yield found


def test_owners_see_the_deliveries_of_their_own_webhooks_only(hooks: Hooks) -> None:
    world = hooks.world
    ann = world.get("ann", DELIVERIES).json()
    carol = world.get("carol", DELIVERIES).json()
    assert (ann["count"], carol["count"]) == (3, 3)
    assert {d["webhook_id"] for d in ann["data"]} == {hooks.ann_hook}
    assert {d["webhook_id"] for d in carol["data"]} == {hooks.carol_hook}
    assert {d["event_type"] for d in ann["data"] + carol["data"]} == {"redflag.raised"}
    assert {d["status"] for d in ann["data"] + carol["data"]} == {"pending"}
    for outsider in ("bob", "dave"):
        assert world.get(outsider, DELIVERIES).json() == {"data": [], "count": 0}
    assert world.get("admin", DELIVERIES).status_code == 403  # admins own no webhooks

    assert hooks.dispatcher.deliver_due() == 6
    assert len(hooks.ann.hits) == 3 and len(hooks.carol.hits) == 3
    assert world.get("ann", DELIVERIES, params={"status": "dead"}).json()["count"] == 0
    delivered = world.get("ann", DELIVERIES, params={"status": "delivered"}).json()["data"]
    assert [d["last_status_code"] for d in delivered] == [200, 200, 200]
    dead = world.get("carol", DELIVERIES, params={"status": "dead"}).json()["data"]
    assert [(d["attempts"], d["last_status_code"]) for d in dead] == [(1, 410)] * 3
    assert all(d["last_error"].startswith("http_410") for d in dead)

    everything = world.get("admin", "/v1/webhooks/deliveries").json()
    assert everything["count"] == 6
    dead_letters = world.get("admin", "/v1/webhooks/deliveries", params={"status": "dead"})
    assert {d["delivery_id"] for d in dead_letters.json()["data"]} == {
        d["delivery_id"] for d in dead
    }
    bob_only = world.get("admin", "/v1/webhooks/deliveries", params={"device_id": "bob-right"})
    assert bob_only.json()["count"] == 0
    later = world.get("admin", "/v1/webhooks/deliveries", params={"since": "2030-01-01T00:00Z"})
    assert later.json()["count"] == 0
    naive = world.get("carol", DELIVERIES, params={"since": "2026-11-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["detail"][0]["loc"] == ["query", "since"]


def test_an_admin_requeues_a_dead_letter_and_it_is_delivered_once_more(hooks: Hooks) -> None:
    world = hooks.world
    hooks.dispatcher.deliver_due()
    [first, *_] = world.get("carol", DELIVERIES, params={"status": "dead"}).json()["data"]
    url = f"/v1/webhooks/deliveries/{first['delivery_id']}/requeue"
    for who in ("ann", "carol"):
        assert world.post(who, url).status_code == 403
    hooks.carol_code = 200

    requeued = world.post("admin", url)
    assert requeued.status_code == 200, requeued.text
    assert (requeued.json()["status"], requeued.json()["attempts"]) == ("pending", 0)
    assert world.post("admin", url).status_code == 409  # pending, not dead
    assert world.post("admin", "/v1/webhooks/deliveries/nope/requeue").status_code == 404

    assert hooks.dispatcher.deliver_due() == 1  # only the requeued one
    after = world.get("carol", DELIVERIES).json()["data"]
    by_id = {d["delivery_id"]: d for d in after}
    assert by_id[first["delivery_id"]]["status"] == "delivered"
    assert sorted(d["status"] for d in after) == ["dead", "dead", "delivered"]
    tries = [
        h for h in hooks.carol.hits if h.headers["CrampWatch-Delivery"] == first["delivery_id"]
    ]
    assert len(tries) == 2  # the 410 and the retry
    assert tries[0].headers["Idempotency-Key"] == tries[1].headers["Idempotency-Key"]
    assert tries[0].body == tries[1].body


def test_a_requeue_wakes_the_dispatcher(world: World) -> None:
    delivery_id = dead_delivery(world)
    wakes: list[int] = []
    app = create_app(
        store=world.store,
        metadata=world.metadata,
        clock=world.clock,
        on_webhook_work=lambda: wakes.append(1),
    )
    with TestClient(app) as client:
        answer = client.post(
            f"/v1/webhooks/deliveries/{delivery_id}/requeue", headers=world.headers("admin")
        )
    assert answer.status_code == 200 and wakes == [1]
