"""Band-pass, mains notch and carried filter state."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from detection.errors import DetectorError
from detection.filters import apply_sos, design_emg_filters, mains_frequencies_hz, steady_state


def _design(rate_hz: float, notch: tuple[float, ...] = (50.0, 60.0, 150.0, 180.0)):
    return design_emg_filters(
        rate_hz, low_hz=20.0, high_hz=450.0, nyquist_fraction=0.45, notch_hz=notch, notch_q=30.0
    )


def _gain(sos: np.ndarray, hz: float, rate_hz: float) -> float:
    _, h = signal.sosfreqz(sos, worN=[hz], fs=rate_hz)
    return float(np.abs(h[0]))


@pytest.mark.parametrize("rate_hz", [500.0, 1000.0, 2048.0, 4000.0])
def test_bandpass_passes_emg_band_and_rejects_motion_band(rate_hz: float) -> None:
    design = _design(rate_hz)
    assert design.high_hz == min(450.0, 0.45 * rate_hz)
    assert _gain(design.bandpass_sos, 100.0, rate_hz) > 0.95
    assert _gain(design.bandpass_sos, 3.0, rate_hz) < 0.03
    above_hz = min(2 * design.high_hz, 0.49 * rate_hz)
    assert _gain(design.bandpass_sos, above_hz, rate_hz) < 0.7


def test_upper_edge_is_clamped_below_nyquist_at_500_hz() -> None:
    design = _design(500.0)
    assert design.high_hz == pytest.approx(225.0)
    assert _gain(design.bandpass_sos, 240.0, 500.0) < 0.5


@pytest.mark.parametrize("hz", [50.0, 60.0, 150.0, 180.0])
def test_notch_attenuates_mains_by_more_than_30_db(hz: float) -> None:
    design = _design(1000.0)
    assert _gain(design.notch_sos, hz, 1000.0) < 10 ** (-30 / 20)
    assert _gain(design.notch_sos, 100.0, 1000.0) > 0.95
    assert _gain(design.notch_sos, 80.0, 1000.0) > 0.9
    assert _gain(design.notch_sos, 250.0, 1000.0) > 0.9


def test_notches_above_the_band_are_skipped() -> None:
    design = design_emg_filters(
        500.0,
        low_hz=20.0,
        high_hz=450.0,
        nyquist_fraction=0.45,
        notch_hz=(60.0, 180.0, 300.0),
        notch_q=30.0,
    )
    assert design.notch_sos.shape[0] == 2


def test_mains_settings_map_to_notches() -> None:
    assert mains_frequencies_hz("auto") == (50.0, 60.0, 150.0, 180.0)
    assert mains_frequencies_hz("both") == (50.0, 60.0, 150.0, 180.0)
    assert mains_frequencies_hz(50) == (50.0, 150.0)
    assert mains_frequencies_hz("60") == (60.0, 180.0)
    assert mains_frequencies_hz("off") == ()
    assert mains_frequencies_hz(None) == ()
    with pytest.raises(DetectorError, match="mains_hz"):
        mains_frequencies_hz("55")


def test_carried_state_filters_chunks_exactly_like_one_call() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 5000)) * 10 + 300
    design = _design(1000.0)
    zi = steady_state(design.bandpass_sos, x[:, 0])
    whole, _ = apply_sos(design.bandpass_sos, x, zi)
    parts = []
    state = steady_state(design.bandpass_sos, x[:, 0])
    for lo, hi in [(0, 1), (1, 333), (333, 334), (334, 4000), (4000, 5000)]:
        y, state = apply_sos(design.bandpass_sos, x[:, lo:hi], state)
        parts.append(y)
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)


def test_steady_state_start_has_no_step_transient() -> None:
    x = np.full((1, 2000), 5000.0)  # a large electrode offset
    design = _design(1000.0)
    y, _ = apply_sos(design.bandpass_sos, x, steady_state(design.bandpass_sos, x[:, 0]))
    assert np.max(np.abs(y)) < 1e-6


@settings(max_examples=40, deadline=None)
@given(
    channels=st.integers(1, 4),
    cuts=st.lists(st.integers(1, 400), min_size=0, max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_apply_sos_gives_exactly_what_scipy_sosfilt_gives(
    channels: int, cuts: list[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    sos = np.concatenate([_design(1000.0).bandpass_sos, _design(1000.0).notch_sos])
    x = rng.normal(0.0, 20.0, (channels, 1000))
    zi = rng.normal(0.0, 1.0, (sos.shape[0], channels, 2))
    expected, expected_zf = signal.sosfilt(sos, x, axis=-1, zi=zi)
    bounds = [0, *sorted(set(cuts)), 1000]
    parts, state = [], zi.copy()
    for lo, hi in itertools.pairwise(bounds):
        y, state = apply_sos(sos, x[:, lo:hi], state)
        parts.append(y)
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), expected)
    np.testing.assert_array_equal(state, expected_zf)


def test_apply_sos_leaves_its_inputs_untouched() -> None:
    sos = _design(1000.0).bandpass_sos
    rng = np.random.default_rng(4)
    x = rng.normal(0.0, 20.0, (2, 200))
    zi = rng.normal(0.0, 1.0, (sos.shape[0], 2, 2))
    x_before, zi_before = x.copy(), zi.copy()
    apply_sos(sos, x, zi)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(zi, zi_before)


def test_cached_designs_are_independent_copies() -> None:
    first = _design(1000.0)
    first.bandpass_sos[:] = 0.0
    second = _design(1000.0)
    fresh = signal.butter(2, [20.0, 450.0], btype="bandpass", fs=1000.0, output="sos")
    np.testing.assert_array_equal(second.bandpass_sos, fresh)
