"""Recipient preferences: quiet hours in local time (DST included), event types, channels."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from sqlalchemy import Engine

from alerts.live import LiveAlertSink
from alerts.messages import AlertType
from alerts.preferences import Channel, PreferenceError, Preferences, PreferenceStore, route
from alerts.redflag_store import RedFlagStore
from alerts.webhooks import DeliveryLog, WebhookSubscription
from tests.alerts.builders import episode_events
from tests.alerts.test_redflags import AS_OF, night
from tests.alerts.test_webhooks import Directory

BERLIN_NIGHTS = Preferences(
    "clin-1", "Europe/Berlin", quiet_start=time(22, 0), quiet_end=time(7, 0)
)


def utc_us(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1_000_000)


@pytest.mark.parametrize(
    ("instant_us", "quiet"),
    [
        (utc_us(2026, 1, 15, 20, 59), False),  # 21:59 CET
        (utc_us(2026, 1, 15, 21, 0), True),  # 22:00 CET
        (utc_us(2026, 1, 16, 5, 59), True),  # 06:59 CET
        (utc_us(2026, 1, 16, 6, 0), False),  # 07:00 CET
        (utc_us(2026, 7, 15, 20, 0), True),  # 22:00 CEST
        (utc_us(2026, 7, 15, 4, 59), True),  # 06:59 CEST
        (utc_us(2026, 7, 15, 5, 0), False),  # 07:00 CEST
        (utc_us(2026, 3, 29, 1, 30), True),  # 03:30 CEST, the night clocks go forward
    ],
)
def test_quiet_hours_cross_midnight_in_the_recipients_zone(instant_us: int, quiet: bool) -> None:
    assert BERLIN_NIGHTS.in_quiet_hours(instant_us) is quiet


def test_quiet_hours_end_at_local_seven_across_a_dst_change() -> None:
    # 2026-10-25: clocks go back at 03:00 CEST; 07:00 CET that morning is 06:00 UTC.
    assert BERLIN_NIGHTS.quiet_hours_end_us(utc_us(2026, 10, 24, 22, 0)) == utc_us(
        2026, 10, 25, 6, 0
    )
    assert BERLIN_NIGHTS.quiet_hours_end_us(utc_us(2026, 7, 15, 1, 0)) == utc_us(2026, 7, 15, 5, 0)


def test_routes_follow_channels_types_and_quiet_hours() -> None:
    day, night_us = utc_us(2026, 1, 15, 12, 0), utc_us(2026, 1, 15, 23, 0)
    assert route(None, AlertType.CRAMP_STARTED, Channel.MQTT, night_us).send
    assert route(BERLIN_NIGHTS, AlertType.CRAMP_STARTED, Channel.WEBHOOK, day).send
    assert not route(BERLIN_NIGHTS, AlertType.CRAMP_STARTED, Channel.WEBHOOK, night_us).send
    held = route(BERLIN_NIGHTS, AlertType.REDFLAG_RAISED, Channel.WEBHOOK, night_us)
    assert held.send and held.not_before_us == utc_us(2026, 1, 16, 6, 0)
    only_flags = Preferences("c", event_types=frozenset({AlertType.REDFLAG_RAISED}))
    assert not route(only_flags, AlertType.CRAMP_ENDED, Channel.WEBHOOK, day).send
    no_mqtt = Preferences("w", channels=frozenset({Channel.WEBHOOK}))
    assert not route(no_mqtt, AlertType.CRAMP_STARTED, Channel.MQTT, day).send


def test_preferences_round_trip_and_bad_ones_are_refused(engine: Engine) -> None:
    store = PreferenceStore(engine)
    prefs = Preferences(
        "clin-9",
        "America/New_York",
        quiet_start=time(23, 30),
        quiet_end=time(6, 15),
        event_types=frozenset({AlertType.REDFLAG_RAISED}),
        channels=frozenset({Channel.WEBHOOK}),
    )
    store.put(prefs)
    assert store.get("clin-9") == prefs
    assert store.get("nobody") is None
    assert store.delete("clin-9") and store.get("clin-9") is None
    with pytest.raises(PreferenceError, match="time zone"):
        Preferences("x", "Mars/Olympus")
    with pytest.raises(PreferenceError, match="both"):
        Preferences("x", quiet_start=time(22, 0))
    with pytest.raises(PreferenceError, match="differ"):
        Preferences("x", quiet_start=time(1, 0), quiet_end=time(1, 0))


def test_sinks_apply_preferences_to_webhooks_and_the_wearers_mqtt_alerts(engine: Engine) -> None:
    """At 23:00 Berlin: no cramp webhook for the quiet clinician; her red flag waits to 07:00."""
    at_us = utc_us(2025, 11, 24, 22, 0)
    PreferenceStore(engine).put(BERLIN_NIGHTS)
    PreferenceStore(engine).put(Preferences("wearer-1", channels=frozenset({Channel.WEBHOOK})))
    subs = [
        WebhookSubscription("s-clin", "clin-1", "https://clinic.example.org/h", "k"),
        WebhookSubscription("s-carer", "carer-1", "https://carer.example.org/h", "k"),
    ]
    directory = Directory({"dev-p": subs})
    sink = LiveAlertSink(
        engine, None, directory=directory, wearer_of=lambda d: "wearer-1", clock_us=lambda: at_us
    )
    event = episode_events("dev-p", 0, 30)[0]
    sink.handle("dev-p", [event], at_us)
    [record] = sink.outbox("dev-p")
    assert record.mqtt_topic is None  # the wearer turned MQTT alerts off
    log = DeliveryLog(engine)
    assert [d.recipient_id for d in log.deliveries()] == ["carer-1"]

    flags = RedFlagStore(engine, directory, clock_us=lambda: at_us)
    flags.evaluate("dev-p", [night(0, coverage=0.1, device_id="dev-p")], AS_OF.isoformat())
    [held] = [d for d in log.deliveries() if d.recipient_id == "clin-1"]
    assert held.event_type is AlertType.REDFLAG_RAISED
    assert held.next_attempt_us == utc_us(2025, 11, 25, 6, 0)
