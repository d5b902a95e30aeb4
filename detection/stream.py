"""StreamDetector: one device's EMG + accelerometer streams in, episode and quality events out.

Chunks of any length go in; every quantity is computed on a fixed grid of envelope blocks that
is carried across chunks, so any chunking of the same recording gives the same events. The
accelerometer joins EMG decisions by one rule: the blocks up to time t are decided once the
accelerometer has reached t, or once the EMG has run ``acc_wait_s`` past t without it (the
accelerometer is then declared missing there). Events carry the device time of the decision
(``at_us``), not the time of the call that returned them.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detection.acc import AccState
from detection.acc import push_many as acc_push_many
from detection.blocks import BlockBatch, PartAnchors
from detection.config import (
    ACC_RATE_RANGE_HZ,
    EMG_RATE_RANGE_HZ,
    MAX_EMG_CHANNELS,
    DetectorConfig,
)
from detection.emg import EmgStream, Seconds, ingest_many
from detection.episodes import EpisodeMachine
from detection.errors import (
    DetectorError,
    DetectorInputError,
    DetectorRateError,
    DetectorStateError,
    DetectorTimeError,
)
from detection.events import (
    DetectorEvent,
    EpisodeEvent,
    QualityEvent,
    QualityFlag,
    SeriesPoint,
)
from detection.filters import mains_frequencies_hz
from detection.quality import FaultTracker
from detection.validation import (
    MAX_ACC_G,
    MAX_EMG_UV,
    as_samples,
    check_rate,
    check_time,
    chunk_jump,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

SNAPSHOT_VERSION = 1
ACC_KEEP_S = 10.0  # accelerometer history kept behind the decided time (beyond open queries)
# Quiet blocks (see StreamDetector._quiet_wait) are decided in batches of up to this much
# device time: the same events, fewer calls; only their 1 s series points come that much later.
QUIET_BATCH_S = 5.0
ACC_MAX_HISTORY_S = 3600.0  # cap when the accelerometer runs far ahead of the EMG


@dataclass
class _State:
    """Everything a detector carries between chunks (pickled by :meth:`snapshot`)."""

    device_id: str
    site: str
    notch_hz: tuple[float, ...]
    mvc_uv: float | None
    config: DetectorConfig
    machine: EpisodeMachine
    faults: FaultTracker
    emg: EmgStream | None = None
    acc: AccState | None = None
    pending: BlockBatch = field(default_factory=BlockBatch.empty)
    # Blocks queued behind ``pending`` while their decisions wait (``_quiet_wait``), joined to
    # it before a decision; a snapshot joins them first (it pickles what joining one by one
    # would). ``loud``: some undecided block may start or feed a burst or carry a fault bit
    # (True also when not known, e.g. in a state restored from an older snapshot).
    queued: tuple[BlockBatch, ...] = ()
    loud: bool = True
    seconds: Seconds = field(default_factory=Seconds)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    no_acc_since_us: int | None = None
    decided_us: int | None = None
    series: list[SeriesPoint] = field(default_factory=list)
    finished: bool = False

    def __getstate__(self) -> dict[str, object]:
        """Pickled state with the queued blocks joined to ``pending``."""
        state = dict(self.__dict__)
        state["pending"] = self.undecided()
        state["queued"] = ()
        return state

    def undecided(self) -> BlockBatch:
        """Every block not decided yet (``pending`` with the queued blocks joined to it)."""
        if self.queued:
            self.pending = BlockBatch.concat((self.pending, *self.queued))
            self.queued = ()
        return self.pending


class StreamDetector:
    """Real-time cramp detector for one device.

    Parameters
    ----------
    device_id : str
        Device the streams come from (copied into every event).
    site : str
        Muscle / sensor site label (default ``calf``).
    mains_hz : {"auto", "50", "60", "both", "off"}, 50, 60 or None
        Mains notch; ``auto`` notches both 50 and 60 Hz.
    mvc_uv : float, optional
        RMS envelope at maximum voluntary contraction, µV (enables %MVC intensities).
    config : DetectorConfig, optional
        Rule parameters; the defaults are the documented ones.
    """

    def __init__(
        self,
        device_id: str,
        site: str = "calf",
        *,
        mains_hz: str | float | None = "auto",
        mvc_uv: float | None = None,
        config: DetectorConfig | None = None,
    ) -> None:
        cfg = config if config is not None else DetectorConfig()
        if mvc_uv is not None and not (math.isfinite(mvc_uv) and mvc_uv > 0):
            raise DetectorInputError(f"mvc_uv must be a positive number of µV, got {mvc_uv!r}")
        self._state = _State(
            device_id=device_id,
            site=site,
            notch_hz=mains_frequencies_hz(mains_hz),
            mvc_uv=mvc_uv,
            config=cfg,
            machine=EpisodeMachine(device_id, site, cfg, mvc_uv),
            faults=FaultTracker(device_id),
        )

    # ------------------------------------------------------------------ public

    @property
    def device_id(self) -> str:
        """Device the detector belongs to."""
        return self._state.device_id

    def push_emg(self, samples_uv: Any, start_us: int, rate_hz: float) -> list[DetectorEvent]:
        """Feed an EMG chunk.

        Parameters
        ----------
        samples_uv : array, shape (n,) or (n, channels)
            EMG in µV, 1-8 channels.
        start_us : int
            Device time of the first sample, µs since the Unix epoch.
        rate_hz : float
            Sample rate, Hz (500-4000, constant for the stream).

        Returns
        -------
        list of DetectorEvent
            Events decided by this chunk, in ``at_us`` order.
        """
        return self._take_emg(*self._checked_emg(samples_uv, start_us, rate_hz))

    def _checked_emg(
        self, samples_uv: Any, start_us: int, rate_hz: float
    ) -> tuple[list[FloatArray], list[int], float]:
        """:meth:`push_emg`'s checks; the chunk, its start and rate as ``_take_emg`` takes them."""
        st = self._state
        self._check_open()
        x = as_samples(samples_uv, "EMG", None, MAX_EMG_UV)
        if not 1 <= x.shape[1] <= MAX_EMG_CHANNELS:
            raise DetectorInputError(
                f"EMG needs 1-{MAX_EMG_CHANNELS} channels, got {x.shape[1]} (shape {x.shape})"
            )
        rate = check_rate(rate_hz, "EMG", EMG_RATE_RANGE_HZ)
        start = check_time(start_us)
        emg = st.emg
        if emg is not None:
            if rate != emg.rate_hz:
                raise DetectorRateError(
                    f"EMG rate changed from {emg.rate_hz:g} Hz to {rate:g} Hz mid-stream"
                )
            if x.shape[1] != emg.channels:
                raise DetectorInputError(
                    f"EMG channel count changed from {emg.channels} to {x.shape[1]}"
                )
        return [x], [start], rate

    def push_acc(self, samples_g: Any, start_us: int, rate_hz: float) -> list[DetectorEvent]:
        """Feed an accelerometer chunk.

        Parameters
        ----------
        samples_g : array, shape (n, 3)
            Acceleration in g along the sensor axes x (shank, towards the knee), y, z.
        start_us : int
            Device time of the first sample, µs.
        rate_hz : float
            Sample rate, Hz (12.5-200, constant for the stream).
        """
        return self._take_acc(*self._checked_acc(samples_g, start_us, rate_hz))

    def _checked_acc(
        self, samples_g: Any, start_us: int, rate_hz: float
    ) -> tuple[list[FloatArray], list[int], float]:
        """:meth:`push_acc`'s checks; the chunk, its start and rate as ``_take_acc`` takes them."""
        st = self._state
        self._check_open()
        x = as_samples(samples_g, "ACC", 3, MAX_ACC_G)
        rate = check_rate(rate_hz, "ACC", ACC_RATE_RANGE_HZ)
        start = check_time(start_us)
        acc = st.acc
        if acc is not None and rate != acc.rate_hz:
            raise DetectorRateError(
                f"ACC rate changed from {acc.rate_hz:g} Hz to {rate:g} Hz mid-stream"
            )
        return [x], [start], rate

    def push_emg_parts(
        self, parts: Sequence[tuple[Any, int]], rate_hz: float
    ) -> list[DetectorEvent]:
        """Feed consecutive EMG chunks in one go.

        The same as :meth:`push_emg` of each ``(samples_uv, start_us)`` in turn, with no
        accelerometer chunk in between (same events, series and state), but the filters and
        the envelope run once over the joined samples. Every chunk is checked before any is
        used: a bad one raises what :meth:`push_emg` would and leaves the detector unchanged.
        """
        st = self._state
        self._check_open()
        arrays = [as_samples(samples, "EMG", None, MAX_EMG_UV) for samples, _ in parts]
        if not arrays:
            return []
        rate = check_rate(rate_hz, "EMG", EMG_RATE_RANGE_HZ)
        emg = st.emg
        channels = arrays[0].shape[1] if emg is None else emg.channels
        for x in arrays:
            if x.shape[1] != channels or not 1 <= channels <= MAX_EMG_CHANNELS:
                raise DetectorInputError(
                    f"EMG needs 1-{MAX_EMG_CHANNELS} channels, the same in every chunk; got "
                    f"{x.shape[1]} after {channels}"
                )
        if emg is not None and rate != emg.rate_hz:
            raise DetectorRateError(
                f"EMG rate changed from {emg.rate_hz:g} Hz to {rate:g} Hz mid-stream"
            )
        return self._take_emg(arrays, [check_time(start) for _, start in parts], rate)

    def push_acc_parts(
        self, parts: Sequence[tuple[Any, int]], rate_hz: float
    ) -> list[DetectorEvent]:
        """Feed consecutive accelerometer chunks in one go: the same as :meth:`push_acc` of
        each ``(samples_g, start_us)`` in turn, checked first as :meth:`push_emg_parts` is."""
        st = self._state
        self._check_open()
        arrays = [as_samples(samples, "ACC", 3, MAX_ACC_G) for samples, _ in parts]
        if not arrays:
            return []
        rate = check_rate(rate_hz, "ACC", ACC_RATE_RANGE_HZ)
        acc = st.acc
        if acc is not None and rate != acc.rate_hz:
            raise DetectorRateError(
                f"ACC rate changed from {acc.rate_hz:g} Hz to {rate:g} Hz mid-stream"
            )
        starts = [check_time(start) for _, start in parts]
        oldest = starts[0] if acc is None or not acc.time_us.size else int(acc.time_us[0])
        if starts[-1] - oldest > ACC_MAX_HISTORY_S * 1e6:
            # beyond the history kept, chunk-by-chunk decisions read history that a joined
            # push would already have forgotten: push them one at a time (all checked above)
            _contiguous_runs(arrays, starts, rate, _position(acc))  # time errors before any use
            events: list[DetectorEvent] = []
            for x, start in zip(arrays, starts, strict=True):
                events.extend(self._take_acc([x], [start], rate))
            return events
        return self._take_acc(arrays, starts, rate)

    def _take_emg(
        self, arrays: list[FloatArray], starts: list[int], rate: float
    ) -> list[DetectorEvent]:
        """Checked consecutive EMG chunks into the stream: follow the device clock, start a
        segment at a gap, filter and grid the samples, decide what can be decided."""
        runs = _contiguous_runs(arrays, starts, rate, _position(self._state.emg))  # raises first
        return self._take_emg_runs(runs, arrays[0].shape[1], rate)

    def _take_emg_runs(self, runs: list[_Run], channels: int, rate: float) -> list[DetectorEvent]:
        """``_take_emg`` once the runs are known (and nothing was changed yet)."""
        st = self._state
        emg = st.emg
        if emg is None:
            emg = EmgStream.create(st.config, rate, channels, st.notch_hz)
            st.emg = emg
        for run in runs:
            if run.new_segment:
                if run.gap_from_us is not None:
                    st.gaps.append((run.gap_from_us, run.start_us))
                emg.start_segment(run.samples[0], run.start_us)
            self._add_emg(*emg.ingest(run.samples, run.anchors_for(emg)))
        return self._advance(final=False)

    def _add_emg(
        self, blocks: BlockBatch | None, seconds: Seconds | None, loud: bool | None = None
    ) -> None:
        """Queue the blocks and seconds an EMG chunk completed for the decisions (``loud``:
        ``_loud(blocks)`` when the caller knows it)."""
        st = self._state
        if blocks is not None:
            st.queued = (*st.queued, blocks)
            st.loud = st.loud or (_loud(blocks, st.config) if loud is None else loud)
        if seconds is not None:
            st.seconds.append(seconds)

    def _take_acc(
        self, arrays: list[FloatArray], starts: list[int], rate: float
    ) -> list[DetectorEvent]:
        """Checked consecutive accelerometer chunks into the history (as :meth:`_take_emg`)."""
        runs = _contiguous_runs(arrays, starts, rate, _position(self._state.acc))  # raises first
        return self._take_acc_runs(runs, 3, rate)

    def _take_acc_runs(self, runs: list[_Run], channels: int, rate: float) -> list[DetectorEvent]:
        """``_take_acc`` once the runs are known (and nothing was changed yet); ``channels``
        is there to match ``_take_emg_runs`` (an accelerometer chunk always has 3)."""
        st = self._state
        acc = st.acc
        if acc is None:
            acc = AccState.create(rate)
            st.acc = acc
        for run in runs:
            if run.new_segment:
                acc.start_segment(run.samples[0], run.start_us)
            acc.push(run.samples, run.anchors_for(acc))
            self._cap_acc_history(acc)
        return self._advance(final=False)

    @staticmethod
    def _cap_acc_history(acc: AccState) -> None:
        """Forget what lies beyond ``ACC_MAX_HISTORY_S`` when the accelerometer runs ahead."""
        if acc.time_us.size and acc.time_us[-1] - acc.time_us[0] > ACC_MAX_HISTORY_S * 1e6:
            acc.forget_before(int(acc.time_us[-1]) - round(ACC_MAX_HISTORY_S * 1e6))

    def finish(self, end_us: int | None = None) -> list[DetectorEvent]:
        """End of data: decide everything pending and close open episodes and faults.

        Parameters
        ----------
        end_us : int, optional
            Device time the recording ends, µs (default: the end of the last EMG block).
        """
        st = self._state
        self._check_open()
        events = self._advance(final=True)
        last_us = st.decided_us
        if end_us is not None:
            end = check_time(end_us)
            if last_us is not None and end < last_us:
                raise DetectorTimeError(f"end_us {end} is before the last decided time {last_us}")
            last_us = end
        if last_us is not None:
            acc_seen = st.acc is not None
            events.extend(st.machine.interrupt(last_us, st.acc, acc_seen, ()))
            events.extend(st.machine.resolve_pending(st.acc, last_us, final=True))
            events.extend(st.faults.close_all(last_us))
            if st.no_acc_since_us is not None:
                events.append(
                    QualityEvent(
                        st.device_id, QualityFlag.NO_ACC, st.no_acc_since_us, last_us, last_us
                    )
                )
                st.no_acc_since_us = None
        st.finished = True
        return _ordered(events)

    @property
    def acc_wait_us(self) -> int:
        """How far the EMG may run ahead of the accelerometer before blocks are decided
        without it, µs (``DetectorConfig.acc_wait_s``)."""
        return round(self._state.config.acc_wait_s * 1e6)

    def stream_ends_us(self) -> tuple[int | None, int | None]:
        """Device time just after the last EMG and the last accelerometer sample pushed, µs
        (None for a stream not seen yet)."""
        st = self._state
        emg_end = None if st.emg is None else st.emg.sample_time_us(st.emg.n_samples)
        return emg_end, None if st.acc is None else st.acc.end_us

    def pop_series(self) -> list[SeriesPoint]:
        """The 1 s summary points completed since the last call, oldest first."""
        points = self._state.series
        self._state.series = []
        return points

    def snapshot(self) -> bytes:
        """Serialise the whole state; :meth:`restore` continues with identical output."""
        return pickle.dumps((SNAPSHOT_VERSION, self._state), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, data: bytes) -> StreamDetector:
        """Rebuild a detector from :meth:`snapshot` bytes (trusted storage only: pickle)."""
        try:
            version, state = pickle.loads(data)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
            raise DetectorStateError(f"not a detector snapshot: {err}") from err
        if version != SNAPSHOT_VERSION or not isinstance(state, _State):
            raise DetectorStateError(f"unsupported detector snapshot version {version!r}")
        detector = cls.__new__(cls)
        detector._state = state
        return detector

    def _check_open(self) -> None:
        if self._state.finished:
            raise DetectorStateError("detector has finished; create a new one for more data")

    # ------------------------------------------------------------- decisions

    def _advance(self, *, final: bool) -> list[DetectorEvent]:
        """Decide every pending block the accelerometer rule allows (all of them if final),
        or, while the pending blocks are quiet, nothing yet."""
        st = self._state
        events: list[DetectorEvent] = []
        if not final and self._quiet_wait():
            return events
        st.undecided()
        while True:
            count = self._decidable(final)
            if st.gaps:
                gap_start, gap_end = st.gaps[0]
                before = int(st.pending.start_us.searchsorted(gap_start, side="left"))
                if count >= before:
                    events.extend(self._decide_blocks(before, final))
                    events.extend(self._cross_gap(gap_start, gap_end))
                    st.gaps.pop(0)
                    continue
            events.extend(self._decide_blocks(count, final))
            break
        return _ordered(events)

    def _quiet_wait(self) -> bool:
        """Whether deciding the undecided blocks can wait: deciding them now would give no
        event, only series points, and they span less than ``QUIET_BATCH_S``.

        Quiet means: no undecided block above ``on_ratio`` or with a fault bit (a burst or a
        fault could begin there), and none that the EMG has run ``acc_wait_s`` past the
        accelerometer on (it would be decided without it); no gap to cross, the accelerometer
        present and not declared missing, and no burst, closing burst, ended episode or fault
        open (each can end on a quiet block). Quiet blocks only enter the history and their
        seconds the series, and deciding them later is the same decision (the accelerometer
        before its settled time no longer changes): waiting changes no event, only when the
        series points come out (``tests/detection/test_quiet.py``). Some of these conditions
        are wider than needed (a closing burst ends without an event, for one); they are kept
        so that the rule reads as "nothing is going on".
        """
        st = self._state
        acc = st.acc
        machine = st.machine
        if (
            st.loud
            or acc is None
            or not st.queued
            or st.gaps
            or st.no_acc_since_us is not None
            or machine.burst is not None
            or machine.closing is not None
            or machine.pending
            or st.faults.open_since_us
        ):
            return False
        first = st.pending if st.pending.start_us.shape[0] else st.queued[0]
        last_end = int(st.queued[-1].end_us[-1])
        if last_end - int(first.start_us[0]) >= round(QUIET_BATCH_S * 1e6):
            return False
        # the waiting rule would decide a block without the accelerometer
        return last_end - round(st.config.acc_wait_s * 1e6) <= acc.settled_us

    def _decidable(self, final: bool) -> int:
        st = self._state
        ends = st.pending.end_us
        if final or ends.size == 0:
            return int(ends.size)
        cfg = st.config
        emg_end = int(ends[-1])
        count = int(ends.searchsorted(emg_end - round(cfg.acc_wait_s * 1e6), side="right"))
        if st.acc is not None and count < ends.size:
            covered = int(ends.searchsorted(st.acc.settled_us, side="right"))
            count = max(count, covered)
        return count

    def _decide_blocks(self, count: int, final: bool) -> list[DetectorEvent]:
        st = self._state
        if count == 0:
            return []
        events: list[DetectorEvent] = []
        head, st.pending = st.pending.split(count)
        st.loud = _loud(st.pending, st.config)
        acc = st.acc
        if final:
            # end of data: decide the rest with what there is, without new NO_ACC intervals
            seen = acc is not None and st.no_acc_since_us is None
            events.extend(st.machine.run(head, acc, seen))
            covered = count
        else:
            acc_end = acc.settled_us if acc is not None else None
            covered = 0 if acc_end is None else int(head.end_us.searchsorted(acc_end, "right"))
        if covered and not final:
            part, _ = head.split(covered)
            if st.no_acc_since_us is not None:
                t = int(part.start_us[0])
                events.append(
                    QualityEvent(st.device_id, QualityFlag.NO_ACC, st.no_acc_since_us, t, t)
                )
                st.no_acc_since_us = None
            events.extend(st.machine.run(part, acc, acc is not None))
        if covered < count:
            _, part = head.split(covered)
            if st.no_acc_since_us is None:
                t = int(part.start_us[0])
                st.no_acc_since_us = t
                events.append(QualityEvent(st.device_id, QualityFlag.NO_ACC, t, None, t))
            events.extend(st.machine.run(part, acc, False))
        decided = int(head.end_us[-1])
        st.decided_us = decided
        events.extend(self._decide_seconds(decided))
        if st.machine.pending:
            events.extend(st.machine.resolve_pending(acc, decided, final=False))
        if acc is not None:
            needed = st.machine.earliest_needed_us()
            keep = decided - round(ACC_KEEP_S * 1e6)
            acc.forget_before(keep if needed is None else min(keep, needed))
        return events

    def _decide_seconds(self, decided_us: int) -> list[DetectorEvent]:
        st = self._state
        done = st.seconds.take_until(decided_us)
        if done is None:
            return []
        ready = done.start_us.shape[0]
        events: list[DetectorEvent] = list(st.faults.step(done.start_us, done.end_us, done.bits))
        starts = done.start_us.tolist()
        if st.acc is not None:
            activity, posture = st.acc.bins(done.start_us, done.end_us, st.config.upright_deg)
        else:
            activity, posture = [None] * ready, [None] * ready
        envs, floors = done.env_uv.tolist(), done.floor_uv.tolist()
        for k in range(ready):
            floor = floors[k]
            st.series.append(
                SeriesPoint(
                    ts_us=starts[k],
                    envelope_uv=envs[k],
                    floor_uv=floor if not math.isnan(floor) else None,
                    activity_g=activity[k],
                    posture=posture[k],
                )
            )
        return events

    def _cross_gap(self, gap_start: int, gap_end: int) -> list[DetectorEvent]:
        st = self._state
        events: list[DetectorEvent] = []
        acc_seen = st.acc is not None and st.no_acc_since_us is None
        events.extend(st.machine.interrupt(gap_start, st.acc, acc_seen, (QualityFlag.GAP,)))
        events.extend(st.faults.close_all(gap_start))
        events.append(QualityEvent(st.device_id, QualityFlag.GAP, gap_start, gap_end, gap_end))
        return events


def push_emg_many(
    pushes: Sequence[tuple[StreamDetector, Any, int, float]],
) -> list[list[DetectorEvent] | DetectorError]:
    """:meth:`StreamDetector.push_emg` of each ``(detector, samples_uv, start_us, rate_hz)``,
    the EMG front ends of many devices run as one (a worker's chunks of many wearers).

    Each detector ends with the same state, events and series as after its own ``push_emg``
    (the detectors are independent, and the stacked front end computes every device's values
    as its own would, to the bit). Chunks that continue their stream's segment with the same
    length, rate, channels, filters and block phase share one front end; the others (a first
    chunk, a gap, a different shape) are pushed on their own.

    Returns, per push in order, its events or the :class:`DetectorError` that ``push_emg``
    would have raised (that detector is then unchanged; the other pushes still happen).
    Raises ValueError when a detector appears twice.
    """
    return _push_many(pushes, _EMG_KIND)


def push_acc_many(
    pushes: Sequence[tuple[StreamDetector, Any, int, float]],
) -> list[list[DetectorEvent] | DetectorError]:
    """:meth:`StreamDetector.push_acc` of each ``(detector, samples_g, start_us, rate_hz)``,
    as :func:`push_emg_many` does for EMG: chunks of the same rate and length that continue
    their segment share one gravity filter and smoothing run."""
    return _push_many(pushes, _ACC_KIND)


@dataclass(frozen=True)
class _Kind:
    """How :func:`_push_many` handles one stream kind."""

    name: str
    check: Callable[[StreamDetector, Any, int, float], tuple[list[FloatArray], list[int], float]]
    stream: Callable[[_State], EmgStream | AccState | None]
    alone: Callable[[StreamDetector, list[_Run], int, float], list[DetectorEvent]]
    # runs one chunk per stream through one stacked front end, then queues the results
    stacked: Callable[[list[StreamDetector], list[FloatArray]], None]


def _stacked_emg(detectors: list[StreamDetector], chunks: list[FloatArray]) -> None:
    streams = [d._state.emg for d in detectors]
    outputs = ingest_many([s for s in streams if s is not None], chunks)
    louds = _loud_many([blocks for blocks, _ in outputs], detectors[0]._state.config)
    for detector, (blocks, seconds), loud in zip(detectors, outputs, louds, strict=True):
        detector._add_emg(blocks, seconds, loud)


def _stacked_acc(detectors: list[StreamDetector], chunks: list[FloatArray]) -> None:
    states = [d._state.acc for d in detectors]
    acc_push_many([s for s in states if s is not None], chunks)
    for state in states:
        if state is not None:
            StreamDetector._cap_acc_history(state)


_EMG_KIND = _Kind(
    "EMG",
    StreamDetector._checked_emg,
    lambda state: state.emg,
    StreamDetector._take_emg_runs,
    _stacked_emg,
)
_ACC_KIND = _Kind(
    "ACC",
    StreamDetector._checked_acc,
    lambda state: state.acc,
    StreamDetector._take_acc_runs,
    _stacked_acc,
)


def _push_many(
    pushes: Sequence[tuple[StreamDetector, Any, int, float]], kind: _Kind
) -> list[list[DetectorEvent] | DetectorError]:
    """:func:`push_emg_many` / :func:`push_acc_many`."""
    if len({id(push[0]) for push in pushes}) != len(pushes):
        raise ValueError(f"push_{kind.name.lower()}_many takes at most one chunk per detector")
    results: list[list[DetectorEvent] | DetectorError] = [[] for _ in pushes]
    groups: dict[tuple[object, ...], list[tuple[int, FloatArray]]] = {}
    for i, (detector, samples, start_us, rate_hz) in enumerate(pushes):
        try:
            arrays, starts, rate = kind.check(detector, samples, start_us, rate_hz)
            stream = kind.stream(detector._state)
            if stream is not None and _continues(stream, starts[0], rate):
                chunk = arrays[0]
                groups.setdefault(stream.front_key(chunk.shape[0]), []).append((i, chunk))
                continue
            runs = _contiguous_runs(arrays, starts, rate, _position(stream))
        except DetectorError as error:
            results[i] = error
            continue
        results[i] = kind.alone(detector, runs, arrays[0].shape[1], rate)
    for members in groups.values():
        detectors = [pushes[i][0] for i, _ in members]
        kind.stacked(detectors, [chunk for _, chunk in members])
        for detector, (i, _) in zip(detectors, members, strict=True):
            results[i] = detector._advance(final=False)
    return results


@dataclass(frozen=True)
class _Run:
    """Chunks of one segment joined for one ``ingest``/``push`` call."""

    samples: FloatArray
    start_us: int  # of the first chunk
    anchors: PartAnchors  # where each chunk ends (segment samples) and its anchor
    new_segment: bool  # the run starts a segment (first data, or after a gap)
    gap_from_us: int | None  # expected start when the run follows a gap

    def anchors_for(self, stream: EmgStream | AccState) -> PartAnchors | None:
        """The anchors ``ingest``/``push`` need; a run of one chunk sets the stream's anchor
        here instead, which keeps the usual one-chunk push on its cheaper path."""
        if self.anchors.anchors.shape[0] > 1:
            return self.anchors
        stream.anchor_us = int(self.anchors.anchors[0])
        return None


def _continues(stream: EmgStream | AccState, start_us: int, rate: float) -> bool:
    """Whether a chunk starting at ``start_us`` continues the stream's segment; if so, the
    stream's anchor follows the device clock to it (as :func:`_contiguous_runs` and
    ``anchors_for`` would for a run of that one chunk). Raises DetectorTimeError, changing
    nothing, when time goes backwards."""
    expected = stream.anchor_us + round(stream.n_samples * 1e6 / rate)
    if chunk_jump(start_us, expected, rate) > 0:
        return False
    stream.anchor_us += start_us - expected
    return True


def _position(stream: EmgStream | AccState | None) -> tuple[int, int] | None:
    """A stream's anchor and sample count, which decide where the next chunk belongs."""
    return None if stream is None else (stream.anchor_us, stream.n_samples)


def _contiguous_runs(
    arrays: list[FloatArray],
    starts: list[int],
    rate: float,
    current: tuple[int, int] | None,
) -> list[_Run]:
    """Split checked chunks into contiguous runs, following the device clock exactly as
    chunk-by-chunk pushes do (``current``: the stream's anchor and sample count, if any).

    Raises before anything changes when time goes backwards.
    """
    times = starts
    runs: list[_Run] = []
    pieces: list[FloatArray] = []
    ends: list[int] = []
    anchors: list[int] = []
    first = 0
    new_segment, gap_from = current is None, None
    anchor, count = (times[0], 0) if current is None else current
    for k, (x, start) in enumerate(zip(arrays, times, strict=True)):
        if not (k == 0 and current is None):
            expected = anchor + round(count * 1e6 / rate)
            if chunk_jump(start, expected, rate) > 0:
                if pieces:
                    runs.append(
                        _join_run(pieces, times[first], ends, anchors, new_segment, gap_from)
                    )
                pieces, ends, anchors, first = [], [], [], k
                new_segment, gap_from = True, expected
                anchor, count = start, 0
            else:
                anchor += start - expected
        count += x.shape[0]
        pieces.append(x)
        ends.append(count)
        anchors.append(anchor)
    runs.append(_join_run(pieces, times[first], ends, anchors, new_segment, gap_from))
    return runs


def _join_run(
    pieces: list[FloatArray],
    start_us: int,
    ends: list[int],
    anchors: list[int],
    new_segment: bool,
    gap_from_us: int | None,
) -> _Run:
    samples = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    marks = PartAnchors(np.asarray(ends, dtype=np.int64), np.asarray(anchors, dtype=np.int64))
    return _Run(samples, start_us, marks, new_segment, gap_from_us)


def _loud(blocks: BlockBatch, cfg: DetectorConfig) -> bool:
    """Whether any of ``blocks`` is above ``on_ratio`` or carries a fault bit."""
    if not blocks.start_us.shape[0]:
        return False
    return bool(
        np.logical_or.reduce(blocks.bits) or np.maximum.reduce(blocks.ratio) >= cfg.on_ratio
    )


def _loud_many(batches: Sequence[BlockBatch | None], cfg: DetectorConfig) -> list[bool | None]:
    """:func:`_loud` of each batch, computed for all at once when they are the same size
    (the same reductions, row by row); None for each when they are not."""
    sizes = {None if batch is None else batch.start_us.shape[0] for batch in batches}
    if len(sizes) != 1 or None in sizes or 0 in sizes:
        return [None] * len(batches)
    ratio = np.stack([batch.ratio for batch in batches if batch is not None])
    bits = np.stack([batch.bits for batch in batches if batch is not None])
    loud = np.logical_or.reduce(bits, axis=1) | (np.maximum.reduce(ratio, axis=1) >= cfg.on_ratio)
    return [bool(value) for value in loud.tolist()]


_KIND_ORDER = {"quality": 0, "ended": 1, "started": 2, "updated": 3}


def _ordered(events: list[DetectorEvent]) -> list[DetectorEvent]:
    """Events by decision time; ties in a fixed order so any chunking lists them alike."""
    if len(events) < 2:  # most chunks decide nothing
        return events

    def key(event: DetectorEvent) -> tuple[int, int, int, str]:
        if isinstance(event, EpisodeEvent):
            return (event.at_us, _KIND_ORDER[event.kind.value], event.episode.onset_us, "")
        return (event.at_us, 0, event.start_us, event.flag.value)

    return sorted(events, key=key)
