"""push_emg_parts / push_acc_parts: one call over consecutive chunks is the same as pushing
them one at a time, with drifting and jittering device clocks, gaps and any grouping."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detection import StreamDetector
from detection.errors import DetectorInputError, DetectorTimeError
from detection.events import DetectorEvent, QualityEvent, QualityFlag
from tests.detection import synth
from tests.detection.test_stream import ACC_RATE, EMG_RATE, T0_US, busy_night

Push = tuple[str, np.ndarray, int]  # kind ("emg"/"acc"), samples, start_us


def device_pushes(
    emg_step: int, acc_step: int, drift_ppm: float, jitter_us: list[int], gap_at_s: float | None
) -> list[Push]:
    """The busy night as a device sends it: fixed-size chunks of each stream, time stamps from
    a drifting, jittering clock, one stretch of both streams lost, in order of start time."""
    emg, acc = busy_night()
    pushes: list[tuple[float, int, Push]] = []
    for kind, x, rate, step in (("emg", emg, EMG_RATE, emg_step), ("acc", acc, ACC_RATE, acc_step)):
        for k, lo in enumerate(range(0, x.shape[0], step)):
            t_s = lo / rate
            if gap_at_s is not None and gap_at_s <= t_s < gap_at_s + 7.0:
                continue
            jitter = jitter_us[k % len(jitter_us)] if jitter_us else 0
            start = T0_US + round(t_s * 1e6 * (1 + drift_ppm * 1e-6)) + jitter
            pushes.append((t_s, 0 if kind == "acc" else 1, (kind, x[lo : lo + step], start)))
    return [p for _, _, p in sorted(pushes, key=lambda p: (p[0], p[1]))]


def one_at_a_time(pushes: list[Push]) -> tuple[list[DetectorEvent], list, bytes]:
    detector = StreamDetector("dev-1")
    events: list[DetectorEvent] = []
    for kind, x, start in pushes:
        if kind == "emg":
            events += detector.push_emg(x, start, EMG_RATE)
        else:
            events += detector.push_acc(x, start, ACC_RATE)
    series = detector.pop_series()
    snapshot = detector.snapshot()
    events += detector.finish()
    return events, series + detector.pop_series(), snapshot


def grouped(pushes: list[Push], sizes: list[int]) -> tuple[list[DetectorEvent], list, bytes]:
    """Consecutive pushes of one kind joined into ``*_parts`` calls of the drawn sizes."""
    detector = StreamDetector("dev-1")
    events: list[DetectorEvent] = []
    i = k = 0
    while i < len(pushes):
        kind = pushes[i][0]
        j = i + 1
        limit = i + max(1, sizes[k % len(sizes)]) if sizes else len(pushes)
        while j < len(pushes) and j < limit and pushes[j][0] == kind:
            j += 1
        parts = [(x, start) for _, x, start in pushes[i:j]]
        if kind == "emg":
            events += detector.push_emg_parts(parts, EMG_RATE)
        else:
            events += detector.push_acc_parts(parts, ACC_RATE)
        i, k = j, k + 1
    series = detector.pop_series()
    snapshot = detector.snapshot()
    events += detector.finish()
    return events, series + detector.pop_series(), snapshot


def emg_first(pushes: list[Push]) -> list[Push]:
    """Runs of EMG chunks that merge: the EMG of each 3 s goes before its accelerometer."""
    return sorted(pushes, key=lambda p: (int((p[2] - T0_US) // 3_000_000), p[0] == "acc", p[2]))


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    emg_step=st.sampled_from([250, 1000, 2000]),
    acc_step=st.sampled_from([13, 50, 100]),
    drift_ppm=st.sampled_from([0.0, -90.0, 150.0]),
    jitter_us=st.lists(st.integers(-3_000, 3_000), max_size=5),
    gap_at_s=st.one_of(st.none(), st.floats(5.0, 60.0)),
    sizes=st.lists(st.integers(1, 40), max_size=6),
    reorder=st.booleans(),
)
def test_joined_parts_are_the_same_as_one_push_each(
    emg_step: int,
    acc_step: int,
    drift_ppm: float,
    jitter_us: list[int],
    gap_at_s: float | None,
    sizes: list[int],
    reorder: bool,
) -> None:
    pushes = device_pushes(emg_step, acc_step, drift_ppm, jitter_us, gap_at_s)
    if reorder:
        pushes = emg_first(pushes)
    expected = one_at_a_time(pushes)
    actual = grouped(pushes, sizes)
    assert actual[0] == expected[0]
    assert actual[1] == expected[1]
    assert actual[2] == expected[2]  # the whole state, not only what came out so far


def test_a_whole_night_in_one_call_per_stream_matches_chunk_by_chunk() -> None:
    """All the EMG at once, then all the accelerometer (EMG far ahead: NO_ACC decisions),
    with drift and a gap: still the same as pushing the same chunks one by one."""
    pushes = device_pushes(1000, 50, 120.0, [900, -400], 30.0)
    ordered = [p for p in pushes if p[0] == "emg"] + [p for p in pushes if p[0] == "acc"]
    expected = one_at_a_time(ordered)
    assert grouped(ordered, []) == expected
    flags = {e.flag for e in expected[0] if isinstance(e, QualityEvent)}
    assert {QualityFlag.GAP, QualityFlag.NO_ACC} <= flags


def test_a_bad_chunk_raises_and_changes_nothing() -> None:
    emg, _ = busy_night()
    detector = StreamDetector("dev-1")
    detector.push_emg(emg[:1000], T0_US, EMG_RATE)
    before = detector.snapshot()
    bad = emg[2000:3000].copy()
    bad[10] = np.nan
    with pytest.raises(DetectorInputError, match="NaN"):
        detector.push_emg_parts(
            [(emg[1000:2000], T0_US + 1_000_000), (bad, T0_US + 2_000_000)], EMG_RATE
        )
    with pytest.raises(DetectorTimeError, match="backwards"):
        detector.push_emg_parts(
            [(emg[1000:2000], T0_US + 1_000_000), (emg[2000:3000], T0_US + 500_000)], EMG_RATE
        )
    with pytest.raises(DetectorInputError, match="channels"):
        detector.push_emg_parts([(np.zeros((100, 2)), T0_US + 1_000_000)], EMG_RATE)
    assert detector.snapshot() == before
    assert detector.push_emg_parts([], EMG_RATE) == []


def test_accelerometer_parts_beyond_the_history_kept_match_one_at_a_time() -> None:
    """72 min of accelerometer in one call while the EMG waits at its first minute: more
    than the hour of history kept, so the call pushes chunk by chunk, with the same result."""
    rng = np.random.default_rng(12)
    duration_s = 4320.0
    emg = synth.rest(rng, duration_s, 500.0)
    acc = synth.accelerometer(rng, duration_s, 12.5)
    pushes: list[Push] = [("emg", emg[:30_000], T0_US)]
    pushes += [("acc", acc[k : k + 125], T0_US + k * 80_000) for k in range(0, acc.shape[0], 125)]
    pushes += [
        ("emg", emg[k : k + 30_000], T0_US + k * 2_000) for k in range(30_000, emg.shape[0], 30_000)
    ]

    def run(joined: bool) -> tuple[list[DetectorEvent], list, bytes]:
        detector = StreamDetector("dev-1")
        events: list[DetectorEvent] = []
        accs = [(x, t) for kind, x, t in pushes if kind == "acc"]
        for n, (kind, x, start) in enumerate(pushes):
            if kind == "emg":
                events += detector.push_emg(x, start, 500.0)
            elif not joined:
                events += detector.push_acc(x, start, 12.5)
            elif n == 1:  # the first accelerometer chunk: all of them in one call
                events += detector.push_acc_parts(accs, 12.5)
        series = detector.pop_series()
        snapshot = detector.snapshot()
        return events + detector.finish(), series + detector.pop_series(), snapshot

    assert run(joined=True) == run(joined=False)
