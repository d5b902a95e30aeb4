"""Surface-EMG building blocks: resting sleep EMG, spectrally shaped bursts and their envelopes.

Muscle activity is modelled as band-limited Gaussian noise whose power spectrum follows the
classic surface-EMG shape of Shwedyk et al. (1977) (surface-EMG spectra: Merletti & Parker
2004; De Luca 1997)::

    P(f) ∝ fh^4 f^2 / ((f^2 + fl^2) (f^2 + fh^2)^2)

scaled so its median frequency hits a target (60-120 Hz for calf muscles), then high-passed at
20 Hz (De Luca et al. 2010) and low-passed at 450 Hz. All arrays are float32 in µV unless
stated otherwise; the caller's :class:`numpy.random.Generator` is the only source
of randomness.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import signal

F32 = npt.NDArray[np.float32]

BAND_LOW_HZ: Final = 20.0
BAND_HIGH_HZ: Final = 450.0
_FL_RATIO: Final = 0.55  # fl / fh of the Shwedyk spectrum
_BLOCK_S: Final = 60.0


def band_edges_hz(rate_hz: float) -> tuple[float, float]:
    """Surface-EMG pass band (20-450 Hz) clipped below 0.45 x the sample rate."""
    return BAND_LOW_HZ, min(BAND_HIGH_HZ, 0.45 * rate_hz)


@lru_cache(maxsize=64)
def _resting_sos(rate_hz: float, low: float, high: float, fh_hz: float) -> npt.NDArray[np.float64]:
    """Shwedyk spectrum as a digital IIR filter (bilinear), cascaded with the acquisition band."""
    fl_hz = _FL_RATIO * fh_hz
    zeros = np.array([0.0])
    poles = -2.0 * math.pi * np.array([fl_hz, fh_hz, fh_hz])
    z, p, k = signal.bilinear_zpk(zeros, poles, 1.0, rate_hz)
    shape = signal.zpk2sos(z, p, k)
    band = signal.butter(4, [low, high], btype="bandpass", fs=rate_hz, output="sos")
    sos: npt.NDArray[np.float64] = np.vstack([shape, band])
    return sos


@lru_cache(maxsize=64)
def _sos_gain(rate_hz: float, low: float, high: float, fh_hz: float) -> float:
    """RMS of the resting filter's output for unit-variance white input."""
    impulse = np.zeros(int(rate_hz * 4))
    impulse[0] = 1.0
    response = signal.sosfilt(_resting_sos(rate_hz, low, high, fh_hz), impulse)
    return float(np.sqrt(np.sum(response**2)))


def resting_emg(
    rng: np.random.Generator,
    rate_hz: float,
    rms_per_s_uv: npt.NDArray[np.float64],
    out: F32,
    band_hz: tuple[float, float] = (BAND_LOW_HZ, BAND_HIGH_HZ),
    median_hz: float = 90.0,
) -> None:
    """Add resting sleep EMG (EMG-shaped, band-limited noise) to ``out`` in place, in blocks.

    Parameters
    ----------
    rng : Generator
    rate_hz : float
    rms_per_s_uv : ndarray
        Target RMS in µV at each whole second (slow variation across sleep stages);
        interpolated between seconds.
    out : ndarray, shape (n_samples,), float32
    band_hz : (float, float)
        Acquisition pass band; the upper edge is kept below 0.45 x the sample rate.
    median_hz : float
        Approximate median frequency of the Shwedyk-shaped resting spectrum.
    """
    band = (round(band_hz[0], 1), round(min(band_hz[1], 0.45 * rate_hz), 1))
    fh = round(fh_for_median(round(median_hz, 1), rate_hz), 2)
    sos = _resting_sos(rate_hz, *band, fh)
    gain = _sos_gain(rate_hz, *band, fh)
    state = np.zeros((sos.shape[0], 2))
    block = int(rate_hz * _BLOCK_S)
    knots = np.arange(rms_per_s_uv.size)
    for first in range(0, out.size, block):
        last = min(out.size, first + block)
        white = rng.standard_normal(last - first)
        shaped, state = signal.sosfilt(sos, white, zi=state)
        rms = np.interp(np.arange(first, last) / rate_hz, knots, rms_per_s_uv)
        out[first:last] += (shaped * (rms / gain)).astype(np.float32)


def shwedyk_psd(freqs_hz: npt.NDArray[np.float64], fh_hz: float) -> npt.NDArray[np.float64]:
    """Shwedyk surface-EMG power spectrum (unnormalised) with ``fl = 0.55 fh``."""
    fl = _FL_RATIO * fh_hz
    f2 = freqs_hz**2
    psd: npt.NDArray[np.float64] = fh_hz**4 * f2 / ((f2 + fl**2) * (f2 + fh_hz**2) ** 2)
    return psd


def _shaped_psd(freqs_hz: npt.NDArray[np.float64], fh_hz: float, rate_hz: float) -> np.ndarray:
    low, high = band_edges_hz(rate_hz)
    psd = shwedyk_psd(freqs_hz, fh_hz)
    # 4th-order Butterworth magnitudes of the acquisition band, squared
    hp = 1.0 / (1.0 + (low / np.maximum(freqs_hz, 1e-9)) ** 8)
    lp = 1.0 / (1.0 + (freqs_hz / high) ** 8)
    return psd * hp * lp


def median_frequency_hz(freqs_hz: npt.NDArray[np.float64], psd: npt.NDArray[np.float64]) -> float:
    """Frequency that splits the spectrum's power in half."""
    cumulative = np.cumsum(psd)
    return float(np.interp(cumulative[-1] / 2.0, cumulative, freqs_hz))


@lru_cache(maxsize=16)
def _median_table(rate_hz: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(median frequencies, fh values) of the band-limited Shwedyk spectrum at this rate."""
    freqs = np.linspace(0.0, rate_hz / 2.0, 4097)
    fh_values = np.geomspace(10.0, 2000.0, 400)
    medians = np.array(
        [median_frequency_hz(freqs, _shaped_psd(freqs, fh, rate_hz)) for fh in fh_values]
    )
    return medians, fh_values


def fh_for_median(median_hz: float, rate_hz: float) -> float:
    """The Shwedyk ``fh`` whose band-limited spectrum has the given median frequency."""
    medians, fh_values = _median_table(rate_hz)
    return float(np.exp(np.interp(median_hz, medians, np.log(fh_values))))


def shaped_noise(rng: np.random.Generator, n_samples: int, rate_hz: float, median_hz: float) -> F32:
    """Unit-RMS Gaussian noise with a surface-EMG spectrum of the given median frequency."""
    if n_samples <= 0:
        return np.zeros(0, dtype=np.float32)
    size = max(n_samples, 64)
    freqs = np.fft.rfftfreq(size, 1.0 / rate_hz).astype(np.float64)
    amplitude = np.sqrt(_shaped_psd(freqs, fh_for_median(median_hz, rate_hz), rate_hz))
    spectrum = np.fft.rfft(rng.standard_normal(size)) * amplitude
    noise = np.fft.irfft(spectrum, size)[:n_samples]
    rms = float(np.sqrt(np.mean(noise**2)))
    return (noise / max(rms, 1e-12)).astype(np.float32)


def burst(
    rng: np.random.Generator,
    envelope: npt.NDArray[np.float64],
    rate_hz: float,
    median_start_hz: float,
    median_end_hz: float,
) -> F32:
    """EMG of one contraction: shaped noise times ``envelope`` (RMS in µV per sample).

    The spectrum moves from ``median_start_hz`` to ``median_end_hz`` (muscle fatigue lowers
    the median frequency; De Luca 1997) by cross-fading two independent unit-RMS noises.
    """
    n = envelope.size
    first = shaped_noise(rng, n, rate_hz, median_start_hz)
    if abs(median_end_hz - median_start_hz) < 1.0 or n < 2:
        return (first * envelope).astype(np.float32)
    second = shaped_noise(rng, n, rate_hz, median_end_hz)
    weight = np.linspace(0.0, 1.0, n)
    mixed = np.sqrt(1.0 - weight) * first + np.sqrt(weight) * second
    return (mixed * envelope).astype(np.float32)


def smooth_modulation(
    rng: np.random.Generator, n_samples: int, rate_hz: float, depth: float, corr_s: float
) -> npt.NDArray[np.float64]:
    """Mean-one log-normal amplitude modulation with correlation time ``corr_s`` seconds.

    ``depth`` is the standard deviation of the log-amplitude (0.3 ≈ ±30 % fluctuations).
    """
    if n_samples <= 0:
        return np.zeros(0)
    knot_s = max(corr_s / 4.0, 1.0 / rate_hz)
    n_knots = max(2, math.ceil(n_samples / rate_hz / knot_s) + 2)
    phi = math.exp(-knot_s / corr_s)
    innovations = rng.standard_normal(n_knots) * math.sqrt(1.0 - phi**2)
    series = signal.lfilter([1.0], [1.0, -phi], innovations, zi=[phi * rng.standard_normal()])[0]
    knot_times = np.arange(n_knots) * knot_s
    times = np.arange(n_samples) / rate_hz
    log_amp = np.interp(times, knot_times, series) * depth
    modulation: npt.NDArray[np.float64] = np.exp(log_amp - depth**2 / 2.0)
    return modulation


def contraction_envelope(
    n_samples: int, rate_hz: float, rise_s: float, fall_s: float
) -> npt.NDArray[np.float64]:
    """Unit plateau with a smooth (raised-cosine) rise and fall, lengths in seconds."""
    envelope = np.ones(n_samples)
    rise = min(n_samples // 2, max(1, round(rise_s * rate_hz)))
    fall = min(n_samples - rise, max(1, round(fall_s * rate_hz)))
    envelope[:rise] = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, rise))
    if fall > 0:
        envelope[n_samples - fall :] = 0.5 + 0.5 * np.cos(np.linspace(0.0, math.pi, fall))
    return envelope


def cramp_envelope(
    rng: np.random.Generator,
    n_samples: int,
    rate_hz: float,
    ramp_s: float,
    taper_s: float,
    depth: float,
    corr_s: float,
) -> npt.NDArray[np.float64]:
    """Cramp RMS shape (mean ≈ 1 on the plateau).

    Ramp-up (sigmoid), an irregular plateau (log-normal fluctuations plus occasional short
    lulls and spasms: cramp discharges are high-rate and irregular, Minetto et al. 2013) and
    an exponential-looking taper.
    """
    times = np.arange(n_samples) / rate_hz
    duration_s = n_samples / rate_hz
    ramp = 1.0 / (1.0 + np.exp(-(times - ramp_s / 2.0) / max(ramp_s / 8.0, 1e-3)))
    taper_start = duration_s - taper_s
    taper = np.where(
        times < taper_start,
        1.0,
        np.exp(-3.0 * (times - taper_start) / max(taper_s, 1e-3)),
    )
    # the last samples fall to zero so the burst has no step at the offset
    taper *= np.clip((duration_s - times) * rate_hz / max(1.0, 0.05 * rate_hz), 0.0, 1.0)
    envelope = ramp * taper * smooth_modulation(rng, n_samples, rate_hz, depth, corr_s)
    n_spasms = rng.poisson(duration_s / 40.0)
    for _ in range(n_spasms):
        centre = rng.uniform(ramp_s, max(ramp_s + 1e-3, taper_start))
        width = rng.uniform(0.3, 2.0)
        gain = rng.choice([rng.uniform(0.4, 0.7), rng.uniform(1.3, 1.8)])
        envelope *= 1.0 + (gain - 1.0) * np.exp(-0.5 * ((times - centre) / width) ** 2)
    return envelope
