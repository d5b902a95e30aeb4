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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detection.acc import AccState
from detection.config import (
    ACC_RATE_RANGE_HZ,
    EMG_RATE_RANGE_HZ,
    MAX_EMG_CHANNELS,
    DetectorConfig,
)
from detection.envelope import block_stats, smooth_mean_square
from detection.episodes import BlockBatch, EpisodeMachine
from detection.errors import (
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
from detection.filters import apply_sos, design_emg_filters, mains_frequencies_hz, steady_state
from detection.floor import second_medians, update_floor
from detection.quality import UNUSABLE, FaultTracker, block_flags, second_flags

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

SNAPSHOT_VERSION = 1
ACC_KEEP_S = 10.0  # accelerometer history kept behind the decided time (beyond open queries)
ACC_MAX_HISTORY_S = 3600.0  # cap when the accelerometer runs far ahead of the EMG
MAX_EMG_UV = 1e7  # 10 V: far beyond any amplifier rail; larger means wrong units
MAX_ACC_G = 1e3


@dataclass
class _EmgStream:
    """Carried state of the EMG stream (filters, partial block, partial second, floor)."""

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
    sec_start_us: int = 0

    def sample_time_us(self, index: float) -> int:
        """Device time of sample ``index`` of the current segment, µs."""
        return self.anchor_us + round(index * 1e6 / self.rate_hz)


@dataclass
class _Seconds:
    """Completed seconds waiting for the decided time to pass them (all shape (n,))."""

    start_us: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    end_us: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    bits: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    env_uv: FloatArray = field(default_factory=lambda: np.zeros(0))
    floor_uv: FloatArray = field(default_factory=lambda: np.zeros(0))

    def append(self, other: _Seconds) -> None:
        for name in ("start_us", "end_us", "bits", "env_uv", "floor_uv"):
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))

    def split(self, count: int) -> _Seconds:
        """Remove and return the first ``count`` seconds."""
        head = _Seconds()
        for name in ("start_us", "end_us", "bits", "env_uv", "floor_uv"):
            values = getattr(self, name)
            setattr(head, name, values[:count])
            setattr(self, name, values[count:])
        return head


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
    floor_window: FloatArray
    floor_uv: float = math.nan
    held_median_uv: float = math.nan
    emg: _EmgStream | None = None
    acc: AccState | None = None
    pending: BlockBatch = field(default_factory=BlockBatch.empty)
    seconds: _Seconds = field(default_factory=_Seconds)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    no_acc_since_us: int | None = None
    decided_us: int | None = None
    series: list[SeriesPoint] = field(default_factory=list)
    finished: bool = False


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
        window_len = max(1, round(cfg.floor_window_s))
        self._state = _State(
            device_id=device_id,
            site=site,
            notch_hz=mains_frequencies_hz(mains_hz),
            mvc_uv=mvc_uv,
            config=cfg,
            machine=EpisodeMachine(device_id, site, cfg, mvc_uv),
            faults=FaultTracker(device_id),
            floor_window=np.full(window_len, np.nan),
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
        st = self._state
        self._check_open()
        x = _as_samples(samples_uv, "EMG", None, MAX_EMG_UV)
        if not 1 <= x.shape[1] <= MAX_EMG_CHANNELS:
            raise DetectorInputError(
                f"EMG needs 1-{MAX_EMG_CHANNELS} channels, got {x.shape[1]} (shape {x.shape})"
            )
        rate = _check_rate(rate_hz, "EMG", EMG_RATE_RANGE_HZ)
        start = _check_time(start_us)
        emg = st.emg
        if emg is None:
            emg = self._new_emg(rate, x.shape[1])
            st.emg = emg
            self._start_segment(emg, x[0], start)
        else:
            if rate != emg.rate_hz:
                raise DetectorRateError(
                    f"EMG rate changed from {emg.rate_hz:g} Hz to {rate:g} Hz mid-stream"
                )
            if x.shape[1] != emg.channels:
                raise DetectorInputError(
                    f"EMG channel count changed from {emg.channels} to {x.shape[1]}"
                )
            expected = emg.sample_time_us(emg.n_samples)
            if _jump(start, expected, rate) > 0:
                st.gaps.append((expected, start))
                self._start_segment(emg, x[0], start)
        self._ingest_emg(emg, x)
        return self._advance(final=False)

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
        st = self._state
        self._check_open()
        x = _as_samples(samples_g, "ACC", 3, MAX_ACC_G)
        rate = _check_rate(rate_hz, "ACC", ACC_RATE_RANGE_HZ)
        start = _check_time(start_us)
        acc = st.acc
        if acc is None:
            acc = AccState.create(rate)
            st.acc = acc
            acc.start_segment(x[0], start)
        else:
            if rate != acc.rate_hz:
                raise DetectorRateError(
                    f"ACC rate changed from {acc.rate_hz:g} Hz to {rate:g} Hz mid-stream"
                )
            expected = acc.anchor_us + round(acc.n_samples * 1e6 / acc.rate_hz)
            if _jump(start, expected, rate) > 0:
                acc.start_segment(x[0], start)
        acc.push(x)
        if acc.time_us.size and acc.time_us[-1] - acc.time_us[0] > ACC_MAX_HISTORY_S * 1e6:
            acc.forget_before(int(acc.time_us[-1]) - round(ACC_MAX_HISTORY_S * 1e6))
        return self._advance(final=False)

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
            end = _check_time(end_us)
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

    # --------------------------------------------------------------- EMG path

    def _check_open(self) -> None:
        if self._state.finished:
            raise DetectorStateError("detector has finished; create a new one for more data")

    def _new_emg(self, rate: float, channels: int) -> _EmgStream:
        cfg = self._state.config
        design = design_emg_filters(
            rate,
            low_hz=cfg.band_low_hz,
            high_hz=cfg.band_high_hz,
            nyquist_fraction=cfg.band_nyquist_fraction,
            notch_hz=self._state.notch_hz,
            notch_q=cfg.notch_q,
        )
        return _EmgStream(
            rate_hz=rate,
            channels=channels,
            block_len=max(1, round(rate * cfg.block_s)),
            bandpass_sos=design.bandpass_sos,
            notch_sos=design.notch_sos,
            bandpass_zi=np.zeros((design.bandpass_sos.shape[0], channels, 2)),
            notch_zi=np.zeros((design.notch_sos.shape[0], channels, 2)),
        )

    def _start_segment(self, emg: _EmgStream, first: FloatArray, start_us: int) -> None:
        ch = emg.channels
        emg.anchor_us = start_us
        emg.n_samples = 0
        emg.n_blocks = 0
        emg.bandpass_zi = steady_state(emg.bandpass_sos, first)
        emg.notch_zi = np.zeros((emg.notch_sos.shape[0], ch, 2))
        emg.rest_raw = np.zeros((ch, 0))
        emg.rest_band = np.zeros((ch, 0))
        emg.rest_clean = np.zeros((ch, 0))
        emg.smooth_carry = np.zeros((0, ch))
        emg.prev_mean_uv = np.full(ch, np.nan)
        emg.sec_env = np.zeros(0)
        emg.sec_valid = np.zeros(0, dtype=bool)
        emg.sec_bits = np.zeros(0, dtype=np.int64)
        emg.sec_floor = np.zeros(0)

    def _ingest_emg(self, emg: _EmgStream, x: FloatArray) -> None:
        st = self._state
        cfg = st.config
        xt = np.ascontiguousarray(x.T)  # channel-major: filters and blocks run on rows
        band, emg.bandpass_zi = apply_sos(emg.bandpass_sos, xt, emg.bandpass_zi)
        clean, emg.notch_zi = apply_sos(emg.notch_sos, band, emg.notch_zi)
        emg.n_samples += x.shape[0]
        notched = clean is not band
        raw = np.concatenate([emg.rest_raw, xt], axis=1)
        band = np.concatenate([emg.rest_band, band], axis=1)
        clean = np.concatenate([emg.rest_clean, clean], axis=1) if notched else band
        b = emg.block_len
        n_blocks = raw.shape[1] // b
        used = n_blocks * b
        emg.rest_raw, emg.rest_band = raw[:, used:], band[:, used:]
        emg.rest_clean = clean[:, used:]
        if n_blocks == 0:
            return
        band_used = band[:, :used]
        clean_used = clean[:, :used] if notched else band_used
        stats = block_stats(raw[:, :used], band_used, clean_used, b)
        bits = block_flags(
            stats,
            emg.prev_mean_uv,
            b,
            flat_uv=cfg.flat_uv,
            clip_fraction=cfg.clip_fraction,
            rail_fraction=cfg.rail_fraction,
            mains_fraction=cfg.mains_fraction,
            artifact_ratio=cfg.artifact_ratio,
            floor_min_uv=cfg.floor_min_uv,
            notch=emg.notch_sos.shape[0] > 0,
        )
        emg.prev_mean_uv = stats.raw_mean_uv[-1].copy()
        window = max(1, cfg.smooth_blocks)
        if emg.smooth_carry.shape[0] == 0:
            emg.smooth_carry = np.repeat(stats.ms_uv2[:1], window - 1, axis=0)
        smoothed, emg.smooth_carry = smooth_mean_square(stats.ms_uv2, emg.smooth_carry)
        env_ch = np.sqrt(smoothed)
        usable = (bits & UNUSABLE) == 0
        masked = np.where(usable, env_ch, -1.0)
        best = np.argmax(masked, axis=1)
        rows = np.arange(n_blocks)
        env = np.maximum(masked[rows, best], 0.0)
        crossings = stats.crossings[rows, best].astype(np.float64)
        zcr = crossings * emg.rate_hz / max(b - 1, 1)
        block_index = np.arange(emg.n_blocks, emg.n_blocks + n_blocks)
        settle = max(0, round(cfg.settle_s / cfg.block_s))
        valid = usable.any(axis=1) & (block_index >= settle)
        all_bits = np.bitwise_or.reduce(bits, axis=1)
        floors = self._floors(emg, env, valid, all_bits, block_index)
        ratio = np.where(valid & ~np.isnan(floors), env / np.where(np.isnan(floors), 1, floors), 0)
        starts = emg.anchor_us + np.round(block_index * (b * 1e6 / emg.rate_hz)).astype(np.int64)
        ends = emg.anchor_us + np.round((block_index + 1) * (b * 1e6 / emg.rate_hz)).astype(
            np.int64
        )
        emg.n_blocks += n_blocks
        batch = BlockBatch(starts, ends, env, floors, ratio, zcr, all_bits)
        st.pending = BlockBatch.join(st.pending, batch)

    def _floors(
        self,
        emg: _EmgStream,
        env: FloatArray,
        valid: BoolArray,
        bits: IntArray,
        block_index: IntArray,
    ) -> FloatArray:
        """Floor of each new block (the floor known when its second began); books seconds."""
        st = self._state
        cfg = st.config
        per_second = max(1, round(1.0 / cfg.block_s))
        b = emg.block_len
        sec_env = np.concatenate([emg.sec_env, env])
        sec_valid = np.concatenate([emg.sec_valid, valid])
        sec_bits = np.concatenate([emg.sec_bits, bits])
        # floor of each new block: the floor after the seconds completed before its second
        first_second = (block_index[0] - emg.sec_env.shape[0]) // per_second
        second_of_block = block_index // per_second - first_second
        n_complete = sec_env.shape[0] // per_second
        used = n_complete * per_second
        floors_seq = [st.floor_uv]
        if n_complete:
            medians = second_medians(
                sec_env[:used].reshape(n_complete, per_second),
                sec_valid[:used].reshape(n_complete, per_second),
            )
            # a second enters the floor window one second late, and not at all when the next
            # one is invalid: the decaying filter transient before a flat line is no floor
            held = np.concatenate([[st.held_median_uv], medians])
            entering = np.where(np.isnan(held[1:]), np.nan, held[:-1])
            st.held_median_uv = float(held[-1])
            after, st.floor_window = update_floor(
                st.floor_window, entering, cfg.floor_quantile, cfg.floor_min_uv
            )
            for value in after:
                floors_seq.append(float(value) if not math.isnan(value) else floors_seq[-1])
            st.floor_uv = floors_seq[-1]
        block_floor: FloatArray = np.asarray(floors_seq, dtype=np.float64)[second_of_block]
        sec_floor = np.concatenate([emg.sec_floor, block_floor])
        if n_complete:
            second_index = first_second + np.arange(n_complete)
            start_block = second_index * per_second
            seconds = _Seconds(
                start_us=emg.anchor_us
                + np.round(start_block * (b * 1e6 / emg.rate_hz)).astype(np.int64),
                end_us=emg.anchor_us
                + np.round((start_block + per_second) * (b * 1e6 / emg.rate_hz)).astype(np.int64),
                bits=second_flags(sec_bits[:used], per_second),
                env_uv=sec_env[:used].reshape(n_complete, per_second).mean(axis=1),
                floor_uv=sec_floor[:used].reshape(n_complete, per_second).mean(axis=1),
            )
            st.seconds.append(seconds)
        emg.sec_env, emg.sec_valid = sec_env[used:], sec_valid[used:]
        emg.sec_bits, emg.sec_floor = sec_bits[used:], sec_floor[used:]
        return block_floor

    # ------------------------------------------------------------- decisions

    def _advance(self, *, final: bool) -> list[DetectorEvent]:
        """Decide every pending block the accelerometer rule allows (all of them if final)."""
        st = self._state
        events: list[DetectorEvent] = []
        while True:
            count = self._decidable(final)
            if st.gaps:
                gap_start, gap_end = st.gaps[0]
                before = int(np.searchsorted(st.pending.start_us, gap_start, side="left"))
                if count >= before:
                    events.extend(self._decide_blocks(before, final))
                    events.extend(self._cross_gap(gap_start, gap_end))
                    st.gaps.pop(0)
                    continue
            events.extend(self._decide_blocks(count, final))
            break
        return _ordered(events)

    def _decidable(self, final: bool) -> int:
        st = self._state
        ends = st.pending.end_us
        if final or ends.size == 0:
            return int(ends.size)
        cfg = st.config
        emg_end = int(ends[-1])
        count = int(np.searchsorted(ends, emg_end - round(cfg.acc_wait_s * 1e6), side="right"))
        if st.acc is not None:
            covered = int(np.searchsorted(ends, st.acc.end_us, side="right"))
            count = max(count, covered)
        return count

    def _decide_blocks(self, count: int, final: bool) -> list[DetectorEvent]:
        st = self._state
        if count == 0:
            return []
        events: list[DetectorEvent] = []
        batch = st.pending.tail(st.pending.size)
        head = BlockBatch(*(getattr(batch, n)[:count] for n in _BATCH_FIELDS))
        st.pending = BlockBatch(*(getattr(batch, n)[count:] for n in _BATCH_FIELDS))
        acc = st.acc
        if final:
            # end of data: decide the rest with what there is, without new NO_ACC intervals
            seen = acc is not None and st.no_acc_since_us is None
            events.extend(st.machine.run(head, acc, seen))
            covered = count
        else:
            acc_end = acc.end_us if acc is not None else None
            covered = 0 if acc_end is None else int(np.searchsorted(head.end_us, acc_end, "right"))
        if covered and not final:
            part = BlockBatch(*(getattr(head, n)[:covered] for n in _BATCH_FIELDS))
            if st.no_acc_since_us is not None:
                t = int(part.start_us[0])
                events.append(
                    QualityEvent(st.device_id, QualityFlag.NO_ACC, st.no_acc_since_us, t, t)
                )
                st.no_acc_since_us = None
            events.extend(st.machine.run(part, acc, acc is not None))
        if covered < count:
            part = BlockBatch(*(getattr(head, n)[covered:] for n in _BATCH_FIELDS))
            if st.no_acc_since_us is None:
                t = int(part.start_us[0])
                st.no_acc_since_us = t
                events.append(QualityEvent(st.device_id, QualityFlag.NO_ACC, t, None, t))
            events.extend(st.machine.run(part, acc, False))
        decided = int(head.end_us[-1])
        st.decided_us = decided
        events.extend(self._decide_seconds(decided))
        events.extend(st.machine.resolve_pending(acc, decided, final=False))
        if acc is not None:
            needed = st.machine.earliest_needed_us()
            keep = decided - round(ACC_KEEP_S * 1e6)
            acc.forget_before(keep if needed is None else min(keep, needed))
        return events

    def _decide_seconds(self, decided_us: int) -> list[DetectorEvent]:
        st = self._state
        ready = int(np.searchsorted(st.seconds.end_us, decided_us, side="right"))
        if ready == 0:
            return []
        done = st.seconds.split(ready)
        events: list[DetectorEvent] = list(st.faults.step(done.start_us, done.end_us, done.bits))
        edges = np.concatenate([done.start_us, done.end_us[-1:]])
        if st.acc is not None:
            activity, posture = st.acc.bins(edges, st.config.upright_deg)
        else:
            activity, posture = [None] * ready, [None] * ready
        for k in range(ready):
            floor = float(done.floor_uv[k])
            st.series.append(
                SeriesPoint(
                    ts_us=int(done.start_us[k]),
                    envelope_uv=float(done.env_uv[k]),
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


_BATCH_FIELDS = ("start_us", "end_us", "env_uv", "floor_uv", "ratio", "zcr_hz", "bits")
_KIND_ORDER = {"quality": 0, "ended": 1, "started": 2, "updated": 3}


def _ordered(events: list[DetectorEvent]) -> list[DetectorEvent]:
    """Events by decision time; ties in a fixed order so any chunking lists them alike."""

    def key(event: DetectorEvent) -> tuple[int, int, int, str]:
        if isinstance(event, EpisodeEvent):
            return (event.at_us, _KIND_ORDER[event.kind.value], event.episode.onset_us, "")
        return (event.at_us, 0, event.start_us, event.flag.value)

    return sorted(events, key=key)


def _as_samples(samples: Any, stream: str, columns: int | None, limit: float) -> FloatArray:
    try:
        x = np.asarray(samples, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DetectorInputError(f"{stream} samples are not numeric: {err}") from err
    if x.ndim == 1 and columns is None:
        x = x[:, None]
    if x.ndim != 2:
        want = f"(n, {columns})" if columns else "(n,) or (n, channels)"
        raise DetectorInputError(f"{stream} samples must have shape {want}, got {x.shape}")
    if columns is not None and x.shape[1] != columns:
        raise DetectorInputError(f"{stream} samples must have shape (n, {columns}), got {x.shape}")
    if x.shape[0] == 0:
        raise DetectorInputError(f"{stream} chunk is empty")
    finite = np.isfinite(x)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        raise DetectorInputError(f"{stream} chunk has NaN/inf (first at sample {row})")
    peak = max(float(x.max()), -float(x.min()))
    if peak > limit:
        raise DetectorInputError(
            f"{stream} chunk has a sample of magnitude {peak:g}, beyond {limit:g} "
            f"({'µV' if columns is None else 'g'}): wrong units?"
        )
    return np.ascontiguousarray(x)


def _check_rate(rate_hz: Any, stream: str, limits: tuple[float, float]) -> float:
    try:
        rate = float(rate_hz)
    except (TypeError, ValueError) as err:
        raise DetectorRateError(f"{stream} rate {rate_hz!r} is not a number") from err
    if not (math.isfinite(rate) and limits[0] <= rate <= limits[1]):
        raise DetectorRateError(
            f"{stream} rate {rate_hz!r} Hz is outside the supported {limits[0]:g}-{limits[1]:g} Hz"
        )
    return rate


def _check_time(start_us: Any) -> int:
    if isinstance(start_us, bool) or not isinstance(start_us, int | np.integer):
        raise DetectorInputError(f"start_us must be an integer of µs, got {start_us!r}")
    return int(start_us)


def _jump(start_us: int, expected_us: int, rate_hz: float) -> int:
    """+1 for a gap, 0 for contiguous (clock jitter allowed), error when time goes back."""
    tolerance = max(2e6 / rate_hz, 20_000.0)
    delta = start_us - expected_us
    if delta < -tolerance:
        raise DetectorTimeError(
            f"chunk starts at {start_us} µs, {-delta} µs before the end of the previous chunk "
            f"({expected_us} µs): time went backwards"
        )
    return 1 if delta > tolerance else 0
