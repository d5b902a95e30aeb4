"""Published EMG onset detectors run as yardsticks: NeuroKit2 and BioSPPy.

Both are optional dependencies (in the ``test`` extra: ``pip install -e '.[test]'``), imported only when an anchor
runs. To be fair to them, each works on blocks of the night (their thresholds are global to the
signal they see, so a whole night would let one loud hour set the threshold for the rest),
and their activity is turned into episodes by the same rule as ours: activations closer than
``merge_gap_s`` are merged, and merged activations shorter than ``min_duration_s`` dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from detection.evaluation import Interval

ANCHORS: Final = ("neurokit2", "biosppy")

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class AnchorUnavailable(RuntimeError):
    """The anchor's library is not installed."""


class AnchorError(ValueError):
    """Input an anchor cannot process (wrong shape, NaN, bad parameters)."""


@dataclass(frozen=True)
class EpisodeRule:
    """The minimum-duration rule every detector's activity goes through.

    Attributes
    ----------
    min_duration_s : float
        Shortest episode kept, seconds.
    merge_gap_s : float
        Activations separated by less than this are one episode, seconds.
    """

    min_duration_s: float = 10.0
    merge_gap_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("min_duration_s", "merge_gap_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise AnchorError(f"{name} must be a finite number >= 0, got {value}")


def activity_to_episodes(
    active: BoolArray, rate_hz: float, rule: EpisodeRule, *, start_s: float = 0.0
) -> list[Interval]:
    """Turn a per-sample activity mask into episodes with ``rule``.

    Parameters
    ----------
    active : ndarray of bool, shape (n,)
    rate_hz : float
        Sample rate of ``active``.
    rule : EpisodeRule
    start_s : float
        Time of ``active[0]``, seconds from the recording start.
    """
    return apply_rule(_runs(active, rate_hz, start_s), rule)


def apply_rule(activations: list[Interval], rule: EpisodeRule) -> list[Interval]:
    """Merge activations closer than ``rule.merge_gap_s``, drop those shorter than the minimum."""
    merged: list[Interval] = []
    for iv in sorted(activations, key=lambda a: a.onset_s):
        if merged and iv.onset_s - merged[-1].offset_s < rule.merge_gap_s:
            last = merged.pop()
            iv = Interval(last.onset_s, max(last.offset_s, iv.offset_s))
        merged.append(iv)
    return [iv for iv in merged if iv.offset_s - iv.onset_s >= rule.min_duration_s]


def neurokit2_episodes(
    emg_uv: FloatArray, rate_hz: float, rule: EpisodeRule, *, block_s: float = 600.0
) -> list[Interval]:
    """Episodes from NeuroKit2: ``emg_process``'s steps, then ``emg_activation``.

    ``emg_clean`` and ``emg_amplitude`` (what ``emg_process`` composes before activation) run
    block by block; ``emg_activation`` (threshold method) then runs per block with NeuroKit's
    default threshold, a tenth of the standard deviation of the amplitude, computed over the
    whole night as a single ``emg_process`` call would. NeuroKit drops activity that touches the
    ends of the signal it sees; at block boundaries inside the night such activity is restored,
    so blocks give what one whole-night call would.

    Parameters
    ----------
    emg_uv : ndarray, shape (n,) or (n, channels)
        EMG in µV; only the first channel is used.
    rate_hz : float
        EMG sample rate.
    rule : EpisodeRule
    block_s : float
        Length of the blocks processed one at a time, seconds.
    """
    try:
        import neurokit2 as nk
    except ImportError:
        raise AnchorUnavailable("neurokit2 is not installed (pip install neurokit2)") from None
    x = _first_channel(emg_uv)
    bounds = _blocks(x.size, rate_hz, block_s)
    fs = round(rate_hz)
    pad = fs  # a second either side keeps the filters' edge transients out of each block
    pieces = []
    for a, b in bounds:
        lo, hi = max(0, a - pad), min(x.size, b + pad)
        amp = np.asarray(nk.emg_amplitude(nk.emg_clean(x[lo:hi], sampling_rate=fs)))
        pieces.append(amp[a - lo : a - lo + (b - a)])
    amplitude = np.concatenate(pieces or [np.zeros(0)])
    if amplitude.size == 0:
        return []
    threshold = float(np.std(amplitude)) / 10
    activations: list[Interval] = []
    for a, b in bounds:
        amp = amplitude[a:b]
        if not np.any(amp > threshold):
            continue
        with warnings.catch_warnings():
            # "No events found" in a block without activity is an answer, not a problem.
            warnings.simplefilter("ignore", category=nk.misc.NeuroKitWarning)
            _, info = nk.emg_activation(
                emg_amplitude=amp, sampling_rate=fs, method="threshold", threshold=threshold
            )
        onsets = np.asarray(info["EMG_Onsets"], dtype=np.int64)
        offsets = np.asarray(info["EMG_Offsets"], dtype=np.int64)
        starts_active = a > 0 and bool(amp[0] > threshold)
        if starts_active:
            # The offset of activity carried in from the previous block (NeuroKit drops offsets
            # without an onset): where the amplitude first falls to the threshold.
            below = np.flatnonzero(amp <= threshold)
            first_on = onsets[0] if onsets.size else amp.size
            if below.size and below[0] < first_on:
                offsets = np.union1d(offsets, below[:1])
        active = _mask_from_edges(amp.size, onsets, offsets, starts_active)
        runs = _runs(active, rate_hz, a / rate_hz)
        if b == x.size and runs and active[-1]:
            runs.pop()  # runs into the end of the night: NeuroKit drops it
        activations.extend(runs)
    return apply_rule(activations, rule)


def biosppy_episodes(
    emg_uv: FloatArray,
    rate_hz: float,
    rule: EpisodeRule,
    *,
    block_s: float = 600.0,
    window_s: float = 0.05,
    threshold_sd: float = 3.0,
    rest_s: float = 1.0,
) -> list[Interval]:
    """Episodes from BioSPPy's EMG filter and Hodges & Bui onset detector.

    ``biosppy.signals.emg.emg`` high-passes the signal (100 Hz); then
    ``hodges_bui_onset_detector`` compares a ``window_s`` moving average of the rectified
    signal with ``threshold_sd`` standard deviations of a rest segment (Hodges & Bui 1996,
    doi:10.1016/S0921-884X(96)95190-5). The rest segment is the quietest ``rest_s`` window of
    each block, since a night has no separately recorded rest.

    Parameters
    ----------
    emg_uv : ndarray, shape (n,) or (n, channels)
        EMG in µV; only the first channel is used.
    rate_hz : float
    rule : EpisodeRule
    block_s, window_s, threshold_sd, rest_s : float
        Block length, moving-average window, threshold and rest length.
    """
    try:
        from biosppy.signals import emg as bemg
    except ImportError:
        raise AnchorUnavailable("biosppy is not installed (pip install biosppy)") from None
    size = max(1, round(window_s * rate_hz))
    rest_n = max(2, round(rest_s * rate_hz))

    def block_activity(x: FloatArray) -> BoolArray:
        filtered = np.asarray(bemg.emg(signal=x, sampling_rate=rate_hz, show=False)["filtered"])
        n_win = filtered.size // rest_n
        if n_win == 0:
            return np.zeros(x.size, dtype=bool)
        power = np.var(filtered[: n_win * rest_n].reshape(n_win, rest_n), axis=1)
        quiet = int(np.argmin(power)) * rest_n
        result = bemg.hodges_bui_onset_detector(
            signal=filtered,
            rest=[quiet, quiet + rest_n],
            sampling_rate=rate_hz,
            size=size,
            threshold=threshold_sd,
        )
        test = np.asarray(result["processed"])
        active = np.zeros(x.size, dtype=bool)
        # The moving average is 'valid': sample i of it is centred on input i + size // 2.
        active[size // 2 : size // 2 + test.size] = test >= threshold_sd
        return active

    return _run_blocks(emg_uv, rate_hz, rule, block_s, block_activity)


def anchor_episodes(
    name: str, emg_uv: FloatArray, rate_hz: float, rule: EpisodeRule
) -> list[Interval]:
    """Run the anchor called ``name`` (one of :data:`ANCHORS`)."""
    if name == "neurokit2":
        return neurokit2_episodes(emg_uv, rate_hz, rule)
    if name == "biosppy":
        return biosppy_episodes(emg_uv, rate_hz, rule)
    raise AnchorError(f"unknown anchor {name!r}; choose from {', '.join(ANCHORS)}")


def _run_blocks(
    emg_uv: FloatArray,
    rate_hz: float,
    rule: EpisodeRule,
    block_s: float,
    block_activity: Callable[[FloatArray], BoolArray],
) -> list[Interval]:
    x = _first_channel(emg_uv)
    activations: list[Interval] = []
    for a, b in _blocks(x.size, rate_hz, block_s):
        activations.extend(_runs(block_activity(x[a:b]), rate_hz, a / rate_hz))
    return apply_rule(activations, rule)


def _blocks(n: int, rate_hz: float, block_s: float) -> list[tuple[int, int]]:
    """Sample bounds of the blocks; a last block under a second joins the one before it."""
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise AnchorError(f"rate_hz must be positive, got {rate_hz}")
    if not (math.isfinite(block_s) and block_s > 0):
        raise AnchorError(f"block_s must be positive, got {block_s}")
    block_n = max(int(rate_hz), round(block_s * rate_hz))
    if n < int(rate_hz):  # the filters of both libraries need about a second of signal
        return []
    starts = list(range(0, n, block_n))
    if len(starts) > 1 and n - starts[-1] < int(rate_hz):
        starts.pop()
    return list(zip(starts, [*starts[1:], n], strict=True))


def _mask_from_edges(
    n: int, onsets: npt.NDArray[np.int64], offsets: npt.NDArray[np.int64], starts_active: bool
) -> BoolArray:
    """Activity mask of ``n`` samples from alternating onset/offset indices.

    An activity running into the block's start (``starts_active``) or end has no onset or
    offset of its own; NeuroKit drops such edge activity, so it is restored here.
    """
    toggles = np.zeros(n + 1, dtype=np.int8)
    np.add.at(toggles, np.clip(onsets, 0, n), 1)
    np.add.at(toggles, np.clip(offsets, 0, n), -1)
    level = np.cumsum(toggles[:n]) + (1 if starts_active else 0)
    return np.asarray(level > 0)


def _first_channel(emg_uv: FloatArray) -> FloatArray:
    x = np.asarray(emg_uv, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, 0]
    if x.ndim != 1:
        raise AnchorError(f"emg_uv must have shape (n,) or (n, channels), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise AnchorError("emg_uv contains NaN or inf")
    return x


def _runs(active: BoolArray, rate_hz: float, start_s: float) -> list[Interval]:
    mask = np.asarray(active, dtype=np.int8)
    edges = np.diff(mask, prepend=0, append=0)
    onsets = np.flatnonzero(edges == 1)
    offsets = np.flatnonzero(edges == -1)
    return [
        Interval(float(start_s + on / rate_hz), float(start_s + off / rate_hz))
        for on, off in zip(onsets, offsets, strict=True)
    ]
