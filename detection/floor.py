"""Adaptive noise floor: a low quantile of 1 s envelope medians over a long sliding window.

A minimum-statistics estimator (Martin 2001): the floor follows the quiet stretches of the
night, drops within seconds when the noise drops, and a contraction shorter than
``(1 - quantile) * window`` (about 9.5 min with the defaults) cannot drag it up. Seconds with
an invalid signal (lead-off, flat line, artifact, filter settling) are left out.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
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
    values = np.sort(np.where(valid, env_uv, np.nan), axis=1)
    n_valid = np.count_nonzero(valid, axis=1)
    lo = np.clip((n_valid - 1) // 2, 0, per_second - 1)
    hi = np.clip(n_valid // 2, 0, per_second - 1)
    rows = np.arange(values.shape[0])
    median = (values[rows, lo] + values[rows, hi]) / 2.0
    return np.where(n_valid * 2 >= per_second, median, np.nan)


def update_floor(
    window: FloatArray, seconds: FloatArray, quantile: float, floor_min_uv: float
) -> tuple[FloatArray, FloatArray]:
    """Floor after each new second, and the new window.

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

    Returns
    -------
    floors : ndarray, shape (k,)
        Floor once each new second has entered the window, µV; NaN while no valid second is
        known yet.
    window : ndarray, shape (window_len,)
    """
    size = window.shape[0]
    joined = np.concatenate([window, seconds])
    rows = sliding_window_view(joined, size)[1:]
    n_valid = np.count_nonzero(~np.isnan(rows), axis=1)
    index = np.clip(np.floor(quantile * n_valid).astype(np.int64), 0, size - 1)
    picked = np.empty(rows.shape[0])
    for k in np.unique(index):  # usually one value: a full window
        chosen = index == k
        # partition puts NaN last, so the k-th of the valid values is exact
        picked[chosen] = np.partition(rows[chosen], int(k), axis=1)[:, k]
    floors = np.where(n_valid > 0, np.maximum(picked, floor_min_uv), np.nan)
    return floors, joined[joined.shape[0] - size :].copy()
