"""Wearer profiles, fleet nights and the labelled evaluation suite."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from simulator.fleet import fleet_night, profile_for, write_suite
from simulator.labels import load_labels
from simulator.profiles import draw_profile, night_scenario
from simulator.recording import read_recording
from simulator.scenarios import SCENARIOS


def test_risk_factors_raise_cramp_frequency() -> None:
    rng = np.random.default_rng(0)
    profiles = [draw_profile(rng) for _ in range(4000)]

    def mean_rate(selected) -> float:
        rates = [p.cramps_per_week for p in selected]
        return float(np.mean(rates))

    young = [p for p in profiles if p.age_group == "18-39" and not p.pregnant]
    old = [p for p in profiles if p.age_group == "80+"]
    assert mean_rate(old) > 2 * mean_rate(young)
    assert mean_rate([p for p in profiles if p.diabetes]) > mean_rate(
        [p for p in profiles if not p.diabetes]
    )
    assert mean_rate([p for p in profiles if p.pregnant]) > mean_rate(young)
    assert 0.2 < np.mean([p.cramps_per_week > 0 for p in profiles]) < 0.7


def test_a_fleet_over_weeks_mixes_scenarios_by_profile() -> None:
    rng = np.random.default_rng(1)
    counts: Counter[str] = Counter()
    for _ in range(300):
        profile = draw_profile(rng)
        counts.update(night_scenario(rng, profile) for _ in range(28))
    assert set(counts) == set(SCENARIOS)
    assert counts["quiet"] > counts["typical"] > counts["faulty-sensor"]


def test_fleet_nights_are_reproducible_one_by_one() -> None:
    a = fleet_night(5, 3, 2, duration_s=30.0)
    fleet_night(5, 1, 0, duration_s=30.0)  # generating others does not shift this night
    b = fleet_night(5, 3, 2, duration_s=30.0)
    assert a.recording.emg_uv.tobytes() == b.recording.emg_uv.tobytes()
    assert a.labels == b.labels
    assert a.labels.device_id == "sim-0003"
    assert a.labels.profile == profile_for(5, 3).describe()
    other_night = fleet_night(5, 3, 3, duration_s=30.0)
    assert other_night.labels.start_us - a.labels.start_us > 20 * 3600 * 1_000_000


def test_suite_covers_every_scenario_reproducibly(tmp_path: Path) -> None:
    first = write_suite(tmp_path / "a", nights=7, seed=11, duration_s=20.0)
    second = write_suite(tmp_path / "b", nights=7, seed=11, duration_s=20.0)
    assert {e.scenario for e in first} == set(SCENARIOS)
    index = json.loads((tmp_path / "a" / "index.json").read_text())
    assert index["nights"] == 7
    assert sum(index["composition"].values()) == 7
    assert len({e.emg_rate_hz for e in first} | {e.acc_rate_hz for e in first}) > 2
    for a, b in zip(first, second, strict=True):
        assert (tmp_path / "a" / a.edf).read_bytes() == (tmp_path / "b" / b.edf).read_bytes()
        labels = load_labels(tmp_path / "a" / a.labels)
        assert labels.scenario == a.scenario
        assert len(labels.cramps) == a.cramps
        rec = read_recording(tmp_path / "a" / a.edf)
        assert rec.emg_rate_hz == a.emg_rate_hz == labels.emg_rate_hz
        assert rec.duration_s == labels.duration_s
