"""EMG stream processing: filters, block grid, envelope, faults and noise floor per chunk.

Turns contiguous chunks of one segment into whole envelope blocks (``BlockBatch``) and whole
seconds (``Seconds``); every value depends only on the samples, never on the chunking.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from detection.blocks import BlockBatch, PartAnchors
from detection.config import DetectorConfig
from detection.envelope import block_stats, smooth_mean_square
from detection.filters import apply_sos, design_emg_filters, steady_state
from detection.floor import second_medians, sorted_valid, update_floor
from detection.quality import UNUSABLE, block_flags, second_flags

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


# numbers of the distinct (rate, channels, block, filters, rules) of streams (EmgStream.front_id)
_FRONT_IDS: dict[tuple[object, ...], int] = {}
_FRONT_NUMBERS = itertools.count()

_NO_TIMES: IntArray = np.zeros(0, dtype=np.int64)
_NO_VALUES: FloatArray = np.zeros(0)


_SECOND_FIELDS = ("start_us", "end_us", "bits", "env_uv", "floor_uv")


@dataclass
class Seconds:
    """Completed seconds waiting for the decided time to pass them (all shape (n,))."""

    start_us: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    end_us: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    bits: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    env_uv: FloatArray = field(default_factory=lambda: np.zeros(0))
    floor_uv: FloatArray = field(default_factory=lambda: np.zeros(0))
    # seconds appended after these, joined to them when the seconds are taken (a snapshot
    # pickles them joined)
    queued: tuple[Seconds, ...] = ()

    def __getstate__(self) -> dict[str, object]:
        self._join()
        return dict(self.__dict__)

    def append(self, other: Seconds) -> None:
        if self.start_us.shape[0] == 0 and not self.queued:  # usually all earlier are decided
            self.start_us, self.end_us, self.bits = other.start_us, other.end_us, other.bits
            self.env_uv, self.floor_uv = other.env_uv, other.floor_uv
            return
        self.queued = (*self.queued, other)

    def take_until(self, t_us: int) -> Seconds | None:
        """Remove and return the seconds that end by ``t_us`` (None: none)."""
        self._join()
        count = int(self.end_us.searchsorted(t_us, side="right"))
        if count == 0:
            return None
        if count >= self.start_us.shape[0]:  # all of them: hand the arrays over
            head = Seconds(self.start_us, self.end_us, self.bits, self.env_uv, self.floor_uv)
            self.start_us, self.end_us, self.bits = _NO_TIMES, _NO_TIMES, _NO_TIMES
            self.env_uv, self.floor_uv = _NO_VALUES, _NO_VALUES
            return head
        head = Seconds()
        for name in _SECOND_FIELDS:
            values = getattr(self, name)
            setattr(head, name, values[:count])
            setattr(self, name, values[count:])
        return head

    def _join(self) -> None:
        if self.queued:
            parts = (self, *self.queued)
            for name in _SECOND_FIELDS:
                setattr(self, name, np.concatenate([getattr(part, name) for part in parts]))
            self.queued = ()


def _ratio(env: FloatArray, valid: BoolArray, floors: FloatArray, known: bool) -> FloatArray:
    """Envelope over floor where the block is valid and its floor known, else 0."""
    if known:
        ratio: FloatArray = np.where(valid, env / floors, 0.0)
        return ratio
    return np.where(valid & ~np.isnan(floors), env / np.where(np.isnan(floors), 1, floors), 0)


def _front_end(
    streams: Sequence[EmgStream], xt: FloatArray
) -> tuple[IntArray, FloatArray, IntArray] | None:
    """Filters, block grid, block statistics, fault bits and RMS smoothing of one chunk per
    stream, the streams' channels stacked as the rows of ``xt`` (stream-major).

    The streams must share their filters, channel count, block length and leftover-sample
    count (see :func:`ingest_many`). Every step works row by row, so each stream's values
    are the same to the bit as when it runs alone; its state is updated as ``ingest`` would.
    Returns each block's fault bits, smoothed mean square and zero crossings, shape
    (n_blocks, rows), or None when the chunk completes no block.
    """
    first = streams[0]
    cfg = first.config
    ch = first.channels
    n = xt.shape[1]
    if len(streams) == 1:
        bandpass_zi, notch_zi = first.bandpass_zi, first.notch_zi
        rest_raw, rest_band, rest_clean = first.rest_raw, first.rest_band, first.rest_clean
        prev_mean, carry = first.prev_mean_uv, first.smooth_carry
    else:
        bandpass_zi = np.concatenate([s.bandpass_zi for s in streams], axis=1)
        notch_zi = np.concatenate([s.notch_zi for s in streams], axis=1)
        rest_raw = np.concatenate([s.rest_raw for s in streams])
        rest_band = np.concatenate([s.rest_band for s in streams])
        rest_clean = np.concatenate([s.rest_clean for s in streams])
        prev_mean = np.concatenate([s.prev_mean_uv for s in streams])
        carry = np.concatenate([s.smooth_carry for s in streams], axis=1)
    band, bandpass_zi = apply_sos(first.bandpass_sos, xt, bandpass_zi)
    clean, notch_zi = apply_sos(first.notch_sos, band, notch_zi)
    notched = clean is not band
    if rest_raw.shape[1]:  # samples left over from the last chunk come first
        raw = np.concatenate([rest_raw, xt], axis=1)
        band = np.concatenate([rest_band, band], axis=1)
        clean = np.concatenate([rest_clean, clean], axis=1) if notched else band
    else:
        raw = xt
    b = first.block_len
    n_blocks = raw.shape[1] // b
    used = n_blocks * b
    # copies: ``raw`` may be the caller's array, and a small tail should not pin a chunk
    rest_raw, rest_band = raw[:, used:].copy(), band[:, used:].copy()
    rest_clean = clean[:, used:].copy() if notched else rest_band
    stats = None
    if n_blocks:
        band_used = band[:, :used]
        clean_used = clean[:, :used] if notched else band_used
        stats = block_stats(raw[:, :used], band_used, clean_used, b)
        bits = block_flags(
            stats,
            prev_mean,
            b,
            flat_uv=cfg.flat_uv,
            clip_fraction=cfg.clip_fraction,
            rail_fraction=cfg.rail_fraction,
            mains_fraction=cfg.mains_fraction,
            artifact_ratio=cfg.artifact_ratio,
            floor_min_uv=cfg.floor_min_uv,
            notch=first.notch_sos.shape[0] > 0,
        )
        prev_mean = stats.raw_mean_uv[-1].copy()
        window = max(1, cfg.smooth_blocks)
        if carry.shape[0] == 0:
            carry = np.repeat(stats.ms_uv2[:1], window - 1, axis=0)
        smoothed, carry = smooth_mean_square(stats.ms_uv2, carry)
    if len(streams) == 1:
        first.bandpass_zi, first.notch_zi = bandpass_zi, notch_zi
        first.rest_raw, first.rest_band, first.rest_clean = rest_raw, rest_band, rest_clean
        first.prev_mean_uv, first.smooth_carry = prev_mean, carry
        first.n_samples += n
    else:
        for k, stream in enumerate(streams):
            rows = slice(k * ch, (k + 1) * ch)
            stream.bandpass_zi = bandpass_zi[:, rows].copy()
            stream.notch_zi = notch_zi[:, rows].copy()
            stream.rest_raw, stream.rest_band = rest_raw[rows], rest_band[rows]
            stream.rest_clean = rest_clean[rows] if notched else stream.rest_band
            stream.prev_mean_uv = prev_mean[rows].copy()
            stream.smooth_carry = carry[:, rows].copy()
            stream.n_samples += n
    if stats is None:
        return None
    return bits, smoothed, stats.crossings


@dataclass
class EmgStream:
    """Carried state of the EMG stream: filters, partial block, partial second, noise floor.

    The floor window survives gaps (a new segment); everything else restarts with a segment.
    """

    config: DetectorConfig
    rate_hz: float
    channels: int
    block_len: int
    bandpass_sos: FloatArray
    notch_sos: FloatArray
    bandpass_zi: FloatArray
    notch_zi: FloatArray
    anchor_us: int = 0
    n_samples: int = 0
    n_blocks: int = 0
    rest_raw: FloatArray = field(default_factory=lambda: np.zeros((1, 0)))
    rest_band: FloatArray = field(default_factory=lambda: np.zeros((1, 0)))
    rest_clean: FloatArray = field(default_factory=lambda: np.zeros((1, 0)))
    smooth_carry: FloatArray = field(default_factory=lambda: np.zeros((0, 1)))
    prev_mean_uv: FloatArray = field(default_factory=lambda: np.full(1, np.nan))
    sec_env: FloatArray = field(default_factory=lambda: np.zeros(0))
    sec_valid: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    sec_bits: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sec_floor: FloatArray = field(default_factory=lambda: np.zeros(0))
    floor_window: FloatArray = field(default_factory=lambda: np.zeros(0))
    floor_ordered: list[float] | None = None  # sorted valid values of floor_window
    floor_uv: float = math.nan
    held_median_uv: float = math.nan
    # this process's number for the stream's filters, grid and rules (``front_key``); -1 until
    # known, and not pickled (another process numbers them its own way)
    front_id: int = -1

    def __getstate__(self) -> dict[str, object]:
        """Pickled state without ``floor_ordered`` (rebuilt from the window when needed) and
        ``front_id`` (numbered again when needed)."""
        state = dict(self.__dict__)
        state["floor_ordered"] = None
        state["front_id"] = -1
        return state

    def sample_time_us(self, index: float) -> int:
        """Device time of sample ``index`` of the current segment, µs."""
        return self.anchor_us + round(index * 1e6 / self.rate_hz)

    @classmethod
    def create(
        cls, config: DetectorConfig, rate: float, channels: int, notch_hz: tuple[float, ...]
    ) -> EmgStream:
        """A stream at ``rate`` Hz with ``channels`` channels and the given mains notches."""
        cfg = config
        design = design_emg_filters(
            rate,
            low_hz=cfg.band_low_hz,
            high_hz=cfg.band_high_hz,
            nyquist_fraction=cfg.band_nyquist_fraction,
            notch_hz=notch_hz,
            notch_q=cfg.notch_q,
        )
        stream = cls(
            config=cfg,
            rate_hz=rate,
            channels=channels,
            block_len=max(1, round(rate * cfg.block_s)),
            bandpass_sos=design.bandpass_sos,
            notch_sos=design.notch_sos,
            bandpass_zi=np.zeros((design.bandpass_sos.shape[0], channels, 2)),
            notch_zi=np.zeros((design.notch_sos.shape[0], channels, 2)),
            floor_window=np.full(max(1, round(cfg.floor_window_s)), np.nan),
        )
        stream.front_key(0)  # numbers it now, so that every stream in this process has one
        return stream

    def start_segment(self, first: FloatArray, start_us: int) -> None:
        """Begin a contiguous segment at ``start_us``; ``first`` is its first sample per channel."""
        ch = self.channels
        self.anchor_us = start_us
        self.n_samples = 0
        self.n_blocks = 0
        self.bandpass_zi = steady_state(self.bandpass_sos, first)
        self.notch_zi = np.zeros((self.notch_sos.shape[0], ch, 2))
        self.rest_raw = np.zeros((ch, 0))
        self.rest_band = np.zeros((ch, 0))
        self.rest_clean = np.zeros((ch, 0))
        self.smooth_carry = np.zeros((0, ch))
        self.prev_mean_uv = np.full(ch, np.nan)
        self.sec_env = np.zeros(0)
        self.sec_valid = np.zeros(0, dtype=bool)
        self.sec_bits = np.zeros(0, dtype=np.int64)
        self.sec_floor = np.zeros(0)

    def ingest(
        self, x: FloatArray, parts: PartAnchors | None = None
    ) -> tuple[BlockBatch | None, Seconds | None]:
        """Filter a contiguous chunk (n, channels) in µV into whole blocks and whole seconds.

        Parameters
        ----------
        x : array, shape (n, channels)
        parts : PartAnchors, optional
            When ``x`` joins several pushed chunks: where each ends and the anchor it brought
            (see :class:`PartAnchors`). Blocks and seconds then carry the times they would have
            had with the chunks ingested one at a time.

        Returns
        -------
        blocks : BlockBatch or None
            The blocks completed by this chunk (None: none).
        seconds : Seconds or None
            The seconds completed by this chunk (None: none).
        """
        xt = np.ascontiguousarray(x.T)  # channel-major: filters and blocks run on rows
        if parts is not None:
            self.anchor_us = int(parts.anchors[-1])
        front = _front_end([self], xt)
        if front is None:
            return None, None
        bits, smoothed, crossings = front
        return self._finish(bits, smoothed, crossings, parts)

    def front_key(self, n: int) -> tuple[int, ...]:
        """What streams must share to run one ``n``-sample chunk each through one stacked
        front end (:func:`ingest_many`): rate, channels, filters and rules (numbered once
        per stream: ``front_id``), grid phase and smoothing state length."""
        front_id = self.front_id
        if front_id < 0:
            fixed = (
                self.rate_hz,
                self.channels,
                self.block_len,
                self.bandpass_sos.tobytes(),
                self.notch_sos.tobytes(),
                self.config,
            )
            front_id = _FRONT_IDS.setdefault(fixed, next(_FRONT_NUMBERS))
            self.front_id = front_id
        return (front_id, self.rest_raw.shape[1], self.smooth_carry.shape[0], n)

    def _finish(
        self,
        bits: IntArray,
        smoothed: FloatArray,
        crossings_ch: IntArray,
        parts: PartAnchors | None,
    ) -> tuple[BlockBatch, Seconds | None]:
        """The new blocks' envelope, validity, floors and times from their fault bits,
        smoothed mean squares and zero crossings (each shape (n_blocks, channels))."""
        cfg = self.config
        b = self.block_len
        n_blocks = bits.shape[0]
        env_ch = np.sqrt(smoothed)
        usable = (bits & UNUSABLE) == 0
        n0 = self.n_blocks
        settle = max(0, round(cfg.settle_s / cfg.block_s))
        if self.channels == 1:  # nothing to choose between: skip the per-channel reductions
            usable_any, all_bits = usable[:, 0], bits[:, 0]
            env = np.where(usable_any, env_ch[:, 0], 0.0)
            crossings = crossings_ch[:, 0].astype(np.float64)
        else:
            masked = np.where(usable, env_ch, -1.0)
            best = np.argmax(masked, axis=1)
            rows = np.arange(n_blocks)
            env = np.maximum(masked[rows, best], 0.0)
            crossings = crossings_ch[rows, best].astype(np.float64)
            usable_any = usable.any(axis=1)
            all_bits = np.bitwise_or.reduce(bits, axis=1)
        zcr = crossings * self.rate_hz / max(b - 1, 1)
        valid = usable_any
        if n0 < settle:
            valid = usable_any & (np.arange(n0, n0 + n_blocks) >= settle)
        block_anchor: IntArray | None = None
        if parts is not None:  # each block takes the anchor of the chunk holding its last sample
            block_anchor = parts.anchor_at(np.arange(n0 + 1, n0 + n_blocks + 1) * b - 1)
        floors, floors_known, seconds = self._floors(env, valid, all_bits, n0, block_anchor)
        grid = np.rint(np.arange(n0, n0 + n_blocks + 1) * (b * 1e6 / self.rate_hz)).astype(np.int64)
        self.n_blocks += n_blocks
        if block_anchor is None:
            times = self.anchor_us + grid
            return self._batch(env, valid, floors, floors_known, times, zcr, all_bits), seconds
        starts, ends = block_anchor + grid[:-1], block_anchor + grid[1:]
        ratio = _ratio(env, valid, floors, floors_known)
        return BlockBatch(starts, ends, env, floors, ratio, zcr, all_bits), seconds

    @staticmethod
    def _batch(
        env: FloatArray,
        valid: BoolArray,
        floors: FloatArray,
        floors_known: bool,
        times: IntArray,
        zcr: FloatArray,
        bits: IntArray,
    ) -> BlockBatch:
        """The new blocks, timed by ``times`` (each block's start, then the last one's end)."""
        ratio = _ratio(env, valid, floors, floors_known)
        return BlockBatch(times[:-1], times[1:], env, floors, ratio, zcr, bits)

    def _floors(
        self,
        env: FloatArray,
        valid: BoolArray,
        bits: IntArray,
        first_block: int,
        block_anchor: IntArray | None = None,
    ) -> tuple[FloatArray, bool, Seconds | None]:
        """Floor of each new block (the floor known when its second began), whether all of
        those floors are known (not NaN), and the whole seconds.

        ``first_block`` is the segment index of the first new block; ``block_anchor``, when
        chunks were joined, the anchor of each new block (a second takes its last block's).
        """
        cfg = self.config
        per_second = max(1, round(1.0 / cfg.block_s))
        carried = self.sec_env.shape[0]
        if carried:
            sec_env = np.concatenate([self.sec_env, env])
            sec_valid = np.concatenate([self.sec_valid, valid])
            sec_bits = np.concatenate([self.sec_bits, bits])
        else:  # the chunk starts on a second boundary: nothing to prepend
            sec_env, sec_valid, sec_bits = env, valid, bits
        # floor of each new block: the floor after the seconds completed before its second
        first_second = (first_block - carried) // per_second
        n_complete = sec_env.shape[0] // per_second
        used = n_complete * per_second
        floors_seq = [self.floor_uv]
        if n_complete:
            medians = self._second_medians(sec_env[:used], sec_valid[:used], n_complete)
            # a second enters the floor window one second late, and not at all when the next
            # one is invalid: the decaying filter transient before a flat line is no floor
            held = [self.held_median_uv, *medians]
            entering = [
                math.nan if math.isnan(now) else before for before, now in itertools.pairwise(held)
            ]
            self.held_median_uv = held[-1]
            if self.floor_ordered is None:
                self.floor_ordered = sorted_valid(self.floor_window)
            after, self.floor_window = update_floor(
                self.floor_window,
                np.array(entering, dtype=np.float64),
                cfg.floor_quantile,
                cfg.floor_min_uv,
                self.floor_ordered,
            )
            for value in after.tolist():
                floors_seq.append(value if not math.isnan(value) else floors_seq[-1])
            self.floor_uv = floors_seq[-1]
        # new blocks per second they fall in (the first of them falls in second 0)
        n_new = env.shape[0]
        counts = []
        index, stop = first_block, first_block + n_new
        while index < stop:
            boundary = min((index // per_second + 1) * per_second, stop)
            counts.append(boundary - index)
            index = boundary
        floors_used = floors_seq[: len(counts)]
        block_floor: FloatArray
        if len(counts) == 1:  # the usual case: all in one second
            block_floor = np.empty(n_new)
            block_floor.fill(floors_used[0])
        else:
            block_floor = np.repeat(np.array(floors_used, dtype=np.float64), counts)
        floors_known = not any(math.isnan(value) for value in floors_used)
        seconds: Seconds | None = None
        sec_floor = np.concatenate([self.sec_floor, block_floor]) if carried else block_floor
        if n_complete:
            start_block = first_second * per_second
            if block_anchor is None:
                bounds = self._second_bounds(start_block, n_complete, per_second)
                sec_starts, sec_ends = bounds[:-1], bounds[1:]
            else:
                step_us = self.block_len * 1e6 / self.rate_hz
                last = start_block + np.arange(1, n_complete + 1) * per_second - 1
                sec_anchor = block_anchor[last - first_block]
                grid = np.rint(
                    (start_block + np.arange(n_complete + 1) * per_second) * step_us
                ).astype(np.int64)
                sec_starts, sec_ends = sec_anchor + grid[:-1], sec_anchor + grid[1:]
            # both means from one reduction (each second still summed on its own)
            stacked = np.empty((2, n_complete, per_second))
            stacked[0] = sec_env[:used].reshape(n_complete, per_second)
            stacked[1] = sec_floor[:used].reshape(n_complete, per_second)
            means = np.add.reduce(stacked, axis=2) / per_second
            seconds = Seconds(
                start_us=sec_starts,
                end_us=sec_ends,
                bits=second_flags(sec_bits[:used], per_second),
                env_uv=means[0],
                floor_uv=means[1],
            )
        self.sec_env, self.sec_valid = sec_env[used:], sec_valid[used:]
        self.sec_bits, self.sec_floor = sec_bits[used:], sec_floor[used:]
        return block_floor, floors_known, seconds

    def _second_bounds(self, start_block: int, n_seconds: int, per_second: int) -> IntArray:
        """Device times of the bounds of ``n_seconds`` whole seconds from segment block
        ``start_block`` on, µs (timed with the stream's anchor)."""
        step_us = self.block_len * 1e6 / self.rate_hz
        return np.array(
            [
                self.anchor_us + round((start_block + k * per_second) * step_us)
                for k in range(n_seconds + 1)
            ],
            dtype=np.int64,
        )

    def _enter_second(self, median: float) -> None:
        """``_floors`` of one whole second of valid blocks with this ``median``: the held
        second enters the floor window, this one is held."""
        entering = self.held_median_uv  # (a valid second's median is never NaN)
        self.held_median_uv = median
        if self.floor_ordered is None:
            self.floor_ordered = sorted_valid(self.floor_window)
        cfg = self.config
        after, self.floor_window = update_floor(
            self.floor_window,
            np.array([entering], dtype=np.float64),
            cfg.floor_quantile,
            cfg.floor_min_uv,
            self.floor_ordered,
        )
        value = float(after[0])
        if not math.isnan(value):
            self.floor_uv = value

    def _second_medians(self, env: FloatArray, valid: BoolArray, n_seconds: int) -> list[float]:
        """:func:`second_medians` of whole seconds of blocks, as a list."""
        per_second = env.shape[0] // n_seconds
        if n_seconds == 1 and all(valid.tolist()):
            # one valid second (a 1 s chunk): the same sort and mean of the middle pair in
            # plain Python, cheaper than NumPy for 20 values (an envelope is never NaN or -0)
            ordered = sorted(env.tolist())
            return [(ordered[(per_second - 1) // 2] + ordered[per_second // 2]) / 2.0]
        medians: list[float] = second_medians(
            env.reshape(n_seconds, per_second), valid.reshape(n_seconds, per_second)
        ).tolist()
        return medians


def ingest_many(
    streams: Sequence[EmgStream], chunks: Sequence[FloatArray]
) -> list[tuple[BlockBatch | None, Seconds | None]]:
    """:meth:`EmgStream.ingest` of one chunk (n, channels) per stream, with the filters,
    block statistics, fault bits and smoothing of all of them run once, stacked.

    The results and the streams' states are the same to the bit as ingesting each chunk on
    its own (every stacked step works row by row). The streams must be distinct and share
    :meth:`EmgStream.front_key` for their chunk's length; ValueError otherwise.
    """
    if not streams:
        return []
    if len(chunks) != len(streams) or len({id(s) for s in streams}) != len(streams):
        raise ValueError("ingest_many needs one chunk for each of distinct streams")
    key = streams[0].front_key(chunks[0].shape[0])
    for stream, chunk in zip(streams, chunks, strict=True):
        if stream.front_key(chunk.shape[0]) != key:
            raise ValueError("ingest_many: the streams do not share one front end")
    xt = np.ascontiguousarray(np.concatenate(chunks, axis=1).T)
    front = _front_end(streams, xt)
    if front is None:
        return [(None, None)] * len(streams)
    bits, smoothed, crossings = front
    ch = streams[0].channels
    if ch == 1:
        return list(_finish_one_channel(streams, bits, smoothed, crossings))
    results: list[tuple[BlockBatch | None, Seconds | None]] = []
    for k, stream in enumerate(streams):
        rows = slice(k * ch, (k + 1) * ch)
        results.append(stream._finish(bits[:, rows], smoothed[:, rows], crossings[:, rows], None))
    return results


def _finish_one_channel(
    streams: Sequence[EmgStream], bits: IntArray, smoothed: FloatArray, crossings: IntArray
) -> list[tuple[BlockBatch, Seconds | None]]:
    """:meth:`EmgStream._finish` of one-channel streams whose blocks are the columns of
    ``bits``, ``smoothed`` and ``crossings`` (n_blocks, streams): the element-wise steps run
    once for all of them (the same operations, so the same values), the floor per stream.

    ``EmgStream._finish`` repeats these steps for one stream on purpose: built on this
    function (one row, plus its block anchors), a 1 s chunk's ``ingest`` took 75 µs against
    68 (2026-12-05, the same values to the bit), from the extra small arrays."""
    first = streams[0]
    cfg = first.config
    b = first.block_len
    n_blocks = bits.shape[0]
    all_bits = np.ascontiguousarray(bits.T)  # a stream's blocks per row
    usable = (all_bits & UNUSABLE) == 0
    env = np.where(usable, np.sqrt(smoothed.T), 0.0)
    zcr = crossings.T.astype(np.float64) * first.rate_hz / max(b - 1, 1)
    n0 = np.array([stream.n_blocks for stream in streams], dtype=np.int64)
    index = n0[:, None] + np.arange(n_blocks + 1, dtype=np.int64)
    settle = max(0, round(cfg.settle_s / cfg.block_s))
    valid = usable & (index[:, :-1] >= settle)
    anchors = np.array([stream.anchor_us for stream in streams], dtype=np.int64)
    times = anchors[:, None] + np.rint(index * (b * 1e6 / first.rate_hz)).astype(np.int64)
    per_second = max(1, round(1.0 / cfg.block_s))
    whole = _whole_seconds(streams, env, valid, all_bits, n0, per_second)
    all_floors = np.empty((len(streams), n_blocks))
    all_known = True
    all_seconds: list[Seconds | None] = []
    for k, stream in enumerate(streams):
        seconds: Seconds | None
        if k in whole:
            floors, floors_known, seconds = whole[k]
        else:
            floors, floors_known, seconds = stream._floors(
                env[k], valid[k], all_bits[k], int(n0[k])
            )
        all_floors[k] = floors
        all_known = all_known and floors_known
        all_seconds.append(seconds)
        stream.n_blocks += n_blocks
    # element-wise, and with known floors the general rule is the known-floor one
    ratio = _ratio(env, valid, all_floors, all_known)
    starts, ends = times[:, :-1], times[:, 1:]
    return [
        (
            BlockBatch(starts[k], ends[k], env[k], all_floors[k], ratio[k], zcr[k], all_bits[k]),
            all_seconds[k],
        )
        for k in range(len(streams))
    ]


def _whole_seconds(
    streams: Sequence[EmgStream],
    env: FloatArray,
    valid: BoolArray,
    bits: IntArray,
    n0: IntArray,
    per_second: int,
) -> dict[int, tuple[FloatArray, bool, Seconds]]:
    """:meth:`EmgStream._floors` of the streams (rows of ``env``, ``valid``, ``bits``: their
    new blocks) whose new blocks are exactly one whole second of valid blocks, the usual live
    second, by row: the medians, means and fault bits of all of them at once, the floor
    window of each its own. The same operations as ``_floors`` on each row, so the same values.
    """
    if env.shape[1] != per_second:
        return {}
    rows = [
        k
        for k, stream in enumerate(streams)
        if not stream.sec_env.shape[0] and stream.n_blocks % per_second == 0
    ]
    if rows and len(rows) < len(streams):
        rows = [k for k in rows if valid[k].all()]
    elif rows and not valid.all():
        rows = np.flatnonzero(valid.all(axis=1)).tolist()
    if not rows:
        return {}
    every = len(rows) == len(streams)
    env_rows = env if every else env[rows]
    # the middle pair of each sorted second (every block valid), as ``_second_medians``
    ordered = np.sort(env_rows, axis=1)
    medians = ((ordered[:, (per_second - 1) // 2] + ordered[:, per_second // 2]) / 2.0).tolist()
    floors_before = [streams[k].floor_uv for k in rows]
    for k, median in zip(rows, medians, strict=True):
        streams[k]._enter_second(median)
    block_floor = np.empty((len(rows), per_second))
    block_floor[:] = np.array(floors_before)[:, None]
    stacked = np.empty((2, len(rows), per_second))
    stacked[0] = env_rows
    stacked[1] = block_floor
    means = np.add.reduce(stacked, axis=2) / per_second
    flags = second_flags((bits if every else bits[rows]).reshape(-1), per_second)
    out: dict[int, tuple[FloatArray, bool, Seconds]] = {}
    for j, k in enumerate(rows):
        stream = streams[k]
        bounds = stream._second_bounds(int(n0[k]), 1, per_second)
        seconds = Seconds(
            start_us=bounds[:-1],
            end_us=bounds[1:],
            bits=flags[j : j + 1],
            env_uv=means[0, j : j + 1],
            floor_uv=means[1, j : j + 1],
        )
        out[k] = (block_floor[j], not math.isnan(floors_before[j]), seconds)
    return out
