"""Input checks of the detector: every bad chunk gets a precise, typed error."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detection.errors import DetectorInputError, DetectorRateError, DetectorTimeError

FloatArray = NDArray[np.float64]

MAX_EMG_UV = 1e7  # 10 V: far beyond any amplifier rail; larger means wrong units
MAX_ACC_G = 1e3


def as_samples(samples: Any, stream: str, columns: int | None, limit: float) -> FloatArray:
    """Samples as a C-contiguous float64 (n, columns) array, or a DetectorInputError."""
    try:
        x = np.asarray(samples, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DetectorInputError(f"{stream} samples are not numeric: {err}") from err
    if x.ndim == 1 and columns is None:
        x = x[:, None]
    if x.ndim != 2:
        want = f"(n, {columns})" if columns else "(n,) or (n, channels)"
        raise DetectorInputError(f"{stream} samples must have shape {want}, got {x.shape}")
    if columns is not None and x.shape[1] != columns:
        raise DetectorInputError(f"{stream} samples must have shape (n, {columns}), got {x.shape}")
    if x.shape[0] == 0:
        raise DetectorInputError(f"{stream} chunk is empty")
    peak = float(np.maximum.reduce(np.abs(x), axis=None))  # NaN or inf anywhere shows here
    if not math.isfinite(peak):
        row = int(np.argwhere(~np.isfinite(x))[0][0])
        raise DetectorInputError(f"{stream} chunk has NaN/inf (first at sample {row})")
    if peak > limit:
        raise DetectorInputError(
            f"{stream} chunk has a sample of magnitude {peak:g}, beyond {limit:g} "
            f"({'µV' if columns is None else 'g'}): wrong units?"
        )
    return np.ascontiguousarray(x)


def check_rate(rate_hz: Any, stream: str, limits: tuple[float, float]) -> float:
    """A finite sample rate within ``limits`` (Hz), or a DetectorRateError."""
    try:
        rate = float(rate_hz)
    except (TypeError, ValueError) as err:
        raise DetectorRateError(f"{stream} rate {rate_hz!r} is not a number") from err
    if not (math.isfinite(rate) and limits[0] <= rate <= limits[1]):
        raise DetectorRateError(
            f"{stream} rate {rate_hz!r} Hz is outside the supported {limits[0]:g}-{limits[1]:g} Hz"
        )
    return rate


def check_time(start_us: Any) -> int:
    """An integer device time in µs, or a DetectorInputError."""
    if isinstance(start_us, bool) or not isinstance(start_us, int | np.integer):
        raise DetectorInputError(f"start_us must be an integer of µs, got {start_us!r}")
    return int(start_us)


def jitter_tolerance_us(rate_hz: float) -> float:
    """How far a chunk's time stamp may miss the end of the previous one and still be
    contiguous, µs (two samples, at least 20 ms)."""
    return max(2e6 / rate_hz, 20_000.0)


def chunk_jump(start_us: int, expected_us: int, rate_hz: float) -> int:
    """+1 for a gap, 0 for contiguous (clock jitter allowed), error when time goes back."""
    tolerance = jitter_tolerance_us(rate_hz)
    delta = start_us - expected_us
    if delta < -tolerance:
        raise DetectorTimeError(
            f"chunk starts at {start_us} µs, {-delta} µs before the end of the previous chunk "
            f"({expected_us} µs): time went backwards"
        )
    return 1 if delta > tolerance else 0
