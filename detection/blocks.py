"""The envelope grid handed from the EMG path to the state machine, and the chunk anchors of
joined pushes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class BlockBatch:
    """Envelope-grid blocks handed to the state machine, oldest first (all shape (n,)).

    Attributes
    ----------
    start_us, end_us : ndarray of int
        Device time of the block's first sample and just after its last one, µs.
    env_uv, floor_uv : ndarray
        Combined RMS envelope and noise floor, µV (floor NaN while unknown).
    ratio : ndarray
        ``env / floor``; 0 where the block is unusable or the floor unknown.
    zcr_hz : ndarray
        Zero crossings per second of the strongest channel.
    bits : ndarray of int
        Fault bits (``detection.quality``).
    """

    start_us: IntArray
    end_us: IntArray
    env_uv: FloatArray
    floor_uv: FloatArray
    ratio: FloatArray
    zcr_hz: FloatArray
    bits: IntArray

    @property
    def size(self) -> int:
        return int(self.start_us.shape[0])

    def tail(self, count: int) -> BlockBatch:
        """The last ``count`` blocks."""
        if count >= self.size:
            return self
        start = max(0, self.size - count)
        return BlockBatch(*(getattr(self, name)[start:] for name in FIELDS))

    def split(self, count: int) -> tuple[BlockBatch, BlockBatch]:
        """The first ``count`` blocks and the rest (no copies when either side is empty)."""
        if count >= self.size:
            return self, _EMPTY
        if count <= 0:
            return _EMPTY, self
        return (
            BlockBatch(*(getattr(self, name)[:count] for name in FIELDS)),
            BlockBatch(*(getattr(self, name)[count:] for name in FIELDS)),
        )

    @staticmethod
    def join(first: BlockBatch, second: BlockBatch) -> BlockBatch:
        """Concatenate two batches (either may be returned as is when the other is empty)."""
        if first.size == 0:
            return second
        if second.size == 0:
            return first
        return BlockBatch(
            *(np.concatenate([getattr(first, n), getattr(second, n)]) for n in FIELDS)
        )

    @staticmethod
    def concat(parts: tuple[BlockBatch, ...]) -> BlockBatch:
        """Concatenate several batches (empty ones are skipped)."""
        nonempty = [part for part in parts if part.size]
        if len(nonempty) <= 1:
            return nonempty[0] if nonempty else BlockBatch.empty()
        return BlockBatch(
            *(np.concatenate([getattr(part, n) for part in nonempty]) for n in FIELDS)
        )

    @staticmethod
    def empty() -> BlockBatch:
        """No blocks."""
        ints = np.zeros(0, dtype=np.int64)
        floats = np.zeros(0)
        return BlockBatch(ints, ints, floats, floats, floats, floats, ints)


FIELDS = ("start_us", "end_us", "env_uv", "floor_uv", "ratio", "zcr_hz", "bits")
_EMPTY = BlockBatch.empty()


@dataclass(frozen=True)
class PartAnchors:
    """Where the chunks joined into one ingested array end, and the anchor each brought.

    A stream follows the device clock chunk by chunk (its anchor moves by each chunk's time
    stamp error), so a block's time depends on the chunk that completed it. ``ends[k]`` is the
    segment's sample count after chunk ``k``, ``anchors[k]`` the anchor once it arrived.
    """

    ends: IntArray
    anchors: IntArray

    def anchor_at(self, sample: IntArray) -> IntArray:
        """Anchor in force when sample index ``sample`` (of the segment) arrived."""
        part = np.searchsorted(self.ends, sample, side="right")
        anchor: IntArray = self.anchors[np.minimum(part, self.anchors.shape[0] - 1)]
        return anchor
