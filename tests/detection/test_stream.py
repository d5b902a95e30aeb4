"""StreamDetector: chunking invariance, offline == streaming, snapshot/restore, timing rules."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detection import StreamDetector, detect_recording
from detection.events import DetectorEvent, EpisodeEvent, EventKind, QualityEvent, QualityFlag
from tests.detection import synth

EMG_RATE = 1000.0
ACC_RATE = 50.0
T0_US = 1_700_000_000_000_000


@functools.cache
def busy_night() -> tuple[np.ndarray, np.ndarray]:
    """75 s with a cramp, a turn-over burst, twitches, mains hum and a lead-off stretch."""
    rng = np.random.default_rng(2024)
    x = synth.rest(rng, 75.0, EMG_RATE, rest_uv=3.0)
    x = synth.add_burst(rng, x, EMG_RATE, 8.0, 14.0, 90.0)
    x = synth.add_burst(rng, x, EMG_RATE, 30.0, 5.0, 150.0, ramp_s=0.3, taper_s=0.5)
    for k in range(4):
        x = synth.add_burst(rng, x, EMG_RATE, 40.0 + 1.3 * k, 0.3, 200.0, ramp_s=0.05, taper_s=0.05)
    x = synth.add_burst(rng, x, EMG_RATE, 52.0, 12.0, 100.0)
    x = x + synth.mains(x.shape[0], EMG_RATE, 50.0, 20.0) * (np.arange(x.shape[0]) > 45_000)
    x[68_000:71_000] = 0.0
    acc = synth.accelerometer(rng, 75.0, ACC_RATE)
    acc = synth.turn_over(rng, acc, ACC_RATE, 30.1, synth.LEFT_UP)
    return x, acc


def stream_in_chunks(
    emg: np.ndarray, acc: np.ndarray | None, emg_cuts: list[int], acc_cuts: list[int]
) -> tuple[list[DetectorEvent], list]:
    """Push chunks of both streams in order of their start time; finish."""
    detector = StreamDetector("dev-1")
    pushes = []
    bounds = [0, *sorted(set(emg_cuts)), emg.shape[0]]
    for lo, hi in itertools.pairwise(bounds):
        if hi > lo:
            pushes.append((lo / EMG_RATE, 1, lo, hi))
    if acc is not None:
        bounds = [0, *sorted(set(acc_cuts)), acc.shape[0]]
        for lo, hi in itertools.pairwise(bounds):
            if hi > lo:
                pushes.append((lo / ACC_RATE, 0, lo, hi))
    events: list[DetectorEvent] = []
    series = []
    for _, kind, lo, hi in sorted(pushes):
        if kind == 1:
            start = T0_US + round(lo * 1e6 / EMG_RATE)
            events.extend(detector.push_emg(emg[lo:hi], start, EMG_RATE))
        else:
            assert acc is not None
            start = T0_US + round(lo * 1e6 / ACC_RATE)
            events.extend(detector.push_acc(acc[lo:hi], start, ACC_RATE))
        series.extend(detector.pop_series())
    events.extend(detector.finish())
    series.extend(detector.pop_series())
    return events, series


@st.composite
def chunkings(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Regular chunks of a drawn size (EMG <= 3 s, ACC <= 3 s) split further at drawn points."""
    emg, acc = busy_night()
    emg_step = draw(st.sampled_from([97, 500, 1000, 3000]))
    acc_step = draw(st.sampled_from([1, 13, 50, 150]))
    emg_extra = draw(st.lists(st.integers(1, emg.shape[0] - 1), max_size=30))
    acc_extra = draw(st.lists(st.integers(1, acc.shape[0] - 1), max_size=30))
    emg_cuts = [*range(emg_step, emg.shape[0], emg_step), *emg_extra]
    acc_cuts = [*range(acc_step, acc.shape[0], acc_step), *acc_extra]
    return emg_cuts, acc_cuts


@functools.cache
def offline_result():
    emg, acc = busy_night()
    return detect_recording(emg, EMG_RATE, acc, ACC_RATE, start_us=T0_US, device_id="dev-1")


def test_busy_night_has_the_expected_events() -> None:
    result = offline_result()
    [episode] = [e for e in result.episodes if e.onset_us < T0_US + 20_000_000]
    assert abs(episode.onset_us - (T0_US + 8_000_000)) <= 500_000
    assert not any(abs(e.onset_us - (T0_US + 30_000_000)) < 2_000_000 for e in result.episodes)
    flags = {q.flag for q in result.quality}
    assert {QualityFlag.MAINS, QualityFlag.LEAD_OFF} <= flags
    assert any(abs(e.onset_us - (T0_US + 52_000_000)) <= 500_000 for e in result.episodes)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunkings())
def test_any_chunking_gives_the_offline_events(cuts: tuple[list[int], list[int]]) -> None:
    emg, acc = busy_night()
    events, series = stream_in_chunks(emg, acc, *cuts)
    expected = offline_result()
    assert events == expected.events
    assert series == expected.series


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(1, 74_999), max_size=40))
def test_emg_only_chunking_is_invariant(cuts: list[int]) -> None:
    emg, _ = busy_night()
    events, _ = stream_in_chunks(emg, None, cuts, [])
    expected = detect_recording(emg, EMG_RATE, start_us=T0_US, device_id="dev-1")
    assert events == expected.events
    assert any(isinstance(e, QualityEvent) and e.flag is QualityFlag.NO_ACC for e in events)


def test_snapshot_restore_continues_identically() -> None:
    emg, acc = busy_night()
    reference, _ = stream_in_chunks(
        emg, acc, list(range(1000, 75_000, 1000)), list(range(50, 3750, 50))
    )
    for split_s in (9, 33, 60):
        detector = StreamDetector("dev-1")
        events: list[DetectorEvent] = []
        for second in range(75):
            if second == split_s:
                detector = StreamDetector.restore(detector.snapshot())
            a = acc[second * 50 : (second + 1) * 50]
            events += detector.push_acc(a, T0_US + second * 1_000_000, ACC_RATE)
            e = emg[second * 1000 : (second + 1) * 1000]
            events += detector.push_emg(e, T0_US + second * 1_000_000, EMG_RATE)
        events += detector.finish()
        assert events == reference


def test_confirmation_and_updates_come_in_device_time_order() -> None:
    events = offline_result().events
    times = [e.at_us for e in events]
    assert times == sorted(times)
    kinds = [e.kind for e in events if isinstance(e, EpisodeEvent)]
    assert kinds.count(EventKind.STARTED) == kinds.count(EventKind.ENDED)
    started = [e for e in events if isinstance(e, EpisodeEvent) and e.kind is EventKind.STARTED]
    for event in started:
        assert event.episode.offset_us is None
        assert event.at_us == event.episode.confirmed_us
        updates = [
            e.at_us
            for e in events
            if isinstance(e, EpisodeEvent)
            and e.kind is EventKind.UPDATED
            and e.episode.episode_id == event.episode.episode_id
        ]
        assert all(
            b - a == pytest.approx(5_000_000, abs=60_000) for a, b in itertools.pairwise(updates)
        )


def test_clock_jitter_is_contiguous_and_a_jump_is_a_gap() -> None:
    rng = np.random.default_rng(5)
    x = synth.rest(rng, 12.0, EMG_RATE)
    detector = StreamDetector("d")
    events = detector.push_emg(x[:4000], 0, EMG_RATE)
    events += detector.push_emg(x[4000:8000], 4_000_000 + 15_000, EMG_RATE)  # 15 ms late: jitter
    events += detector.push_emg(x[8000:], 8_000_000 - 1_500, EMG_RATE)  # 1.5 ms early: jitter
    assert not [e for e in events if isinstance(e, QualityEvent) and e.flag is QualityFlag.GAP]
    events += detector.push_emg(x[:2000], 20_000_000, EMG_RATE)
    events += detector.finish()
    [gap] = [e for e in events if isinstance(e, QualityEvent) and e.flag is QualityFlag.GAP]
    # the stream follows the device clock: the last chunk started 1.5 ms early
    assert gap.start_us == 12_000_000 - 1_500 and gap.end_us == 20_000_000


@pytest.mark.parametrize("drift_ppm", [-80.0, 80.0])
def test_device_clock_drift_never_accumulates_into_a_gap_or_an_error(drift_ppm: float) -> None:
    """A device whose time stamps run 80 ppm off its sample clock for 30 minutes."""
    rng = np.random.default_rng(11)
    rate = 500.0
    emg = synth.rest(rng, 1800.0, rate)
    acc = np.tile([0.0, 0.0, 1.0], (1800 * 25, 1)) + rng.normal(0, 0.002, (1800 * 25, 3))
    detector = StreamDetector("d")
    events = []
    for second in range(1800):
        start_us = round(second * 1e6 * (1 + drift_ppm * 1e-6))
        events += detector.push_emg(emg[second * 500 : (second + 1) * 500], start_us, rate)
        events += detector.push_acc(acc[second * 25 : (second + 1) * 25], start_us, 25.0)
    events += detector.finish()
    assert not [e for e in events if isinstance(e, QualityEvent) and e.flag is QualityFlag.GAP]
    assert not [e for e in events if isinstance(e, EpisodeEvent)]


def test_a_gap_ends_an_open_episode_with_the_gap_flag() -> None:
    rng = np.random.default_rng(8)
    night = synth.cramp_night(rng, duration_s=90.0, onset_s=30.0, cramp_s=40.0, acc_rate_hz=None)
    detector = StreamDetector("d")
    events = detector.push_emg(night.emg_uv[:50_000], 0, EMG_RATE)
    events += detector.push_emg(night.emg_uv[60_000:], 60_000_000, EMG_RATE)
    events += detector.finish()
    ended = [e.episode for e in events if isinstance(e, EpisodeEvent) and e.kind is EventKind.ENDED]
    assert ended[0].offset_us == 50_000_000
    assert QualityFlag.GAP in ended[0].quality_flags


SEGMENT_GAP_US = 7_300_000  # the device was off for 7.3 s


@functools.cache
def gappy_night() -> list[tuple[int, np.ndarray, np.ndarray]]:
    """512 Hz EMG + 12.5 Hz ACC in two segments; a cramp runs into the gap."""
    rng = np.random.default_rng(99)
    segments = []
    start = T0_US
    for duration_s, cramp_at_s in ((40.0, 30.0), (35.0, 5.0)):
        x = synth.rest(rng, duration_s, 512.0, rest_uv=4.0)
        x = synth.add_burst(rng, x, 512.0, cramp_at_s, 15.0, 70.0)
        acc = synth.accelerometer(rng, duration_s, 12.5)
        segments.append((start, x, acc))
        start += round(duration_s * 1e6) + SEGMENT_GAP_US
    return segments


def stream_segments(parts: list[tuple[list[int], list[int]]]) -> list[DetectorEvent]:
    detector = StreamDetector("dev-2", mains_hz="60")
    events: list[DetectorEvent] = []
    for (start, emg, acc), (emg_cuts, acc_cuts) in zip(gappy_night(), parts, strict=True):
        pushes = []
        for cuts, data, rate, kind in ((emg_cuts, emg, 512.0, 1), (acc_cuts, acc, 12.5, 0)):
            bounds = sorted({0, *[c for c in cuts if 0 < c < data.shape[0]], data.shape[0]})
            for lo, hi in itertools.pairwise(bounds):
                pushes.append((lo / rate, kind, lo, hi, data, rate))
        for _, kind, lo, hi, data, rate in sorted(pushes, key=lambda p: (p[0], p[1])):
            t = start + round(lo * 1e6 / rate)
            push = detector.push_emg if kind else detector.push_acc
            events.extend(push(data[lo:hi], t, rate))
    return events + detector.finish()


@st.composite
def segment_chunkings(draw: st.DrawFn) -> list[tuple[list[int], list[int]]]:
    parts = []
    for _, emg, acc in gappy_night():
        step = draw(st.sampled_from([100, 512, 1500]))
        extra = draw(st.lists(st.integers(1, emg.shape[0] - 1), max_size=10))
        acc_step = draw(st.sampled_from([1, 12, 30]))
        parts.append(
            (
                [*range(step, emg.shape[0], step), *extra],
                list(range(acc_step, acc.shape[0], acc_step)),
            )
        )
    return parts


def test_gappy_night_reference() -> None:
    reference = stream_segments([([], []), ([], [])])
    gaps = [e for e in reference if isinstance(e, QualityEvent) and e.flag is QualityFlag.GAP]
    assert [(g.start_us - T0_US, g.end_us - T0_US) for g in gaps] == [(40_000_000, 47_300_000)]
    ended = [
        e.episode for e in reference if isinstance(e, EpisodeEvent) and e.kind is EventKind.ENDED
    ]
    assert len(ended) == 2
    assert ended[0].offset_us == T0_US + 40_000_000 and QualityFlag.GAP in ended[0].quality_flags


@settings(max_examples=10, deadline=None)
@given(segment_chunkings())
def test_chunking_invariance_across_a_gap_at_512_hz(
    parts: list[tuple[list[int], list[int]]],
) -> None:
    assert stream_segments(parts) == stream_segments([([], []), ([], [])])
