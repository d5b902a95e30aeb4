"""plan_pushes: a device's released frames pushed as joined runs give exactly what pushing them
one at a time, in released order, gives: whatever the batch cuts, clock drift, and however far
the accelerometer lags or drops out (where the detector decides blocks without it)."""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detection import StreamDetector
from detection.events import DetectorEvent, QualityEvent, QualityFlag
from ingest.coalesce import plan_pushes
from ingest.protocol import Frame, StreamKind, make_frame
from tests.detection import synth
from tests.detection.test_stream import ACC_RATE, EMG_RATE, T0_US, busy_night


@functools.cache
def frames_of_night(emg_frame_s: float, acc_frame_s: float, drift_ppm: float) -> tuple[Frame, ...]:
    """The busy night as frames of each stream, time-stamped by a drifting device clock."""
    emg, acc = busy_night()
    frames: list[Frame] = []
    for kind, x, rate, frame_s in (
        (StreamKind.EMG, emg, EMG_RATE, emg_frame_s),
        (StreamKind.ACC, acc, ACC_RATE, acc_frame_s),
    ):
        step = round(frame_s * rate)
        for seq, lo in enumerate(range(0, x.shape[0], step)):
            start = T0_US + round(lo / rate * 1e6 * (1 + drift_ppm * 1e-6))
            frames.append(make_frame(kind, rate, start, seq, x[lo : lo + step]))
    return tuple(frames)


def released_order(
    frames: tuple[Frame, ...], acc_delay_s: float, dropout: tuple[float, float] | None
) -> list[Frame]:
    """Released order: by start time, the accelerometer ``acc_delay_s`` late, and its frames
    starting inside ``dropout`` (start s, length s) lost."""
    timed: list[tuple[float, int, Frame]] = []
    for frame in frames:
        t_s = (frame.start_us - T0_US) / 1e6
        if frame.kind is StreamKind.ACC:
            if dropout is not None and dropout[0] <= t_s < dropout[0] + dropout[1]:
                continue
            t_s += acc_delay_s
        timed.append((t_s, 0 if frame.kind is StreamKind.ACC else 1, frame))
    return [f for *_, f in sorted(timed, key=lambda x: (x[0], x[1]))]


def run(frames: list[Frame], batches: list[int] | None) -> tuple[list[DetectorEvent], list, bytes]:
    """Push one at a time (``batches`` None) or planned per batch of the drawn sizes."""
    detector = StreamDetector("dev-1")
    events: list[DetectorEvent] = []
    if batches is None:
        for f in frames:
            push = detector.push_emg if f.kind is StreamKind.EMG else detector.push_acc
            events += push(f.physical(), f.start_us, f.rate_hz)
    else:
        i = k = 0
        while i < len(frames):
            batch = frames[i : i + batches[k % len(batches)]]
            i, k = i + len(batch), k + 1
            tagged = [(f, n) for n, f in enumerate(batch)]
            pushes = plan_pushes(tagged, detector.stream_ends_us()[1], detector.acc_wait_us)
            assert [n for p in pushes for _, n in p.items if p.kind is StreamKind.EMG] == [
                n for f, n in tagged if f.kind is StreamKind.EMG
            ]  # each stream keeps its order
            for p in pushes:
                parts = [(f.physical(), f.start_us) for f in p.frames]
                joined = (
                    detector.push_emg_parts if p.kind is StreamKind.EMG else detector.push_acc_parts
                )
                events += joined(parts, p.frames[0].rate_hz)
    series = detector.pop_series()
    snapshot = detector.snapshot()
    events += detector.finish()
    return events, series + detector.pop_series(), snapshot


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frame_s=st.sampled_from([(1.0, 1.0), (0.5, 2.0), (3.0, 1.0)]),
    drift_ppm=st.sampled_from([0.0, -120.0, 200.0]),
    acc_delay_s=st.sampled_from([-3.0, 0.0, 2.0, 4.4, 4.6, 5.0, 8.0]),
    dropout=st.one_of(st.none(), st.tuples(st.floats(3.0, 60.0), st.floats(1.0, 12.0))),
    batches=st.lists(st.integers(1, 200), min_size=1, max_size=5),
)
def test_planned_pushes_give_the_one_at_a_time_results(
    frame_s: tuple[float, float],
    drift_ppm: float,
    acc_delay_s: float,
    dropout: tuple[float, float] | None,
    batches: list[int],
) -> None:
    frames = released_order(frames_of_night(*frame_s, drift_ppm), acc_delay_s, dropout)
    expected = run(frames, None)
    actual = run(frames, batches)
    assert actual[0] == expected[0]
    assert actual[1] == expected[1]
    assert actual[2] == expected[2]


def test_a_backlog_becomes_few_pushes_and_a_late_accelerometer_keeps_its_place() -> None:
    frames = released_order(frames_of_night(1.0, 1.0, 0.0), 0.0, None)
    tagged = [(f, None) for f in frames]
    assert len(plan_pushes(tagged, None, 5_000_000)) <= 3  # the first EMG frame waits for ACC
    # the accelerometer 8 s behind: the EMG decides without it, so no ACC frame may pass EMG
    late = released_order(frames_of_night(1.0, 1.0, 0.0), 8.0, None)
    pushes = plan_pushes([(f, None) for f in late], None, 5_000_000)
    order = [f.seq for p in pushes for f in p.frames if p.kind is StreamKind.ACC]
    assert order == sorted(order)
    flat = [(f.kind, f.seq) for p in pushes for f in p.frames]
    assert flat == [(f.kind, f.seq) for f in late]  # nothing moved ahead: the same order
    events, *_ = run(late, [len(late)])
    assert any(isinstance(e, QualityEvent) and e.flag is QualityFlag.NO_ACC for e in events)


def test_frames_at_another_rate_are_not_joined() -> None:
    rng = np.random.default_rng(1)
    a = make_frame(StreamKind.EMG, 1000.0, T0_US, 0, rng.normal(0, 5, 1000))
    b = make_frame(StreamKind.EMG, 1000.0, T0_US + 1_000_000, 1, rng.normal(0, 5, 1000))
    c = make_frame(StreamKind.EMG, 500.0, T0_US + 2_000_000, 2, rng.normal(0, 5, 500))
    pushes = plan_pushes([(a, 0), (b, 1), (c, 2)], None, 5_000_000)
    assert [[n for _, n in p.items] for p in pushes] == [[0, 1], [2]]


def test_a_backlog_of_hours_in_one_batch_gives_the_one_at_a_time_results() -> None:
    """A morning upload of 30 s frames in one batch: the accelerometer goes ahead of the EMG
    round by round, never so far that the detector's hour of accelerometer history runs out."""
    rng = np.random.default_rng(4)
    hours_s = 2.2 * 3600
    emg = synth.rest(rng, hours_s, 500.0)
    acc = synth.accelerometer(rng, hours_s, 12.5)
    for onset_s in (1800.0, 5400.0):  # turning over
        acc = synth.turn_over(rng, acc, 12.5, onset_s, synth.LEFT_UP)
    frames: list[Frame] = []
    for kind, x, rate in ((StreamKind.EMG, emg, 500.0), (StreamKind.ACC, acc, 12.5)):
        step = round(30 * rate)
        for seq, lo in enumerate(range(0, x.shape[0], step)):
            frames.append(
                make_frame(kind, rate, T0_US + round(lo / rate * 1e6), seq, x[lo : lo + step])
            )
    frames.sort(key=lambda f: (f.end_us, f.kind is StreamKind.EMG))  # the sequencer's order
    assert run(frames, [len(frames)]) == run(frames, None)
