"""The shortcuts of the per-chunk path give exactly what the plain formulations give."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from detection import StreamDetector
from detection.envelope import block_stats
from detection.filters import exponential_smooth
from detection.quality import SECOND_SHARE, _count_thresholds, second_flags
from tests.detection import synth
from tests.detection.test_stream import ACC_RATE, EMG_RATE, T0_US, busy_night


@settings(max_examples=60, deadline=None)
@given(
    channels=st.integers(1, 3),
    block_len=st.integers(1, 60),
    n_blocks=st.integers(1, 25),
    separate_band=st.booleans(),
    quantised=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_block_stats_match_one_reduction_per_quantity(
    channels: int, block_len: int, n_blocks: int, separate_band: bool, quantised: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    shape = (channels, n_blocks * block_len)
    raw = rng.normal(0.0, 10.0, shape)
    if quantised:  # repeated extremes, as on a rail
        raw = np.round(raw / 5.0) * 5.0
    band = rng.normal(0.0, 5.0, shape)
    clean = rng.normal(0.0, 5.0, shape) if separate_band else band
    stats = block_stats(raw, band, clean, block_len)
    r = raw.reshape(channels, n_blocks, block_len)
    b = band.reshape(channels, n_blocks, block_len)
    c = clean.reshape(channels, n_blocks, block_len)
    signs = np.signbit(c)
    expected = {
        "ms_band_uv2": np.square(b).sum(axis=2) / block_len,
        "ms_uv2": np.square(c).sum(axis=2) / block_len,
        "raw_max_uv": r.max(axis=2),
        "raw_min_uv": r.min(axis=2),
        "raw_mean_uv": r.mean(axis=2),
        "at_max": (r == r.max(axis=2)[:, :, None]).sum(axis=2),
        "at_min": (r == r.min(axis=2)[:, :, None]).sum(axis=2),
        "crossings": (signs[:, :, 1:] != signs[:, :, :-1]).sum(axis=2),
    }
    for name, values in expected.items():
        got = getattr(stats, name)
        assert got.shape == (n_blocks, channels), name
        assert got.tobytes() == np.ascontiguousarray(values.T, dtype=got.dtype).tobytes(), name


@pytest.mark.parametrize("rail_fraction", [0.5, 0.3, 0.77, 0.1, 1.0])
@pytest.mark.parametrize("clip_fraction", [0.05, 0.1, 0.33])
def test_count_thresholds_are_the_float_comparisons(
    rail_fraction: float, clip_fraction: float
) -> None:
    for block_len in range(1, 260):
        rail, clip = _count_thresholds(block_len, rail_fraction, clip_fraction)
        clip_min = max(4.0, clip_fraction * block_len)
        for count in range(block_len + 1):
            assert (count >= rail) == (count / block_len >= rail_fraction)
            assert (count >= clip) == (count >= clip_min)


@settings(max_examples=60, deadline=None)
@given(
    rate_hz=st.sampled_from([12.5, 25.0, 50.0, 100.0, 200.0]),
    n=st.integers(1, 400),
    scale=st.sampled_from([1e-4, 0.05, 1.0]),
    zi=st.floats(-1.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_exponential_smooth_is_lfilter_to_the_bit(
    rate_hz: float, n: int, scale: float, zi: float, seed: int
) -> None:
    alpha = 1.0 - math.exp(-1.0 / (0.25 * rate_hz))
    x = np.abs(np.random.default_rng(seed).normal(0.0, scale, n))
    state = np.array([zi])
    expected, expected_zf = signal.lfilter(
        np.array([alpha]), np.array([1.0, alpha - 1.0]), x, zi=state
    )
    got, zf = exponential_smooth(alpha, x, state)
    assert got.tobytes() == expected.tobytes()
    assert zf.shape == (1,) and zf.tobytes() == expected_zf.tobytes()
    assert state[0] == zi  # the input state is left alone


def test_snapshots_hold_the_whole_episode_history() -> None:
    """The machine queues recent batches; a snapshot at any second restores identically."""
    emg, acc = busy_night()
    seconds = 40

    def feed(detector: StreamDetector, second: int) -> list:
        a = acc[second * 50 : (second + 1) * 50]
        events = detector.push_acc(a, T0_US + second * 1_000_000, ACC_RATE)
        e = emg[second * 1000 : (second + 1) * 1000]
        return events + detector.push_emg(e, T0_US + second * 1_000_000, EMG_RATE)

    whole = StreamDetector("dev-1")
    reference = [feed(whole, s) for s in range(seconds)]
    detector = StreamDetector("dev-1")
    for second in range(seconds):
        _, state = pickle.loads(detector.snapshot())
        assert "recent" not in state.machine.__dict__  # the snapshot layout is unchanged
        detector = StreamDetector.restore(detector.snapshot())
        assert feed(detector, second) == reference[second]


def test_a_burst_starting_after_many_quiet_chunks_sees_its_whole_history() -> None:
    """Back-dating reads history queued over many chunks: any chunking gives one onset."""
    rng = np.random.default_rng(7)
    x = synth.rest(rng, 40.0, EMG_RATE, rest_uv=3.0)
    x = synth.add_burst(rng, x, EMG_RATE, 30.0, 8.0, 120.0, ramp_s=2.5)
    onsets = []
    for step in (1000, 250, 7000):
        detector = StreamDetector("dev-1")
        events = []
        for lo in range(0, x.shape[0], step):
            events += detector.push_emg(x[lo : lo + step], T0_US + lo * 1000, EMG_RATE)
        events += detector.finish()
        onsets.append([e.episode.onset_us for e in events if hasattr(e, "episode")])
    assert onsets[0] and onsets[0] == onsets[1] == onsets[2]


@settings(max_examples=80, deadline=None)
@given(
    n_seconds=st.integers(0, 4),
    per_second=st.sampled_from([1, 7, 20]),
    flagged=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_second_flags_count_each_bit_against_its_share(
    n_seconds: int, per_second: int, flagged: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    size = n_seconds * per_second
    bits = rng.integers(0, 32, size) * (rng.random(size) < flagged)
    expected = [
        sum(
            bit
            for bit, share in SECOND_SHARE.items()
            if np.count_nonzero(row & bit) >= share * per_second
        )
        for row in bits.reshape(-1, per_second)
    ]
    got = second_flags(bits, per_second)
    assert got.dtype == np.int64 and got.tolist() == expected
