"""EMG envelope on a fixed block grid: block mean squares, raw statistics, causal RMS smoothing.

A block is ``block_len`` consecutive samples of one stream segment; every quantity here is a
function of one block's samples (or of a fixed number of earlier blocks), so the grid and its
values do not depend on how the samples were chunked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class BlockStats:
    """Per-block, per-channel statistics; every array has shape (n_blocks, channels).

    Attributes
    ----------
    ms_band_uv2 : ndarray
        Mean square of the band-passed EMG before the mains notch, µV².
    ms_uv2 : ndarray
        Mean square of the band-passed, notched EMG, µV².
    raw_max_uv, raw_min_uv, raw_mean_uv : ndarray
        Extremes and mean of the unfiltered samples, µV.
    at_max, at_min : ndarray of int
        Samples equal to the block maximum / minimum (rails repeat, live signals do not).
    crossings : ndarray of int
        Sign changes of the notched EMG inside the block.
    """

    ms_band_uv2: FloatArray
    ms_uv2: FloatArray
    raw_max_uv: FloatArray
    raw_min_uv: FloatArray
    raw_mean_uv: FloatArray
    at_max: IntArray
    at_min: IntArray
    crossings: IntArray


def block_stats(raw: FloatArray, band: FloatArray, clean: FloatArray, block_len: int) -> BlockStats:
    """Statistics of whole blocks.

    Parameters
    ----------
    raw, band, clean : ndarray, shape (channels, n_blocks * block_len)
        Unfiltered, band-passed and band-passed + notched EMG, µV (channel-major, so every
        reduction runs over contiguous memory).
    block_len : int
        Samples per block.
    """
    shape = (raw.shape[0], raw.shape[1] // block_len, block_len)
    r = raw.reshape(shape)
    b = band.reshape(shape)
    c = clean.reshape(shape)
    raw_max = r.max(axis=2)
    raw_min = r.min(axis=2)
    signs = np.signbit(c)
    ms_clean = np.square(c).sum(axis=2) / block_len
    ms_band = ms_clean if band is clean else np.square(b).sum(axis=2) / block_len
    return BlockStats(
        ms_band_uv2=ms_band.T,
        ms_uv2=ms_clean.T,
        raw_max_uv=raw_max.T,
        raw_min_uv=raw_min.T,
        raw_mean_uv=r.mean(axis=2).T,
        at_max=(r == raw_max[:, :, None]).sum(axis=2, dtype=np.int64).T,
        at_min=(r == raw_min[:, :, None]).sum(axis=2, dtype=np.int64).T,
        crossings=(signs[:, :, 1:] != signs[:, :, :-1]).sum(axis=2, dtype=np.int64).T,
    )


def smooth_mean_square(ms: FloatArray, carry: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Causal moving mean of block mean squares over ``len(carry) + 1`` blocks.

    Parameters
    ----------
    ms : ndarray, shape (n_blocks, channels)
        Block mean squares, µV².
    carry : ndarray, shape (window - 1, channels)
        The previous blocks' mean squares (oldest first).

    Returns
    -------
    smoothed : ndarray, shape (n_blocks, channels)
        Mean square over each block and the ``window - 1`` before it, µV².
    carry : ndarray
        The new carry for the next call.
    """
    window = carry.shape[0] + 1
    joined = np.concatenate([carry, ms])
    n = ms.shape[0]
    total = joined[0:n].copy()
    for k in range(1, window):  # fixed summation order: identical for any chunking
        total += joined[k : k + n]
    return total / window, joined[joined.shape[0] - (window - 1) :].copy()
