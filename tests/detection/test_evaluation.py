"""Event matching and scores of detection/evaluation.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detection.evaluation import (
    BACKGROUND,
    SPLIT,
    EvaluationError,
    Interval,
    LabelledInterval,
    Perturbation,
    clip_to,
    match_events,
    score_night,
    summarize,
)


def iv(a: float, b: float) -> Interval:
    return Interval(a, b)


def test_overlapping_detection_matches_and_errors_are_signed() -> None:
    matches, missed, unmatched = match_events([iv(100, 160)], [iv(100.4, 158.0)])
    assert not missed and not unmatched
    assert matches[0].onset_error_s == pytest.approx(0.4)
    assert matches[0].offset_error_s == pytest.approx(-2.0)


def test_disjoint_detection_is_a_false_alarm_and_the_cramp_is_missed() -> None:
    matches, missed, unmatched = match_events([iv(100, 160)], [iv(200, 210)])
    assert matches == [] and missed == [iv(100, 160)] and unmatched == [iv(200, 210)]


def test_matching_is_one_to_one_and_maximises_overlap() -> None:
    # One long detection covers two cramps: only the larger overlap is a match.
    truth = [iv(0, 10), iv(20, 60)]
    matches, missed, unmatched = match_events(truth, [iv(5, 55)])
    assert [m.truth for m in matches] == [iv(20, 60)]
    assert missed == [iv(0, 10)] and unmatched == []


def test_greedy_trap_is_solved_optimally() -> None:
    # Greedy by largest overlap would pair D1-T2 (overlap 8) and leave T1 and D2 unpaired;
    # the assignment pairs both.
    truth = [iv(0, 10), iv(10, 30)]
    detected = [iv(2, 18), iv(20, 25)]
    matches, missed, unmatched = match_events(truth, detected)
    assert len(matches) == 2 and not missed and not unmatched


def test_min_overlap_rejects_grazing_pairs() -> None:
    matches, _, unmatched = match_events([iv(0, 10)], [iv(9.9, 20)], min_overlap_s=0.5)
    assert matches == [] and unmatched == [iv(9.9, 20)]


def test_false_alarm_is_attributed_to_the_lookalike_that_fits_it_best() -> None:
    lookalikes = [
        LabelledInterval("twitch", iv(50, 50.3)),
        LabelledInterval("turn", iv(49, 58)),
        LabelledInterval("mains", iv(0, 30)),
    ]
    score = score_night([iv(100, 160)], [iv(100, 150), iv(50, 57), iv(300, 310)], lookalikes)
    causes = sorted(a.cause for a in score.false_alarms)
    assert causes == sorted(["turn", BACKGROUND])
    assert score.n_truth == 1 and score.n_detected == 3


def test_short_lookalike_explains_a_false_alarm_better_than_night_long_hum() -> None:
    lookalikes = [
        LabelledInterval("mains", iv(0, 28800)),
        LabelledInterval("stretch", iv(1000, 1030)),
    ]
    score = score_night([], [iv(1001, 1029), iv(5000, 5040)], lookalikes)
    assert [a.cause for a in score.false_alarms] == ["stretch", "mains"]


def test_second_detection_of_one_cramp_is_a_split() -> None:
    score = score_night([iv(100, 160)], [iv(100, 120), iv(125, 160)])
    assert len(score.matches) == 1
    assert [a.cause for a in score.false_alarms] == [SPLIT]


def test_lookalike_margin_catches_detections_just_after_the_label() -> None:
    lookalikes = [LabelledInterval("plm", iv(10, 12))]
    near = score_night([], [iv(13, 20)], lookalikes, margin_s=2.0)
    far = score_night([], [iv(13, 20)], lookalikes, margin_s=0.5)
    assert near.false_alarms[0].cause == "plm"
    assert far.false_alarms[0].cause == BACKGROUND


def test_summary_pools_events_over_nights() -> None:
    a = score_night([iv(0, 60), iv(100, 130)], [iv(1, 59)], name="a", scenario="typical")
    b = score_night(
        [],
        [iv(5, 20), iv(40, 50)],
        [LabelledInterval("turn", iv(5, 10))],
        name="b",
        scenario="quiet",
    )
    s = summarize([a, b])
    assert (s.nights, s.n_truth, s.n_detected, s.true_positives) == (2, 2, 3, 1)
    assert s.precision == pytest.approx(1 / 3)
    assert s.recall == pytest.approx(1 / 2)
    assert s.f1 == pytest.approx(2 * 1 / (2 + 3))
    assert s.onset_error_median_s == pytest.approx(1.0)
    assert s.offset_error_median_s == pytest.approx(1.0)
    assert s.onset_bias_s == pytest.approx(1.0)
    assert s.false_alarms_per_night == pytest.approx(1.0)
    assert dict(s.false_alarms_by_cause) == {"turn": 0.5, BACKGROUND: 0.5}


def test_percentiles_of_absolute_errors() -> None:
    truth = [iv(100 * k, 100 * k + 30) for k in range(10)]
    detected = [iv(100 * k + 0.1 * (k + 1), 100 * k + 30) for k in range(10)]
    s = summarize([score_night(truth, detected)])
    assert s.onset_error_median_s == pytest.approx(0.55)
    assert s.onset_error_p90_s == pytest.approx(0.91)
    assert s.f1 == 1.0 and s.false_alarms_per_night == 0


def test_undefined_scores_are_nan_not_zero() -> None:
    s = summarize([score_night([], [])])
    assert math.isnan(s.precision) and math.isnan(s.recall) and math.isnan(s.f1)
    assert math.isnan(s.onset_error_median_s)


@pytest.mark.parametrize(("a", "b"), [(math.nan, 1.0), (0.0, math.inf), (5.0, 4.0)])
def test_bad_interval_is_refused(a: float, b: float) -> None:
    with pytest.raises(EvaluationError):
        Interval(a, b)


def test_summarize_needs_nights_and_min_overlap_must_be_sane() -> None:
    with pytest.raises(EvaluationError, match="no nights"):
        summarize([])
    with pytest.raises(EvaluationError, match="min_overlap_s"):
        match_events([], [], min_overlap_s=-1)


intervals = st.lists(
    st.tuples(st.floats(0, 1000, allow_nan=False), st.floats(0.01, 100, allow_nan=False)).map(
        lambda t: Interval(t[0], t[0] + t[1])
    ),
    max_size=12,
)


@given(truth=intervals, detected=intervals)
def test_matching_accounts_for_every_interval_exactly_once(
    truth: list[Interval], detected: list[Interval]
) -> None:
    matches, missed, unmatched = match_events(truth, detected)
    assert sorted([m.truth for m in matches] + missed, key=repr) == sorted(truth, key=repr)
    assert sorted([m.detected for m in matches] + unmatched, key=repr) == sorted(detected, key=repr)
    assert all(m.truth.overlap_s(m.detected) > 0 for m in matches)


@given(truth=intervals, detected=intervals)
def test_matching_is_maximal(truth: list[Interval], detected: list[Interval]) -> None:
    # No unmatched detection overlaps an unmatched cramp: the matching cannot be extended.
    _, missed, unmatched = match_events(truth, detected)
    assert not any(t.overlap_s(d) > 0 for t in missed for d in unmatched)


@given(truth=intervals)
def test_perfect_detection_scores_one(truth: list[Interval]) -> None:
    s = summarize([score_night(truth, truth)])
    if truth:
        assert s.precision == s.recall == s.f1 == 1.0
        assert s.onset_error_p90_s == 0.0 and s.false_alarms_per_night == 0.0


@given(truth=intervals, detected=intervals)
def test_scores_are_bounded_and_f1_is_their_harmonic_mean(
    truth: list[Interval], detected: list[Interval]
) -> None:
    s = summarize([score_night(truth, detected)])
    for value in (s.precision, s.recall, s.f1):
        assert math.isnan(value) or 0.0 <= value <= 1.0
    if s.true_positives:
        assert s.f1 == pytest.approx(2 * s.precision * s.recall / (s.precision + s.recall))


def test_clip_to_keeps_what_starts_inside_the_excerpt_and_cuts_its_end() -> None:
    found = [iv(5, 20), iv(40, 70), iv(90, 95), iv(100, 130)]
    assert clip_to(found, 10, 100) == [iv(40, 70), iv(90, 95)]
    assert clip_to(found, 0, 60) == [iv(5, 20), iv(40, 60)]


def test_a_perturbation_scales_then_adds_its_own_noise_per_night() -> None:
    emg = np.random.default_rng(1).normal(0.0, 3.0, (200_000, 1)).astype(np.float32)
    assert Perturbation().apply(emg, "night") is emg  # none: the very same array
    scaled = Perturbation(gain=10.0).apply(emg, "night")
    assert scaled.dtype == np.float64 and np.array_equal(scaled, emg.astype(np.float64) * 10.0)
    noisy = Perturbation(gain=2.0, noise_uv=5.0, seed=3)
    added = noisy.apply(emg, "night") - emg.astype(np.float64) * 2.0
    assert added.shape == emg.shape
    assert np.sqrt(np.mean(added**2)) == pytest.approx(5.0, rel=0.01)
    assert abs(float(np.mean(added))) < 0.05  # white and zero-mean: no offset
    assert np.array_equal(noisy.apply(emg, "night"), noisy.apply(emg, "night"))  # a rerun
    assert not np.array_equal(noisy.apply(emg, "night"), noisy.apply(emg, "other night"))
    other_seed = Perturbation(gain=2.0, noise_uv=5.0, seed=4).apply(emg, "night")
    assert not np.array_equal(noisy.apply(emg, "night"), other_seed)


@pytest.mark.parametrize(
    ("gain", "noise_uv"), [(0.0, 0.0), (-1.0, 0.0), (math.inf, 0.0), (1.0, -2.0), (1.0, math.nan)]
)
def test_a_perturbation_refuses_what_no_amplifier_does(gain: float, noise_uv: float) -> None:
    with pytest.raises(EvaluationError):
        Perturbation(gain=gain, noise_uv=noise_uv)
