"""Causal filter design and chunk-wise application with carried state (``sosfilt`` + ``zi``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from detection.errors import DetectorError

try:  # the compiled loop behind scipy.signal.sosfilt; the public function is the fallback
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_kernel
except ImportError:  # pragma: no cover - a SciPy that moved it
    _sosfilt_kernel = None
# Its float64 specialisation, called directly: choosing one per call costs about a microsecond.
_sosfilt_double: Any = getattr(_sosfilt_kernel, "__signatures__", {}).get("double", _sosfilt_kernel)

MainsSetting = Literal["auto", "50", "60", "both", "off"]
FloatArray = NDArray[np.float64]


def mains_frequencies_hz(mains_hz: str | float | None) -> tuple[float, ...]:
    """Mains frequencies to notch for a setting: each fundamental and its third harmonic.

    Parameters
    ----------
    mains_hz : {"auto", "50", "60", "both", "off"}, 50, 60 or None
        ``auto`` and ``both`` notch 50 and 60 Hz; ``off`` / None notch nothing.

    Returns
    -------
    tuple of float
        Notch centre frequencies, Hz (the third harmonic is the strongest one of hum
        distorted by rectifying loads).
    """
    if mains_hz is None:
        return ()
    key = str(mains_hz).strip().lower()
    table: dict[str, tuple[float, ...]] = {
        "auto": (50.0, 60.0, 150.0, 180.0),
        "both": (50.0, 60.0, 150.0, 180.0),
        "off": (),
        "50": (50.0, 150.0),
        "50.0": (50.0, 150.0),
        "60": (60.0, 180.0),
        "60.0": (60.0, 180.0),
    }
    if key not in table:
        raise DetectorError(f"mains_hz must be auto, 50, 60, both or off, got {mains_hz!r}")
    return table[key]


@dataclass(frozen=True)
class EmgFilterDesign:
    """Second-order sections of the EMG chain for one sample rate.

    Attributes
    ----------
    bandpass_sos : ndarray, shape (n_sections, 6)
        Butterworth band-pass, ``low_hz`` to ``high_hz``.
    notch_sos : ndarray, shape (n_notches, 6)
        Mains notches (may have zero rows).
    high_hz : float
        Upper band edge actually used, Hz (clamped below Nyquist).
    """

    bandpass_sos: FloatArray
    notch_sos: FloatArray
    high_hz: float


def design_emg_filters(
    rate_hz: float,
    *,
    low_hz: float,
    high_hz: float,
    nyquist_fraction: float,
    notch_hz: tuple[float, ...],
    notch_q: float,
) -> EmgFilterDesign:
    """Design the band-pass (order-2 Butterworth per edge) and the mains notches.

    Parameters
    ----------
    rate_hz : float
        EMG sample rate, Hz.
    low_hz, high_hz : float
        Requested band edges, Hz; ``high_hz`` is clamped to ``nyquist_fraction * rate_hz``.
    nyquist_fraction : float
        Highest upper edge as a fraction of the sample rate (0.45 keeps it below Nyquist).
    notch_hz : tuple of float
        Notch centres, Hz; those at or above the upper band edge are skipped.
    notch_q : float
        Quality factor of each notch (bandwidth = centre / Q).

    Notes
    -----
    Designs are cached (a device's first chunk would otherwise spend milliseconds here); each
    call returns its own copies of the sections.
    """
    design = _design_emg_filters(rate_hz, low_hz, high_hz, nyquist_fraction, notch_hz, notch_q)
    return EmgFilterDesign(
        bandpass_sos=design.bandpass_sos.copy(),
        notch_sos=design.notch_sos.copy(),
        high_hz=design.high_hz,
    )


@lru_cache(maxsize=64)
def _design_emg_filters(
    rate_hz: float,
    low_hz: float,
    high_hz: float,
    nyquist_fraction: float,
    notch_hz: tuple[float, ...],
    notch_q: float,
) -> EmgFilterDesign:
    high = min(high_hz, nyquist_fraction * rate_hz)
    bandpass = signal.butter(2, [low_hz, high], btype="bandpass", fs=rate_hz, output="sos")
    notches = []
    for centre in notch_hz:
        if centre < high:
            b, a = signal.iirnotch(centre, notch_q, fs=rate_hz)
            notches.append(signal.tf2sos(b, a))
    notch = np.concatenate(notches) if notches else np.zeros((0, 6))
    return EmgFilterDesign(
        bandpass_sos=_read_only(bandpass),
        notch_sos=_read_only(notch),
        high_hz=float(high),
    )


def design_lowpass(rate_hz: float, cutoff_hz: float) -> FloatArray:
    """Order-2 Butterworth low-pass as second-order sections (gravity from acceleration)."""
    return _design_lowpass(rate_hz, cutoff_hz).copy()


@lru_cache(maxsize=64)
def _design_lowpass(rate_hz: float, cutoff_hz: float) -> FloatArray:
    sos = signal.butter(2, cutoff_hz, btype="lowpass", fs=rate_hz, output="sos")
    return _read_only(sos)


def _read_only(values: Any) -> FloatArray:
    """A float64 copy of ``values`` that cannot be written (safe to share from a cache)."""
    array = np.array(values, dtype=np.float64)
    array.setflags(write=False)
    return array


@lru_cache(maxsize=64)
def _unit_zi(sos_bytes: bytes) -> FloatArray:
    """``sosfilt_zi`` of the sections whose float64 bytes are ``sos_bytes`` (cached)."""
    sos = np.frombuffer(sos_bytes, dtype=np.float64).reshape(-1, 6)
    return _read_only(signal.sosfilt_zi(sos))


def steady_state(sos: FloatArray, first: FloatArray) -> FloatArray:
    """Initial ``zi`` for :func:`apply_sos` as if ``first`` had always been the input.

    Parameters
    ----------
    sos : ndarray, shape (n_sections, 6)
    first : ndarray, shape (channels,)
        First sample of each channel; starting from its steady state avoids a step transient.

    Returns
    -------
    ndarray, shape (n_sections, channels, 2)
    """
    if sos.shape[0] == 0:
        return np.zeros((0, first.shape[0], 2))
    zi = _unit_zi(np.ascontiguousarray(sos, dtype=np.float64).tobytes())
    return np.asarray(zi[:, None, :] * first[None, :, None], dtype=np.float64)


def apply_sos(sos: FloatArray, x: FloatArray, zi: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Filter ``x`` (channels x samples) along its last axis from state ``zi``.

    Carrying the returned state into the next call gives exactly the samples a single call over
    the concatenated input would give, so any chunking filters identically.

    Parameters
    ----------
    sos : ndarray, shape (n_sections, 6)
    x : ndarray, shape (channels, n)
    zi : ndarray, shape (n_sections, channels, 2)

    Returns
    -------
    y : ndarray, shape (channels, n)
    zf : ndarray, shape (n_sections, channels, 2)
    """
    if sos.shape[0] == 0:
        return x, zi
    if _sosfilt_kernel is None or x.ndim != 2 or x.dtype != np.float64:
        y, zf = signal.sosfilt(sos, x, axis=-1, zi=zi)
        return np.asarray(y, dtype=np.float64), np.asarray(zf, dtype=np.float64)
    # The loop ``sosfilt`` itself runs, without its per-call validation and axis shuffling
    # (which cost more than filtering a 1 s chunk): it filters ``y`` and ``state`` in place.
    y = np.array(x, dtype=np.float64, order="C")
    state = np.array(zi.transpose(1, 0, 2), dtype=np.float64, order="C")
    _sosfilt_double(np.ascontiguousarray(sos, dtype=np.float64), y, state)
    return y, state.transpose(1, 0, 2)


def exponential_smooth(
    alpha: float, x: FloatArray, zi: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``lfilter([alpha], [1, alpha - 1], row, zi=[zi[k]])`` of each row of ``x`` (rows, n),
    float64, same values.

    The first-order section runs through the ``sosfilt`` loop, which does the same arithmetic
    per sample as ``lfilter`` (its extra terms add exact zeros) without ``lfilter``'s per-call
    overhead, several times the cost of filtering one chunk.

    Returns
    -------
    y : ndarray, shape (rows, n)
    zf : ndarray, shape (rows,)
        Each row's final state (``zi`` is left alone).
    """
    if _sosfilt_kernel is None or x.dtype != np.float64:
        y, zf = signal.lfilter(
            np.array([alpha]), np.array([1.0, alpha - 1.0]), x, axis=-1, zi=zi[:, None]
        )
        return np.asarray(y, dtype=np.float64), np.asarray(zf[:, 0], dtype=np.float64)
    y = np.array(x, dtype=np.float64, order="C")
    state = np.zeros((x.shape[0], 1, 2))
    state[:, 0, 0] = zi
    _sosfilt_double(_exponential_sos(alpha), y, state)
    return y, state[:, 0, 0].copy()


@lru_cache(maxsize=64)
def _exponential_sos(alpha: float) -> FloatArray:
    """The section of :func:`exponential_smooth` (cached: one per stream rate; the kernel
    takes a writable array but never writes it)."""
    return np.array([[alpha, 0.0, 0.0, 1.0, alpha - 1.0, 0.0]])
