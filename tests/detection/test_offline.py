"""detect_recording: the whole-recording entry point and its result."""

from __future__ import annotations

import numpy as np
import pytest

from detection import StreamDetector, detect_recording
from detection.events import EpisodeEvent, EventKind
from tests.detection import synth


@pytest.mark.parametrize(("acc_rate", "emg_rate"), [(12.5, 500.0), (200.0, 4000.0), (25.0, 1000.0)])
def test_result_holds_episodes_quality_and_series(acc_rate: float, emg_rate: float) -> None:
    rng = np.random.default_rng(round(acc_rate))
    night = synth.cramp_night(rng, rate_hz=emg_rate, acc_rate_hz=acc_rate, duration_s=80.0)
    start = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
    result = detect_recording(
        night.emg_uv,
        emg_rate,
        night.acc_g,
        acc_rate,
        start_us=start,
        device_id="w-7",
        site="calf-l",
    )
    [episode] = result.episodes
    assert episode.device_id == "w-7" and episode.site == "calf-l"
    assert abs(episode.onset_us - start - 40_000_000) <= 500_000
    assert len(result.series) == 80
    assert [p.ts_us - start for p in result.series[:3]] == [0, 1_000_000, 2_000_000]
    assert all(p.posture == "supine" for p in result.series)
    assert all(p.activity_g is not None and p.activity_g < 0.03 for p in result.series)
    assert result.quality == []
    ended = [e for e in result.events if isinstance(e, EpisodeEvent) and e.kind is EventKind.ENDED]
    assert [e.episode for e in ended] == result.episodes


def test_offline_equals_one_second_streaming_with_a_long_recording() -> None:
    rng = np.random.default_rng(30)
    x = synth.rest(rng, 200.0, 1000.0)
    for onset in (30.0, 120.0):
        x = synth.add_burst(rng, x, 1000.0, onset, 25.0, 60.0)
    acc = synth.accelerometer(rng, 200.0, 50.0)
    detector = StreamDetector("offline")
    events = []
    for second in range(200):
        events += detector.push_emg(
            x[second * 1000 : (second + 1) * 1000], second * 1_000_000, 1000.0
        )
        events += detector.push_acc(acc[second * 50 : (second + 1) * 50], second * 1_000_000, 50.0)
    events += detector.finish()
    result = detect_recording(x, 1000.0, acc, 50.0)
    assert events == result.events
    assert len(result.episodes) == 2


def test_one_dimensional_emg_is_one_channel() -> None:
    rng = np.random.default_rng(31)
    night = synth.cramp_night(rng, acc_rate_hz=None)
    flat = detect_recording(night.emg_uv, 1000.0)
    column = detect_recording(night.emg_uv[:, None], 1000.0)
    assert flat.episodes == column.episodes and len(flat.episodes) == 1
