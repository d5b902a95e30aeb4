"""Sensor and transmission faults, drawn per night and labelled.

Signal faults change the EMG samples (mains hum, baseline wander, motion artifact, lead-off,
clipping). Frame faults (gap, duplicated and out-of-order frames, clock drift and jumps) are only
planned here; :mod:`simulator.publisher` applies them to the frames it sends, exactly as
labelled.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import signal

from simulator.labels import LabelledFault
from simulator.scenarios import Scenario

F32 = npt.NDArray[np.float32]


def _interval(
    rng: np.random.Generator, duration_s: float, low_s: float, high_s: float
) -> tuple[float, float] | None:
    high = min(high_s, duration_s / 3)
    length = float(rng.uniform(min(low_s, high), high))
    if length <= 0 or duration_s - length < 2.0:
        return None
    onset = float(rng.uniform(1.0, duration_s - length - 1.0))
    return onset, onset + length


def add_mains(
    rng: np.random.Generator, emg: F32, rate_hz: float, mains_hz: float, scenario: Scenario
) -> list[LabelledFault]:
    """Mains hum at ``mains_hz`` plus odd harmonics, amplitude wandering over minutes."""
    if rng.random() >= scenario.mains_p:
        return []
    duration_s = emg.size / rate_hz
    whole_night = scenario.frame_faults or rng.random() < 0.3
    span = (0.0, duration_s) if whole_night else _interval(rng, duration_s, 60.0, 7200.0)
    if span is None:
        return []
    start, stop = round(span[0] * rate_hz), round(span[1] * rate_hz)
    amplitude_uv = float(rng.uniform(0.5, 30.0))
    knots = max(2, math.ceil((stop - start) / rate_hz / 30.0) + 1)
    level = np.exp(rng.normal(0.0, 0.5, knots))
    block = int(rate_hz * 60)
    phase = rng.uniform(0.0, 2.0 * math.pi)
    third = rng.uniform(0.05, 0.4)
    for first in range(start, stop, block):
        last = min(stop, first + block)
        times = np.arange(first, last) / rate_hz
        envelope = amplitude_uv * np.interp((times - span[0]) / 30.0, np.arange(knots), level)
        wave = np.sin(2.0 * math.pi * mains_hz * times + phase)
        if 3 * mains_hz < rate_hz / 2:
            wave += third * np.sin(2.0 * math.pi * 3 * mains_hz * times + 2 * phase)
        emg[first:last] += (envelope * wave).astype(np.float32)
    return [
        LabelledFault(
            "mains", span[0], span[1], min(1.0, amplitude_uv / 30.0), float(mains_hz), "Hz"
        )
    ]


def add_baseline_wander(
    rng: np.random.Generator, emg: F32, rate_hz: float, scenario: Scenario
) -> list[LabelledFault]:
    """Slow (0.05-1 Hz) electrode-potential drifts of 20-300 µV."""
    duration_s = emg.size / rate_hz
    count = int(rng.poisson(rng.uniform(*scenario.wander_per_h) * duration_s / 3600.0))
    faults = []
    for _ in range(count):
        span = _interval(rng, duration_s, 30.0, 1200.0)
        if span is None:
            continue
        start, stop = round(span[0] * rate_hz), round(span[1] * rate_hz)
        amplitude = float(rng.uniform(20.0, 300.0))
        knots_s = rng.uniform(1.0, 10.0)
        n_knots = max(4, math.ceil((stop - start) / rate_hz / knots_s) + 1)
        values = rng.normal(0.0, 1.0, n_knots)
        values[0] = values[-1] = 0.0
        x = np.linspace(0.0, n_knots - 1, stop - start)
        wander = np.interp(x, np.arange(n_knots), values)
        wander = (
            signal.savgol_filter(wander, min(wander.size - 1 | 1, 101), 2)
            if wander.size > 5
            else wander
        )
        emg[start:stop] += (amplitude * wander).astype(np.float32)
        faults.append(
            LabelledFault("baseline_wander", span[0], span[1], amplitude / 300.0, amplitude, "uV")
        )
    return faults


def add_motion_artifacts(
    rng: np.random.Generator,
    emg: F32,
    rate_hz: float,
    scenario: Scenario,
    movement_spans_s: list[tuple[float, float]],
) -> list[LabelledFault]:
    """Cable/electrode motion transients (1-15 Hz, 100-2000 µV), alone or during movements."""
    duration_s = emg.size / rate_hz
    count = int(rng.poisson(rng.uniform(*scenario.motion_artifacts_per_h) * duration_s / 3600.0))
    onsets: list[float] = [
        float(rng.uniform(1.0, max(1.5, duration_s - 5.0))) for _ in range(count)
    ]
    for onset_s, offset_s in movement_spans_s:
        if rng.random() < 0.3:
            onsets.append(float(rng.uniform(onset_s, offset_s)))
    faults = []
    for onset in sorted(onsets):
        length = float(rng.uniform(0.2, 3.0))
        start = round(onset * rate_hz)
        stop = min(emg.size, start + round(length * rate_hz))
        if stop - start < 4:
            continue
        peak = float(rng.uniform(100.0, 2000.0))
        sos = signal.butter(
            2, [1.0, min(15.0, 0.45 * rate_hz)], "bandpass", fs=rate_hz, output="sos"
        )
        pad = round(rate_hz)
        wave = signal.sosfilt(sos, rng.standard_normal(stop - start + pad))[pad:]
        wave *= signal.windows.tukey(stop - start, 0.5)
        wave *= peak / max(float(np.max(np.abs(wave))), 1e-12)
        emg[start:stop] += wave.astype(np.float32)
        faults.append(
            LabelledFault(
                "motion_artifact", start / rate_hz, stop / rate_hz, peak / 2000.0, peak, "uV"
            )
        )
    return faults


def apply_clipping(emg: F32, clip_level_uv: float) -> npt.NDArray[np.bool_]:
    """Saturate at ± ``clip_level_uv`` in place; return where samples clipped."""
    clipped = np.abs(emg) >= clip_level_uv
    np.clip(emg, -clip_level_uv, clip_level_uv, out=emg)
    return clipped


def clipping_faults(
    clipped: npt.NDArray[np.bool_],
    rate_hz: float,
    clip_level_uv: float,
    lead_offs: list[LabelledFault],
) -> list[LabelledFault]:
    """Label every stretch with clipped samples (runs < 1 s apart merged), outside lead-offs."""
    for fault in lead_offs:
        clipped[round(fault.onset_s * rate_hz) : round(fault.offset_s * rate_hz)] = False
    return [
        LabelledFault("clipping", a, b, 1.0, clip_level_uv, "uV")
        for a, b in _runs_s(clipped, rate_hz, merge_s=1.0)
    ]


def apply_lead_offs(
    rng: np.random.Generator, emg: F32, rate_hz: float, scenario: Scenario, rail_uv: float
) -> list[LabelledFault]:
    """Electrode lead-off: the channel goes flat (0 µV) or sticks at the amplifier rail."""
    duration_s = emg.size / rate_hz
    faults: list[LabelledFault] = []
    for _ in range(int(rng.integers(scenario.lead_offs[0], scenario.lead_offs[1] + 1))):
        span = _interval(rng, duration_s, 5.0, 1200.0)
        if span is None or any(f.onset_s < span[1] and f.offset_s > span[0] for f in faults):
            continue
        start, stop = round(span[0] * rate_hz), round(span[1] * rate_hz)
        if rng.random() < 0.5:
            emg[start:stop] = 0.0
            faults.append(LabelledFault("lead_off_flat", start / rate_hz, stop / rate_hz, 1.0))
        else:
            level = float(rail_uv * rng.choice([-1.0, 1.0]))
            emg[start:stop] = level
            faults.append(
                LabelledFault("lead_off_railed", start / rate_hz, stop / rate_hz, 1.0, level, "uV")
            )
    return faults


def plan_frame_faults(
    rng: np.random.Generator, duration_s: float, scenario: Scenario
) -> list[LabelledFault]:
    """Clock drift (always, per scenario range) and, if the scenario says so, frame faults."""
    faults = []
    drift_ppm = float(rng.uniform(*scenario.drift_ppm)) * float(rng.choice([-1.0, 1.0]))
    if abs(drift_ppm) >= 0.5:
        faults.append(
            LabelledFault(
                "clock_drift", 0.0, duration_s, min(1.0, abs(drift_ppm) / 200.0), drift_ppm, "ppm"
            )
        )
    if not scenario.frame_faults:
        return faults
    for kind, low_s, high_s in (
        ("gap", 2.0, 120.0),
        ("duplicate_frames", 10.0, 300.0),
        ("out_of_order", 10.0, 300.0),
    ):
        for _ in range(int(rng.integers(1, 3))):
            span = _interval(rng, duration_s, low_s, high_s)
            if span is not None:
                faults.append(LabelledFault(kind, span[0], span[1], 1.0))
    for _ in range(int(rng.integers(1, 3))):
        at = float(rng.uniform(1.0, max(1.5, duration_s - 1.0)))
        jump_s = float(rng.uniform(0.5, 30.0) * rng.choice([-1.0, 1.0]))
        faults.append(
            LabelledFault("clock_jump", at, at, min(1.0, abs(jump_s) / 30.0), jump_s, "s")
        )
    return faults


def _runs_s(
    mask: npt.NDArray[np.bool_], rate_hz: float, merge_s: float
) -> list[tuple[float, float]]:
    """(onset_s, offset_s) of the True runs of ``mask``, merging runs closer than ``merge_s``."""
    if not mask.any():
        return []
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    starts, stops = edges[0::2], edges[1::2]
    runs: list[list[int]] = []
    gap = round(merge_s * rate_hz)
    for start, stop in zip(starts, stops, strict=True):
        if runs and start - runs[-1][1] <= gap:
            runs[-1][1] = int(stop)
        else:
            runs.append([int(start), int(stop)])
    return [(a / rate_hz, b / rate_hz) for a, b in runs]
