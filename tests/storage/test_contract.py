"""The store contract, run against both adapters (SQLite and a real influxd in v1 mode)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detection.events import EpisodeEvent, EventKind, QualityEvent, QualityFlag, SeriesPoint
from storage.base import (
    EpisodeQuery,
    NightSummary,
    QueryError,
    Store,
    UnstorableValue,
    WeekSummary,
)
from storage.sqlite import SqliteStore
from tests.storage.conftest import (
    NIGHT_START_US,
    SECOND_US,
    assert_series_close,
    episode,
    lifecycle,
    make_night,
    open_influx,
    reference_downsample,
)

T0 = NIGHT_START_US
HOUR_US = 3600 * SECOND_US
DAY_US = 24 * HOUR_US


def query(*devices: str, start_us: int = T0, end_us: int = T0 + HOUR_US, **kw: Any) -> EpisodeQuery:
    return EpisodeQuery(tuple(devices), start_us, end_us, **kw)


# -- episodes --------------------------------------------------------------------------------


def test_episode_lifecycle_written_in_one_call_keeps_the_final_state(store: Store) -> None:
    final = episode("dev-1", T0 + 100 * SECOND_US, 42.5, peak=12.0, got_up=True)
    store.write_events(lifecycle(final))
    assert store.episodes(query("dev-1")) == [final]


def test_episode_lifecycle_written_event_by_event_keeps_the_latest(store: Store) -> None:
    final = episode("dev-1", T0 + 100 * SECOND_US, 42.5, peak=12.0, got_up=False)
    events = lifecycle(final)
    store.write_events(events[:1])
    assert store.episodes(query("dev-1")) == [events[0].episode]
    assert store.episodes(query("dev-1"))[0].is_open
    for event in events[1:]:
        store.write_events([event])
    assert store.episodes(query("dev-1")) == [final]
    later = replace(final, got_up_after=None, peak_mvc_pct=55.5, mean_mvc_pct=20.25)
    store.write_events([EpisodeEvent(EventKind.ENDED, later, final.offset_us or 0)])
    assert store.episodes(query("dev-1")) == [later]


def test_rewriting_a_night_changes_nothing(store: Store) -> None:
    night = make_night(np.random.default_rng(1), hours=1.0, gap_s=(600, 700))
    night.write_to(store)
    first = (
        store.episodes(query("dev-1")),
        store.series("dev-1", T0, T0 + HOUR_US, 5000),
        store.quality("dev-1", T0, T0 + HOUR_US),
        store.latest_health(),
        store.dead_letters(None, T0, T0 + HOUR_US),
    )
    night.write_to(store, chunk_s=250)
    again = (
        store.episodes(query("dev-1")),
        store.series("dev-1", T0, T0 + HOUR_US, 5000),
        store.quality("dev-1", T0, T0 + HOUR_US),
        store.latest_health(),
        store.dead_letters(None, T0, T0 + HOUR_US),
    )
    assert again == first
    assert [len(part) for part in first] == [4, 3600, 1, 2, 6]
    assert first[0] == list(night.episodes)


def test_episode_filters_order_and_cursor(store: Store) -> None:
    s = SECOND_US
    e1 = episode("dev-1", T0 + 10 * s, 10.0, peak=5.0)
    e2 = episode("dev-1", T0 + 100 * s, 60.0, peak=20.0)
    e3 = episode("dev-1", T0 + 200 * s, None)
    e4 = episode("dev-2", T0 + 300 * s, 30.0, peak=9.0, site="foot")
    e5 = episode("dev-2", T0 + 100 * s, 20.0)
    store.write_events([EpisodeEvent(EventKind.ENDED, e, T0) for e in (e4, e3, e1, e5, e2)])
    everything = [e1, e2, e5, e3, e4]
    assert store.episodes(query("dev-1", "dev-2")) == everything
    assert store.episodes(query("dev-2")) == [e5, e4]
    assert store.episodes(query("dev-1", "dev-2", min_duration_s=20)) == [e2, e5, e4]
    assert store.episodes(query("dev-1", "dev-2", min_peak_intensity=9)) == [e2, e4]
    assert store.episodes(query("dev-1", "dev-2", site="foot")) == [e4]
    assert store.episodes(query("dev-1", "dev-2", include_open=False)) == [e1, e2, e5, e4]
    pages: list[list[Any]] = []
    cursor = None
    while True:
        page = store.episodes(query("dev-1", "dev-2", limit=2, after_episode=cursor))
        if not page:
            break
        pages.append(page)
        cursor = (page[-1].onset_us, page[-1].episode_id)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e for p in pages for e in p] == everything


def test_episodes_overlapping_the_range_start_follow_the_lookback_rule(store: Store) -> None:
    s = SECOND_US
    start_us = T0 + 8 * HOUR_US
    ended_before = episode("dev-1", start_us - 100 * s, 50.0)
    spans_start = episode("dev-1", start_us - 60 * s, 120.0)
    still_open = episode("dev-1", start_us - 30 * s, None)
    inside = episode("dev-1", start_us + 10 * s, 5.0)
    at_end = episode("dev-1", start_us + HOUR_US, 5.0)
    too_long_ago = episode("dev-1", start_us - 7 * HOUR_US, 8 * 3600.0)
    store.write_events(
        [
            EpisodeEvent(EventKind.ENDED, e, T0)
            for e in (ended_before, spans_start, still_open, inside, at_end, too_long_ago)
        ]
    )
    got = store.episodes(query("dev-1", start_us=start_us, end_us=start_us + HOUR_US))
    assert got == [spans_start, still_open, inside]


# -- series ----------------------------------------------------------------------------------


def test_series_returns_the_stored_points_when_they_fit(store: Store) -> None:
    night = make_night(np.random.default_rng(2), hours=1.0, gap_s=(100, 160))
    store.write_series("dev-1", night.series)
    got = store.series("dev-1", T0 + 50 * SECOND_US, T0 + 1050 * SECOND_US, max_points=1000)
    assert got == list(night.series[50:1050])


def test_series_downsampled_to_bin_means_and_last_posture(store: Store) -> None:
    night = make_night(np.random.default_rng(3), hours=2.0)
    night.write_to(store)
    start_us = T0 - 30 * SECOND_US
    got = store.series("dev-1", start_us, T0 + 2 * HOUR_US, max_points=100)
    width_us = 73 * SECOND_US  # ceil(7230 s / 100)
    assert len(got) <= 100
    assert_series_close(got, reference_downsample(night.series, start_us, width_us))


def test_series_rewrite_replaces_given_values_and_keeps_the_others(store: Store) -> None:
    ts_us = T0 + 5 * SECOND_US
    store.write_series("dev-1", [SeriesPoint(ts_us, 10.0, 2.0, None, None)])
    store.write_series("dev-1", [SeriesPoint(ts_us, None, None, 0.25, "left")])
    store.write_series("dev-1", [SeriesPoint(ts_us, 11.5, None, None, None)])
    store.write_series("dev-1", [SeriesPoint(ts_us + SECOND_US, None, None, None, None)])
    got = store.series("dev-1", T0, T0 + 60 * SECOND_US)
    assert got == [SeriesPoint(ts_us, 11.5, 2.0, 0.25, "left")]


# -- quality, health, dead letters -----------------------------------------------------------


def test_quality_intervals_overlapping_the_range(store: Store) -> None:
    night = make_night(np.random.default_rng(4))
    gap, mains = night.quality
    earlier = QualityEvent("dev-1", QualityFlag.CLIPPING, T0, T0 + 10 * SECOND_US, T0)
    store.write_quality([*night.quality, earlier])
    s = SECOND_US
    assert store.quality("dev-1", T0 + 2000 * s, T0 + 2050 * s) == [gap]
    assert store.quality("dev-1", T0 + 5000 * s, T0 + 5100 * s) == [mains]
    assert store.quality("dev-1", T0 + 2200 * s, T0 + 3000 * s) == []
    assert store.quality("dev-1", T0, T0 + 6000 * s) == [earlier, gap, mains]
    assert store.quality("dev-2", T0, T0 + 6000 * s) == []
    closed = replace(mains, end_us=T0 + 4500 * s, at_us=T0 + 4500 * s)
    store.write_quality([closed])
    assert store.quality("dev-1", T0 + 5000 * s, T0 + 5100 * s) == []
    assert store.quality("dev-1", T0 + 4400 * s, T0 + 5100 * s) == [closed]


def test_latest_health_is_the_newest_record_per_device_and_stream(store: Store) -> None:
    one = make_night(np.random.default_rng(5), "dev-1")
    two = make_night(np.random.default_rng(6), "dev-2", start_us=T0 + 3 * SECOND_US)
    store.write_health(one.health + two.health)
    newest = {}
    for record in one.health + two.health:
        key = (record.device_id, record.stream)
        if key not in newest or record.arrival_us > newest[key].arrival_us:
            newest[key] = record
    assert store.latest_health() == [newest[key] for key in sorted(newest)]
    assert store.latest_health(["dev-2"]) == [newest[("dev-2", "acc")], newest[("dev-2", "emg")]]


def test_dead_letters_newest_first_filtered_and_limited(store: Store) -> None:
    night = make_night(np.random.default_rng(7))
    store.write_dead_letters(night.dead_letters)
    newest_first = sorted(night.dead_letters, key=lambda d: -d.arrival_us)
    window = (T0, T0 + HOUR_US)
    assert store.dead_letters(None, *window) == newest_first
    assert store.dead_letters("dev-1", *window) == [
        d for d in newest_first if d.device_id == "dev-1"
    ]
    assert store.dead_letters(None, *window, limit=2) == newest_first[:2]
    assert store.dead_letters(None, T0 + 8 * SECOND_US, T0 + 22 * SECOND_US) == [
        d for d in newest_first if T0 + 8 * SECOND_US <= d.arrival_us < T0 + 22 * SECOND_US
    ]
    tie_us = T0 + 2 * HOUR_US
    tied = [replace(night.dead_letters[0], arrival_us=tie_us, reason=r) for r in ("zz", "aa", "mm")]
    store.write_dead_letters(tied)
    window = (tie_us, tie_us + 1)
    assert store.dead_letters(None, *window, limit=1) == [tied[1]]
    assert store.dead_letters(None, *window, limit=2) == [tied[1], tied[2]]


# -- summaries -------------------------------------------------------------------------------


def test_night_summaries(store: Store) -> None:
    first = make_night(np.random.default_rng(8), "dev-1", T0)
    second = make_night(np.random.default_rng(9), "dev-1", T0 + DAY_US + HOUR_US)
    for night in (first, second):
        night.write_to(store)
    got = store.night_summaries(["dev-1"], T0 - 12 * HOUR_US, T0 + 2 * DAY_US)
    expected = []
    for name, night in (("2026-11-23", first), ("2026-11-24", second)):
        durations = [e.duration_s for e in night.episodes]
        expected.append(
            NightSummary(
                device_id="dev-1",
                night=name,
                first_data_us=night.start_us,
                last_data_us=night.start_us + 7199 * SECOND_US,
                episodes=4,
                total_cramp_s=sum(durations),
                longest_cramp_s=max(durations),
                mean_peak_intensity=sum(e.peak_intensity for e in night.episodes) / 4,
                got_up=True,
                data_coverage=(7200 - 300) / 7200,
                quality_flags=("gap", "mains"),
            )
        )
    assert len(got) == 2
    for summary, want in zip(got, expected, strict=True):
        assert summary == replace(
            want,
            mean_peak_intensity=pytest.approx(want.mean_peak_intensity, rel=1e-12),
            total_cramp_s=pytest.approx(want.total_cramp_s, rel=1e-12),
        )
    # nights start at local noon: 10 h behind UTC, 21:00 UTC is 11:00, so the first recording
    # is split over two nights.
    west = store.night_summaries(["dev-1"], T0 - 2 * DAY_US, T0 + 2 * DAY_US, -10 * 3600)
    assert [s.night for s in west] == ["2026-11-22", "2026-11-23", "2026-11-24"]
    assert sum(s.episodes for s in west) == 8
    assert west[0].first_data_us == T0
    assert west[0].last_data_us == T0 + 3599 * SECOND_US
    assert west[1].first_data_us == T0 + HOUR_US


def test_week_summaries_count_cramp_nights_and_onset_hours(store: Store) -> None:
    first = make_night(np.random.default_rng(10), "dev-1", T0)
    second = make_night(np.random.default_rng(11), "dev-2", T0 + DAY_US)
    for night in (first, second):
        night.write_to(store)
    monday_us = T0 - 21 * HOUR_US
    got = store.week_summaries(["dev-1", "dev-2"], monday_us, monday_us + 14 * DAY_US)
    onsets = [e for night in (first, second) for e in night.episodes]
    hours = [0] * 24
    for e in onsets:
        hours[(e.onset_us // HOUR_US) % 24] += 1
    durations = sorted(e.duration_s for e in onsets)
    assert got == [
        WeekSummary(
            week="2026-W48",
            cramp_nights=2,
            episodes=8,
            median_duration_s=(durations[3] + durations[4]) / 2,
            longest_duration_s=durations[-1],
            hour_histogram=tuple(hours),
        ),
        WeekSummary("2026-W49", 0, 0, None, None, (0,) * 24),
    ]


# -- bad input -------------------------------------------------------------------------------

BAD_QUERIES: list[tuple[str, Callable[[Store], object], str]] = [
    ("inverted", lambda s: s.episodes(query("d", start_us=T0, end_us=T0 - 1)), "inverted"),
    ("empty range", lambda s: s.series("d", T0, T0), "inverted or empty"),
    ("too long", lambda s: s.episodes(query("d", end_us=T0 + 500 * DAY_US)), "longer than"),
    ("no devices", lambda s: s.episodes(query()), "no device ids"),
    ("one string", lambda s: s.night_summaries("dev-1", T0, T0 + DAY_US), "not one string"),
    ("bad device", lambda s: s.quality("a/b", T0, T0 + 1), "is not 1-64"),
    ("negative", lambda s: s.episodes(query("d", min_duration_s=-1.0)), "min_duration_s"),
    ("nan", lambda s: s.episodes(query("d", min_peak_intensity=math.nan)), "min_peak_intensity"),
    ("bad site", lambda s: s.episodes(query("d", site="calf muscle")), "site filter"),
    ("zero limit", lambda s: s.episodes(query("d", limit=0)), "limit"),
    ("bad cursor", lambda s: s.episodes(query("d", after_episode=("x", 1))), "after_episode"),
    ("no points", lambda s: s.series("d", T0, T0 + HOUR_US, max_points=0), "max_points"),
    ("many points", lambda s: s.series("d", T0, T0 + HOUR_US, max_points=10**6), "max_points"),
    ("offset", lambda s: s.week_summaries(["d"], T0, T0 + DAY_US, 20 * 3600), "±14 h"),
    ("letters", lambda s: s.dead_letters(None, T0, T0 + DAY_US, limit=-5), "limit"),
    ("float time", lambda s: s.quality("d", 1.5, T0), "integer"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("case", "call", "message"), BAD_QUERIES, ids=[c[0] for c in BAD_QUERIES])
def test_bad_queries_get_a_specific_error(
    store: Store, case: str, call: Callable[[Store], object], message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        call(store)


@pytest.mark.integration
def test_unknown_devices_are_refused_when_the_store_knows_the_registry(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    registered = {"dev-1"}.__contains__
    stores: list[Store] = [SqliteStore(tmp_path / "r.sqlite3", device_registry=registered)]
    stores.append(open_influx(request.getfixturevalue("influxd"), None, device_registry=registered))
    for store in stores:
        assert store.episodes(query("dev-1")) == []
        with pytest.raises(QueryError, match="unknown device 'dev-9'"):
            store.episodes(query("dev-1", "dev-9"))
        with pytest.raises(QueryError, match="unknown device"):
            store.series("dev-9", T0, T0 + HOUR_US)
        store.close()


UNSTORABLE: list[tuple[str, Callable[[Store], None], str]] = [
    (
        "nan envelope",
        lambda s: s.write_series("dev-1", [SeriesPoint(T0, math.nan, 1.0, 0.0, None)]),
        "envelope_uv is nan",
    ),
    (
        "inf activity",
        lambda s: s.write_series("dev-1", [SeriesPoint(T0, 1.0, 1.0, math.inf, None)]),
        "activity_g is inf",
    ),
    (
        "inf peak",
        lambda s: s.write_events(
            [
                EpisodeEvent(
                    EventKind.ENDED, replace(episode("dev-1", T0, 5.0), peak_intensity=math.inf), T0
                )
            ]
        ),
        "peak_intensity is inf",
    ),
    (
        "foreign id",
        lambda s: s.write_events(
            [EpisodeEvent(EventKind.ENDED, replace(episode("dev-1", T0, 5.0), episode_id="x"), T0)]
        ),
        "episode_id must be",
    ),
    (
        "wrong type",
        lambda s: s.write_events([QualityEvent("dev-1", QualityFlag.GAP, T0, None, T0)]),  # type: ignore[list-item]
        "takes EpisodeEvents",
    ),
    (
        "year 2300",
        lambda s: s.write_series("dev-1", [SeriesPoint(10**16, 1.0, 1.0, None, None)]),
        "1970-2262",
    ),
    (
        "negative time",
        lambda s: s.write_quality([QualityEvent("dev-1", QualityFlag.GAP, -5, None, 0)]),
        "start_us",
    ),
]


@pytest.mark.parametrize(("case", "call", "message"), UNSTORABLE, ids=[c[0] for c in UNSTORABLE])
def test_unstorable_values_are_refused_before_the_database(
    store: Store, case: str, call: Callable[[Store], None], message: str
) -> None:
    with pytest.raises(UnstorableValue, match=message):
        call(store)
    assert store.series("dev-1", T0, T0 + HOUR_US) == []
    assert store.episodes(query("dev-1")) == []
    assert store.quality("dev-1", T0, T0 + HOUR_US) == []
    assert store.spool_health().records == 0


# -- both adapters side by side --------------------------------------------------------------


@pytest.mark.integration
def test_both_adapters_give_identical_answers_for_the_same_writes(
    both: tuple[Store, Store],
) -> None:
    rng = np.random.default_rng(12)
    nights = [
        make_night(rng, device, T0 + day * DAY_US + int(rng.integers(0, 3 * 3600)) * SECOND_US, 1.5)
        for device in ("dev-1", "dev-2")
        for day in range(3)
    ]
    for store in both:
        for night in nights:
            night.write_to(store, chunk_s=int(rng.integers(30, 900)))

    def answers(store: Store) -> dict[str, Any]:
        devices = ("dev-1", "dev-2")
        span = (T0 - DAY_US, T0 + 4 * DAY_US)
        out: dict[str, Any] = {
            "episodes": store.episodes(EpisodeQuery(devices, *span)),
            "long": store.episodes(EpisodeQuery(devices, *span, min_duration_s=30.0)),
            "page": store.episodes(EpisodeQuery(devices, *span, limit=3, after_episode=(T0, ""))),
            "raw": store.series("dev-2", T0, T0 + 2 * HOUR_US, 20_000),
            "quality": store.quality("dev-1", *span),
            "health": store.latest_health(),
            "letters": store.dead_letters(None, *span),
            "nights": store.night_summaries(devices, *span, utc_offset_s=3600),
            "nights_west": store.night_summaries(devices, *span, utc_offset_s=-8 * 3600),
            "weeks": store.week_summaries(devices, *span, utc_offset_s=-5 * 3600),
        }
        return out

    sqlite_answers, influx_answers = (answers(store) for store in both)
    assert sqlite_answers == influx_answers
    assert len(sqlite_answers["episodes"]) == 24
    assert len(sqlite_answers["nights"]) >= 6
    for max_points in (500, 37):
        assert_series_close(
            both[1].series("dev-1", T0 - HOUR_US, T0 + 3 * DAY_US, max_points),
            both[0].series("dev-1", T0 - HOUR_US, T0 + 3 * DAY_US, max_points),
        )
