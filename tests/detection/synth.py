"""Synthetic calf EMG and accelerometer signals for the detector tests.

Every generator takes a ``numpy.random.Generator``; amplitudes are RMS in µV, times in s.
Cramp EMG is band-limited noise (surface MUAP spectrum, 30-250 Hz) under an envelope with a
ramp-up, an irregular plateau and a taper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import signal

FloatArray = NDArray[np.float64]

SUPINE_UP = np.array([0.0, 0.0, -1.0])  # calf down: the sensor's "up" is -z
LEFT_UP = np.array([0.0, -1.0, 0.0])
UPRIGHT_UP = np.array([1.0, 0.0, 0.0])


def band_noise(
    rng: np.random.Generator, n: int, rate_hz: float, lo: float, hi: float
) -> FloatArray:
    """Unit-RMS band-limited Gaussian noise."""
    hi = min(hi, 0.45 * rate_hz)
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=rate_hz, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal(n + 2000))[2000:]
    return np.asarray(x / np.sqrt(np.mean(x**2)), dtype=np.float64)


def rest(
    rng: np.random.Generator,
    duration_s: float,
    rate_hz: float,
    rest_uv: float = 3.0,
    dc_uv: float = 150.0,
) -> FloatArray:
    """Resting EMG: broadband noise of ``rest_uv`` RMS on a DC offset, shape (n,)."""
    n = round(duration_s * rate_hz)
    return dc_uv + rest_uv * band_noise(rng, n, rate_hz, 10.0, 0.49 * rate_hz)


def burst_envelope(
    n: int, rate_hz: float, onset_s: float, duration_s: float, ramp_s: float, taper_s: float
) -> FloatArray:
    """0..1 envelope: linear ramp, plateau, linear taper."""
    t = np.arange(n) / rate_hz
    rise = np.clip((t - onset_s) / max(ramp_s, 1e-6), 0.0, 1.0)
    fall = np.clip((onset_s + duration_s - t) / max(taper_s, 1e-6), 0.0, 1.0)
    return np.asarray(np.minimum(rise, fall), dtype=np.float64)


def add_burst(
    rng: np.random.Generator,
    x: FloatArray,
    rate_hz: float,
    onset_s: float,
    duration_s: float,
    amplitude_uv: float,
    *,
    ramp_s: float = 1.0,
    taper_s: float = 1.5,
    irregular: bool = True,
) -> FloatArray:
    """Add a contraction of ``amplitude_uv`` RMS at plateau; returns a new array."""
    n = x.shape[0]
    env = burst_envelope(n, rate_hz, onset_s, duration_s, ramp_s, taper_s)
    if irregular:
        wobble = 1.0 + 0.3 * band_noise(rng, n, rate_hz, 0.3, 3.0)
        env = env * np.clip(wobble, 0.4, 1.8)
    return x + amplitude_uv * env * band_noise(rng, n, rate_hz, 30.0, 250.0)


def accelerometer(
    rng: np.random.Generator, duration_s: float, rate_hz: float, up: FloatArray = SUPINE_UP
) -> FloatArray:
    """Still limb in one posture: gravity plus 3 mg sensor noise, shape (m, 3)."""
    m = round(duration_s * rate_hz)
    return np.asarray(up[None, :] + 0.003 * rng.standard_normal((m, 3)), dtype=np.float64)


def turn_over(
    rng: np.random.Generator,
    acc: FloatArray,
    rate_hz: float,
    at_s: float,
    to_up: FloatArray,
    duration_s: float = 2.0,
) -> FloatArray:
    """Rotate the gravity vector to ``to_up`` over ``duration_s`` with 0.3 g of jostling."""
    out = acc.copy()
    m = acc.shape[0]
    t = np.arange(m) / rate_hz
    start_up = acc[max(0, round(at_s * rate_hz) - 1)]
    frac = np.clip((t - at_s) / duration_s, 0.0, 1.0)[:, None]
    mixed = (1 - frac) * start_up[None, :] + frac * to_up[None, :]
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    during = (t >= at_s) & (t <= at_s + duration_s)
    out = mixed + 0.003 * rng.standard_normal((m, 3))
    out[during] += 0.3 * rng.standard_normal((int(during.sum()), 3))
    return np.asarray(out, dtype=np.float64)


def kick(
    rng: np.random.Generator,
    acc: FloatArray,
    rate_hz: float,
    at_s: float,
    duration_s: float,
    rms_g: float = 0.2,
) -> FloatArray:
    """Leg movement without a posture change: ``rms_g`` of dynamic acceleration per axis."""
    out = acc.copy()
    lo, hi = round(at_s * rate_hz), round((at_s + duration_s) * rate_hz)
    out[lo:hi] += rms_g * rng.standard_normal((hi - lo, 3))
    return out


def mains(n: int, rate_hz: float, hz: float, amplitude_uv: float) -> FloatArray:
    """Mains hum of peak ``amplitude_uv``."""
    t = np.arange(n) / rate_hz
    return np.asarray(amplitude_uv * np.sin(2 * math.pi * hz * t + 0.3), dtype=np.float64)


@dataclass(frozen=True)
class Night:
    """A short labelled synthetic recording."""

    emg_uv: FloatArray
    rate_hz: float
    acc_g: FloatArray | None
    acc_rate_hz: float | None


def cramp_night(
    rng: np.random.Generator,
    *,
    rate_hz: float = 1000.0,
    duration_s: float = 90.0,
    onset_s: float = 40.0,
    cramp_s: float = 25.0,
    amplitude_uv: float = 120.0,
    rest_uv: float = 3.0,
    acc_rate_hz: float | None = 50.0,
) -> Night:
    """Rest with one cramp (limb still, supine)."""
    x = rest(rng, duration_s, rate_hz, rest_uv)
    x = add_burst(rng, x, rate_hz, onset_s, cramp_s, amplitude_uv)
    acc = accelerometer(rng, duration_s, acc_rate_hz) if acc_rate_hz else None
    return Night(x, rate_hz, acc, acc_rate_hz)
