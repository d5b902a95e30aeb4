"""The alert documents: round trips, stable ids, rejected documents."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.messages import (
    AlertMessageError,
    AlertType,
    CrampAlert,
    RedFlagAlert,
    alerts_topic,
    stable_id,
)

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
ids = st.text(min_size=1, max_size=40)


@st.composite
def cramp_alerts(draw: st.DrawFn) -> CrampAlert:
    ended = draw(st.booleans())
    return CrampAlert(
        type=AlertType.CRAMP_ENDED if ended else AlertType.CRAMP_STARTED,
        event_id=draw(ids),
        alert_id=draw(ids),
        device_id=draw(ids),
        site=draw(ids),
        episode_id=draw(ids),
        episode_ids=tuple(draw(st.lists(ids, min_size=1, max_size=4))),
        onset_us=draw(st.integers(0, 2**62)),
        confirmed_us=draw(st.integers(0, 2**62)),
        offset_us=draw(st.integers(0, 2**62)) if ended else None,
        duration_s=draw(finite) if ended else None,
        active_s=draw(finite),
        peak_intensity=draw(finite),
        mean_intensity=draw(finite),
        peak_mvc_pct=draw(st.none() | finite),
        confidence=draw(finite),
        emitted_us=draw(st.integers(0, 2**62)),
    )


@given(cramp_alerts())
def test_cramp_alerts_round_trip_through_json(alert: CrampAlert) -> None:
    assert CrampAlert.from_json(alert.to_json()) == alert
    assert CrampAlert.from_json(alert.to_json().encode()) == alert


@given(
    ids,
    st.lists(st.dates().map(lambda d: d.isoformat()), max_size=5),
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4),
)
def test_red_flag_alerts_round_trip_through_json(
    flag_id: str, nights: list[str], detail: dict[str, object]
) -> None:
    alert = RedFlagAlert("e", flag_id, "dev", "long_episode", tuple(nights), "s", detail, 7)
    assert RedFlagAlert.from_json(alert.to_json()) == alert


def test_ids_are_stable_and_distinct() -> None:
    assert stable_id("alert", "dev:1") == stable_id("alert", "dev:1")
    assert stable_id("alert", "dev:1") != stable_id("alert", "dev:2")
    assert stable_id("a", "b:c") != stable_id("a:b", "c")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(schema="crampwatch.alert/2"), "bad_schema"),
        (lambda d: d.update(type="cramp.maybe"), "bad_type"),
        (lambda d: d.pop("alert_id"), "missing_field"),
        (lambda d: d.update(onset_us="soon"), "bad_field"),
        (lambda d: d.update(device_id=7), "bad_field"),
        (lambda d: d.update(offset_us=5), "bad_field"),  # an offset on cramp.started
    ],
)
def test_bad_documents_are_refused_with_a_reason(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    alert = CrampAlert(
        AlertType.CRAMP_STARTED, "e", "a", "dev", "calf", "ep", ("ep",), 1, 2, None, None,
        0.0, 5.0, 4.0, None, 0.9, 3,
    )  # fmt: skip
    doc = json.loads(alert.to_json())
    mutate(doc)
    with pytest.raises(AlertMessageError) as caught:
        CrampAlert.from_json(json.dumps(doc))
    assert caught.value.reason == reason


def test_non_json_and_non_finite_documents_are_refused() -> None:
    for text in ("not json", "[1, 2]", '{"schema": "crampwatch.alert/1", "active_s": NaN}'):
        with pytest.raises(AlertMessageError):
            CrampAlert.from_json(text)


def test_the_alert_topic_needs_a_valid_device_id() -> None:
    assert alerts_topic("bed-01") == "crampwatch/v1/bed-01/alerts"
    with pytest.raises(AlertMessageError):
        alerts_topic("a/b")
