"""3-axis accelerometer on the calf, consistent with the planned events.

Sensor axes: X along the lower leg towards the knee, Y medio-lateral, Z out of the skin of the
calf. At rest the sensor reads the reaction to gravity (1 g) along the axis pointing up; each
posture has its own vector, tilted by up to ~15° per occurrence so no two nights (or turns)
agree exactly. Movements add band-limited acceleration (0.5-6 Hz), walking adds a stride-locked
waveform of 0.2-0.6 g peak with harmonics of the stride frequency (0.75-1 Hz).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import signal
from scipy.spatial.transform import Rotation

from simulator.events import STANDING, PlannedEvent, PostureChange

POSTURE_UP_VECTORS: Final = {
    "supine": (0.15, 0.0, -0.99),  # calf on the mattress: skin side down
    "prone": (0.15, 0.0, 0.99),
    "left": (0.1, 0.99, 0.0),
    "right": (0.1, -0.99, 0.0),
    STANDING: (0.99, 0.0, 0.1),
}


def _tilted(rng: np.random.Generator, posture: str, max_tilt_deg: float) -> npt.NDArray[np.float64]:
    vector = np.asarray(POSTURE_UP_VECTORS[posture], dtype=np.float64)
    vector /= np.linalg.norm(vector)
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = math.radians(rng.uniform(0.0, max_tilt_deg))
    return np.asarray(Rotation.from_rotvec(axis * angle).apply(vector), dtype=np.float64)


def gravity_track(
    rng: np.random.Generator,
    n_samples: int,
    rate_hz: float,
    first_posture: str,
    changes: list[PostureChange],
) -> npt.NDArray[np.float64]:
    """Per-sample unit "up" vector in g, shape (n_samples, 3), with smooth posture transitions."""
    track = np.empty((n_samples, 3))
    current = _tilted(rng, first_posture, 15.0)
    position = 0
    for change in changes:
        start = min(n_samples, max(position, round(change.onset_s * rate_hz)))
        track[position:start] = current
        target = _tilted(rng, change.posture, 15.0)
        stop = min(n_samples, start + max(1, round(change.transition_s * rate_hz)))
        weight = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, stop - start))[:, None]
        blend = (1.0 - weight) * current + weight * target
        norms = np.linalg.norm(blend, axis=1, keepdims=True)
        track[start:stop] = blend / np.maximum(norms, 1e-6)
        current, position = target, stop
    track[position:] = current
    return track


def movement_acc(
    rng: np.random.Generator, n_samples: int, rate_hz: float, rms_g: float
) -> npt.NDArray[np.float64]:
    """Band-limited (0.5-6 Hz) 3-axis limb movement with RMS ``rms_g`` per axis and a taper."""
    high = min(6.0, 0.45 * rate_hz)
    sos = signal.butter(2, [0.5, high], btype="bandpass", fs=rate_hz, output="sos")
    pad = int(rate_hz * 2)
    noise = signal.sosfilt(sos, rng.standard_normal((n_samples + pad, 3)), axis=0)[pad:]
    rms = np.sqrt(np.mean(noise**2, axis=0, keepdims=True))
    taper = signal.windows.tukey(n_samples, 0.3)[:, None] if n_samples > 2 else 1.0
    movement: npt.NDArray[np.float64] = noise / np.maximum(rms, 1e-12) * rms_g * taper
    return movement


def walking_acc(
    rng: np.random.Generator, n_samples: int, rate_hz: float, stride_hz: float, peak_g: float
) -> npt.NDArray[np.float64]:
    """Stride-locked shank acceleration: harmonics of ``stride_hz``, strongest along X and Z."""
    times = np.arange(n_samples) / rate_hz
    jitter = np.cumsum(rng.normal(0.0, 0.02, n_samples)) / rate_hz
    phase = 2.0 * math.pi * stride_hz * (times + jitter)
    out = np.zeros((n_samples, 3))
    for harmonic, weight in ((1, 1.0), (2, 0.6), (3, 0.3), (4, 0.15)):
        if harmonic * stride_hz >= 0.45 * rate_hz:
            break
        offsets = rng.uniform(0.0, 2.0 * math.pi, 3)
        gains = np.array([0.8, 0.3, 0.6]) * weight
        out += gains * np.sin(harmonic * phase[:, None] + offsets)
    out *= peak_g / max(np.max(np.abs(out)), 1e-9)
    taper = signal.windows.tukey(n_samples, min(1.0, 8.0 / max(n_samples / rate_hz, 1e-3)))
    walking: npt.NDArray[np.float64] = out * taper[:, None]
    return walking


def night_acc(
    rng: np.random.Generator,
    n_samples: int,
    rate_hz: float,
    first_posture: str,
    changes: list[PostureChange],
    events: list[PlannedEvent],
    noise_g: float,
) -> npt.NDArray[np.float32]:
    """The night's accelerometer in g, shape (n_samples, 3)."""
    acc = gravity_track(rng, n_samples, rate_hz, first_posture, changes)
    acc += rng.normal(0.0, noise_g, acc.shape)
    for event in events:
        start = max(0, round(event.onset_s * rate_hz))
        stop = min(n_samples, round(event.offset_s * rate_hz))
        if stop - start < 2:
            continue
        if event.type == "walking":
            inner = slice(start + round(2 * rate_hz), max(start, stop - round(2 * rate_hz)))
            length = inner.stop - inner.start
            if length > 2:
                acc[inner] += walking_acc(rng, length, rate_hz, event.stride_hz, event.motion_g)
        elif event.motion_g > 0:
            acc[start:stop] += movement_acc(rng, stop - start, rate_hz, event.motion_g)
    return acc.astype(np.float32)
