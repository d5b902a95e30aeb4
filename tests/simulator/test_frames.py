"""Frame plans (pure): every sample once, frame faults exactly where the labels put them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.protocol import MAX_FRAME_BYTES, StreamKind, decode
from simulator.frames import PlannedFrame, frame_payload, largest_frame_s, plan_frames
from simulator.labels import LabelledFault, NightLabels
from simulator.recording import Recording


def labels_with(faults: tuple[LabelledFault, ...], duration_s: float = 20.0) -> NightLabels:
    return NightLabels("dev", 1_000_000_000, "typical", 0, 1000.0, 50.0, duration_s, faults=faults)


def test_clean_plan_covers_every_sample_once_in_time_order() -> None:
    plan = plan_frames(labels_with(()), 20_500, 1025)
    for kind, total, rate in ((StreamKind.EMG, 20_500, 1000.0), (StreamKind.ACC, 1025, 50.0)):
        frames = [p for p in plan if p.kind is kind]
        assert [p.seq for p in frames] == list(range(len(frames)))
        covered = np.concatenate(
            [np.arange(p.first_sample, p.first_sample + p.n_samples) for p in frames]
        )
        assert np.array_equal(covered, np.arange(total))
        assert all(p.start_us == 1_000_000_000 + round(p.first_sample * 1e6 / rate) for p in frames)
    assert [p.due_s for p in plan] == sorted(p.due_s for p in plan)


def test_plan_applies_gap_duplicates_and_reordering_exactly_as_labelled() -> None:
    labels = labels_with(
        (
            LabelledFault("gap", 3.0, 5.0, 1.0),
            LabelledFault("duplicate_frames", 8.0, 10.0, 1.0),
            LabelledFault("out_of_order", 12.0, 16.0, 1.0),
        )
    )
    emg = [p.seq for p in plan_frames(labels, 20_000, 1000) if p.kind is StreamKind.EMG]
    assert emg == [0, 1, 2, 5, 6, 7, 8, 8, 9, 9, 10, 11, 13, 12, 15, 14, 16, 17, 18, 19]


def test_plan_applies_clock_drift_and_jumps() -> None:
    labels = labels_with(
        (
            LabelledFault("clock_drift", 0.0, 20.0, 0.5, 100.0, "ppm"),
            LabelledFault("clock_jump", 10.0, 10.0, 0.2, -2.5, "s"),
        )
    )
    emg = {p.seq: p for p in plan_frames(labels, 20_000, 1000) if p.kind is StreamKind.EMG}
    assert emg[5].start_us == 1_000_000_000 + 5_000_500
    assert emg[10].start_us == 1_000_000_000 + 10_001_000 - 2_500_000
    clean = {p.seq: p for p in plan_frames(labels, 20_000, 1000, faults=False)}
    assert clean[10].start_us == 1_000_000_000 + 10_000_000


windows = st.tuples(st.floats(0.0, 60.0), st.floats(0.0, 30.0)).map(lambda w: (w[0], w[0] + w[1]))


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(windows, max_size=2),
    duplicates=st.lists(windows, max_size=2),
    reordered=st.lists(windows, max_size=2),
    drift_ppm=st.floats(-300.0, 300.0),
    acc_rate_hz=st.sampled_from([12.5, 25.0, 50.0, 200.0]),
)
def test_any_frame_faults_act_exactly_where_labelled(
    gaps: list[tuple[float, float]],
    duplicates: list[tuple[float, float]],
    reordered: list[tuple[float, float]],
    drift_ppm: float,
    acc_rate_hz: float,
) -> None:
    faults = tuple(
        [LabelledFault("gap", a, b, 1.0) for a, b in gaps]
        + [LabelledFault("duplicate_frames", a, b, 1.0) for a, b in duplicates]
        + [LabelledFault("out_of_order", a, b, 1.0) for a, b in reordered]
        + [LabelledFault("clock_drift", 0.0, 60.0, 0.5, drift_ppm, "ppm")]
    )
    labels = NightLabels("dev", 10**15, "typical", 0, 1000.0, acc_rate_hz, 60.0, faults=faults)
    n_acc = round(60.0 * acc_rate_hz)
    plan = plan_frames(labels, 60_000, n_acc)
    clean = plan_frames(labels, 60_000, n_acc, faults=False)
    for kind in (StreamKind.EMG, StreamKind.ACC):
        sent = [p for p in plan if p.kind is kind]
        for frame in (p for p in clean if p.kind is kind):
            t = frame.true_start_s
            copies = [p for p in sent if p.seq == frame.seq]
            if any(a <= t < b for a, b in gaps):
                assert copies == []
            elif any(a <= t < b for a, b in duplicates):
                assert len(copies) == 2
            else:
                assert len(copies) == 1
            for copy in copies:
                assert copy.first_sample == frame.first_sample
                expected_us = 10**15 + round(t * (1 + drift_ppm * 1e-6) * 1e6)
                assert copy.start_us == expected_us
        # outside out_of_order windows, frames go out in sequence order
        in_order = [p.seq for p in sent if not any(a <= p.true_start_s < b for a, b in reordered)]
        assert in_order == sorted(in_order)
        # inside, a frame moves by at most one place
        ranks = sorted(range(len(sent)), key=lambda i: (sent[i].seq, i))
        assert all(abs(rank - i) <= 1 for rank, i in enumerate(ranks))
    assert [p.due_s for p in plan] == sorted(p.due_s for p in plan)


@pytest.mark.parametrize(
    ("rate_hz", "channels", "json", "expected_s"),
    [
        (1000.0, 1, False, 65.53),
        (4000.0, 1, False, 16.38),
        (2000.0, 8, False, 16.32),
        (1000.0, 1, True, 43.52),
        (4000.0, 8, True, 1.36),
    ],
)
def test_largest_frame_fits_the_protocol(
    rate_hz: float, channels: int, json: bool, expected_s: float
) -> None:
    rng = np.random.default_rng(0)
    n = round(rate_hz * 70)
    # worst case for JSON: values whose float32 text is as long as it gets
    emg = -rng.uniform(1000.0, 9999.0, (n, channels)) * (1 + 1e-7)
    rec = Recording(emg, rate_hz, rng.normal(0, 1, (70 * 50, 3)), 50.0)
    frame_s = largest_frame_s(rec, json=json)
    assert frame_s == pytest.approx(expected_s, abs=0.01)
    per_frame = round(rate_hz * frame_s)
    for kind, count in ((StreamKind.EMG, per_frame), (StreamKind.ACC, round(50 * frame_s))):
        planned = PlannedFrame(kind, 0, 0, count, 0, 0.0, frame_s)
        payload = frame_payload(rec, planned, json=json)
        assert len(payload) <= MAX_FRAME_BYTES
        assert decode(payload).n_samples == count
