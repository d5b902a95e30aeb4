"""The adaptive noise floor: follows the quiet signal, is not dragged up by long contractions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detection import detect_recording
from detection.floor import second_medians, sorted_valid, update_floor
from tests.detection import synth


def _floor_trace(seconds: np.ndarray, window: int = 600) -> np.ndarray:
    floors, _ = update_floor(np.full(window, np.nan), seconds, 0.05, 0.5)
    return floors


def test_floor_drops_within_seconds_when_the_noise_drops() -> None:
    seconds = np.concatenate([np.full(300, 10.0), np.full(60, 2.0)])
    floors = _floor_trace(seconds)
    assert floors[299] == 10.0
    # 5 % of ~330 values are low after ~17 s of the quieter signal
    assert floors[300 + 20] == 2.0


def test_a_nine_minute_contraction_does_not_drag_the_floor_up() -> None:
    seconds = np.concatenate([np.full(120, 3.0), np.full(540, 80.0)])
    floors = _floor_trace(seconds)
    assert np.all(floors[119:] == 3.0)


def test_a_lasting_rise_of_the_noise_is_followed_after_the_window() -> None:
    seconds = np.concatenate([np.full(600, 3.0), np.full(600, 6.0)])
    floors = _floor_trace(seconds)
    assert floors[700] == 3.0
    assert floors[1199] == 6.0


def test_invalid_seconds_are_left_out_and_the_minimum_holds() -> None:
    seconds = np.array([np.nan, 0.1, np.nan, 0.2])
    floors = _floor_trace(seconds)
    assert np.isnan(floors[0])
    assert floors[1] == 0.5 and floors[3] == 0.5


def test_floor_is_chunk_invariant() -> None:
    rng = np.random.default_rng(2)
    seconds = rng.gamma(2.0, 2.0, 900)
    seconds[rng.random(900) < 0.1] = np.nan
    whole, _ = update_floor(np.full(600, np.nan), seconds, 0.05, 0.5)
    window = np.full(600, np.nan)
    parts = []
    for lo, hi in [(0, 1), (1, 250), (250, 251), (251, 900)]:
        part, window = update_floor(window, seconds[lo:hi], 0.05, 0.5)
        parts.append(part)
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_second_median_needs_half_the_blocks_valid() -> None:
    env = np.arange(40, dtype=np.float64).reshape(2, 20)
    valid = np.ones((2, 20), dtype=bool)
    valid[1, :11] = False
    medians = second_medians(env, valid)
    assert medians[0] == 9.5
    assert np.isnan(medians[1])


def test_detector_floor_tracks_resting_level_through_a_long_cramp() -> None:
    rng = np.random.default_rng(11)
    rate = 1000.0
    x = synth.rest(rng, 400.0, rate, rest_uv=4.0)
    x = synth.add_burst(rng, x, rate, 60.0, 300.0, 150.0)
    result = detect_recording(x, rate)
    floors = np.array([p.floor_uv for p in result.series if p.floor_uv is not None])
    assert floors.size > 390
    resting = floors[5:60]
    during = floors[70:350]
    assert during.max() <= resting.max() * 1.1
    assert 1.0 < float(np.median(resting)) < 4.5
    [episode] = result.episodes
    assert abs(episode.duration_s - 300.0) < 3.0


def _floor_by_ranking(window: np.ndarray, seconds: np.ndarray, quantile: float) -> np.ndarray:
    """Reference: rank the whole window again after every second."""
    joined = np.concatenate([window, seconds])
    size = window.shape[0]
    floors = []
    for k in range(seconds.shape[0]):
        values = np.sort(joined[k + 1 : k + 1 + size])
        valid = values[~np.isnan(values)]
        floors.append(max(valid[int(quantile * valid.size)], 0.5) if valid.size else np.nan)
    return np.array(floors)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 40),
    values=st.lists(
        st.one_of(st.just(float("nan")), st.sampled_from([1.0, 2.0, 2.0, 7.5]), st.floats(0, 50)),
        min_size=1,
        max_size=120,
    ),
    cuts=st.lists(st.integers(0, 120), max_size=4),
    quantile=st.sampled_from([0.05, 0.25, 0.5, 0.9]),
)
def test_incremental_floor_equals_ranking_the_window_every_second(
    size: int, values: list[float], cuts: list[int], quantile: float
) -> None:
    seconds = np.array(values)
    expected = _floor_by_ranking(np.full(size, np.nan), seconds, quantile)
    window, ordered = np.full(size, np.nan), sorted_valid(np.full(size, np.nan))
    bounds = [0, *sorted({min(c, seconds.size) for c in cuts}), seconds.size]
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        part, window = update_floor(window, seconds[lo:hi], quantile, 0.5, ordered)
        parts.append(part)
        assert ordered == sorted_valid(window)
    np.testing.assert_array_equal(np.concatenate(parts), expected)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), invalid=st.sampled_from([0.0, 0.3, 0.7]))
def test_second_medians_match_numpy_median_of_the_valid_blocks(seed: int, invalid: float) -> None:
    rng = np.random.default_rng(seed)
    env = rng.gamma(2.0, 3.0, (6, 20))
    valid = rng.random((6, 20)) >= invalid
    medians = second_medians(env, valid)
    for row, value in enumerate(medians):
        if valid[row].sum() * 2 >= 20:
            assert value == pytest.approx(np.median(env[row][valid[row]]), rel=1e-12)
        else:
            assert np.isnan(value)
