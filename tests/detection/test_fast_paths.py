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
from detection.acc import AccState, posture_name
from detection.envelope import SEPARATE_FROM, block_stats
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
    long=st.booleans(),
    slack=st.integers(0, 7),
    seed=st.integers(0, 2**32 - 1),
)
def test_block_stats_match_one_reduction_per_quantity(
    channels: int,
    block_len: int,
    n_blocks: int,
    separate_band: bool,
    quantised: bool,
    long: bool,
    slack: int,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    if long:  # a long offline piece: each quantity reduced on its own
        n_blocks += SEPARATE_FROM // block_len
    shape = (channels, n_blocks * block_len)
    # the unfiltered samples are a view of a wider array (leftover samples after the blocks)
    wide = rng.normal(0.0, 10.0, (channels, shape[1] + slack))
    if quantised:  # repeated extremes, as on a rail
        wide = np.round(wide / 5.0) * 5.0
    raw = wide[:, : shape[1]]
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


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_bins=st.integers(1, 40),
    shifts=st.lists(st.integers(-3, 3), min_size=80, max_size=80),
    layout=st.sampled_from(["touching", "apart", "free"]),
    holes=st.lists(st.integers(0, 40), max_size=3),
)
def test_acc_bins_match_each_second_summed_alone(
    seed: int, n_bins: int, shifts: list[int], layout: str, holes: list[int]
) -> None:
    """The one-reduceat path gives, to the bit, the per-second sums; seconds that touch, leave
    room between them, overlap (a followed device clock) or hold no sample all agree."""
    rng = np.random.default_rng(seed)
    rate = 50.0
    state = AccState.create(rate)
    acc = rng.normal(0.0, 0.05, (int(rate) * 45, 3)) + np.array([0.0, 0.0, -1.0])
    state.start_segment(acc[0], 0)
    state.push(acc)
    edges = np.arange(n_bins + 1, dtype=np.int64) * 1_000_000
    starts = edges[:-1] + np.array(shifts[:n_bins], dtype=np.int64) * 10_000
    ends = edges[1:] + np.array(shifts[40 : 40 + n_bins], dtype=np.int64) * 10_000
    if layout == "touching":  # each second ends where the next starts (a steady clock)
        ends[:-1] = starts[1:]
    elif layout == "apart":  # room between the seconds, none overlapping
        ends[:-1] = starts[1:] - np.abs(ends[:-1] - edges[1:-1])
    for hole in holes:  # a second past the recorded samples holds none
        if hole < n_bins:
            starts[hole] += 10**9
            ends[hole] += 10**9
    activity, posture = state.bins(starts, ends, 35.0)
    for k in range(n_bins):
        lo, hi = state.time_us.searchsorted([starts[k], ends[k]], side="left")
        if hi <= lo:
            assert activity[k] is None and posture[k] is None
            continue
        expected = float(np.add.reduceat(state.dyn_g[lo:hi], [0])[0]) / (hi - lo)
        assert activity[k] is not None and activity[k] == expected
        assert posture[k] == posture_name(state.up[hi - 1], 35.0)


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
    x = np.abs(np.random.default_rng(seed).normal(0.0, scale, (3, n)))
    state = np.array([zi, 0.5 * zi, 0.0])
    got, zf = exponential_smooth(alpha, x, state)
    assert zf.shape == (3,)
    for k in range(3):  # each row as lfilter of its own
        expected, expected_zf = signal.lfilter(
            np.array([alpha]), np.array([1.0, alpha - 1.0]), x[k], zi=state[k : k + 1]
        )
        assert got[k].tobytes() == expected.tobytes()
        assert zf[k : k + 1].tobytes() == expected_zf.tobytes()
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
