"""Faults raise quality events, not episodes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detection import detect_recording
from detection.events import QualityEvent, QualityFlag
from detection.quality import SECOND_SHARE, second_flags
from tests.detection import synth

RATE = 1000.0
ACC_RATE = 50.0


def _intervals(result, flag: QualityFlag) -> list[tuple[float, float]]:
    return [
        (q.start_us / 1e6, q.end_us / 1e6)
        for q in result.quality
        if q.flag is flag and q.end_us is not None
    ]


def _quiet(seed: int, duration_s: float = 60.0, rate: float = RATE) -> np.ndarray:
    return synth.rest(np.random.default_rng(seed), duration_s, rate, rest_uv=3.0)


@pytest.mark.parametrize("level_uv", [0.0, 812.5, -3000.0])
def test_lead_off_constant_signal_is_flagged_not_a_cramp(level_uv: float) -> None:
    x = _quiet(1)
    x[20_000:35_000] = level_uv
    result = detect_recording(x, RATE)
    assert result.episodes == []
    assert _intervals(result, QualityFlag.LEAD_OFF) == [(20.0, 35.0)]


def test_railed_signal_is_lead_off_and_never_a_cramp() -> None:
    rng = np.random.default_rng(2)
    x = _quiet(2)
    # the amplifier sits on one rail, flipping to the other now and then (2 Hz)
    t = np.arange(20_000) / RATE
    x[20_000:40_000] = np.where(np.sin(2 * np.pi * 2.0 * t + rng.random()) > 0, 4000.0, -4000.0)
    result = detect_recording(x, RATE)
    assert result.episodes == []
    assert _intervals(result, QualityFlag.LEAD_OFF) == [(20.0, 40.0)]


def test_flat_line_is_flagged() -> None:
    rng = np.random.default_rng(3)
    x = _quiet(3)
    x[10_000:25_000] = 40.0 + 0.01 * rng.standard_normal(15_000)
    result = detect_recording(x, RATE)
    assert result.episodes == []
    [(start, end)] = _intervals(result, QualityFlag.FLAT_LINE)
    assert 10.0 <= start <= 11.5  # the notch rings down the 110 µV step for about a second
    assert end == 25.0


def test_a_lead_off_stretch_does_not_drag_the_floor_down() -> None:
    rng = np.random.default_rng(4)
    x = synth.rest(rng, 200.0, RATE, rest_uv=3.0)
    x[10_000:100_000] = 0.0  # 90 s of a disconnected electrode
    result = detect_recording(x, RATE)
    assert result.episodes == []  # the reconnected resting signal is not a burst
    floors = [p.floor_uv for p in result.series[110:] if p.floor_uv is not None]
    assert min(floors) > 1.5


def test_clipping_is_flagged_and_a_clipped_cramp_is_still_a_cramp() -> None:
    rng = np.random.default_rng(5)
    night = synth.cramp_night(rng, amplitude_uv=300.0, acc_rate_hz=None)
    x = np.clip(night.emg_uv, -350.0, 650.0)  # the DC is 150 µV: rails at +-500 µV
    result = detect_recording(x, RATE)
    [episode] = result.episodes
    assert QualityFlag.CLIPPING in episode.quality_flags
    [(start, end)] = _intervals(result, QualityFlag.CLIPPING)
    assert 39.0 <= start <= 42.0 and 62.0 <= end <= 67.0


def test_unclipped_cramp_has_no_clipping_flag() -> None:
    rng = np.random.default_rng(5)
    night = synth.cramp_night(rng, amplitude_uv=300.0, acc_rate_hz=None)
    result = detect_recording(night.emg_uv, RATE)
    assert _intervals(result, QualityFlag.CLIPPING) == []


@pytest.mark.parametrize(("hz", "setting"), [(50.0, "auto"), (60.0, "auto"), (50.0, "50")])
def test_mains_hum_is_flagged_and_notched(hz: float, setting: str) -> None:
    x = _quiet(6) + synth.mains(60_000, RATE, hz, 40.0)
    result = detect_recording(x, RATE, mains_hz=setting)
    assert result.episodes == []
    assert _intervals(result, QualityFlag.MAINS) == [(0.0, 60.0)]
    envelope = np.median([p.envelope_uv for p in result.series])
    assert envelope < 6.0  # 28 µV RMS of hum removed; ~3 µV of EMG left


def test_mains_hum_over_a_cramp_does_not_hide_it() -> None:
    rng = np.random.default_rng(7)
    night = synth.cramp_night(rng, amplitude_uv=40.0, acc_rate_hz=None)
    x = night.emg_uv + synth.mains(night.emg_uv.shape[0], RATE, 60.0, 100.0)
    [episode] = detect_recording(x, RATE).episodes
    assert abs(episode.onset_us / 1e6 - 40.0) <= 0.5


def test_motion_artifact_is_flagged_not_a_cramp() -> None:
    rng = np.random.default_rng(8)
    x = _quiet(8)
    t = np.arange(x.shape[0]) / RATE
    x = x + np.where((t >= 20) & (t < 27), 800.0 * np.sin(2 * np.pi * 3.0 * t), 0.0)
    acc = synth.kick(rng, synth.accelerometer(rng, 60.0, ACC_RATE), ACC_RATE, 20.0, 7.0)
    for result in (detect_recording(x, RATE, acc, ACC_RATE), detect_recording(x, RATE)):
        assert result.episodes == []
        [(start, end)] = _intervals(result, QualityFlag.MOTION_ARTIFACT)
        assert 19.0 <= start <= 21.0 and 26.0 <= end <= 29.0


def test_missing_accelerometer_is_flagged() -> None:
    rng = np.random.default_rng(9)
    x = _quiet(9)
    acc = synth.accelerometer(rng, 30.0, ACC_RATE)  # the accelerometer stops at 30 s
    result = detect_recording(x, RATE, acc, ACC_RATE)
    [(start, end)] = _intervals(result, QualityFlag.NO_ACC)
    assert start == pytest.approx(30.0, abs=0.1) and end == 60.0


def test_quality_events_open_then_close() -> None:
    x = _quiet(10)
    x[20_000:35_000] = 0.0
    events = [
        e
        for e in detect_recording(x, RATE).events
        if isinstance(e, QualityEvent) and e.flag is QualityFlag.LEAD_OFF
    ]
    assert [(e.start_us, e.end_us) for e in events] == [
        (20_000_000, None),
        (20_000_000, 35_000_000),
    ]
    assert events[0].at_us <= events[1].at_us


@settings(max_examples=50, deadline=None)
@given(bits=st.lists(st.integers(0, 31), min_size=20, max_size=20).map(np.array))
def test_a_second_is_flagged_when_enough_of_its_blocks_carry_the_flag(bits: np.ndarray) -> None:
    expected = 0
    for bit, share in SECOND_SHARE.items():
        if np.count_nonzero(bits & bit) >= share * 20:
            expected |= bit
    got = second_flags(np.concatenate([bits, np.zeros(20, dtype=np.int64)]), 20)
    assert got.tolist() == [expected, 0]
