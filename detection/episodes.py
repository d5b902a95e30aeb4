"""The cramp state machine on the envelope grid: bursts, look-alike rules, episode events.

A *burst* starts when the envelope/floor ratio reaches ``on_ratio``; its onset is back-dated to
where the ratio last sat below ``back_ratio`` (Hodges & Bui 1996: threshold plus a search back
to the departure from baseline). It ends when the ratio stays below ``off_ratio`` for
``off_hold_s``; the offset is the start of that quiet stretch. A burst becomes a cramp
*episode* (``started``) once it has lasted ``confirm_s`` from its onset, was sustained, has an
EMG spectrum (zero crossings) and the limb was still and lying down at its onset. Bursts of leg
movement duration (0.5-10 s) are remembered; when they repeat every 5-90 s (a periodic limb
movement series, WASM 2016) a new burst must outlast 10 s before it can be a cramp.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from detection.acc import AccState
from detection.blocks import BlockBatch
from detection.config import DetectorConfig
from detection.events import (
    DetectorEvent,
    Episode,
    EpisodeEvent,
    EventKind,
    Movement,
    QualityEvent,
    QualityFlag,
)
from detection.quality import FLAG_BITS

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


RECENT_ALPHA = 0.05  # exponential mean of the ratio over about 1 s (20 blocks)
DIP_BLOCKS = 10  # a dip of >= 0.5 s before confirmation: the movement check covers the rise


@dataclass
class Burst:
    """A burst in progress (candidate or confirmed episode)."""

    onset_us: int
    plm_context: bool
    off_ratio: float
    n_blocks: int = 0
    n_high: int = 0
    low_run: int = 0
    low_start_us: int = 0
    last_high_end_us: int = 0
    sum_ratio: float = 0.0
    peak_ratio: float = 0.0
    sum_env_uv: float = 0.0
    peak_env_uv: float = 0.0
    sum_zcr_hz: float = 0.0
    bits: int = 0
    decided: bool = False
    confirmed_us: int | None = None
    last_update_us: int = 0
    movement: Movement = Movement.UNKNOWN
    moved_checked_us: int = 0
    artifact: bool = False
    recent_ratio: float = 0.0
    acc_checked: bool = False
    low_n: int = 0
    low_above: int = 0
    rise_us: int | None = None


@dataclass
class PendingEnd:
    """An ended episode waiting to learn whether the wearer got up afterwards."""

    episode: Episode
    deadline_us: int
    ended_at_us: int


@dataclass
class EpisodeMachine:
    """Carried state of the episode state machine for one device."""

    device_id: str
    site: str
    config: DetectorConfig
    mvc_uv: float | None
    history: BlockBatch = field(default_factory=BlockBatch.empty)
    burst: Burst | None = None
    lm_onsets_us: list[int] = field(default_factory=list)
    pending: list[PendingEnd] = field(default_factory=list)
    last_offset_us: int | None = None
    last_mean_ratio: float = 0.0
    closing: Burst | None = None
    closing_until_us: int = 0
    # Batches run since ``history`` was last brought up to date, and their block count. The
    # history is only read when a burst begins, so batches are queued here and concatenated
    # once they add up to a whole history; snapshots fold them in first (the pickled state is
    # the same as if they had been concatenated one by one).
    recent: tuple[BlockBatch, ...] = field(default=(), init=False, repr=False, compare=False)
    recent_blocks: int = field(default=0, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, object]:
        """Pickled state with the queued batches folded into ``history``."""
        state = dict(self.__dict__)
        state["history"] = self._current_history()
        state.pop("recent", None)
        state.pop("recent_blocks", None)
        return state

    # ------------------------------------------------------------------ public

    def run(self, batch: BlockBatch, acc: AccState | None, acc_seen: bool) -> list[DetectorEvent]:
        """Advance over ``batch``; ``acc`` holds the accelerometer history (None: no ACC)."""
        cfg = self.config
        candidates = (batch.ratio >= cfg.on_ratio).nonzero()[0].tolist()
        if self.burst is None and self.closing is None and not candidates:
            self._remember(batch)  # nothing starts, lasts or closes in this batch
            return []
        events: list[DetectorEvent] = []
        joined: BlockBatch | None = None  # history + batch, built when a burst begins
        first = 0
        # the new blocks as Python scalars: the loop reads them one at a time
        ratios, env_uv, zcr_hz = batch.ratio.tolist(), batch.env_uv.tolist(), batch.zcr_hz.tolist()
        starts, ends, bits = batch.start_us.tolist(), batch.end_us.tolist(), batch.bits.tolist()
        hold = max(1, round(cfg.off_hold_s / cfg.block_s))
        confirm_us = cfg.confirm_s * 1e6
        k = 0  # index into the batch
        count = batch.size
        while k < count:
            if self.burst is None:
                nxt = bisect.bisect_left(candidates, k)
                found = nxt < len(candidates)
                if self.closing is not None:
                    stop = candidates[nxt] if found else count
                    if stop > k:
                        gap = batch.ratio[k:stop]
                        self.closing.low_n += int(gap.shape[0])
                        self.closing.low_above += int(np.count_nonzero(gap >= cfg.back_ratio))
                    next_us = starts[candidates[nxt]] if found else None
                    if next_us is not None and next_us <= self.closing_until_us:
                        if self._resume(acc, next_us):
                            k = candidates[nxt]
                        else:
                            events.extend(self._close(acc, acc_seen))
                    elif next_us is not None or ends[-1] >= self.closing_until_us:
                        events.extend(self._close(acc, acc_seen))
                if self.burst is None:
                    if not found:
                        break
                    k = candidates[nxt]
                    if joined is None:
                        history = self._current_history()
                        joined, first = BlockBatch.join(history, batch), history.size
                    self._begin(joined, first + k)
            burst = self.burst
            assert burst is not None
            r = ratios[k]
            burst.recent_ratio += RECENT_ALPHA * (r - burst.recent_ratio)
            if r >= burst.off_ratio:
                if burst.low_run >= DIP_BLOCKS and not burst.decided:
                    burst.rise_us = starts[k]  # rises again after a dip
                burst.low_run = 0
                burst.n_high += 1
                burst.last_high_end_us = ends[k]
                burst.sum_ratio += r
                burst.peak_ratio = max(burst.peak_ratio, r)
                env = env_uv[k]
                burst.sum_env_uv += env
                burst.peak_env_uv = max(burst.peak_env_uv, env)
                burst.sum_zcr_hz += zcr_hz[k]
                burst.bits |= bits[k]
            else:
                if burst.low_run == 0:
                    burst.low_start_us = starts[k]
                    burst.low_n, burst.low_above = 0, 0
                burst.low_n += 1
                burst.low_above += int(r >= cfg.back_ratio)
                burst.low_run += 1
            burst.n_blocks += 1
            now_us = ends[k]
            if burst.low_run >= hold:
                if burst.confirmed_us is not None:
                    # a confirmed cramp may resume within merge_s (irregular EMG dips)
                    self.closing = burst
                    self.closing_until_us = burst.low_start_us + round(cfg.merge_s * 1e6)
                    self.burst = None
                else:
                    self.burst = None
                    events.extend(self._end(burst, burst.low_start_us, now_us, acc, acc_seen, ()))
                k += 1
                continue
            if not burst.decided:
                if now_us - burst.onset_us >= confirm_us:  # (_decide's first test, inlined)
                    event = self._decide(burst, now_us, acc, acc_seen)
                    if event is not None:
                        events.append(event)
            elif (
                burst.confirmed_us is not None
                and now_us - burst.last_update_us >= cfg.update_every_s * 1e6
            ):
                burst.last_update_us = now_us
                up_us = self._got_up(burst, acc, now_us)
                if up_us is not None:  # the wearer got up: the cramp is over
                    self.burst = None
                    events.extend(self._end(burst, up_us, now_us, acc, acc_seen, ()))
                    k += 1
                    continue
                self._track_movement(burst, acc, now_us)
                episode = self._episode(burst, None, now_us, acc_seen, ())
                events.append(EpisodeEvent(EventKind.UPDATED, episode, now_us))
            k += 1
        self._remember(batch)
        return events

    def _keep(self) -> int:
        """Blocks of history a burst's onset search and baseline can reach back to."""
        cfg = self.config
        return round(max(cfg.backdate_max_s, cfg.baseline_s) / cfg.block_s) + 2

    def _remember(self, batch: BlockBatch) -> None:
        """Append ``batch`` to the history (queued until the queue fills a history)."""
        self.recent = (*self.recent, batch)
        self.recent_blocks += batch.size
        if self.recent_blocks >= self._keep():
            self._current_history()

    def _current_history(self) -> BlockBatch:
        """The last ``_keep()`` blocks run, folding the queued batches in."""
        if self.recent:
            self.history = BlockBatch.concat((self.history, *self.recent)).tail(self._keep())
            self.recent, self.recent_blocks = (), 0
        return self.history

    def resolve_pending(
        self, acc: AccState | None, horizon_us: int, *, final: bool
    ) -> list[EpisodeEvent]:
        """Emit ``ended`` for episodes whose got-up question is settled by ``horizon_us``."""
        cfg = self.config
        events: list[EpisodeEvent] = []
        still: list[PendingEnd] = []
        for item in self.pending:
            offset_us = item.episode.offset_us
            assert offset_us is not None
            up_us = None
            if acc is not None:
                up_us = acc.upright_since(
                    offset_us,
                    min(horizon_us, item.deadline_us),
                    round(cfg.upright_hold_s * 1e6),
                    cfg.upright_deg,
                )
            if up_us is not None:
                episode = replace(item.episode, got_up_after=True)
                at_us = max(up_us, item.ended_at_us)
                events.append(EpisodeEvent(EventKind.ENDED, episode, at_us))
            elif horizon_us >= item.deadline_us:
                seen = None if acc is None else acc.peak_activity_g(offset_us, item.deadline_us)
                episode = replace(item.episode, got_up_after=False if seen is not None else None)
                events.append(EpisodeEvent(EventKind.ENDED, episode, item.deadline_us))
            elif final:
                events.append(EpisodeEvent(EventKind.ENDED, item.episode, horizon_us))
            else:
                still.append(item)
        self.pending = still
        return events

    def interrupt(
        self, end_us: int, acc: AccState | None, acc_seen: bool, flags: tuple[QualityFlag, ...]
    ) -> list[DetectorEvent]:
        """Stop at ``end_us`` (a gap or the end of data): end the burst, forget the history."""
        events: list[DetectorEvent] = []
        if self.closing is not None:
            burst, self.closing = self.closing, None
            events = self._end(burst, burst.low_start_us, end_us, acc, acc_seen, ())
        if self.burst is not None:
            burst, self.burst = self.burst, None
            offset_us = end_us
            if burst.low_run > 0:
                offset_us = min(end_us, burst.low_start_us)
            events.extend(self._end(burst, offset_us, end_us, acc, acc_seen, flags))
        self.history = BlockBatch.empty()
        self.recent, self.recent_blocks = (), 0
        return events

    def earliest_needed_us(self) -> int | None:
        """Oldest accelerometer time a future query may still ask about (None: none)."""
        times = [p.episode.offset_us for p in self.pending if p.episode.offset_us is not None]
        for burst in (self.burst, self.closing):
            if burst is not None:
                times.append(burst.onset_us - round(self.config.move_pre_s * 1e6))
        return min(times) if times else None

    # ----------------------------------------------------------------- helpers

    def _begin(self, joined: BlockBatch, index: int) -> None:
        cfg = self.config
        limit_us = int(joined.start_us[index]) - round(cfg.backdate_max_s * 1e6)
        base = self._baseline(joined.ratio[:index])
        back = cfg.back_ratio if base is None else max(cfg.back_floor_ratio, cfg.back_factor * base)
        onset = index
        while (
            onset > 0
            and joined.ratio[onset - 1] >= back
            and joined.start_us[onset - 1] >= limit_us
            and joined.end_us[onset - 1] == joined.start_us[onset]
        ):
            onset -= 1
        onset_us = int(joined.start_us[onset])
        self.burst = Burst(
            onset_us=onset_us,
            plm_context=self._in_plm_series(onset_us),
            off_ratio=self._off_ratio(self._baseline(joined.ratio[:onset])),
        )
        # blocks from the onset up to (not including) the crossing belong to the burst
        for k in range(onset, index):
            r = float(joined.ratio[k])
            self.burst.n_blocks += 1
            if r >= self.burst.off_ratio:
                self.burst.n_high += 1
                self.burst.sum_ratio += r
                self.burst.peak_ratio = max(self.burst.peak_ratio, r)
                env = float(joined.env_uv[k])
                self.burst.sum_env_uv += env
                self.burst.peak_env_uv = max(self.burst.peak_env_uv, env)
                self.burst.sum_zcr_hz += float(joined.zcr_hz[k])
                self.burst.bits |= int(joined.bits[k])

    def _baseline(self, before: FloatArray) -> float | None:
        """Local resting ratio: a low quantile over the ``baseline_s`` before (None: too few).

        Hodges & Bui (1996) measure an onset against the baseline just before it; a rise of
        the resting level (posture, sleep stage) must neither hold a burst open nor stop the
        search for its onset early.
        """
        cfg = self.config
        size = round(cfg.baseline_s / cfg.block_s)
        recent = before[max(0, before.shape[0] - size) :]
        valid = np.sort(recent[recent > 0])
        if valid.shape[0] < size // 4:
            return None
        return float(valid[int(cfg.baseline_quantile * valid.shape[0])])

    def _off_ratio(self, base: float | None) -> float:
        """Continuation threshold: ``off_ratio``, raised above a busy local baseline."""
        cfg = self.config
        return cfg.off_ratio if base is None else max(cfg.off_ratio, cfg.baseline_factor * base)

    def _in_plm_series(self, onset_us: int) -> bool:
        cfg = self.config
        lo, hi = cfg.plm_min_interval_s * 1e6, cfg.plm_max_interval_s * 1e6
        onsets = [*self.lm_onsets_us[-2:], onset_us]
        if len(onsets) < 3:
            return False
        gaps = np.diff(np.asarray(onsets, dtype=np.float64))
        return bool(np.all((gaps >= lo) & (gaps <= hi)))

    def _decide(
        self, burst: Burst, now_us: int, acc: AccState | None, acc_seen: bool
    ) -> EpisodeEvent | None:
        cfg = self.config
        if now_us - burst.onset_us < cfg.confirm_s * 1e6:
            return None
        if burst.n_high < cfg.sustain_fraction * burst.n_blocks:
            return None  # not sustained yet: keep waiting while the burst lasts
        if self.last_offset_us is not None:
            since_s = (burst.onset_us - self.last_offset_us) / 1e6
            if since_s <= cfg.post_cramp_s and (
                burst.recent_ratio < cfg.post_cramp_fraction * self.last_mean_ratio
            ):
                return None  # so far as weak as stretching or rubbing the calf after a cramp
        if acc is not None and not burst.acc_checked:
            burst.acc_checked = True
            t0 = burst.onset_us - round(cfg.move_pre_s * 1e6)
            t1 = burst.onset_us + round(cfg.move_post_s * 1e6)
            if burst.rise_us is not None:  # a twitch ran into the burst: check its rise too
                t1 = max(t1, burst.rise_us + round(cfg.move_post_s * 1e6))
            peak = acc.peak_activity_g(t0, t1)
            if peak is not None:
                rotation = acc.rotation_deg(t0, t1) or 0.0
                if peak > cfg.move_g or rotation > cfg.posture_change_deg:
                    burst.decided = True
                    return None  # voluntary movement / turning over
                if acc.posture_at(burst.onset_us + 1, cfg.upright_deg) == "upright":
                    burst.decided = True
                    return None  # standing or walking: calf EMG is normal
                light = peak > cfg.lm_move_g
                burst.movement = Movement.MOVING if light else Movement.STILL
                burst.moved_checked_us = t1
        limb_moved = burst.movement is Movement.MOVING
        if burst.plm_context or limb_moved:
            # could be a leg movement (<= 10 s): wait until it clearly outlasts one
            outlasted = now_us - burst.onset_us > (cfg.lm_max_s + cfg.lm_margin_s) * 1e6
            if not outlasted or burst.low_run > 0:
                return None
        standing = acc is not None and acc.posture_at(now_us, cfg.upright_deg) == "upright"
        if standing or self._got_up(burst, acc, now_us) is not None:
            burst.decided = True
            return None  # getting up / standing: not a cramp in bed
        burst.decided = True
        if burst.sum_zcr_hz / max(burst.n_high, 1) < cfg.zcr_min_hz:
            burst.artifact = True  # a low-frequency artifact leaking through the band-pass
            return None
        burst.confirmed_us = now_us
        burst.last_update_us = now_us
        self._track_movement(burst, acc, now_us)
        episode = self._episode(burst, None, now_us, acc_seen, ())
        return EpisodeEvent(EventKind.STARTED, episode, now_us)

    def _track_movement(self, burst: Burst, acc: AccState | None, now_us: int) -> None:
        if acc is None or burst.movement is Movement.UNKNOWN:
            return
        if now_us > burst.moved_checked_us:
            peak = acc.peak_activity_g(burst.moved_checked_us, now_us)
            if peak is not None and peak > self.config.move_g:
                burst.movement = Movement.MOVING
            burst.moved_checked_us = now_us

    def _got_up(self, burst: Burst, acc: AccState | None, now_us: int) -> int | None:
        """When the wearer stood up during the episode (upright for the hold time), or None."""
        if acc is None:
            return None
        cfg = self.config
        hold_us = round(cfg.upright_hold_s * 1e6)
        start_us = burst.onset_us - round(cfg.move_pre_s * 1e6)
        reached = acc.upright_since(start_us, now_us, hold_us, cfg.upright_deg)
        return None if reached is None else reached - hold_us

    def _resume(self, acc: AccState | None, at_us: int) -> bool:
        """Continue the closing episode with a burst starting at ``at_us``.

        Only when the envelope stayed above ``back_ratio`` most of the time in between (the
        cramp dipped, the muscle did not relax), and not when the limb is upright or moving then: that is getting up or a voluntary
        movement after the cramp, not the cramp coming back.
        """
        cfg = self.config
        closing = self.closing
        if closing is None or 2 * closing.low_above < closing.low_n:
            return False  # the muscle went back to rest in between: a new burst
        if acc is not None:
            if acc.posture_at(at_us, cfg.upright_deg) == "upright":
                return False
            peak = acc.peak_activity_g(at_us - round(cfg.move_pre_s * 1e6), at_us)
            if peak is not None and peak > cfg.move_g:
                return False
        self.burst, self.closing = self.closing, None
        if self.burst is not None:
            self.burst.low_run = 0
        return True

    def _close(self, acc: AccState | None, acc_seen: bool) -> list[DetectorEvent]:
        """The closing episode did not resume: it ends at its offset."""
        burst, self.closing = self.closing, None
        if burst is None:
            return []
        return self._end(burst, burst.low_start_us, self.closing_until_us, acc, acc_seen, ())

    def _end(
        self,
        burst: Burst,
        offset_us: int,
        now_us: int,
        acc: AccState | None,
        acc_seen: bool,
        flags: tuple[QualityFlag, ...],
    ) -> list[DetectorEvent]:
        cfg = self.config
        if burst.artifact:
            flag = QualityFlag.MOTION_ARTIFACT
            return [QualityEvent(self.device_id, flag, burst.onset_us, offset_us, now_us)]
        if burst.confirmed_us is None:
            duration_s = (offset_us - burst.onset_us) / 1e6
            if cfg.lm_min_s <= duration_s <= cfg.lm_max_s:
                self.lm_onsets_us = [*self.lm_onsets_us[-3:], burst.onset_us]
            return []
        self._track_movement(burst, acc, offset_us)
        episode = self._episode(burst, offset_us, now_us, acc_seen, flags)
        self.last_offset_us = offset_us
        self.last_mean_ratio = episode.mean_intensity
        if acc is None or not acc_seen:
            return [EpisodeEvent(EventKind.ENDED, episode, now_us)]
        deadline = offset_us + round(cfg.got_up_window_s * 1e6)
        self.pending.append(PendingEnd(episode, deadline, now_us))
        return []

    def _episode(
        self,
        burst: Burst,
        offset_us: int | None,
        now_us: int,
        acc_seen: bool,
        flags: tuple[QualityFlag, ...],
    ) -> Episode:
        cfg = self.config
        n = max(burst.n_high, 1)
        mean_ratio = burst.sum_ratio / n
        mean_env = burst.sum_env_uv / n
        end_us = offset_us if offset_us is not None else now_us
        duration_s = (end_us - burst.onset_us) / 1e6
        quality = [flag for bit, flag in FLAG_BITS if burst.bits & bit]
        quality.extend(flag for flag in flags if flag not in quality)
        if not acc_seen and QualityFlag.NO_ACC not in quality:
            quality.append(QualityFlag.NO_ACC)
        strength = min(max(math.log10(max(mean_ratio, 1e-9) / cfg.off_ratio), 0.0), 1.0)
        confidence = 0.45 + 0.25 * strength + 0.15 * min(duration_s / 30.0, 1.0)
        confidence += 0.1 if burst.movement is Movement.STILL else 0.0
        confidence -= 0.1 if quality and quality != [QualityFlag.NO_ACC] else 0.0
        confidence -= 0.05 if burst.plm_context else 0.0
        mvc = self.mvc_uv
        assert burst.confirmed_us is not None
        return Episode(
            episode_id=f"{self.device_id}:{burst.onset_us}",
            device_id=self.device_id,
            site=self.site,
            onset_us=burst.onset_us,
            confirmed_us=burst.confirmed_us,
            offset_us=offset_us,
            duration_s=duration_s,
            peak_intensity=max(burst.peak_ratio, 1.0),
            mean_intensity=max(mean_ratio, 1.0),
            confidence=round(min(max(confidence, 0.05), 0.99), 3),
            movement=burst.movement,
            got_up_after=None,
            peak_mvc_pct=100.0 * burst.peak_env_uv / mvc if mvc else None,
            mean_mvc_pct=100.0 * mean_env / mvc if mvc else None,
            quality_flags=tuple(quality),
        )
