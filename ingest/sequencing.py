"""Per-device sequencing of decoded frames: duplicates, gaps, reordering, live/sync merging.

Pure: frames and integer times in, ordered frames and notes out; no I/O and no clocks (the
caller passes arrival times). One :class:`DeviceSequencer` holds both streams (EMG, ACC) of a
device and releases their frames in one canonical device-time order, sorted by the end of
their data, the accelerometer first on ties, whatever order they arrived in and whichever
transport carried them. So the same night gives the same detector input streamed live, synced
in bulk, or both; and the EMG never runs ahead of the accelerometer by more than one
accelerometer frame (the detector decides EMG without the accelerometer once it has run
``acc_wait`` ahead: a 30 s sync frame ordered by its start would do that).

Rules (per stream; a stream's sequence numbers are shared by live and sync transports):

- a frame whose sequence number is behind the stream's position and whose data is older than
  what was already released is a **duplicate** (dropped); if its number lies in a declared gap
  it is **late** (also dropped: the detector has moved past it);
- a frame ahead of the position is held (**reordered**) until the missing frames arrive, or
  until the stream **stalls**: live data of the device has run ``reorder_window_us`` past the
  missing frame and the held frame has waited half that in wall time (so a backlog delivered
  faster than real time, slightly out of order, loses nothing), the caller forces a flush
  (idle device), or more than ``max_pending`` frames are held. A stall declares a **gap** and
  moves the position to the oldest held frame;
- a frame whose number is behind the position but whose data starts at or after the released
  data is a **sequence reset** (device restarted its counter) and moves the position back.

A stream first seen at sequence 0 starts at once; first seen at another number it waits as if
frames before it might still come.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ingest.protocol import Frame, StreamKind, Transport

MAX_GAP_RECORDS = 256
_TIE_ORDER = {StreamKind.ACC: 0, StreamKind.EMG: 1}  # frames ending together: ACC first


class Outcome(StrEnum):
    """What happened to an offered frame."""

    ACCEPTED = "accepted"  # released now or held for reordering
    DUPLICATE = "duplicate"  # already released (same stream and sequence number)
    LATE = "late"  # fills a gap that was already declared and passed


@dataclass(frozen=True)
class Gap:
    """Frames of one stream that never arrived before the stream moved on.

    ``first_seq``..``last_seq`` inclusive; ``start_us``/``end_us`` device-clock µs of the hole.
    """

    device_id: str
    kind: StreamKind
    first_seq: int
    last_seq: int
    start_us: int
    end_us: int
    samples: int


@dataclass(frozen=True)
class Step:
    """Result of offering a frame or flushing: frames to push now, in order, and new gaps."""

    outcome: Outcome
    released: tuple[Frame, ...] = ()
    gaps: tuple[Gap, ...] = ()


@dataclass
class StreamCounters:
    """Cumulative counters of one (device, stream) since it was first seen."""

    frames: int = 0
    samples: int = 0
    gaps: int = 0
    gap_samples: int = 0
    duplicates: int = 0
    late: int = 0
    reordered: int = 0
    resets: int = 0


@dataclass
class StreamState:
    """Position of one stream: everything before ``next_seq`` was released or declared lost."""

    next_seq: int | None = None  # None until the stream's first frame is released
    frontier_us: int | None = None  # device-clock end of the last released frame
    rate_hz: float | None = None
    max_seen_seq: int | None = None
    pending: dict[int, tuple[Frame, Transport]] = field(default_factory=dict)
    arrived_us: dict[int, int] = field(default_factory=dict)  # wall arrival of held frames
    pending_heap: list[int] = field(default_factory=list)  # held seqs; may hold released ones
    gap_ranges: list[tuple[int, int]] = field(default_factory=list)  # declared, newest last
    counters: StreamCounters = field(default_factory=StreamCounters)

    def hold(self, frame: Frame, transport: Transport, arrival_us: int | None = None) -> None:
        """Keep a frame until it can be released (``arrival_us``: wall clock, if known)."""
        self.pending[frame.seq] = (frame, transport)
        if arrival_us is not None:
            self.arrived_us[frame.seq] = arrival_us
        heapq.heappush(self.pending_heap, frame.seq)

    def release(self, seq: int) -> None:
        """Forget a held frame (and stale heap entries, so the heap stays small)."""
        del self.pending[seq]
        self.arrived_us.pop(seq, None)
        heap = self.pending_heap
        while heap and heap[0] not in self.pending:
            heapq.heappop(heap)

    def oldest_seq(self) -> int:
        """Lowest held sequence number (the stream must hold at least one frame)."""
        heap = self.pending_heap
        while heap[0] not in self.pending:
            heapq.heappop(heap)
        return heap[0]


class DeviceSequencer:
    """Sequencing state of one device's EMG and ACC streams.

    Parameters
    ----------
    device_id : str
    reorder_window_us : int
        How far (device time, µs) live data may run past a missing frame before it is declared
        lost, and past a silent other stream before a frame is released without it.
    max_pending : int
        Most frames held per stream; beyond it the oldest are released, declaring gaps.
    """

    def __init__(self, device_id: str, *, reorder_window_us: int, max_pending: int) -> None:
        if reorder_window_us < 0:
            raise ValueError(f"reorder_window_us must be >= 0, got {reorder_window_us}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.device_id = device_id
        self.reorder_window_us = reorder_window_us
        self.max_pending = max_pending
        self.streams: dict[StreamKind, StreamState] = {}
        self.live_horizon_us: int | None = None  # newest device time carried by a live frame
        self.last_arrival_us: int | None = None

    # ------------------------------------------------------------------ offering frames

    def offer(self, frame: Frame, transport: Transport, arrival_us: int) -> Step:
        """Take one decoded frame; return what to push to the detector now."""
        stream = self.streams.setdefault(frame.kind, StreamState())
        self.last_arrival_us = arrival_us
        seq = frame.seq
        if stream.next_seq is not None and seq < stream.next_seq:
            frontier = stream.frontier_us if stream.frontier_us is not None else 0
            if frame.start_us < frontier:
                if any(low <= seq <= high for low, high in stream.gap_ranges):
                    stream.counters.late += 1
                    return Step(Outcome.LATE)
                stream.counters.duplicates += 1
                return Step(Outcome.DUPLICATE)
            stream.counters.resets += 1
            stream.next_seq = seq
            stream.max_seen_seq = seq
        if seq in stream.pending:
            stream.counters.duplicates += 1
            return Step(Outcome.DUPLICATE)
        if stream.max_seen_seq is not None and seq < stream.max_seen_seq:
            stream.counters.reordered += 1
        stream.max_seen_seq = seq if stream.max_seen_seq is None else max(stream.max_seen_seq, seq)
        stream.hold(frame, transport, arrival_us)
        if transport is Transport.LIVE:
            end = frame.end_us
            self.live_horizon_us = (
                end if self.live_horizon_us is None else max(self.live_horizon_us, end)
            )
        released, gaps = self._release(force=False)
        return Step(Outcome.ACCEPTED, released, gaps)

    def flush(self) -> Step:
        """Release every held frame now (the device went quiet), declaring gaps as needed."""
        released, gaps = self._release(force=True)
        return Step(Outcome.ACCEPTED, released, gaps)

    def pending_count(self) -> int:
        """Frames held, both streams."""
        return sum(len(s.pending) for s in self.streams.values())

    def pending_keys(self) -> set[tuple[StreamKind, int]]:
        """(kind, seq) of every held frame."""
        return {(kind, seq) for kind, s in self.streams.items() for seq in s.pending}

    # ------------------------------------------------------------------ release order

    def _release(self, force: bool) -> tuple[tuple[Frame, ...], tuple[Gap, ...]]:
        released: list[Frame] = []
        gaps: list[Gap] = []
        while True:
            heads: dict[StreamKind, Frame] = {}
            for kind, stream in self.streams.items():
                head = self._head(kind, stream, force, gaps)
                if head is not None:
                    heads[kind] = head
            if not heads:
                break
            kind = min(heads, key=lambda k: (heads[k].end_us, _TIE_ORDER[k]))
            frame = heads[kind]
            if not (force or self._others_caught_up(kind, frame, heads)):
                break
            stream = self.streams[kind]
            stream.release(frame.seq)
            stream.next_seq = frame.seq + 1
            stream.frontier_us = frame.end_us
            stream.rate_hz = frame.rate_hz
            stream.counters.frames += 1
            stream.counters.samples += frame.n_samples
            released.append(frame)
        return tuple(released), tuple(gaps)

    def _head(
        self, kind: StreamKind, stream: StreamState, force: bool, gaps: list[Gap]
    ) -> Frame | None:
        """The stream's next frame to release, declaring a gap first when the stream stalled."""
        if not stream.pending:
            return None
        if stream.next_seq is not None and stream.next_seq in stream.pending:
            return stream.pending[stream.next_seq][0]
        oldest_seq = stream.oldest_seq()
        oldest = stream.pending[oldest_seq][0]
        if stream.next_seq is None and oldest_seq == 0:
            return oldest
        if not (force or len(stream.pending) > self.max_pending or self._stalled(stream, oldest)):
            return None
        if stream.next_seq is not None:
            gaps.append(self._declare_gap(kind, stream, stream.next_seq, oldest))
        stream.next_seq = oldest_seq
        return oldest

    def _stalled(self, stream: StreamState, oldest: Frame) -> bool:
        if self.live_horizon_us is None:
            return False
        waiting_since = stream.frontier_us if stream.frontier_us is not None else oldest.start_us
        return self.live_horizon_us - waiting_since > self.reorder_window_us and self._waited(
            stream, oldest
        )

    def _waited(self, stream: StreamState, frame: Frame) -> bool:
        """Whether the held ``frame`` has also waited half the window in wall time.

        Live, device time and wall time run together and the device-time rule binds first
        (a frame arrives when its data ends, and has waited most of the window by the time
        live data ran the window past its start). Through a backlog
        (a worker catching up, a replay faster than real time) device time runs far ahead of
        the wall clock, and a broker that delivers a topic's queued messages slightly out of
        order (mosquitto does, with its in-flight window full) must not turn frames that are
        seconds of wall time late into gaps. Unknown arrival (restored from a checkpoint):
        waited."""
        arrived = stream.arrived_us.get(frame.seq)
        if arrived is None or self.last_arrival_us is None:
            return True
        return self.last_arrival_us - arrived > self.reorder_window_us // 2

    def _declare_gap(
        self, kind: StreamKind, stream: StreamState, next_seq: int, oldest: Frame
    ) -> Gap:
        start = stream.frontier_us if stream.frontier_us is not None else oldest.start_us
        rate = stream.rate_hz or oldest.rate_hz
        samples = max(0, round((oldest.start_us - start) * rate / 1e6))
        gap = Gap(self.device_id, kind, next_seq, oldest.seq - 1, start, oldest.start_us, samples)
        stream.counters.gaps += 1
        stream.counters.gap_samples += samples
        stream.gap_ranges.append((gap.first_seq, gap.last_seq))
        del stream.gap_ranges[:-MAX_GAP_RECORDS]
        return gap

    def _others_caught_up(
        self, kind: StreamKind, frame: Frame, heads: dict[StreamKind, Frame]
    ) -> bool:
        """True when no other stream can still bring data older than ``frame``."""
        for other in StreamKind:
            if other is kind or other in heads:
                continue
            state = self.streams.get(other)
            frontier = None if state is None else state.frontier_us
            if frontier is not None and frontier >= frame.end_us:
                continue
            if len(self.streams[kind].pending) > self.max_pending:
                continue
            if (
                self.live_horizon_us is not None
                and self.live_horizon_us - frame.start_us > self.reorder_window_us
                and self._waited(self.streams[kind], frame)
            ):
                continue
            return False
        return True

    # ------------------------------------------------------------------ checkpoint state

    def positions(self) -> dict[str, Any]:
        """JSON-able positions and counters (held frames are checkpointed separately)."""
        return {
            "live_horizon_us": self.live_horizon_us,
            "streams": {
                kind.label: {
                    "next_seq": s.next_seq,
                    "frontier_us": s.frontier_us,
                    "rate_hz": s.rate_hz,
                    "max_seen_seq": s.max_seen_seq,
                    "gap_ranges": [list(r) for r in s.gap_ranges],
                    "counters": vars(s.counters).copy(),
                }
                for kind, s in self.streams.items()
            },
        }

    @classmethod
    def from_positions(
        cls,
        device_id: str,
        positions: dict[str, Any],
        pending: list[tuple[Frame, Transport]],
        *,
        reorder_window_us: int,
        max_pending: int,
    ) -> DeviceSequencer:
        """Rebuild a sequencer from :meth:`positions` and its held frames."""
        seq = cls(device_id, reorder_window_us=reorder_window_us, max_pending=max_pending)
        seq.live_horizon_us = positions.get("live_horizon_us")
        for label, doc in positions.get("streams", {}).items():
            seq.streams[StreamKind.from_label(label)] = StreamState(
                next_seq=doc["next_seq"],
                frontier_us=doc["frontier_us"],
                rate_hz=doc["rate_hz"],
                max_seen_seq=doc["max_seen_seq"],
                gap_ranges=[(int(a), int(b)) for a, b in doc["gap_ranges"]],
                counters=StreamCounters(**doc["counters"]),
            )
        for frame, transport in pending:
            seq.streams.setdefault(frame.kind, StreamState()).hold(frame, transport)
        return seq
