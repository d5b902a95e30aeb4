"""Stored red flags through the API: raised from crafted episode histories at the rule's
boundary (2 vs 3 cramp nights in 7), shown with their nights, sent once, cleared later."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.nightly import latest_completed_night
from storage.metadata import Role
from tests.alerts.builders import WebhookReceiver
from tests.api.conftest import World, make_episode, store_episodes
from tests.servers import free_port, wait_for

TOKYO = "Asia/Tokyo"  # UTC+9 all year: local noon is 03:00 UTC


def cy_world(world: World) -> None:
    """Cy (Tokyo) with one calf device, treated by Carol."""
    world.metadata.add_wearer("Cy", time_zone=TOKYO, wearer_id="cy")
    world.metadata.add_device("cy-calf", "cy", site="left_calf")
    world.metadata.grant("carol", "cy", granted_by=Role.WEARER)
    world.tokens["cy"] = world.metadata.create_key(Role.WEARER, wearer_id="cy").token


def cramp_on_night(world: World, night: date, duration_s: float = 60.0) -> None:
    """One cramp at 23:00 Tokyo on the evening of ``night`` (14:00 UTC)."""
    onset = datetime.combine(night, datetime.min.time(), tzinfo=UTC) + timedelta(hours=14)
    store_episodes(world.store, [make_episode("cy-calf", onset, duration_s)])


def afternoon_after(night: date) -> datetime:
    """15:00 Tokyo the day after ``night``: that night has just been completed."""
    return datetime.combine(night + timedelta(days=1), datetime.min.time(), tzinfo=UTC) + (
        timedelta(hours=6)
    )


def evaluate(world: World, who: str = "carol", **params: str) -> dict[str, Any]:
    answer = world.post(who, "/v1/wearers/cy/red-flags/evaluate", params=params)
    assert answer.status_code == 200, answer.text
    doc: dict[str, Any] = answer.json()
    return doc


def test_third_cramp_night_in_a_week_raises_one_flag_with_those_nights_sent_once(
    world: World,
) -> None:
    cy_world(world)
    with WebhookReceiver(free_port()) as receiver, httpx.Client() as http:
        world.metadata.add_webhook(receiver.url, owner_role=Role.CLINICIAN, owner_id="carol")
        dispatcher = world.dispatcher(http)
        cramp_on_night(world, date(2026, 11, 10))
        cramp_on_night(world, date(2026, 11, 12))
        world.clock.now = afternoon_after(date(2026, 11, 12))
        two = evaluate(world)
        assert (two["night"], two["device_ids"], two["count"]) == ("2026-11-12", ["cy-calf"], 0)

        cramp_on_night(world, date(2026, 11, 15))
        world.clock.now = afternoon_after(date(2026, 11, 15))
        three = evaluate(world)
        assert three["night"] == "2026-11-15"
        [raised] = three["data"]
        assert raised["rule"] == "frequent_nights" and raised["state"] == "active"
        assert raised["nights"] == ["2026-11-10", "2026-11-12", "2026-11-15"]
        assert raised["detail"] == {"cramp_nights": 3, "threshold": 2}
        assert evaluate(world)["count"] == 0  # the same night again: nothing new
        world.clock.now = afternoon_after(date(2026, 11, 16))
        assert evaluate(world)["count"] == 0  # still firing the next night: not sent again
        dispatcher.deliver_due()
        wait_for(lambda: len(receiver.hits) >= 1, 5, what="red-flag webhook")
        dispatcher.deliver_due()
        hits = [h for h in receiver.hits if h.headers["CrampWatch-Event"] == "redflag.raised"]
        assert len(hits) == 1 and raised["flag_id"] in hits[0].body.decode()

    for who in ("carol", "admin", "cy"):
        listed = world.get(who, "/v1/wearers/cy/red-flags").json()
        assert [f["flag_id"] for f in listed["data"]] == [raised["flag_id"]]
        [flag] = listed["data"]
        assert (flag["raised_night"], flag["last_night"]) == ("2026-11-15", "2026-11-16")
        assert flag["nights"] == ["2026-11-10", "2026-11-12", "2026-11-15"]
    # Cy's flag is not listed under Ann, nor shown to Ann.
    assert world.get("ann", "/v1/me/red-flags").json()["count"] == 0
    assert world.get("carol", "/v1/wearers/ann/red-flags").json()["count"] == 0


def test_a_flag_clears_when_the_cramp_nights_leave_the_week(world: World) -> None:
    cy_world(world)
    for night in (date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)):
        cramp_on_night(world, night)
    world.clock.now = afternoon_after(date(2026, 11, 3))
    [raised] = evaluate(world, "admin")["data"]
    world.clock.now = afternoon_after(date(2026, 11, 9))  # the week 3-9 holds one cramp night
    assert evaluate(world, "admin")["count"] == 0
    assert world.get("carol", "/v1/wearers/cy/red-flags", params={"active": True}).json() == {
        "data": [],
        "count": 0,
    }
    [cleared] = world.get("carol", "/v1/wearers/cy/red-flags").json()["data"]
    assert cleared["flag_id"] == raised["flag_id"] and cleared["state"] == "cleared"
    assert cleared["cleared_at"] == world.clock.now.isoformat().replace("+00:00", "Z")


def test_owner_sees_own_flags_on_me_route(world: World) -> None:
    answer = world.post("admin", "/v1/wearers/ann/red-flags/evaluate")
    assert answer.json()["night"] == "2026-11-23"  # 10:00 in Paris: the 24th is not over
    rules = sorted(f["rule"] for f in answer.json()["data"])
    assert rules == ["frequent_nights", "long_episode", "sensor_off"]  # 1 s in 10 recorded
    mine = world.get("ann", "/v1/me/red-flags").json()
    assert sorted(f["rule"] for f in mine["data"]) == rules
    long = next(f for f in mine["data"] if f["rule"] == "long_episode")
    assert long["nights"] == ["2026-11-23"] and long["detail"]["longest_s"] == 360.0
    frequent = next(f for f in mine["data"] if f["rule"] == "frequent_nights")
    assert frequent["nights"] == ["2026-11-17", "2026-11-18", "2026-11-19", "2026-11-23"]
    assert world.get("bob", "/v1/me/red-flags").json() == {"data": [], "count": 0}


def test_an_explicit_older_night_is_evaluated_and_an_unfinished_one_refused(
    world: World,
) -> None:
    older = world.post(
        "carol", "/v1/wearers/ann/red-flags/evaluate", params={"night": "2026-11-19"}
    )
    assert older.status_code == 200
    assert [f["rule"] for f in older.json()["data"]] == ["frequent_nights"]
    assert older.json()["data"][0]["nights"] == ["2026-11-17", "2026-11-18", "2026-11-19"]
    for night, reason in (("2026-11-24", "has not ended yet"), ("2020-01-01", "nights old")):
        answer = world.post("carol", "/v1/wearers/ann/red-flags/evaluate", params={"night": night})
        assert answer.status_code == 422
        [error] = answer.json()["detail"]
        assert error["loc"] == ["query", "night"] and reason in error["msg"]


@pytest.mark.parametrize(
    ("now", "night"),
    [
        (datetime(2026, 11, 25, 10, 59, tzinfo=UTC), date(2026, 11, 23)),  # 11:59 in Paris
        (datetime(2026, 11, 25, 11, 0, tzinfo=UTC), date(2026, 11, 24)),  # 12:00 in Paris
        (datetime(2026, 3, 29, 10, 30, tzinfo=UTC), date(2026, 3, 28)),  # 12:30 CEST, DST day
    ],
)
def test_latest_completed_night_turns_at_local_noon(now: datetime, night: date) -> None:
    assert latest_completed_night(now, "Europe/Paris") == night


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)))
def test_latest_completed_night_has_ended_and_the_next_has_not(naive: datetime) -> None:
    now = naive.replace(tzinfo=UTC)
    night = latest_completed_night(now, "America/New_York")
    zone = ZoneInfo("America/New_York")
    end = datetime.combine(night + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    end = end.replace(hour=12)
    assert end <= now < end + timedelta(days=1, hours=1)


def test_concurrent_evaluations_raise_each_flag_once(world: World) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(
            pool.map(lambda _: world.post("admin", "/v1/wearers/ann/red-flags/evaluate"), range(6))
        )
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    raised = sorted(f["rule"] for a in answers for f in a.json()["data"])
    assert raised == ["frequent_nights", "long_episode", "sensor_off"]
