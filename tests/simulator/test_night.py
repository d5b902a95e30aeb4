"""Statistics of generated nights against the targets documented in docs/simulator.md."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import signal

from simulator.emg import median_frequency_hz
from simulator.events import plan_events
from simulator.labels import NightLabels
from simulator.night import SimulatedNight, SimulationError, simulate_night
from simulator.scenarios import SCENARIOS, ScenarioError

_CACHE: dict[tuple[str, int, float, float], SimulatedNight] = {}


def night(scenario: str, seed: int, duration_s: float = 1800.0, rate_hz: float = 1000.0):
    key = (scenario, seed, duration_s, rate_hz)
    if key not in _CACHE:
        _CACHE[key] = simulate_night(
            np.random.default_rng(seed),
            scenario,
            duration_s=duration_s,
            emg_rate_hz=rate_hz,
            dtype=np.float32,
        )
    return _CACHE[key]


def busy_mask(labels: NightLabels, n: int, rate_hz: float, margin_s: float = 1.0) -> np.ndarray:
    """True where any event or signal fault (plus a margin) is."""
    mask = np.zeros(n, dtype=bool)
    spans = [(e.onset_s, e.offset_s) for e in labels.events]
    spans += [(f.onset_s, f.offset_s) for f in labels.faults if not f.is_frame_fault]
    for onset, offset in spans:
        mask[max(0, int((onset - margin_s) * rate_hz)) : int((offset + margin_s) * rate_hz)] = True
    return mask


def clean_cramps(labels: NightLabels):
    """Cramps that no signal fault overlaps."""
    faults = [f for f in labels.faults if not f.is_frame_fault]
    return [
        c
        for c in labels.cramps
        if not any(f.onset_s < c.offset_s and f.offset_s > c.onset_s for f in faults)
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_resting_emg_is_a_few_microvolts_and_matches_the_labels(seed: int) -> None:
    sim = night("quiet", seed)
    emg = sim.recording.emg_uv[:, 0]
    rest = emg[~busy_mask(sim.labels, emg.size, 1000.0)]
    rms = float(np.sqrt(np.mean(rest.astype(np.float64) ** 2)))
    assert 0.8 <= rms <= 7.5
    assert rms == pytest.approx(sim.labels.resting_rms_uv, rel=0.3)


def test_resting_level_varies_between_nights() -> None:
    levels = [night("quiet", seed).labels.resting_rms_uv for seed in (1, 2, 3)]
    assert max(levels) / min(levels) > 1.2


@pytest.mark.parametrize("rate_hz", [500.0, 1000.0, 2000.0])
def test_resting_spectrum_lies_in_the_surface_emg_band(rate_hz: float) -> None:
    sim = next(
        candidate
        for seed in range(4, 40)
        if not (candidate := night("quiet", seed, 300.0, rate_hz)).labels.faults_of("mains")
    )
    emg = sim.recording.emg_uv[:, 0].astype(np.float64)
    rest = emg[~busy_mask(sim.labels, emg.size, rate_hz)]
    freqs, psd = signal.welch(rest, rate_hz, nperseg=int(rate_hz))
    in_band = psd[(freqs >= 12) & (freqs <= 460)].sum() / psd.sum()
    assert in_band > 0.85
    assert 15 <= freqs[np.argmax(psd)] <= 200
    assert 40 <= median_frequency_hz(freqs, psd) <= 160


def test_cramps_stand_out_with_calf_emg_spectra() -> None:
    ratios, medians, matched = [], [], []
    for seed in (11, 12, 13):
        sim = night("frequent-cramps", seed)
        emg = sim.recording.emg_uv[:, 0].astype(np.float64)
        for cramp in clean_cramps(sim.labels):
            a = int((cramp.onset_s + 0.3 * cramp.duration_s) * 1000)
            b = int((cramp.offset_s - 0.3 * cramp.duration_s) * 1000)
            if b - a < 2000:
                continue
            plateau = emg[a:b]
            rms = float(np.sqrt(np.mean(plateau**2)))
            ratios.append(rms / sim.labels.resting_rms_uv)
            matched.append(rms / (cramp.intensity * sim.labels.mvc_rms_uv))
            freqs, psd = signal.welch(plateau, 1000.0, nperseg=1000)
            medians.append(median_frequency_hz(freqs, psd))
    assert len(ratios) >= 8
    assert min(ratios) > 3.0
    assert np.median(ratios) > 20.0
    assert 0.6 < np.median(matched) < 1.5
    assert all(40.0 <= m <= 130.0 for m in medians)
    assert 60.0 <= np.median(medians) <= 120.0


def test_cramp_intensity_and_median_frequency_vary() -> None:
    intensities = [
        c.intensity for s in (11, 12, 13) for c in night("frequent-cramps", s).labels.cramps
    ]
    assert min(intensities) < 0.35 < max(intensities)


def test_cramp_durations_span_seconds_to_minutes() -> None:
    durations = []
    for seed in range(60):
        events, _, _ = plan_events(
            np.random.default_rng(seed), SCENARIOS["frequent-cramps"], 8 * 3600.0
        )
        durations += [e.offset_s - e.onset_s for e in events if e.type == "cramp"]
    durations_s = np.array(durations)
    assert durations_s.min() >= 5.0
    assert durations_s.max() <= 900.0
    assert np.mean(durations_s < 30) > 0.1
    assert np.mean(durations_s > 120) > 0.1
    assert 30.0 <= np.median(durations_s) <= 90.0


def test_plm_series_follow_the_wasm_rules() -> None:
    series_count = 0
    for seed in range(30):
        events, _, _ = plan_events(np.random.default_rng(seed), SCENARIOS["plms"], 8 * 3600.0)
        plms = [e for e in events if e.type == "plm"]
        series: list[list] = []
        for event in plms:
            if series and event.onset_s - series[-1][-1].onset_s <= 90.0:
                series[-1].append(event)
            else:
                series.append([event])
        series_count += len(series)
        for run in series:
            assert len(run) >= 4
            intervals = np.diff([e.onset_s for e in run])
            assert np.all((intervals >= 5.0) & (intervals <= 90.0))
            assert all(0.5 <= e.offset_s - e.onset_s <= 10.0 for e in run)
            assert np.all(intervals > [e.offset_s - e.onset_s for e in run[:-1]])
    assert series_count >= 30 * 3


def test_events_never_overlap() -> None:
    for scenario in SCENARIOS:
        events, _, _ = plan_events(np.random.default_rng(5), SCENARIOS[scenario], 8 * 3600.0)
        for first, second in itertools.pairwise(events):
            assert first.offset_s <= second.onset_s


def test_same_seed_gives_identical_bytes_and_labels() -> None:
    a = simulate_night(np.random.default_rng(42), "faulty-sensor", duration_s=120.0)
    b = simulate_night(np.random.default_rng(42), "faulty-sensor", duration_s=120.0)
    assert a.recording.emg_uv.tobytes() == b.recording.emg_uv.tobytes()
    assert a.recording.acc_g is not None and b.recording.acc_g is not None
    assert a.recording.acc_g.tobytes() == b.recording.acc_g.tobytes()
    assert a.labels.to_json() == b.labels.to_json()


def test_different_seeds_give_different_nights() -> None:
    a = simulate_night(np.random.default_rng(1), "typical", duration_s=120.0)
    b = simulate_night(np.random.default_rng(2), "typical", duration_s=120.0)
    assert a.recording.emg_uv.tobytes() != b.recording.emg_uv.tobytes()
    assert a.labels.to_json() != b.labels.to_json()


def test_accelerometer_follows_posture_and_walking() -> None:
    found_turn = found_walk = False
    for seed in (21, 22, 23):
        sim = night("restless", seed)
        acc = np.asarray(sim.recording.acc_g, dtype=np.float64)
        rate = 50.0
        still = ~busy_mask(sim.labels, acc.shape[0], rate, margin_s=2.0)
        magnitude = np.linalg.norm(acc[still], axis=1)
        assert np.median(magnitude) == pytest.approx(1.0, abs=0.03)
        for turn in sim.labels.events_of("turn"):
            before = acc[max(0, int((turn.onset_s - 1.0) * rate)) : int(turn.onset_s * rate)]
            after = acc[int((turn.offset_s + 0.2) * rate) : int((turn.offset_s + 1.2) * rate)]
            if len(before) < 10 or len(after) < 10:
                continue
            u, v = before.mean(axis=0), after.mean(axis=0)
            angle = math.degrees(math.acos(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v)))
            assert angle > 30.0
            found_turn = True
        for walk in sim.labels.events_of("walking"):
            middle = acc[int((walk.onset_s + 3) * rate) : int((walk.offset_s - 3) * rate)]
            if len(middle) < 100:
                continue
            assert np.std(np.linalg.norm(middle, axis=1)) > 0.05
            assert abs(middle[:, 0].mean()) > 0.7  # leg vertical: gravity along the shank
            found_walk = True
    assert found_turn and found_walk


def test_faults_are_in_the_samples_where_labelled() -> None:
    seen: set[str] = set()
    for seed in range(31, 37):
        sim = night("faulty-sensor", seed, duration_s=900.0)
        emg = sim.recording.emg_uv[:, 0]
        for fault in sim.labels.faults:
            a, b = round(fault.onset_s * 1000), round(fault.offset_s * 1000)
            if fault.type == "lead_off_flat":
                assert np.all(emg[a:b] == 0.0)
            elif fault.type == "lead_off_railed":
                assert np.all(emg[a:b] == np.float32(fault.value))
            elif fault.type == "clipping":
                assert np.max(np.abs(emg[a:b])) == pytest.approx(fault.value, rel=1e-6)
            seen.add(fault.type)
        clip = max((f.value for f in sim.labels.faults_of("clipping")), default=None)
        if clip is not None:
            assert np.max(np.abs(emg)) <= clip * (1 + 1e-6)
        mains = sim.labels.faults_of("mains")
        assert mains, "faulty-sensor nights always hum"
        rest = emg[~busy_mask(sim.labels, emg.size, 1000.0)].astype(np.float64)
        if rest.size > 20_000:
            freqs, psd = signal.welch(rest, 1000.0, nperseg=2000)
            assert abs(freqs[np.argmax(psd)] - mains[0].value) <= 1.0
    expected = {"mains", "clipping", "gap", "duplicate_frames", "out_of_order", "clock_drift"}
    assert expected <= seen
    assert {"lead_off_flat", "lead_off_railed"} & seen


def test_clean_scenarios_have_no_frame_faults_but_faulty_sensor_has() -> None:
    assert not any(f.type == "gap" for f in night("typical", 3).labels.faults)
    assert night("faulty-sensor", 3, duration_s=900.0).labels.faults_of("gap")


def test_bad_parameters_are_refused() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(SimulationError, match="EMG rate"):
        simulate_night(rng, "quiet", duration_s=60.0, emg_rate_hz=100.0)
    with pytest.raises(SimulationError, match="ACC rate"):
        simulate_night(rng, "quiet", duration_s=60.0, acc_rate_hz=400.0)
    with pytest.raises(SimulationError, match="too short"):
        simulate_night(rng, "quiet", duration_s=2.0)
    with pytest.raises(SimulationError, match="device id"):
        simulate_night(rng, "quiet", duration_s=60.0, device_id="a/b")
    with pytest.raises(ScenarioError, match="typical"):
        simulate_night(rng, "nightmare", duration_s=60.0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    scenario=st.sampled_from(sorted(SCENARIOS)),
    duration_s=st.floats(10.0, 240.0),
    emg_rate_hz=st.sampled_from([500.0, 1000.0, 2000.0, 4000.0]),
    acc_rate_hz=st.sampled_from([12.5, 25.0, 50.0, 200.0, None]),
)
def test_any_parameters_give_consistent_labels_and_shapes(
    seed: int,
    scenario: str,
    duration_s: float,
    emg_rate_hz: float,
    acc_rate_hz: float | None,
) -> None:
    sim = simulate_night(
        np.random.default_rng(seed),
        scenario,
        duration_s=duration_s,
        emg_rate_hz=emg_rate_hz,
        acc_rate_hz=acc_rate_hz,
    )
    rec, labels = sim.recording, sim.labels
    assert rec.emg_uv.shape == (round(duration_s * emg_rate_hz), 1)
    assert np.all(np.isfinite(rec.emg_uv))
    if acc_rate_hz is None:
        assert rec.acc_g is None
    else:
        assert rec.acc_g is not None
        assert rec.acc_g.shape == (round(labels.duration_s * acc_rate_hz), 3)
    for item in (*labels.events, *labels.faults):
        assert 0.0 <= item.onset_s <= item.offset_s <= labels.duration_s + 1e-6
        assert 0.0 <= item.intensity <= 1.0
    assert NightLabels.from_json(labels.to_json()) == labels
