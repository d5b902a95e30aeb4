"""Signal-quality rules: per-block fault flags, and fault intervals on the 1 s grid.

Faults raise :class:`~detection.events.QualityEvent` intervals instead of episodes. Lead-off,
flat line and motion artifact make a channel unusable for detection; clipping and mains hum are
reported but the channel stays usable (the notch removes the hum; a clipped cramp is still a
cramp).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from detection.envelope import BlockStats
from detection.events import QualityEvent, QualityFlag

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

LEAD_OFF = 1
FLAT = 2
CLIP = 4
MAINS = 8
ARTIFACT = 16
UNUSABLE = LEAD_OFF | FLAT | ARTIFACT
assert (LEAD_OFF, FLAT, CLIP, MAINS, ARTIFACT) == (1, 2, 4, 8, 16)  # block_flags packs them

FLAG_BITS: tuple[tuple[int, QualityFlag], ...] = (
    (LEAD_OFF, QualityFlag.LEAD_OFF),
    (FLAT, QualityFlag.FLAT_LINE),
    (CLIP, QualityFlag.CLIPPING),
    (MAINS, QualityFlag.MAINS),
    (ARTIFACT, QualityFlag.MOTION_ARTIFACT),
)
# Share of a second's blocks that must carry a flag for the second to be flagged.
SECOND_SHARE = {LEAD_OFF: 0.5, FLAT: 0.5, CLIP: 0.25, MAINS: 0.5, ARTIFACT: 0.2}
_SHARE_BITS = np.array(list(SECOND_SHARE), dtype=np.int64)
_SHARE_MIN = np.array(list(SECOND_SHARE.values()), dtype=np.float64)
CLEAR_SECONDS = 2  # clean seconds that close a fault interval


def block_flags(
    stats: BlockStats,
    prev_mean_uv: FloatArray,
    block_len: int,
    *,
    flat_uv: float,
    clip_fraction: float,
    rail_fraction: float,
    mains_fraction: float,
    artifact_ratio: float,
    floor_min_uv: float,
    notch: bool,
) -> IntArray:
    """Fault bits of each block and channel, shape (n_blocks, channels).

    Parameters
    ----------
    stats : BlockStats
    prev_mean_uv : ndarray, shape (channels,)
        Raw mean of the block before the first one (NaN at a segment start), µV.
    block_len : int
        Samples per block.
    flat_uv, clip_fraction, rail_fraction, mains_fraction, artifact_ratio, floor_min_uv
        Thresholds of :class:`~detection.config.DetectorConfig`.
    notch : bool
        Whether a mains notch runs (the hum share is only measurable then).
    """
    rms = np.sqrt(stats.ms_uv2)
    live = stats.raw_max_uv > stats.raw_min_uv
    extreme = np.maximum(stats.at_max, stats.at_min)
    rail_count, clip_count = _count_thresholds(block_len, rail_fraction, clip_fraction)
    swinging = live & (extreme < rail_count)  # not sitting on one rail
    # one boolean plane per flag, packed into the bits in one call: plane k is bit 2**k
    planes = np.empty((5, *live.shape), dtype=bool)
    np.logical_not(swinging, out=planes[0])  # LEAD_OFF: no signal, or stuck on a rail
    np.less(rms, flat_uv, out=planes[1])  # FLAT
    np.greater_equal(extreme, clip_count, out=planes[2])  # CLIP
    planes[1:3] &= swinging
    if notch:  # MAINS
        removed = 1.0 - stats.ms_uv2 / np.maximum(stats.ms_band_uv2, 1e-30)
        np.greater_equal(removed, mains_fraction, out=planes[3])
    else:
        planes[3] = False
    previous = np.concatenate([prev_mean_uv[None, :], stats.raw_mean_uv[:-1]])
    swing = np.abs(stats.raw_mean_uv - previous)
    # ARTIFACT; a NaN swing (no previous block at a segment start) compares False
    np.greater(swing, artifact_ratio * np.maximum(rms, floor_min_uv), out=planes[4])
    planes[3:5] &= live
    flags: IntArray = np.packbits(planes, axis=0, bitorder="little")[0].astype(np.int64)
    return flags


@lru_cache(maxsize=64)
def _count_thresholds(
    block_len: int, rail_fraction: float, clip_fraction: float
) -> tuple[int, int]:
    """Smallest sample counts (at one extreme) that make a block railed and clipped.

    Counting against integers gives exactly the float comparisons ``count / block_len >=
    rail_fraction`` and ``count >= max(4, clip_fraction * block_len)``.
    """
    rail = next((n for n in range(block_len + 1) if n / block_len >= rail_fraction), block_len + 1)
    clip = math.ceil(max(4.0, clip_fraction * block_len))
    return rail, clip


def second_flags(block_bits: IntArray, per_second: int) -> IntArray:
    """Fault bits of whole seconds from block bits of shape (n_seconds * per_second,)."""
    grid = block_bits.reshape(-1, per_second)
    if grid.shape[0] <= 2:
        # the seconds one chunk completes: plain Python costs less than the NumPy calls below
        seconds = []
        for row in grid.tolist():
            value = 0
            if any(row):
                for bit, share in SECOND_SHARE.items():
                    if sum(1 for flags in row if flags & bit) >= share * per_second:
                        value |= bit
            seconds.append(value)
        return np.array(seconds, dtype=np.int64)
    # blocks carrying each bit, per second: shape (n_seconds, len(SECOND_SHARE))
    counts = ((grid[:, :, None] & _SHARE_BITS) != 0).sum(axis=1)
    flagged = counts >= _SHARE_MIN * per_second
    bits: IntArray = np.bitwise_or.reduce(np.where(flagged, _SHARE_BITS, 0), axis=1)
    return bits.astype(np.int64)


@dataclass
class FaultTracker:
    """Open/close fault intervals from flagged seconds (open at once, close after clean ones)."""

    device_id: str
    open_since_us: dict[int, int] = field(default_factory=dict)
    clean_run: dict[int, int] = field(default_factory=dict)
    first_clean_us: dict[int, int] = field(default_factory=dict)

    def step(self, times_us: IntArray, ends_us: IntArray, bits: IntArray) -> list[QualityEvent]:
        """Advance over seconds [times_us, ends_us) with fault ``bits``; return events.

        Events carry the end of the second that decided them as ``at_us``.
        """
        events: list[QualityEvent] = []
        if not self.open_since_us and not np.logical_or.reduce(bits, axis=None):
            return events
        active = np.flatnonzero(bits)
        index, count = 0, times_us.shape[0]
        while index < count:
            value = int(bits[index])
            if value == 0 and not self.open_since_us:
                later = int(np.searchsorted(active, index))
                index = int(active[later]) if later < active.size else count
                continue
            t_us = int(times_us[index])
            known_us = int(ends_us[index])
            for bit, flag in FLAG_BITS:
                if value & bit:
                    self.clean_run[bit] = 0
                    if bit not in self.open_since_us:
                        self.open_since_us[bit] = t_us
                        events.append(QualityEvent(self.device_id, flag, t_us, None, known_us))
                elif bit in self.open_since_us:
                    run = self.clean_run.get(bit, 0)
                    if run == 0:
                        self.first_clean_us[bit] = t_us
                    self.clean_run[bit] = run + 1
                    if run + 1 >= CLEAR_SECONDS:
                        end_us = self.first_clean_us[bit]
                        events.append(self._close(bit, flag, end_us, known_us))
            index += 1
        return events

    def _close(self, bit: int, flag: QualityFlag, end_us: int, at_us: int) -> QualityEvent:
        start = self.open_since_us.pop(bit)
        self.clean_run.pop(bit, None)
        self.first_clean_us.pop(bit, None)
        return QualityEvent(self.device_id, flag, start, end_us, at_us)

    def close_all(self, end_us: int) -> list[QualityEvent]:
        """Close every open fault at ``end_us`` (end of data or a gap)."""
        events = []
        for bit, flag in FLAG_BITS:
            if bit in self.open_since_us:
                close_at = self.first_clean_us.get(bit, end_us)
                events.append(self._close(bit, flag, close_at, end_us))
        return events

    def open_flags(self) -> tuple[QualityFlag, ...]:
        """Faults currently open."""
        return tuple(flag for bit, flag in FLAG_BITS if bit in self.open_since_us)
