"""Ingest health records: arrival figures joined with the sequencing counters."""

from __future__ import annotations

from ingest.health import HealthTracker
from ingest.sequencing import StreamCounters

S = 1_000_000
T0 = 1_790_000_000 * S


def test_lag_rate_and_counters_per_stream() -> None:
    tracker = HealthTracker()
    for i in range(20):  # one frame per second, each arriving 1.5 s after its data ended
        tracker.frame("dev-1", "emg", T0 + (i + 1) * S, T0 + (i + 1) * S + 1_500_000)
    tracker.dead_letter("dev-1", "acc", T0 + 21 * S)
    counters = {("dev-1", "emg"): StreamCounters(frames=20, samples=20_000, gaps=1, duplicates=2)}
    records = {r.stream: r for r in tracker.records(counters, T0 + 21 * S + 500_000)}
    emg, acc = records["emg"], records["acc"]
    assert emg.lag_s == 1.5
    assert emg.frames_per_s == 1.0  # 10 arrivals in the last 10 s
    assert (emg.frames, emg.samples, emg.gaps, emg.duplicates) == (20, 20_000, 1, 2)
    assert emg.last_device_us == T0 + 20 * S
    assert (acc.dead_letters, acc.frames, acc.frames_per_s) == (1, 0, 0.0)


def test_a_quiet_stream_drops_to_zero_frames_per_second() -> None:
    tracker = HealthTracker()
    tracker.frame("dev-1", "emg", T0 + S, T0 + S)
    (record,) = tracker.records({}, T0 + 60 * S)
    assert record.frames_per_s == 0.0
