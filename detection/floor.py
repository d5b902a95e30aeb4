"""Adaptive noise floor: a low quantile of 1 s envelope medians over a long sliding window.

A minimum-statistics estimator (Martin 2001): the floor follows the quiet stretches of the
night, drops within seconds when the noise drops, and a contraction shorter than
``(1 - quantile) * window`` (about 9.5 min with the defaults) cannot drag it up. Seconds with
an invalid signal (lead-off, flat line, artifact, filter settling) are left out.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def second_medians(env_uv: FloatArray, valid: BoolArray) -> FloatArray:
    """Median envelope of each second over its valid blocks (NaN if fewer than half are valid).

    Parameters
    ----------
    env_uv : ndarray, shape (n_seconds, blocks_per_second)
        Smoothed RMS envelope, µV.
    valid : ndarray of bool, same shape
    """
    per_second = env_uv.shape[1]
    if valid.all():  # the usual case: the same arithmetic without the NaN bookkeeping
        ordered = np.sort(env_uv, axis=1)
        return (ordered[:, (per_second - 1) // 2] + ordered[:, per_second // 2]) / 2.0
    values = np.sort(np.where(valid, env_uv, np.nan), axis=1)
    n_valid = np.count_nonzero(valid, axis=1)
    lo = np.clip((n_valid - 1) // 2, 0, per_second - 1)
    hi = np.clip(n_valid // 2, 0, per_second - 1)
    rows = np.arange(values.shape[0])
    median = (values[rows, lo] + values[rows, hi]) / 2.0
    return np.where(n_valid * 2 >= per_second, median, np.nan)


def sorted_valid(window: FloatArray) -> list[float]:
    """The valid (non-NaN) values of a floor window in ascending order."""
    return sorted(window[~np.isnan(window)].tolist())


def update_floor(
    window: FloatArray,
    seconds: FloatArray,
    quantile: float,
    floor_min_uv: float,
    ordered: list[float] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Floor after each new second, and the new window.

    Each second updates a sorted copy of the window's valid values (one bisect removal and
    insertion) instead of re-ranking the whole window, so the cost per second is independent
    of the window length in practice.

    Parameters
    ----------
    window : ndarray, shape (window_len,)
        The last ``window_len`` second medians, oldest first, NaN where unknown, µV.
    seconds : ndarray, shape (k,)
        New second medians, µV (NaN for invalid seconds).
    quantile : float
        Order statistic taken among the valid values of the window (exact, no interpolation).
    floor_min_uv : float
        Lower bound of the floor, µV.
    ordered : list of float, optional
        ``sorted_valid(window)``, kept by the caller between calls; updated in place to match
        the returned window. Built from ``window`` when omitted.

    Returns
    -------
    floors : ndarray, shape (k,)
        Floor once each new second has entered the window, µV; NaN while no valid second is
        known yet.
    window : ndarray, shape (window_len,)
    """
    size = window.shape[0]
    if ordered is None:
        ordered = sorted_valid(window)
    k = seconds.shape[0]
    new_values = seconds.tolist()
    leaving = window[:k].tolist() + new_values[: max(0, k - size)]
    floors = np.empty(k)
    for i in range(k):
        old, new = leaving[i], new_values[i]
        if old == old:  # not NaN: it was in the ordered values
            del ordered[bisect.bisect_left(ordered, old)]
        if new == new:
            bisect.insort(ordered, new)
        n_valid = len(ordered)
        if n_valid:
            index = min(math.floor(quantile * n_valid), size - 1)
            floors[i] = max(ordered[index], floor_min_uv)
        else:
            floors[i] = math.nan
    if k >= size:
        return floors, seconds[k - size :].copy()
    return floors, np.concatenate([window[k:], seconds])
