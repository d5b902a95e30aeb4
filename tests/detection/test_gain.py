"""The detector's rules are relative to each night's noise floor: another amplifier gain, or
another electrode contact that scales the whole signal, finds the same episodes, as long as the
resting EMG stays above the floor's lower bound (``DetectorConfig.floor_min_uv``, 0.5 µV, below
any real amplifier's own noise)."""

from __future__ import annotations

import numpy as np
import pytest

from detection import detect_recording
from detection.config import DetectorConfig
from simulator.night import simulate_night


@pytest.mark.parametrize(("scenario", "seed"), [("frequent-cramps", 4), ("faulty-sensor", 2)])
def test_the_same_episodes_and_faults_whatever_the_gain(scenario: str, seed: int) -> None:
    # faulty-sensor: hum, lead-offs and clipping too, whose detection must scale with the signal
    sim = simulate_night(np.random.default_rng(seed), scenario, duration_s=1200.0)
    rec = sim.recording
    emg = np.asarray(rec.emg_uv, dtype=np.float64)

    def found(gain: float) -> tuple[list[tuple[int, int | None]], list[tuple[str, int]]]:
        result = detect_recording(emg * gain, rec.emg_rate_hz, rec.acc_g, rec.acc_rate_hz)
        episodes = [(e.onset_us, e.offset_us) for e in result.episodes]
        faults = [(str(q.flag), q.start_us) for q in result.quality]
        return episodes, faults

    gains = (0.5, 4.0, 100.0)
    assert sim.labels.resting_rms_uv * min(gains) > DetectorConfig().floor_min_uv
    episodes, faults = found(1.0)
    assert episodes  # a night with cramps found: something to compare
    for gain in gains:
        assert found(gain) == (episodes, faults), f"gain x{gain}"
