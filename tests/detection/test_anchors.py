"""The published anchors (NeuroKit2, BioSPPy) and the episode rule they share with ours."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detection.anchors import (
    AnchorError,
    EpisodeRule,
    activity_to_episodes,
    anchor_episodes,
    apply_rule,
    biosppy_episodes,
    neurokit2_episodes,
)
from detection.evaluation import Interval

RATE_HZ = 1000.0


def night(rng: np.random.Generator, bursts: list[tuple[float, float]], length_s: float = 120.0):
    """Resting sEMG (3 µV RMS) with band-limited bursts of 80 µV RMS at (onset_s, offset_s)."""
    x = rng.normal(0.0, 3.0, int(length_s * RATE_HZ))
    for onset_s, offset_s in bursts:
        a, b = int(onset_s * RATE_HZ), int(offset_s * RATE_HZ)
        x[a:b] += rng.normal(0.0, 80.0, b - a)
    return x


@pytest.mark.parametrize("anchor", ["neurokit2", "biosppy"])
def test_anchor_finds_a_sustained_burst_and_drops_a_short_one(anchor: str) -> None:
    rng = np.random.default_rng(7)
    x = night(rng, [(30.0, 55.0), (80.0, 81.0)])
    found = anchor_episodes(anchor, x[:, None], RATE_HZ, EpisodeRule(min_duration_s=4.0))
    assert len(found) == 1
    assert found[0].onset_s == pytest.approx(30.0, abs=0.5)
    assert found[0].offset_s == pytest.approx(55.0, abs=0.5)


@pytest.mark.parametrize("run", [neurokit2_episodes, biosppy_episodes])
def test_burst_across_a_block_boundary_is_one_episode(run) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    x = night(rng, [(50.0, 70.0)], length_s=100.0)
    found = run(x, RATE_HZ, EpisodeRule(min_duration_s=4.0), block_s=60.0)
    assert len(found) == 1
    assert found[0].onset_s == pytest.approx(50.0, abs=0.5)
    assert found[0].offset_s == pytest.approx(70.0, abs=0.5)


def test_quiet_signal_gives_no_episode() -> None:
    x = np.random.default_rng(1).normal(0.0, 3.0, int(60 * RATE_HZ))
    assert biosppy_episodes(x, RATE_HZ, EpisodeRule()) == []
    assert neurokit2_episodes(x, RATE_HZ, EpisodeRule()) == []


def test_rule_merges_close_activations_then_drops_short_ones() -> None:
    rule = EpisodeRule(min_duration_s=5.0, merge_gap_s=1.0)
    acts = [Interval(0, 3), Interval(3.5, 6), Interval(20, 23), Interval(30, 36)]
    assert apply_rule(acts, rule) == [Interval(0, 6), Interval(30, 36)]


def test_activity_mask_to_episodes_uses_the_rate_and_start() -> None:
    mask = np.zeros(100, dtype=bool)
    mask[10:60] = True
    found = activity_to_episodes(mask, 10.0, EpisodeRule(min_duration_s=1.0), start_s=100.0)
    assert found == [Interval(101.0, 106.0)]


@given(
    st.lists(st.booleans(), max_size=200),
    st.floats(0, 5, allow_nan=False),
    st.floats(0, 5, allow_nan=False),
)
def test_rule_output_is_sorted_disjoint_and_long_enough(
    bits: list[bool], min_s: float, gap_s: float
) -> None:
    rule = EpisodeRule(min_duration_s=min_s, merge_gap_s=gap_s)
    found = activity_to_episodes(np.array(bits, dtype=bool), 10.0, rule)
    assert all(e.offset_s - e.onset_s >= min_s for e in found)
    assert all(b.onset_s - a.offset_s >= gap_s for a, b in itertools.pairwise(found))
    # Every active sample inside a kept episode; nothing kept outside active spans' hull.
    active_t = np.flatnonzero(bits) / 10.0
    for e in found:
        assert np.any((active_t >= e.onset_s) & (active_t < e.offset_s))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(AnchorError, match="unknown anchor"):
        anchor_episodes("wavelets", np.zeros(10), RATE_HZ, EpisodeRule())
    with pytest.raises(AnchorError, match="NaN"):
        biosppy_episodes(np.full(2000, np.nan), RATE_HZ, EpisodeRule())
    with pytest.raises(AnchorError, match="shape"):
        biosppy_episodes(np.zeros((2, 2, 2)), RATE_HZ, EpisodeRule())
    with pytest.raises(AnchorError, match="min_duration_s"):
        EpisodeRule(min_duration_s=-1)
