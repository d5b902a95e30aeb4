"""Stored red flags: raised and sent once, linked to nights, cleared, raised again."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from alerts.messages import RedFlagAlert
from alerts.models import AlertOutboxEvent
from alerts.redflag_store import RedFlagStore
from alerts.redflags import RedFlagRule
from alerts.webhooks import DeliveryLog, WebhookSubscription
from storage.sqlite import SqliteStore
from tests.alerts.builders import NIGHT_START_US, S, episode_events
from tests.alerts.test_redflags import AS_OF, night
from tests.alerts.test_webhooks import Directory


def iso(days_before: int) -> str:
    return (AS_OF - timedelta(days=days_before)).isoformat()


def history(cramp_days_before: set[int], first: int, last: int) -> list:
    """Nights ``first``..``last`` days before AS_OF (inclusive), cramps on the given ones."""
    return [night(d, 1 if d in cramp_days_before else 0) for d in range(last, first - 1, -1)]


def test_a_flag_is_sent_once_while_it_keeps_firing_then_cleared_and_raised_again(
    engine: Engine,
) -> None:
    clinician = WebhookSubscription("s-clin", "clin-1", "https://clinic.example.org/h", "k")
    store = RedFlagStore(engine, Directory({"dev-1": [clinician]}))
    cramps = {10, 9, 8, 7, 0}  # three cramp nights in a row, quiet, then one more
    nights = history(cramps, 0, 14)
    raised = store.evaluate("dev-1", nights, iso(8))  # 10, 9, 8: the third night
    assert [f.rule for f in raised] == [RedFlagRule.FREQUENT_NIGHTS]
    assert store.evaluate("dev-1", nights, iso(7)) == []  # still firing: not sent again
    [flag] = store.flags(["dev-1"], active_only=True)
    assert flag.nights == (iso(10), iso(9), iso(8), iso(7))
    assert flag.raised_night == iso(8) and flag.last_night == iso(7)
    for d in range(6, 0, -1):  # the window slides past the cramp nights: the flag clears
        store.evaluate("dev-1", nights, iso(d))
    assert store.flags(["dev-1"], active_only=True) == []
    assert store.flags(["dev-1"])[0].state == "cleared"

    more = history(cramps | {2, 1}, 0, 14)  # three cramp nights again by night 0
    [again] = store.evaluate("dev-1", more, iso(0))
    assert again.rule is RedFlagRule.FREQUENT_NIGHTS and again.flag_id != flag.flag_id
    deliveries = DeliveryLog(engine).deliveries(device_ids=["dev-1"])
    assert len(deliveries) == 2  # one per raised flag, to the clinician's webhook
    assert {d.event_id for d in deliveries} == {flag.event_id, again.event_id}


def test_re_evaluating_the_same_night_does_not_send_again(engine: Engine) -> None:
    store = RedFlagStore(engine)
    nights = [night(0, 1, longest_s=400.0, device_id="dev-2")]
    assert len(store.evaluate("dev-2", nights, iso(0))) == 1
    assert store.evaluate("dev-2", nights, iso(0)) == []
    store.evaluate("dev-2", [night(0, device_id="dev-2")], iso(0))  # corrected data: cleared
    assert store.evaluate("dev-2", nights, iso(0)) == []  # same night again: not re-raised
    [flag] = store.flags(["dev-2"])
    assert flag.state == "cleared"


def test_an_older_night_evaluated_later_does_not_clear_a_newer_flag(engine: Engine) -> None:
    store = RedFlagStore(engine)
    store.evaluate("dev-3", [night(0, 1, longest_s=400.0, device_id="dev-3")], iso(0))
    store.evaluate("dev-3", [night(20, device_id="dev-3")], iso(20))
    assert [f.rule for f in store.flags(["dev-3"], active_only=True)] == [RedFlagRule.LONG_EPISODE]


def test_the_raised_event_is_a_valid_document_with_its_nights(engine: Engine) -> None:
    clinician = WebhookSubscription("s", "clin", "https://clinic.example.org/h", "k")
    store = RedFlagStore(engine, Directory({"dev-4": [clinician]}))
    [flag] = store.evaluate("dev-4", [night(0, coverage=0.2, device_id="dev-4")], iso(0))

    with Session(engine) as session:
        body = session.get(AlertOutboxEvent, flag.event_id).body  # type: ignore[union-attr]
    doc = RedFlagAlert.from_json(body)
    assert (doc.rule, doc.nights, doc.flag_id) == ("sensor_off", (iso(0),), flag.flag_id)
    assert doc.detail["coverage"] == 0.2


def test_evaluation_reads_the_nights_from_the_results_store(engine: Engine, tmp_path: Path) -> None:
    results = SqliteStore(tmp_path / "results.db")
    try:
        day_s = 86_400
        assert NIGHT_START_US // S % day_s == 22 * 3600  # 22:00 UTC on 2025-11-24
        for n in (0, 2, 3):  # cramps at 23:00 UTC on three of four evenings
            results.write_events(episode_events("dev-s", n * day_s + 3600, 40))
        store = RedFlagStore(engine)
        assert store.evaluate_from_store(results, "dev-s", "2025-11-26") == []  # 2 nights so far
        [flag] = store.evaluate_from_store(results, "dev-s", "2025-11-27")
        assert flag.rule is RedFlagRule.FREQUENT_NIGHTS
        assert flag.nights == ("2025-11-24", "2025-11-26", "2025-11-27")
    finally:
        results.close()
