"""Quiet stretches are decided in batches (``detection.stream.QUIET_BATCH_S``): every push
returns the events it returns when every block is decided at once; only the 1 s series
points of quiet stretches come later, by at most the batch length."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detection import StreamDetector
from detection import stream as stream_module
from detection.blocks import BlockBatch
from detection.config import DetectorConfig
from detection.events import (
    DetectorEvent,
    EpisodeEvent,
    EventKind,
    QualityEvent,
    QualityFlag,
    SeriesPoint,
)
from tests.detection import synth

EMG_RATE = 1000.0
ACC_RATE = 50.0
T0_US = 1_700_000_000_000_000
AT_S = 41.3  # what happens, happens after a quiet stretch, between batch boundaries
SCENARIOS = (
    "cramp",
    "fading cramp",
    "dipping cramp",
    "artifact",
    "lead-off",
    "mains",
    "no accelerometer",
    "no accelerometer, short wait",
    "gap",
)
SHORT_WAIT = DetectorConfig(acc_wait_s=2.0)  # shorter than the quiet batch


@functools.cache
def night(scenario: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float] | None]:
    """EMG and accelerometer of 130 s that are quiet but for ``scenario`` at ``AT_S``, and
    the stretch the ACC (``no accelerometer``) or both streams (``gap``) are missing."""
    rng = np.random.default_rng(SCENARIOS.index(scenario))
    seconds = 130.0
    x = synth.rest(rng, seconds, EMG_RATE, rest_uv=3.0)
    acc = synth.accelerometer(rng, seconds, ACC_RATE)
    missing = None
    if scenario == "cramp":  # ends, then the got-up question stays open for a minute
        x = synth.add_burst(rng, x, EMG_RATE, AT_S, 20.0, 90.0)
    elif scenario == "fading cramp":  # its last updates come from blocks below on_ratio
        x = synth.add_burst(rng, x, EMG_RATE, AT_S, 12.0, 90.0)
        x = synth.add_burst(rng, x, EMG_RATE, AT_S + 11.0, 14.0, 6.5, ramp_s=0.2)
    elif scenario == "dipping cramp":  # a dip longer than the off hold: closing, then resumed
        x = synth.add_burst(rng, x, EMG_RATE, AT_S, 12.0, 90.0)
        x = synth.add_burst(rng, x, EMG_RATE, AT_S + 14.0, 9.0, 90.0)
    elif scenario == "artifact":  # slow waves leaking through the band-pass: no cramp
        lo, n = round(AT_S * EMG_RATE), round(7.0 * EMG_RATE)
        x[lo : lo + n] += 150.0 * synth.band_noise(rng, n, EMG_RATE, 20.0, 28.0)
    elif scenario == "lead-off":
        lo = round(AT_S * EMG_RATE)
        x[lo : lo + 2700] = 0.0
    elif scenario == "mains":
        x = x + synth.mains(x.shape[0], EMG_RATE, 50.0, 25.0) * (
            np.arange(x.shape[0]) > AT_S * EMG_RATE
        )
    elif scenario.startswith("no accelerometer"):
        missing = (AT_S, AT_S + 12.0)
    else:
        missing = (AT_S, AT_S + 3.0)
    return x, acc, missing


@contextmanager
def quiet_batch(seconds: float) -> Iterator[None]:
    before = stream_module.QUIET_BATCH_S
    stream_module.QUIET_BATCH_S = seconds
    try:
        yield
    finally:
        stream_module.QUIET_BATCH_S = before


def push_by_push(
    scenario: str, emg_step: int, acc_step: int
) -> tuple[list[list[DetectorEvent]], list[list[SeriesPoint]]]:
    """Events and series points of each push (chunks in start-time order, then finish)."""
    emg, acc, missing = night(scenario)
    pushes = []
    for kind, data, rate, step in ((1, emg, EMG_RATE, emg_step), (0, acc, ACC_RATE, acc_step)):
        for lo in range(0, data.shape[0], step):
            hi = min(lo + step, data.shape[0])
            t_s = lo / rate
            dropped = kind == 0 or scenario == "gap"
            if missing is not None and missing[0] <= t_s < missing[1] and dropped:
                continue
            pushes.append((t_s, kind, data[lo:hi], T0_US + round(lo * 1e6 / rate), rate))
    config = SHORT_WAIT if scenario.endswith("short wait") else None
    detector = StreamDetector("dev-q", config=config)
    events: list[list[DetectorEvent]] = []
    series: list[list[SeriesPoint]] = []
    for _, kind, samples, start_us, rate in sorted(pushes, key=lambda p: (p[0], p[1])):
        push = detector.push_emg if kind else detector.push_acc
        events.append(push(samples, start_us, rate))
        series.append(detector.pop_series())
    events.append(detector.finish())
    series.append(detector.pop_series())
    return events, series


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SCENARIOS),
    st.sampled_from([250, 1000, 2000, 3333]),
    st.sampled_from([10, 50, 100, 170]),
)
def test_every_push_returns_the_events_of_deciding_at_once(
    scenario: str, emg_step: int, acc_step: int
) -> None:
    with quiet_batch(0.0):
        events_now, series_now = push_by_push(scenario, emg_step, acc_step)
    events, series = push_by_push(scenario, emg_step, acc_step)
    assert events == events_now
    flat = [p for points in series for p in points]
    assert flat == [p for points in series_now for p in points]
    # a series point is at most the batch (and the chunk that completes it) late
    late_by = max(emg_step / EMG_RATE, acc_step / ACC_RATE) + stream_module.QUIET_BATCH_S + 1
    got = now = 0
    for points, points_now in zip(series, series_now, strict=True):
        got, now = got + len(points), now + len(points_now)
        assert got <= now
        assert now - got <= late_by
    assert got == now


@pytest.mark.parametrize("steps", [(1000, 50), (250, 10)])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_nothing_waits_where_an_event_can_come(scenario: str, steps: tuple[int, int]) -> None:
    """Each scenario in 1 s and in 0.25 s chunks gives the events of deciding at once, push
    by push, and those events are what the scenario is about."""
    with quiet_batch(0.0):
        events_now, _ = push_by_push(scenario, *steps)
    events, _ = push_by_push(scenario, *steps)
    assert events == events_now
    flat = [e for push in events for e in push]
    flags = {e.flag for e in flat if isinstance(e, QualityEvent)}
    kinds = {e.kind for e in flat if isinstance(e, EpisodeEvent)}
    expected_flag = {
        "lead-off": QualityFlag.LEAD_OFF,
        "mains": QualityFlag.MAINS,
        "artifact": QualityFlag.MOTION_ARTIFACT,
        "no accelerometer": QualityFlag.NO_ACC,
        "no accelerometer, short wait": QualityFlag.NO_ACC,
        "gap": QualityFlag.GAP,
    }.get(scenario)
    if expected_flag is None:
        assert {EventKind.STARTED, EventKind.UPDATED, EventKind.ENDED} <= kinds
        first = min(e.episode.onset_us for e in flat if isinstance(e, EpisodeEvent))
        assert abs(first - (T0_US + AT_S * 1e6)) <= 500_000
    else:
        assert expected_flag in flags
        assert not kinds


def test_quiet_stretches_are_decided_in_batches() -> None:
    _, series = push_by_push("cramp", 1000, 50)
    with quiet_batch(0.0):
        _, series_now = push_by_push("cramp", 1000, 50)
    quiet = slice(0, 2 * 40)  # the 1 s pushes (ACC, then EMG) before the cramp
    sizes = [len(points) for points in series[quiet]]
    sizes_now = [len(points) for points in series_now[quiet]]
    assert sum(sizes_now) - stream_module.QUIET_BATCH_S <= sum(sizes) <= sum(sizes_now)
    assert max(sizes) == round(stream_module.QUIET_BATCH_S) - 1  # the last block's second waits
    assert sum(1 for size in sizes if size) * 2 < sum(1 for size in sizes_now if size)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 5),
    st.lists(
        st.tuples(
            st.lists(st.sampled_from([0.0, 1.0, 2.999, 3.0, 7.5, np.nan]), min_size=3, max_size=3),
            st.lists(st.sampled_from([0, 0, 0, 1, 4]), min_size=3, max_size=3),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_loudness_of_many_batches_is_each_ones_own(size: int, rows: list) -> None:
    config = DetectorConfig()
    batches: list[BlockBatch | None] = []
    for ratio, bits in rows:
        times = np.arange(size, dtype=np.int64)
        values = np.resize(np.array(ratio), size)
        batches.append(
            BlockBatch(times, times + 1, values, values, values, values, np.resize(bits, size))
        )
    loud = stream_module._loud_many(batches, config)
    assert loud == [stream_module._loud(batch, config) for batch in batches]
    assert stream_module._loud_many([*batches, None], config) == [None] * (len(batches) + 1)
