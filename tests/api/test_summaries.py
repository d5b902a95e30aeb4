"""Nights, weekly summary, trend, red flags, history and exports against hand-computed values
from the known episodes of ``conftest.ANN_EPISODES`` (Ann lives in Paris, UTC+1 in November)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from api.summaries import weekly_trend
from tests.api.conftest import World, make_episode, store_episodes

RANGE = {"start": "2026-11-01T00:00:00Z", "end": "2026-11-25T00:00:00Z"}


def test_nights_match_hand_computed_values(world: World) -> None:
    nights = world.get("carol", "/v1/wearers/ann/nights", params={"first": "2026-11-15"}).json()
    got = {
        n["night"]: (n["cramps"], n["total_cramp_min"], n["longest_cramp_min"])
        for n in nights["data"]
    }
    # 23:30 UTC on the 17th is 00:30 local: still the night of the 17th; 01:15 UTC on the
    # 19th belongs to the night of the 18th; two episodes (30 s, 120 s) on the night of the 19th.
    assert got == {
        "2026-11-17": (1, 1.0, 1.0),
        "2026-11-18": (1, 1.5, 1.5),
        "2026-11-19": (2, 2.5, 2.0),
        "2026-11-23": (1, 6.0, 6.0),
    }
    assert nights == world.get("ann", "/v1/me/nights", params={"first": "2026-11-15"}).json()


def test_weekly_summary_trend_and_red_flags(world: World) -> None:
    summary = world.get("carol", "/v1/wearers/ann/summary/weekly", params={"weeks": 4}).json()
    weeks = {w["week"]: w for w in summary["data"]}
    assert list(weeks) == ["2026-W45", "2026-W46", "2026-W47", "2026-W48"]
    w47, w48 = weeks["2026-W47"], weeks["2026-W48"]
    assert (w47["cramp_nights"], w47["episodes"]) == (3, 4)
    assert w47["median_duration_s"] == pytest.approx(75.0)  # median of 60, 90, 30, 120
    assert w47["longest_duration_s"] == pytest.approx(120.0)
    hours = [h for h, n in enumerate(w47["hour_histogram"]) for _ in range(n)]
    assert hours == [0, 2, 3, 5]  # local onset hours 00:30, 02:15, 03:00, 05:00
    assert (w48["episodes"], w48["longest_duration_s"]) == (1, pytest.approx(360.0))
    assert weeks["2026-W45"]["episodes"] == 0
    # counts 0, 0, 4, 1 -> least-squares slope 3.5 / 5 = 0.7 episodes/week per week
    assert summary["trend"]["slope_episodes_per_week"] == pytest.approx(0.7)
    assert summary["trend"]["direction"] == "rising"
    flags = {f["rule"]: f["nights"] for f in summary["red_flags"]}
    # as of the night of the 24th: cramps on the 18th, 19th and 23rd (> 2 of 7 nights) and a
    # 6-minute episode on the 23rd
    assert flags == {
        "frequent_nights": ["2026-11-18", "2026-11-19", "2026-11-23"],
        "long_episode": ["2026-11-23"],
    }


@pytest.mark.parametrize(
    ("counts", "direction"),
    [([1, 2, 3, 4], "rising"), ([3, 3, 3], "stable"), ([6, 4, 2], "falling"), ([9, 0], "unknown")],
)
def test_weekly_trend_direction(counts: list[int], direction: str) -> None:
    assert weekly_trend(counts).direction == direction


def test_history_filters_and_cursor_pages(world: World) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params = {**RANGE, "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = world.get("carol", "/v1/wearers/ann/episodes", params=params).json()
        seen += [e["episode_id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 == len(set(seen))
    onsets = [int(s.split(":")[1]) for s in seen]
    assert onsets == sorted(onsets)
    long = world.get(
        "carol", "/v1/wearers/ann/episodes", params={**RANGE, "min_duration_s": 90}
    ).json()
    assert sorted(e["duration_s"] for e in long["data"]) == [90.0, 120.0, 360.0]
    window = world.get(
        "carol",
        "/v1/wearers/ann/episodes",
        params={"start": "2026-11-19T00:00:00Z", "end": "2026-11-21T00:00:00Z"},
    ).json()
    assert window["count"] == 3
    other_site = world.get(
        "carol", "/v1/wearers/ann/episodes", params={**RANGE, "site": "right_calf"}
    ).json()
    assert other_site["count"] == 0


def test_csv_export(world: World) -> None:
    answer = world.get("carol", "/v1/wearers/ann/episodes.csv", params=RANGE)
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [float(r["duration_s"]) for r in rows] == [60.0, 90.0, 30.0, 120.0, 360.0]
    assert rows[0]["onset_utc"] == "2026-11-17T23:30:00Z"
    assert {r["device_id"] for r in rows} == {"ann-left"}


def test_fhir_export_is_a_bundle_of_observations(world: World) -> None:
    answer = world.get("carol", "/v1/wearers/ann/episodes/fhir", params=RANGE)
    assert answer.headers["content-type"].startswith("application/fhir+json")
    bundle = answer.json()
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "collection")
    assert len(bundle["entry"]) == 5
    first = bundle["entry"][0]["resource"]
    assert first["resourceType"] == "Observation" and first["status"] == "final"
    assert first["subject"]["reference"] == "Patient/ann"
    assert first["effectivePeriod"] == {
        "start": "2026-11-17T23:30:00Z",
        "end": "2026-11-17T23:31:00Z",
    }
    assert first["valueQuantity"]["code"] == "s" and first["valueQuantity"]["value"] == 60.0
    codes = {(c["system"], c["code"]) for c in first["code"]["coding"]}
    assert ("http://hl7.org/fhir/sid/icd-10-cm", "G47.62") in codes
    assert len({e["fullUrl"] for e in bundle["entry"]}) == 5


def test_nights_stay_right_across_a_dst_change(world: World) -> None:
    # Paris leaves summer time at 01:00 UTC on Sunday 25 Oct 2026. 10:30 UTC on Monday the
    # 26th is 11:30 local (UTC+1): still the night of the 25th. At the summer offset it would
    # be 12:30 and wrongly the night of the 26th.
    onset = datetime(2026, 10, 26, 10, 30, tzinfo=UTC)
    store_episodes(world.store, [make_episode("ann-left", onset, 42.0)])
    nights = world.get(
        "ann", "/v1/me/nights", params={"first": "2026-10-20", "last": "2026-10-28"}
    ).json()
    assert [(n["night"], n["cramps"]) for n in nights["data"]] == [("2026-10-25", 1)]
    episodes = world.get("ann", "/v1/me/nights/2026-10-25/episodes").json()
    assert [e["duration_s"] for e in episodes["data"]] == [42.0]
