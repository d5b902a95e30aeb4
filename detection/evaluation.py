"""Event-level scoring of detected episodes against labelled nights.

Pure functions over intervals in seconds from the recording start. A detection matches a
labelled cramp when the two overlap; matching is one-to-one and maximises the total overlap
(:func:`scipy.optimize.linear_sum_assignment`). Every unmatched detection is a false alarm,
attributed to the labelled look-alike (non-cramp event or signal fault) that fits it best.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

BACKGROUND: Final = "background"
"""Cause of a false alarm that overlaps no labelled event or fault."""

SPLIT: Final = "split"
"""Cause of a false alarm that overlaps a cramp already matched by another detection."""


class EvaluationError(ValueError):
    """Intervals that cannot be scored (NaN, negative length, bad parameters)."""


@dataclass(frozen=True)
class Interval:
    """A time interval in seconds from the recording start; ``offset_s >= onset_s``."""

    onset_s: float
    offset_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.onset_s) and math.isfinite(self.offset_s)):
            raise EvaluationError(f"interval bounds must be finite, got {self!r}")
        if self.offset_s < self.onset_s:
            raise EvaluationError(f"interval ends before it starts: {self!r}")

    def overlap_s(self, other: Interval) -> float:
        """Length of the intersection with ``other`` in seconds (0 when disjoint)."""
        return max(0.0, min(self.offset_s, other.offset_s) - max(self.onset_s, other.onset_s))


@dataclass(frozen=True)
class LabelledInterval:
    """A labelled non-cramp event or signal fault that can cause a false alarm.

    Attributes
    ----------
    kind : str
        Label type (``"turn"``, ``"plm"``, ``"lead_off_flat"``, ...).
    interval : Interval
    """

    kind: str
    interval: Interval


@dataclass(frozen=True)
class Match:
    """A detection paired with the labelled cramp it overlaps."""

    truth: Interval
    detected: Interval

    @property
    def onset_error_s(self) -> float:
        """Detected minus true onset, seconds (negative: detected early)."""
        return self.detected.onset_s - self.truth.onset_s

    @property
    def offset_error_s(self) -> float:
        """Detected minus true offset, seconds (negative: detected early)."""
        return self.detected.offset_s - self.truth.offset_s


@dataclass(frozen=True)
class FalseAlarm:
    """A detection that matches no labelled cramp, with the label that most likely caused it."""

    detected: Interval
    cause: str


@dataclass(frozen=True)
class NightScore:
    """The matching of one night.

    Attributes
    ----------
    name : str
        Night name (file stem).
    scenario : str
        Simulator scenario of the night.
    matches : tuple of Match
    missed : tuple of Interval
        Labelled cramps no detection matched.
    false_alarms : tuple of FalseAlarm
    """

    name: str
    scenario: str
    matches: tuple[Match, ...]
    missed: tuple[Interval, ...]
    false_alarms: tuple[FalseAlarm, ...]

    @property
    def n_truth(self) -> int:
        return len(self.matches) + len(self.missed)

    @property
    def n_detected(self) -> int:
        return len(self.matches) + len(self.false_alarms)


@dataclass(frozen=True)
class Summary:
    """Scores pooled over nights (events pooled, not nights averaged).

    Attributes
    ----------
    nights, n_truth, n_detected, true_positives : int
    precision, recall, f1 : float
        Event-level; ``nan`` when undefined (no detections / no labelled cramps).
    onset_error_median_s, onset_error_p90_s : float
        Median and 90th percentile of the absolute onset error of matched events, seconds.
    offset_error_median_s, offset_error_p90_s : float
        Same for offsets.
    onset_bias_s : float
        Median signed onset error (negative: detected early), seconds.
    false_alarms_per_night : float
    false_alarms_by_cause : mapping of str to float
        False alarms per night for each cause, largest first.
    """

    nights: int
    n_truth: int
    n_detected: int
    true_positives: int
    precision: float
    recall: float
    f1: float
    onset_error_median_s: float
    onset_error_p90_s: float
    offset_error_median_s: float
    offset_error_p90_s: float
    onset_bias_s: float
    false_alarms_per_night: float
    false_alarms_by_cause: Mapping[str, float]


@dataclass(frozen=True)
class Perturbation:
    """A change to a night's EMG before it is scored: what another amplifier, electrode or
    skin would have recorded, for robustness runs (``crampwatch eval --gain --noise-uv``).

    Attributes
    ----------
    gain : float
        Every sample times this (another amplifier gain, electrode size or contact); > 0.
    noise_uv : float
        RMS of white Gaussian noise added after the gain, µV, spread over the recording's whole
        band (0 to half the sampling rate): at 1 kHz, 0.93 of it falls in the detector's
        20-450 Hz band. >= 0.
    seed : int
        Seeds the noise together with the night's name, so each night gets its own noise and
        a rerun the same.
    """

    gain: float = 1.0
    noise_uv: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.gain) and self.gain > 0):
            raise EvaluationError(f"gain must be a positive number, got {self.gain}")
        if not (math.isfinite(self.noise_uv) and self.noise_uv >= 0):
            raise EvaluationError(f"noise_uv must be a number >= 0, got {self.noise_uv}")

    @property
    def is_identity(self) -> bool:
        """Whether :meth:`apply` leaves the signal as it is."""
        return self.gain == 1.0 and self.noise_uv == 0.0

    def apply(self, emg_uv: npt.NDArray[np.floating], name: str) -> npt.NDArray[np.floating]:
        """``emg_uv`` (any shape) perturbed for the night called ``name``; the same array
        when :attr:`is_identity`, a new float64 one otherwise."""
        if self.is_identity:
            return emg_uv
        out = np.asarray(emg_uv, dtype=np.float64) * self.gain
        if self.noise_uv > 0:
            rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
            out += rng.standard_normal(out.shape) * self.noise_uv
        return out


def match_events(
    truth: Sequence[Interval], detected: Sequence[Interval], *, min_overlap_s: float = 0.0
) -> tuple[list[Match], list[Interval], list[Interval]]:
    """Pair detections with labelled cramps one-to-one by maximal total overlap.

    Parameters
    ----------
    truth, detected : sequences of Interval
    min_overlap_s : float
        A pair counts only when its intersection is longer than this, seconds.

    Returns
    -------
    matches : list of Match
        In truth onset order.
    missed : list of Interval
        Labelled cramps left unmatched.
    unmatched : list of Interval
        Detections left unmatched.
    """
    if not (math.isfinite(min_overlap_s) and min_overlap_s >= 0):
        raise EvaluationError(f"min_overlap_s must be >= 0, got {min_overlap_s}")
    truth_sorted = sorted(truth, key=lambda iv: (iv.onset_s, iv.offset_s))
    det_sorted = sorted(detected, key=lambda iv: (iv.onset_s, iv.offset_s))
    overlap = np.array(
        [[t.overlap_s(d) for d in det_sorted] for t in truth_sorted], dtype=np.float64
    ).reshape(len(truth_sorted), len(det_sorted))
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    pairs = [(r, c) for r, c in zip(rows, cols, strict=True) if overlap[r, c] > min_overlap_s]
    used_truth = {r for r, _ in pairs}
    used_det = {c for _, c in pairs}
    matches = [Match(truth_sorted[r], det_sorted[c]) for r, c in sorted(pairs)]
    missed = [t for i, t in enumerate(truth_sorted) if i not in used_truth]
    unmatched = [d for i, d in enumerate(det_sorted) if i not in used_det]
    return matches, missed, unmatched


def attribute_false_alarm(
    detected: Interval,
    lookalikes: Iterable[LabelledInterval],
    cramps: Iterable[Interval],
    *,
    margin_s: float = 2.0,
) -> str:
    """The label that most likely caused a false alarm.

    The look-alike whose interval, widened by ``margin_s`` on both sides, fits the detection
    best (largest intersection over union, so a 30 s stretch explains a 30 s detection better
    than hum labelled over the whole night does); else :data:`SPLIT` when the detection
    overlaps a labelled cramp (a second detection of one cramp); else :data:`BACKGROUND`.
    """
    best_kind, best_fit = "", 0.0
    for item in lookalikes:
        widened = Interval(item.interval.onset_s - margin_s, item.interval.offset_s + margin_s)
        overlap = detected.overlap_s(widened)
        if overlap <= 0:
            continue
        union = max(detected.offset_s, widened.offset_s) - min(detected.onset_s, widened.onset_s)
        fit = overlap / union
        if fit > best_fit:
            best_kind, best_fit = item.kind, fit
    if best_kind:
        return best_kind
    if any(detected.overlap_s(c) > 0 for c in cramps):
        return SPLIT
    return BACKGROUND


def score_night(
    truth: Sequence[Interval],
    detected: Sequence[Interval],
    lookalikes: Sequence[LabelledInterval] = (),
    *,
    name: str = "",
    scenario: str = "",
    min_overlap_s: float = 0.0,
    margin_s: float = 2.0,
) -> NightScore:
    """Match one night's detections to its labelled cramps and attribute the false alarms.

    Parameters
    ----------
    truth : sequence of Interval
        Labelled cramps, seconds from the recording start.
    detected : sequence of Interval
        Detected episodes on the same time axis.
    lookalikes : sequence of LabelledInterval
        Non-cramp events and signal faults of the night.
    name, scenario : str
        Carried into the result for per-scenario tables.
    min_overlap_s, margin_s : float
        See :func:`match_events` and :func:`attribute_false_alarm`.
    """
    matches, missed, unmatched = match_events(truth, detected, min_overlap_s=min_overlap_s)
    alarms = tuple(
        FalseAlarm(d, attribute_false_alarm(d, lookalikes, truth, margin_s=margin_s))
        for d in unmatched
    )
    return NightScore(name, scenario, tuple(matches), tuple(missed), alarms)


def clip_to(intervals: Iterable[Interval], start_s: float, end_s: float) -> list[Interval]:
    """The intervals that start inside ``[start_s, end_s)``, cut at ``end_s`` (an excerpt)."""
    return [
        Interval(iv.onset_s, min(iv.offset_s, end_s))
        for iv in intervals
        if start_s <= iv.onset_s < end_s
    ]


def summarize(scores: Sequence[NightScore]) -> Summary:
    """Pool the events of several nights into precision, recall, F1 and error statistics."""
    if not scores:
        raise EvaluationError("no nights to summarize")
    n_truth = sum(s.n_truth for s in scores)
    n_detected = sum(s.n_detected for s in scores)
    tp = sum(len(s.matches) for s in scores)
    precision = tp / n_detected if n_detected else math.nan
    recall = tp / n_truth if n_truth else math.nan
    f1 = math.nan if n_truth + n_detected == 0 else 2 * tp / (n_truth + n_detected)
    onset = np.array([m.onset_error_s for s in scores for m in s.matches], dtype=np.float64)
    offset = np.array([m.offset_error_s for s in scores for m in s.matches], dtype=np.float64)
    causes = Counter(a.cause for s in scores for a in s.false_alarms)
    nights = len(scores)
    return Summary(
        nights=nights,
        n_truth=n_truth,
        n_detected=n_detected,
        true_positives=tp,
        precision=precision,
        recall=recall,
        f1=f1,
        onset_error_median_s=_percentile(np.abs(onset), 50),
        onset_error_p90_s=_percentile(np.abs(onset), 90),
        offset_error_median_s=_percentile(np.abs(offset), 50),
        offset_error_p90_s=_percentile(np.abs(offset), 90),
        onset_bias_s=_percentile(onset, 50),
        false_alarms_per_night=sum(causes.values()) / nights,
        false_alarms_by_cause={k: n / nights for k, n in causes.most_common()},
    )


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else math.nan
