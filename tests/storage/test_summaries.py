"""Night and week arithmetic shared by both adapters (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from detection.events import QualityEvent, QualityFlag
from storage.summaries import (
    NightData,
    data_coverage,
    iso_week,
    night_index,
    night_name,
    night_start_us,
    nights_starting_in,
    summarize_nights,
    summarize_weeks,
)
from tests.storage.conftest import episode

S = 1_000_000


def utc_us(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp()) * S  # type: ignore[misc]


@given(
    st.integers(0, 4_000_000_000 * S),
    st.integers(-14 * 3600, 14 * 3600),
)
def test_a_night_runs_from_local_noon_to_local_noon(ts_us: int, utc_offset_s: int) -> None:
    index = night_index(ts_us, utc_offset_s)
    start_us = night_start_us(index, utc_offset_s)
    assert start_us <= ts_us < night_start_us(index + 1, utc_offset_s)
    local = datetime.fromtimestamp(start_us / S, UTC) + timedelta(seconds=utc_offset_s)
    assert (local.hour, local.minute, local.second) == (12, 0, 0)
    assert night_name(index) == local.date().isoformat()


def test_night_names_follow_the_evening_in_local_time() -> None:
    cet = 3600
    assert night_name(night_index(utc_us(2026, 11, 23, 23, 30), cet)) == "2026-11-23"
    assert night_name(night_index(utc_us(2026, 11, 24, 10, 59, 59), cet)) == "2026-11-23"
    assert night_name(night_index(utc_us(2026, 11, 24, 11, 0), cet)) == "2026-11-24"
    assert night_name(night_index(utc_us(2026, 11, 24, 3), -8 * 3600)) == "2026-11-23"


def test_nights_starting_in_a_range() -> None:
    noon_us = utc_us(2026, 11, 23, 12)
    assert [night_name(i) for i in nights_starting_in(noon_us, noon_us + 86_400 * S, 0)] == [
        "2026-11-23"
    ]
    assert list(nights_starting_in(noon_us + 1, noon_us + 86_400 * S, 0)) == []
    assert len(nights_starting_in(noon_us - 1, noon_us + 7 * 86_400 * S, 0)) == 7


def test_iso_weeks_cross_the_year_like_the_calendar() -> None:
    assert iso_week(night_index(utc_us(2027, 1, 1, 22), 0)) == "2026-W53"
    assert iso_week(night_index(utc_us(2027, 1, 4, 22), 0)) == "2027-W01"
    assert iso_week(night_index(utc_us(2027, 1, 4, 2), 0)) == "2026-W53"  # Sunday's night


def test_data_coverage_is_the_share_of_the_window_with_emg() -> None:
    assert data_coverage(NightData("d", 0, 0, 99 * S, 100)) == 1.0
    assert data_coverage(NightData("d", 0, 0, 99 * S, 25)) == 0.25
    assert data_coverage(NightData("d", 0, 5 * S, 5 * S, 1)) == 1.0


def test_a_fault_spanning_two_nights_flags_both_and_an_open_one_flags_its_start() -> None:
    evening_us = utc_us(2026, 11, 23, 21)
    span = QualityEvent("d", QualityFlag.LEAD_OFF, evening_us, evening_us + 86_400 * S, 0)
    still = QualityEvent("d", QualityFlag.CLIPPING, evening_us + 3600 * S, None, 0)
    cramp = episode("d", evening_us + 60 * S, 30.0, got_up=True)
    data = [
        NightData("d", night_index(evening_us, 0) + k, evening_us, evening_us, 1) for k in (0, 1)
    ]
    got = summarize_nights(
        ["d"], evening_us - 86_400 * S, evening_us + 2 * 86_400 * S, 0, [cramp], data, [span, still]
    )
    assert [(s.night, s.quality_flags, s.episodes, s.got_up) for s in got] == [
        ("2026-11-23", ("clipping", "lead_off"), 1, True),
        ("2026-11-24", ("lead_off",), 0, False),
    ]


def test_week_summary_counts_episodes_by_their_night() -> None:
    monday_noon_us = utc_us(2026, 11, 23, 12)
    early_monday = episode("d", utc_us(2026, 11, 23, 2), 10.0)  # Sunday's night: not counted
    tuesday_a = episode("d", utc_us(2026, 11, 24, 23), 20.0)
    tuesday_b = episode("d", utc_us(2026, 11, 25, 3), 40.0)  # still Tuesday's night
    got = summarize_weeks(
        monday_noon_us, monday_noon_us + 7 * 86_400 * S, 0, [tuesday_b, early_monday, tuesday_a]
    )
    assert len(got) == 1
    week = got[0]
    assert (week.week, week.cramp_nights, week.episodes) == ("2026-W48", 1, 2)
    assert (week.median_duration_s, week.longest_duration_s) == (30.0, 40.0)
    assert week.hour_histogram[23] == 1 and week.hour_histogram[3] == 1
    assert sum(week.hour_histogram) == 2
