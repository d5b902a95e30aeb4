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

# Samples per channel from which :func:`block_stats` reduces each quantity on its own: below
# it the cost is per NumPy call and one stacked reduction wins; above it, the stacked copy
# costs more than the calls it saves (a 60 s piece: about 10 % faster, 1 s chunks: about 30 %
# slower).
SEPARATE_FROM = 8192


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
    channels, n_blocks = raw.shape[0], raw.shape[1] // block_len
    shape = (channels, n_blocks, block_len)
    r = raw.reshape(shape)
    c = clean.reshape(shape)
    raw_max = np.maximum.reduce(r, axis=2)
    raw_min = np.minimum.reduce(r, axis=2)
    if raw.shape[1] >= SEPARATE_FROM:
        return _separate_stats(
            r, band.reshape(shape) if band is not clean else None, c, raw_max, raw_min
        )
    # Every per-block sum comes from one reduction of a stacked buffer: a 1 s chunk holds so few
    # samples that the cost is per NumPy call. Each block row is still summed on its own, in
    # the same order as a separate ``sum(axis=2)``, so the values are the same to the bit.
    separate_band = band is not clean
    work = np.empty((6 if separate_band else 5, channels, n_blocks, block_len))
    np.square(c, out=work[0])
    work[1] = r
    np.equal(r, raw_max[:, :, None], out=work[2])
    np.equal(r, raw_min[:, :, None], out=work[3])
    signs = np.signbit(c)
    work[4, :, :, 0] = 0.0
    np.not_equal(signs[:, :, 1:], signs[:, :, :-1], out=work[4, :, :, 1:])
    if separate_band:
        np.square(band.reshape(shape), out=work[5])
    sums = np.add.reduce(work, axis=3)
    means = sums / block_len
    counts = sums[2:5].astype(np.int64)
    return BlockStats(
        ms_band_uv2=(means[5] if separate_band else means[0]).T,
        ms_uv2=means[0].T,
        raw_max_uv=raw_max.T,
        raw_min_uv=raw_min.T,
        raw_mean_uv=means[1].T,
        at_max=counts[0].T,
        at_min=counts[1].T,
        crossings=counts[2].T,
    )


def _separate_stats(
    r: FloatArray, b: FloatArray | None, c: FloatArray, raw_max: FloatArray, raw_min: FloatArray
) -> BlockStats:
    """:func:`block_stats` of a long piece, one reduction per quantity (no stacked copy).

    ``r``, ``c`` (and ``b`` unless the band-passed EMG is the notched one) are shaped
    (channels, n_blocks, block_len). The float sums run over the same contiguous rows as the
    stacked path's, so they are the same to the bit; the counts are exact either way.
    """
    block_len = r.shape[2]
    square = np.square(c)
    ms = np.add.reduce(square, axis=2) / block_len
    ms_band = ms if b is None else np.add.reduce(np.square(b, out=square), axis=2) / block_len
    signs = np.signbit(c)
    return BlockStats(
        ms_band_uv2=ms_band.T,
        ms_uv2=ms.T,
        raw_max_uv=raw_max.T,
        raw_min_uv=raw_min.T,
        raw_mean_uv=(np.add.reduce(r, axis=2) / block_len).T,
        at_max=np.count_nonzero(r == raw_max[:, :, None], axis=2).astype(np.int64).T,
        at_min=np.count_nonzero(r == raw_min[:, :, None], axis=2).astype(np.int64).T,
        crossings=np.count_nonzero(signs[:, :, 1:] != signs[:, :, :-1], axis=2).astype(np.int64).T,
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
    total = joined[0:n] + joined[1 : 1 + n] if window > 1 else joined[0:n].copy()
    for k in range(2, window):  # fixed summation order: identical for any chunking
        total += joined[k : k + n]
    return total / window, joined[joined.shape[0] - (window - 1) :].copy()
