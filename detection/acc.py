"""Accelerometer: gravity (posture) and dynamic movement, with a short time-indexed history.

Axis convention of the calf sensor: x along the shank towards the knee, y towards the wearer's
left, z out of the skin (posterior). At rest an accelerometer reads +1 g pointing *up*, so the
gravity estimate is the "up" vector in sensor axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from detection.blocks import PartAnchors
from detection.filters import apply_sos, design_lowpass, exponential_smooth, steady_state
from detection.validation import jitter_tolerance_us

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

GRAVITY_CUTOFF_HZ = 0.5  # below body movement (> 1 Hz), above posture changes (Mathie 2004)
ACTIVITY_TAU_S = 0.25  # smoothing of |dynamic acceleration| for the movement rule
_FIRST = np.zeros(1, dtype=np.intp)  # reduceat index of a single segment
_MANY_BINS = 8  # from this many seconds, AccState.bins sums them in one reduceat (faster)
_MIN_CAPACITY = 512  # samples of a history's first buffers (about 10 s at 50 Hz)


def posture_name(up: FloatArray, upright_deg: float) -> str:
    """Posture from the unit "up" vector in sensor axes (see the module axis convention).

    Returns ``upright`` (shank within ``upright_deg`` of vertical), ``supine`` (calf down),
    ``prone``, ``left`` or ``right`` (lying on that side).
    """
    return _posture(float(up[0]), float(up[1]), float(up[2]), math.cos(math.radians(upright_deg)))


def _posture(x: float, y: float, z: float, cos_upright: float) -> str:
    """:func:`posture_name` of the unit vector (x, y, z), given ``cos(upright_deg)``."""
    if abs(x) >= cos_upright:
        return "upright"
    if abs(z) >= abs(y):
        return "supine" if z < 0 else "prone"
    return "left" if y < 0 else "right"


@dataclass
class AccState:
    """Carried state of the accelerometer stream and its recent derived samples."""

    rate_hz: float
    gravity_sos: FloatArray
    gravity_zi: FloatArray
    activity_zi: FloatArray
    activity_alpha: float
    anchor_us: int = 0
    n_samples: int = 0
    end_us: int = 0
    time_us: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    dyn_g: FloatArray = field(default_factory=lambda: np.zeros(0))
    activity_g: FloatArray = field(default_factory=lambda: np.zeros(0))
    up: FloatArray = field(default_factory=lambda: np.zeros((0, 3)))
    # The history arrays above are views of the tail of these buffers, which have room after
    # them: a chunk is written into that room instead of joining the whole history to it
    # anew. None until the first append, and not pickled (a snapshot holds the history alone).
    _buffers: tuple[IntArray, FloatArray, FloatArray, FloatArray] | None = field(
        default=None, repr=False, compare=False
    )
    _used: int = field(default=0, repr=False, compare=False)  # where the views end

    def __getstate__(self) -> dict[str, object]:
        """Pickled state: the history without the spare room of its buffers."""
        state = dict(self.__dict__)
        state["_buffers"] = None
        state["_used"] = 0
        return state

    @classmethod
    def create(cls, rate_hz: float) -> AccState:
        """A fresh state for a stream at ``rate_hz`` (Hz)."""
        sos = design_lowpass(rate_hz, GRAVITY_CUTOFF_HZ)
        alpha = 1.0 - math.exp(-1.0 / (ACTIVITY_TAU_S * rate_hz))
        return cls(
            rate_hz=rate_hz,
            gravity_sos=sos,
            gravity_zi=np.zeros((sos.shape[0], 3, 2)),
            activity_zi=np.zeros(1),
            activity_alpha=alpha,
        )

    def start_segment(self, first_g: FloatArray, start_us: int) -> None:
        """Begin a contiguous segment at ``start_us`` whose first sample is ``first_g``."""
        self.anchor_us = start_us
        self.n_samples = 0
        self.gravity_zi = steady_state(self.gravity_sos, first_g)
        self.activity_zi = np.zeros(1)

    def push(self, samples_g: FloatArray, parts: PartAnchors | None = None) -> None:
        """Append a contiguous chunk (n, 3) in g to the history.

        ``parts``: when the chunk joins several pushed chunks, where each ends and the anchor
        it brought (each sample is timed with the anchor of its own chunk).
        """
        (dyn,), (activity,), (up,) = _derive([self], samples_g[None])
        self._append(samples_g.shape[0], parts, dyn, activity, up)

    def front_key(self, n: int) -> tuple[object, ...]:
        """What states must share to push one ``n``-sample chunk each together
        (:func:`push_many`): the rate, which sets the filter and the smoothing."""
        return (self.rate_hz, n)

    def _append(
        self,
        n: int,
        parts: PartAnchors | None,
        dyn: FloatArray,
        activity: FloatArray,
        up: FloatArray,
        times: IntArray | None = None,
    ) -> None:
        """Time the chunk's ``n`` derived samples (``times``: already timed, as here) and
        append them to the history."""
        if times is None:
            index = np.arange(self.n_samples, self.n_samples + n, dtype=np.int64)
            anchor: int | IntArray = self.anchor_us
            if parts is not None:
                anchor = parts.anchor_at(index)
                self.anchor_us = int(parts.anchors[-1])
            times = _sample_times(anchor, index, self.rate_hz)
        self.n_samples += n
        self.end_us = self.anchor_us + round(self.n_samples * 1e6 / self.rate_hz)
        kept = self.time_us.shape[0]
        used = self._used
        buffers = self._buffers
        if buffers is None or used + n > buffers[0].shape[0]:
            # no room left: new buffers twice the size the history will have (it is kept
            # short by forget_before, so the copies cost O(1) per sample over time)
            capacity = max(2 * (kept + n), _MIN_CAPACITY)
            buffers = (
                np.empty(capacity, dtype=np.int64),
                np.empty(capacity),
                np.empty(capacity),
                np.empty((capacity, 3)),
            )
            for buffer, kept_part in zip(
                buffers, (self.time_us, self.dyn_g, self.activity_g, self.up), strict=True
            ):
                buffer[:kept] = kept_part
            self._buffers = buffers
            used = kept
        end = used + n
        start = end - kept - n
        time_buf, dyn_buf, activity_buf, up_buf = buffers
        time_buf[used:end] = times
        dyn_buf[used:end] = dyn
        activity_buf[used:end] = activity
        up_buf[used:end] = up
        self.time_us = time_buf[start:end]
        self.dyn_g = dyn_buf[start:end]
        self.activity_g = activity_buf[start:end]
        self.up = up_buf[start:end]
        self._used = end

    @property
    def settled_us(self) -> int:
        """Device time before which no later chunk can add samples, µs.

        A contiguous chunk may start up to the jitter tolerance before :attr:`end_us` (its
        samples are then timed that much earlier), so decisions that read the history wait
        for this time, not for ``end_us``: they see the same samples however the chunks came.
        """
        return self.end_us - math.ceil(jitter_tolerance_us(self.rate_hz))

    def forget_before(self, t_us: int) -> None:
        """Drop history older than ``t_us``."""
        cut = int(self.time_us.searchsorted(t_us, side="left"))
        if cut:
            self.time_us = self.time_us[cut:]
            self.dyn_g = self.dyn_g[cut:]
            self.activity_g = self.activity_g[cut:]
            self.up = self.up[cut:]

    def _span(self, t0_us: int, t1_us: int) -> slice:
        lo = int(self.time_us.searchsorted(t0_us, side="left"))
        hi = int(self.time_us.searchsorted(t1_us, side="left"))
        return slice(lo, hi)

    def peak_activity_g(self, t0_us: int, t1_us: int) -> float | None:
        """Largest smoothed dynamic acceleration in [t0, t1), g (None: no samples)."""
        span = self._span(t0_us, t1_us)
        values = self.activity_g[span]
        return float(values.max()) if values.size else None

    def rotation_deg(self, t0_us: int, t1_us: int) -> float | None:
        """Largest angle between the first "up" vector in [t0, t1) and any later one, degrees."""
        span = self._span(t0_us, t1_us)
        up = self.up[span]
        if up.shape[0] == 0:
            return None
        cosine = np.clip(up @ up[0], -1.0, 1.0)
        return float(np.degrees(np.arccos(cosine.min())))

    def posture_at(self, t_us: int, upright_deg: float) -> str | None:
        """Posture at the last sample before ``t_us`` (None: no sample in the history)."""
        index = int(self.time_us.searchsorted(t_us, side="left")) - 1
        if index < 0:
            return None
        return posture_name(self.up[index], upright_deg)

    def upright_since(self, t0_us: int, t1_us: int, hold_us: int, upright_deg: float) -> int | None:
        """First time in [t0, t1) at which the shank has been upright for ``hold_us``.

        Returns None if that did not happen (or there are no samples).
        """
        span = self._span(t0_us, t1_us)
        times = self.time_us[span]
        if times.size == 0:
            return None
        upright = np.abs(self.up[span, 0]) >= math.cos(math.radians(upright_deg))
        edges = np.diff(np.concatenate([[0], upright.astype(np.int8), [0]]))
        starts = np.flatnonzero(edges == 1)
        stops = np.flatnonzero(edges == -1)  # exclusive
        for start, stop in zip(starts, stops, strict=True):
            reached = times[start] + hold_us
            if stop - 1 >= start and times[stop - 1] >= reached:
                return int(times[int(np.searchsorted(times, reached, side="left"))])
        return None

    def bins(
        self, start_us: IntArray, end_us: IntArray, upright_deg: float
    ) -> tuple[list[float | None], list[str | None]]:
        """Mean dynamic acceleration (g) and last posture in each [start_us[k], end_us[k]).

        The intervals are the detector's seconds; where the device clock was followed they
        may overlap or leave room between them by a few µs, so each has both ends.
        """
        lo = self.time_us.searchsorted(start_us, side="left")
        hi = self.time_us.searchsorted(end_us, side="left")
        cos_upright = math.cos(math.radians(upright_deg))
        if lo.size >= _MANY_BINS and bool((hi > lo).all()) and bool((lo[1:] >= hi[:-1]).all()):
            # Many non-empty, non-overlapping seconds (an offline piece): one reduceat over the
            # interleaved bounds [lo0, hi0, lo1, ...] sums every second, and the gaps between
            # them land in the odd slots. Each second is summed by the same inner loop over the
            # same samples as a reduceat of it alone, so the means are the same to the bit.
            bounds = np.empty(2 * lo.size - 1, dtype=np.intp)
            bounds[0::2] = lo
            bounds[1::2] = hi[:-1]
            totals = np.add.reduceat(self.dyn_g[: int(hi[-1])], bounds)[0::2]
            means: list[float | None] = (totals / (hi - lo)).tolist()
            last_up = self.up[hi - 1].tolist()
            postures: list[str | None] = [_posture(x, y, z, cos_upright) for x, y, z in last_up]
            return means, postures
        # a live chunk completes about one second: bin by bin in plain Python, as indexing
        # NumPy rows one at a time costs more than the rule itself
        activity: list[float | None] = []
        posture: list[str | None] = []
        for first, stop in zip(lo.tolist(), hi.tolist(), strict=True):
            if stop <= first:
                activity.append(None)
                posture.append(None)
                continue
            # reduceat, as in the vectorised path: sum() may group the additions differently
            total = float(np.add.reduceat(self.dyn_g[first:stop], _FIRST)[0])
            activity.append(total / (stop - first))
            x, y, z = self.up[stop - 1].tolist()
            posture.append(_posture(x, y, z, cos_upright))
        return activity, posture


def push_many(states: Sequence[AccState], chunks: Sequence[FloatArray]) -> None:
    """:meth:`AccState.push` of one chunk (n, 3) per state (no joined parts), the gravity
    filter, dynamic acceleration and smoothing of all of them run once, stacked.

    Every stacked step works row by row (or over one sample's three axes), so each state ends
    as after its own push, to the bit. The states must be distinct and share
    :meth:`AccState.front_key` for their chunk's length; ValueError otherwise.
    """
    if not states:
        return
    if len(chunks) != len(states) or len({id(state) for state in states}) != len(states):
        raise ValueError("push_many needs one chunk for each of distinct states")
    first = states[0]
    n = chunks[0].shape[0]
    for state, chunk in zip(states, chunks, strict=True):
        if state.front_key(chunk.shape[0]) != first.front_key(n):
            raise ValueError("push_many: the states do not share one front end")
    dyn, activity, up = _derive(states, np.stack(chunks))
    # each state's sample times, as ``_append`` computes them, for all states at once
    index = np.array([state.n_samples for state in states], dtype=np.int64)[:, None] + np.arange(
        n, dtype=np.int64
    )
    anchors = np.array([state.anchor_us for state in states], dtype=np.int64)[:, None]
    times = _sample_times(anchors, index, first.rate_hz)
    for k, state in enumerate(states):
        state._append(n, None, dyn[k], activity[k], up[k], times[k])


def _sample_times(anchor: int | IntArray, index: IntArray, rate_hz: float) -> IntArray:
    """Device time of the samples ``index`` of a segment, µs, each with its ``anchor``."""
    times: IntArray = anchor + np.rint(index * (1e6 / rate_hz)).astype(np.int64)
    return times


def _derive(states: Sequence[AccState], x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Gravity filter, dynamic acceleration, its smoothing and the "up" vector of one chunk
    per state, ``x`` shaped (states, n, 3); the states (sharing one rate) carry their filter
    and smoothing state on. Every step works per state row (or over one sample's three axes),
    so a state gets the same values whichever others it is stacked with.

    Returns dyn (states, n), activity (states, n) and up (states, n, 3).
    """
    first = states[0]
    d, n = x.shape[0], x.shape[1]
    rows = np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(d * 3, n)
    zi = first.gravity_zi if d == 1 else np.concatenate([s.gravity_zi for s in states], axis=1)
    gravity_rows, zf = apply_sos(first.gravity_sos, rows, zi)
    gravity = gravity_rows.reshape(d, 3, n).transpose(0, 2, 1)
    dyn = np.sqrt(np.add.reduce(np.square(x - gravity), axis=2))
    carried = first.activity_zi if d == 1 else np.concatenate([s.activity_zi for s in states])
    activity, carried = exponential_smooth(first.activity_alpha, dyn, carried)
    norm = np.sqrt(np.add.reduce(np.square(gravity), axis=2))
    for k, state in enumerate(states):
        state.gravity_zi = zf if d == 1 else zf[:, 3 * k : 3 * k + 3].copy()
        state.activity_zi = carried[k : k + 1]
    return dyn, activity, gravity / np.maximum(norm, 1e-9)[:, :, None]
