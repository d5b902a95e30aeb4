"""Accelerometer: posture from gravity, dynamic movement, and their queries."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from detection.acc import AccState, posture_name
from tests.detection import synth


@pytest.mark.parametrize(
    ("up", "name"),
    [
        ((0.0, 0.0, -1.0), "supine"),
        ((0.0, 0.0, 1.0), "prone"),
        ((0.0, -1.0, 0.0), "left"),
        ((0.0, 1.0, 0.0), "right"),
        ((1.0, 0.0, 0.0), "upright"),
        ((-0.9, 0.0, 0.43), "upright"),
        ((0.5, 0.0, -0.86), "supine"),
    ],
)
def test_posture_from_the_up_vector(up: tuple[float, float, float], name: str) -> None:
    assert posture_name(np.array(up), 35.0) == name


@pytest.mark.parametrize("rate_hz", [12.5, 50.0, 200.0])
def test_turning_over_shows_as_rotation_and_activity(rate_hz: float) -> None:
    rng = np.random.default_rng(1)
    acc = synth.accelerometer(rng, 30.0, rate_hz)
    acc = synth.turn_over(rng, acc, rate_hz, 10.0, synth.LEFT_UP)
    state = AccState.create(rate_hz)
    state.start_segment(acc[0], 0)
    state.push(acc)
    assert state.rotation_deg(8_000_000, 16_000_000) == pytest.approx(90.0, abs=15.0)
    assert state.rotation_deg(0, 9_000_000) < 5.0
    assert state.peak_activity_g(9_000_000, 13_000_000) > 0.15
    assert state.peak_activity_g(0, 9_000_000) < 0.02
    assert state.posture_at(5_000_000, 35.0) == "supine"
    assert state.posture_at(25_000_000, 35.0) == "left"
    assert state.peak_activity_g(40_000_000, 50_000_000) is None


def test_upright_since_needs_the_hold_time() -> None:
    rng = np.random.default_rng(2)
    acc = synth.accelerometer(rng, 40.0, 50.0)
    acc = synth.turn_over(rng, acc, 50.0, 20.0, synth.UPRIGHT_UP, duration_s=1.0)
    state = AccState.create(50.0)
    state.start_segment(acc[0], 0)
    state.push(acc)
    reached = state.upright_since(0, 40_000_000, 3_000_000, 35.0)
    assert reached is not None and 22_000_000 <= reached <= 25_000_000
    assert state.upright_since(0, 22_000_000, 3_000_000, 35.0) is None


def test_history_can_be_forgotten_and_binned() -> None:
    rng = np.random.default_rng(3)
    acc = synth.accelerometer(rng, 10.0, 50.0)
    state = AccState.create(50.0)
    state.start_segment(acc[0], 1_000_000)
    state.push(acc[:250])
    state.push(acc[250:])
    assert state.end_us == 11_000_000
    starts = np.array([1_000_000, 2_000_000, 20_000_000])
    activity, posture = state.bins(starts, starts + 1_000_000, 35.0)
    assert activity[0] is not None and activity[0] < 0.02
    assert posture == ["supine", "supine", None]
    assert activity[2] is None
    state.forget_before(6_000_000)
    assert state.time_us[0] == 6_000_000


def test_history_grows_in_place_and_keeps_what_was_read() -> None:
    """Chunks written into the room after the history: the same history as joining the
    arrays anew each time, earlier views of it unchanged, and a snapshot without the room."""
    rng = np.random.default_rng(5)
    rate = 50.0
    acc = synth.accelerometer(rng, 120.0, rate)
    joined = AccState.create(rate)  # the reference: every chunk pushed into a fresh state
    state = AccState.create(rate)
    state.start_segment(acc[0], 0)
    kept_views = []
    for k, start in enumerate(range(0, acc.shape[0], 50)):
        state.push(acc[start : start + 50])
        kept_views.append((state.time_us, state.time_us.copy(), state.up, state.up.copy()))
        if k % 7 == 6:  # the detector forgets what it decided, now and then
            state.forget_before(int(state.time_us[-1]) - 20_000_000)
    joined.start_segment(acc[0], 0)
    joined.push(acc)
    keep = joined.time_us.searchsorted(state.time_us[0])
    assert np.array_equal(state.time_us, joined.time_us[keep:])
    assert np.array_equal(state.dyn_g, joined.dyn_g[keep:])
    assert np.array_equal(state.activity_g, joined.activity_g[keep:])
    assert np.array_equal(state.up, joined.up[keep:])
    for times, times_then, up, up_then in kept_views:
        assert np.array_equal(times, times_then) and np.array_equal(up, up_then)
    restored = pickle.loads(pickle.dumps(state))
    assert restored._buffers is None
    assert np.array_equal(restored.time_us, state.time_us)
    assert len(pickle.dumps(state)) < 1.2 * len(pickle.dumps(restored.time_us)) * 6
    restored.push(acc[:50])  # and it grows again from the restored history
    assert restored.time_us.shape[0] == state.time_us.shape[0] + 50
