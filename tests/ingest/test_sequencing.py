"""Per-device sequencing: order, duplicates, gaps, reordering, live/sync merging, restore."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.protocol import Frame, StreamKind, Transport, make_frame
from ingest.sequencing import DeviceSequencer, Outcome

S = 1_000_000
T0 = 1_790_000_000 * S
LIVE, SYNC = Transport.LIVE, Transport.SYNC


def emg(seq: int, start_s: float | None = None) -> Frame:
    start = T0 + round((seq if start_s is None else start_s) * S)
    return make_frame(StreamKind.EMG, 500, start, seq, np.full(500, seq, dtype=np.float32))


def acc(seq: int) -> Frame:
    return make_frame(StreamKind.ACC, 25, T0 + seq * S, seq, np.full((25, 3), seq, np.float32))


def night(seconds: int) -> list[Frame]:
    return [f for i in range(seconds) for f in (emg(i), acc(i))]


def canonical(frames: list[Frame]) -> list[tuple[int, int]]:
    """By the end of their data, the accelerometer first on ties."""
    ordered = sorted(frames, key=lambda f: (f.end_us, f.kind is StreamKind.EMG))
    return [(f.start_us, int(f.kind)) for f in ordered]


def keys(frames: list[Frame]) -> list[tuple[int, int]]:
    return [(f.start_us, int(f.kind)) for f in frames]


def sequencer(window_s: float = 5.0, max_pending: int = 10_000) -> DeviceSequencer:
    return DeviceSequencer("dev-1", reorder_window_us=round(window_s * S), max_pending=max_pending)


def feed(
    seq: DeviceSequencer, frames: list[Frame], transport: Transport, *, backlog: bool = False
) -> list[Frame]:
    """Offer frames in order, each arriving (wall clock) when its data ends, as live frames do;
    ``backlog``: all within a few µs, as a queue built up at the broker is delivered."""
    out: list[Frame] = []
    for i, frame in enumerate(frames):
        arrival = T0 + i if backlog else frame.end_us
        out.extend(seq.offer(frame, transport, arrival).released)
    return out


def test_in_order_live_frames_are_released_at_once_in_device_time_order() -> None:
    frames = night(20)
    seq = sequencer()
    released = feed(seq, frames, LIVE)
    assert keys(released) == canonical(frames)  # each EMG second waits for its ACC second
    assert seq.pending_count() == 0


def test_a_redelivered_frame_is_a_duplicate_and_not_released_again() -> None:
    seq = sequencer()
    feed(seq, night(5), LIVE)
    step = seq.offer(emg(2), LIVE, T0)
    assert step.outcome is Outcome.DUPLICATE and step.released == ()
    assert seq.streams[StreamKind.EMG].counters.duplicates == 1


def test_a_missing_live_frame_is_declared_a_gap_after_the_reorder_window() -> None:
    seq = sequencer(window_s=3.0)
    frames = [f for f in night(12) if not (f.kind is StreamKind.EMG and f.seq == 4)]
    released = feed(seq, frames, LIVE)
    emg_seqs = [f.seq for f in released if f.kind is StreamKind.EMG]
    assert emg_seqs[:4] == [0, 1, 2, 3] and emg_seqs[4:] == list(range(5, 5 + len(emg_seqs) - 4))
    assert len(emg_seqs) > 5
    emg_counters = seq.streams[StreamKind.EMG].counters
    assert emg_counters.gaps == 1
    assert emg_counters.gap_samples == 500
    late = seq.offer(emg(4), SYNC, T0)
    assert late.outcome is Outcome.LATE
    assert seq.streams[StreamKind.EMG].counters.late == 1


def test_frames_after_a_hole_wait_for_it_within_the_window() -> None:
    seq = sequencer(window_s=10.0)
    frames = night(6)
    held = [f for f in frames if not (f.kind is StreamKind.EMG and f.seq == 2)]
    released = feed(seq, held, LIVE)
    assert max(f.start_us for f in released) < T0 + 3 * S  # nothing past the hole's second
    late_released = seq.offer(emg(2), LIVE, T0).released
    assert (
        keys(released + list(late_released))
        == canonical(frames)[: len(released) + len(late_released)]
    )
    assert seq.streams[StreamKind.EMG].counters.reordered == 1
    assert seq.streams[StreamKind.EMG].counters.gaps == 0


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(24))))
def test_bulk_sync_in_any_order_gives_the_canonical_order_exactly_once(order: list[int]) -> None:
    frames = night(12)
    seq = sequencer()
    released = feed(seq, [frames[i] for i in order], SYNC)
    released += list(seq.flush().released)
    assert keys(released) == canonical(frames)
    assert seq.streams[StreamKind.EMG].counters.gaps == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=40, max_size=40),
    st.integers(0, 39),
    st.integers(1, 40),
)
def test_live_then_overlapping_sync_releases_every_frame_once_in_order(
    jitter: list[int], live_until: int, sync_from: int
) -> None:
    frames = night(20)
    # live frames arrive with bounded disorder (each moved back by up to 3 places)
    live = sorted(frames[:live_until], key=lambda f: frames.index(f) + jitter[frames.index(f)])
    seq = sequencer(window_s=30.0)
    released = feed(seq, live, LIVE)
    sync = frames[min(sync_from, live_until) :][::-1]  # overlapping, reversed
    released += feed(seq, sync, SYNC)
    released += list(seq.flush().released)
    assert keys(released) == canonical(frames)


def test_emg_waits_for_acc_of_the_same_second_so_live_and_sync_push_alike() -> None:
    seq = sequencer(window_s=5.0)
    assert seq.offer(emg(0), LIVE, T0).released == ()
    released = seq.offer(acc(0), LIVE, T0).released
    assert keys(list(released)) == [(T0, 2), (T0, 1)]


def test_a_long_sync_frame_waits_for_the_accelerometer_frames_it_spans() -> None:
    """Frames of other lengths: released by the end of their data, so the EMG never runs
    ahead of the accelerometer by more than one accelerometer frame."""
    seq = sequencer()
    long_emg = make_frame(StreamKind.EMG, 500, T0, 0, np.zeros((5000, 1), np.float32))  # 10 s
    assert seq.offer(long_emg, SYNC, T0).released == ()
    released = feed(seq, [acc(i) for i in range(12)], SYNC)
    order = [(f.kind, f.seq) for f in released]
    assert order[:10] == [(StreamKind.ACC, i) for i in range(10)]
    assert order[10] == (StreamKind.EMG, 0)


def test_an_emg_only_device_is_not_held_longer_than_the_window() -> None:
    seq = sequencer(window_s=2.0)
    released = feed(seq, [emg(i) for i in range(10)], LIVE)
    # live data reaches 10 s; frames starting more than 2 s before that are released
    assert [f.seq for f in released] == list(range(8))


def test_held_frames_beyond_max_pending_are_released_with_a_gap() -> None:
    seq = sequencer(max_pending=3)
    released = feed(seq, [emg(i) for i in range(2, 8)], SYNC)
    assert [f.seq for f in released][:1] == [2]
    assert seq.pending_count() <= 3


def test_a_sequence_reset_with_newer_data_starts_the_stream_over() -> None:
    seq = sequencer()
    feed(seq, night(3), LIVE)
    step = seq.offer(emg(0, start_s=100), LIVE, T0)
    assert step.outcome is Outcome.ACCEPTED
    assert seq.streams[StreamKind.EMG].counters.resets == 1


def test_restored_positions_recognise_redelivered_frames_and_keep_held_ones() -> None:
    frames = night(10)
    seq = sequencer()
    feed(seq, frames[:10], LIVE)
    seq.offer(frames[12], LIVE, T0)  # held: frames[10], [11] missing
    held = [v for s in seq.streams.values() for v in s.pending.values()]
    restored = DeviceSequencer.from_positions(
        "dev-1", seq.positions(), held, reorder_window_us=5 * S, max_pending=10_000
    )
    assert restored.offer(frames[3], LIVE, T0).outcome is Outcome.DUPLICATE
    assert restored.offer(frames[12], LIVE, T0).outcome is Outcome.DUPLICATE
    released = feed(restored, frames[10:12] + frames[13:], LIVE)
    released += list(restored.flush().released)
    assert keys(released) == canonical(frames[10:])
    assert restored.streams[StreamKind.EMG].counters.frames == 10


def test_a_backlog_delivered_out_of_order_loses_nothing() -> None:
    """A broker delivering a queued backlog with frames 20 s of device time out of order, all
    within a moment of wall time: held, not declared lost, released in canonical order."""
    frames = night(60)
    order = frames[:40] + frames[70:] + frames[40:70]  # seconds 20-34 come last
    seq = sequencer(window_s=5.0)
    released = feed(seq, order, LIVE, backlog=True)
    assert keys(released) == canonical(frames)
    assert all(s.counters.gaps == 0 and s.counters.late == 0 for s in seq.streams.values())


def test_a_frame_lost_in_a_backlog_is_declared_once_the_wall_clock_has_waited_too() -> None:
    frames = [f for f in night(30) if not (f.kind is StreamKind.EMG and f.seq == 10)]
    seq = sequencer(window_s=4.0)
    released = feed(seq, frames, LIVE, backlog=True)
    assert [f.seq for f in released if f.kind is StreamKind.EMG] == list(range(10))
    # three seconds of wall time later (more than half the window), the hole has stalled
    later = seq.offer(emg(30), LIVE, T0 + 3 * S).released
    assert [f.seq for f in later if f.kind is StreamKind.EMG][:2] == [11, 12]
    assert seq.streams[StreamKind.EMG].counters.gaps == 1
