"""One simulated night: calf EMG + accelerometer with exact ground-truth labels.

``simulate_night`` draws the night's own constants (resting EMG level and band, maximal
contraction RMS, sensor noise, mains frequency, amplifier range), plans events
(:mod:`simulator.events`), synthesises EMG (:mod:`simulator.emg`) and accelerometer
(:mod:`simulator.acc`), adds faults (:mod:`simulator.faults`) and labels all of it. The same
generator state gives the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt

from ingest.protocol import ACC_RATE_RANGE_HZ, DEVICE_ID_PATTERN, EMG_RATE_RANGE_HZ
from simulator import acc as acc_model
from simulator import emg as emg_model
from simulator import faults as fault_model
from simulator.events import PlannedEvent, plan_events
from simulator.labels import LabelledEvent, LabelledFault, NightLabels, labels_to_annotations
from simulator.recording import Recording
from simulator.scenarios import Scenario, get_scenario

DEFAULT_START: Final = datetime(2026, 1, 5, 22, 30, tzinfo=UTC)
DEFAULT_DURATION_S: Final = 8 * 3600.0
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_CRAMP_TO_REST: Final = 5.0


class SimulationError(ValueError):
    """Parameters a night cannot be simulated with."""


@dataclass(frozen=True, eq=False)
class SimulatedNight:
    """A generated night and its ground truth."""

    recording: Recording
    labels: NightLabels


def simulate_night(
    rng: np.random.Generator,
    scenario: str | Scenario,
    *,
    duration_s: float = DEFAULT_DURATION_S,
    emg_rate_hz: float = 1000.0,
    acc_rate_hz: float | None = 50.0,
    start_us: int | None = None,
    device_id: str = "sim-0001",
    seed: int | None = None,
    profile: str = "",
    dtype: type[np.floating] = np.float64,
) -> SimulatedNight:
    """Generate one night.

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness.
    scenario : str or Scenario
        Preset name (``quiet``, ``typical``, ``frequent-cramps``, ``plms``, ``restless``,
        ``faulty-sensor``) or a custom :class:`Scenario`.
    duration_s : float
        Night length in seconds (at least 10 s).
    emg_rate_hz : float
        EMG sample rate, 500-4000 Hz.
    acc_rate_hz : float or None
        Accelerometer rate, 12.5-200 Hz; None for EMG only.
    start_us : int, optional
        Device-clock µs since the Unix epoch (UTC) of the first sample; default
        2026-01-05 22:30 UTC.
    device_id : str
    seed : int, optional
        Recorded in the labels (the caller built ``rng`` from it).
    profile : str
        Wearer description recorded in the labels.
    dtype : numpy float type
        Sample type of the returned arrays (float32 halves memory; 8 h at 1 kHz is 28.8 M
        samples).

    Raises
    ------
    SimulationError
        Rates outside the protocol's ranges, too short a night, a bad device id.
    """
    chosen = get_scenario(scenario) if isinstance(scenario, str) else scenario
    _validate(duration_s, emg_rate_hz, acc_rate_hz, device_id)
    if start_us is None:
        start_us = (DEFAULT_START - _EPOCH) // timedelta(microseconds=1)
    n_emg = round(duration_s * emg_rate_hz)
    duration_s = n_emg / emg_rate_hz

    # The night's own constants (ranges and sources in docs/simulator.md).
    resting_rms_uv = float(rng.uniform(1.0, 6.0))
    mvc_rms_uv = float(np.clip(350.0 * math.exp(0.45 * rng.standard_normal()), 120.0, 1000.0))
    electronics_uv = float(rng.uniform(0.2, 0.8))
    band_hz = (float(rng.uniform(15.0, 30.0)), float(rng.uniform(300.0, 450.0)))
    resting_median_hz = float(rng.uniform(60.0, 130.0))
    mains_hz = float(rng.choice([50.0, 60.0]))
    clip_level_uv = float(rng.uniform(*chosen.clip_level_uv))
    acc_noise_g = float(rng.uniform(0.002, 0.012))

    events, posture_changes, first_posture = plan_events(rng, chosen, duration_s)
    # A cramp is a felt, sustained contraction: its plateau is at least 5x the resting EMG.
    weakest = min(
        0.95, _MIN_CRAMP_TO_REST * math.hypot(resting_rms_uv, electronics_uv) / mvc_rms_uv
    )
    events = [
        replace(e, intensity=max(e.intensity, weakest)) if e.type == "cramp" else e for e in events
    ]

    emg = np.zeros(n_emg, dtype=np.float32)
    emg_model.resting_emg(
        rng,
        emg_rate_hz,
        _resting_levels(rng, duration_s, resting_rms_uv),
        emg,
        band_hz,
        resting_median_hz,
    )
    _add_electronics_noise(rng, emg, emg_rate_hz, electronics_uv)
    for event in events:
        _add_event_emg(rng, emg, emg_rate_hz, event, mvc_rms_uv)

    faults: list[LabelledFault] = []
    faults += fault_model.add_mains(rng, emg, emg_rate_hz, mains_hz, chosen)
    faults += fault_model.add_baseline_wander(rng, emg, emg_rate_hz, chosen)
    moving = [(e.onset_s, e.offset_s) for e in events if e.type in ("turn", "movement", "walking")]
    faults += fault_model.add_motion_artifacts(rng, emg, emg_rate_hz, chosen, moving)
    clipped = fault_model.apply_clipping(emg, clip_level_uv)
    lead_offs = fault_model.apply_lead_offs(rng, emg, emg_rate_hz, chosen, clip_level_uv)
    faults += lead_offs
    faults += fault_model.clipping_faults(clipped, emg_rate_hz, clip_level_uv, lead_offs)
    faults += fault_model.plan_frame_faults(rng, duration_s, chosen)
    faults.sort(key=lambda f: (f.onset_s, f.type))

    acc: npt.NDArray[np.float32] | None = None
    if acc_rate_hz is not None:
        n_acc = round(duration_s * acc_rate_hz)
        acc = acc_model.night_acc(
            rng, n_acc, acc_rate_hz, first_posture, posture_changes, events, acc_noise_g
        )

    labels = NightLabels(
        device_id=device_id,
        start_us=int(start_us),
        scenario=chosen.name,
        seed=seed,
        emg_rate_hz=float(emg_rate_hz),
        acc_rate_hz=None if acc_rate_hz is None else float(acc_rate_hz),
        duration_s=duration_s,
        events=tuple(
            LabelledEvent(e.type, round(e.onset_s, 4), round(e.offset_s, 4), round(e.intensity, 4))
            for e in events
        ),
        faults=tuple(faults),
        resting_rms_uv=round(math.hypot(resting_rms_uv, electronics_uv), 4),
        mvc_rms_uv=round(mvc_rms_uv, 3),
        mains_hz=mains_hz,
        profile=profile,
    )
    recording = Recording(
        emg_uv=emg.astype(dtype, copy=False)[:, None],
        emg_rate_hz=float(emg_rate_hz),
        acc_g=None if acc is None else acc.astype(dtype, copy=False),
        acc_rate_hz=None if acc_rate_hz is None else float(acc_rate_hz),
        start=_EPOCH + timedelta(microseconds=int(start_us)),
        annotations=labels_to_annotations(labels),
    )
    return SimulatedNight(recording, labels)


def _validate(
    duration_s: float, emg_rate_hz: float, acc_rate_hz: float | None, device_id: str
) -> None:
    low, high = EMG_RATE_RANGE_HZ
    if not low <= emg_rate_hz <= high:
        raise SimulationError(f"EMG rate {emg_rate_hz} Hz is outside {low:g}-{high:g} Hz")
    if acc_rate_hz is not None:
        low, high = ACC_RATE_RANGE_HZ
        if not low <= acc_rate_hz <= high:
            raise SimulationError(f"ACC rate {acc_rate_hz} Hz is outside {low:g}-{high:g} Hz")
    for rate in (emg_rate_hz, acc_rate_hz):
        if rate is not None and round(rate * 1000) != rate * 1000:
            raise SimulationError(f"rate {rate} Hz is not a whole number of millihertz")
    if not (math.isfinite(duration_s) and duration_s >= 10.0):
        raise SimulationError(f"night of {duration_s} s is too short (at least 10 s)")
    if not DEVICE_ID_PATTERN.match(device_id):
        raise SimulationError(f"device id {device_id!r} is not allowed on the wire")


def _resting_levels(
    rng: np.random.Generator, duration_s: float, resting_rms_uv: float
) -> npt.NDArray[np.float64]:
    """Resting RMS per second: slow (10-min) log-normal drift across sleep stages, ±25 %."""
    n = math.ceil(duration_s) + 2
    modulation = emg_model.smooth_modulation(rng, n, 1.0, 0.25, 600.0)
    return resting_rms_uv * modulation


def _add_electronics_noise(
    rng: np.random.Generator, emg: npt.NDArray[np.float32], rate_hz: float, rms_uv: float
) -> None:
    block = int(rate_hz * 60)
    for first in range(0, emg.size, block):
        last = min(emg.size, first + block)
        emg[first:last] += rng.standard_normal(last - first, dtype=np.float32) * np.float32(rms_uv)


def _add_event_emg(
    rng: np.random.Generator,
    emg: npt.NDArray[np.float32],
    rate_hz: float,
    event: PlannedEvent,
    mvc_rms_uv: float,
) -> None:
    start = round(event.onset_s * rate_hz)
    stop = min(emg.size, round(event.offset_s * rate_hz))
    n = stop - start
    if n < 4:
        return
    if event.type == "cramp":
        envelope = emg_model.cramp_envelope(
            rng, n, rate_hz, event.rise_s, event.fall_s, event.depth, event.corr_s
        )
    elif event.type == "walking":
        envelope = _stride_envelope(rng, n, rate_hz, event.stride_hz)
    else:
        envelope = emg_model.contraction_envelope(n, rate_hz, event.rise_s, event.fall_s)
        envelope *= emg_model.smooth_modulation(rng, n, rate_hz, event.depth, event.corr_s)
    envelope *= event.intensity * mvc_rms_uv
    emg[start:stop] += emg_model.burst(
        rng, envelope, rate_hz, event.median_start_hz, event.median_end_hz
    )


def _stride_envelope(
    rng: np.random.Generator, n_samples: int, rate_hz: float, stride_hz: float
) -> npt.NDArray[np.float64]:
    """Calf activity while walking: a push-off burst (~30 % of each stride), a little between."""
    times = np.arange(n_samples) / rate_hz
    phase = (times * stride_hz + rng.uniform(0.0, 1.0)) % 1.0
    burst = np.where(phase < 0.3, np.sin(math.pi * phase / 0.3) ** 2, 0.0)
    envelope = 0.1 + 1.6 * burst
    edge = min(n_samples // 2, round(2.0 * rate_hz))
    envelope[:edge] = np.maximum(envelope[:edge], 0.3)  # getting up
    envelope[n_samples - edge :] = np.maximum(envelope[n_samples - edge :], 0.3)  # lying down
    return envelope
