"""Recorded nights on disk: EDF+ (:mod:`simulator.edf`) and CSV (:mod:`simulator.csvfile`),
read into one :class:`Recording`.

Units are converted explicitly from the file's own header: EMG to µV (from µV, uV, mV or V),
accelerometer to g (from g, mg or m/s^2). Nothing is resampled. EDF has no time zone; its start
time is read and written as UTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

G_M_PER_S2: Final = 9.80665
EMG_UNITS_TO_UV: Final = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "mv": 1e3, "v": 1e6}
ACC_UNITS_TO_G: Final = {"g": 1.0, "mg": 1e-3, "m/s^2": 1 / G_M_PER_S2, "m/s2": 1 / G_M_PER_S2}
ACC_AXES: Final = ("X", "Y", "Z")


class RecordingError(ValueError):
    """A recording file that cannot be read or written as asked; the message says why."""


@dataclass(frozen=True)
class Annotation:
    """A time-stamped note in a recording (an EDF+ annotation).

    Attributes
    ----------
    onset_s : float
        Seconds from the first sample.
    duration_s : float
        Seconds (0 for an instant).
    text : str
    """

    onset_s: float
    duration_s: float
    text: str


@dataclass(frozen=True, eq=False)
class Recording:
    """One night of calf EMG and (optionally) 3-axis accelerometer samples.

    Attributes
    ----------
    emg_uv : ndarray, shape (n, channels)
        Surface EMG in µV (float64; the simulator may hand out float32 to save memory).
    emg_rate_hz : float
    acc_g : ndarray, shape (m, 3) or None
        Accelerometer in g, axes X, Y, Z of the sensor.
    acc_rate_hz : float or None
    start : datetime or None
        Time of the first sample, timezone-aware UTC.
    annotations : tuple of Annotation
    """

    emg_uv: npt.NDArray[np.floating]
    emg_rate_hz: float
    acc_g: npt.NDArray[np.floating] | None = None
    acc_rate_hz: float | None = None
    start: datetime | None = None
    annotations: tuple[Annotation, ...] = ()

    def __post_init__(self) -> None:
        if self.emg_uv.ndim != 2 or self.emg_uv.shape[1] < 1:
            raise RecordingError(f"emg_uv must have shape (n, channels), got {self.emg_uv.shape}")
        if not (math.isfinite(self.emg_rate_hz) and self.emg_rate_hz > 0):
            raise RecordingError(f"EMG rate must be positive, got {self.emg_rate_hz}")
        if (self.acc_g is None) != (self.acc_rate_hz is None):
            raise RecordingError("acc_g and acc_rate_hz must be given together")
        if self.acc_g is not None and (self.acc_g.ndim != 2 or self.acc_g.shape[1] != 3):
            raise RecordingError(f"acc_g must have shape (m, 3), got {self.acc_g.shape}")
        if self.acc_rate_hz is not None and not (
            math.isfinite(self.acc_rate_hz) and self.acc_rate_hz > 0
        ):
            raise RecordingError(f"ACC rate must be positive, got {self.acc_rate_hz}")
        if self.start is not None and self.start.utcoffset() != timedelta(0):
            raise RecordingError("start must be a timezone-aware UTC datetime")

    @property
    def duration_s(self) -> float:
        """Length of the EMG in seconds."""
        return float(self.emg_uv.shape[0] / self.emg_rate_hz)

    @property
    def start_us(self) -> int:
        """Start as µs since the Unix epoch (0 when unknown)."""
        if self.start is None:
            return 0
        return (self.start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def read_recording(
    path: str | Path, *, emg_rate_hz: float | None = None, acc_rate_hz: float | None = None
) -> Recording:
    """Read an EDF/EDF+ (``.edf``) or CSV (``.csv``) night.

    Parameters
    ----------
    path : path
    emg_rate_hz, acc_rate_hz : float, optional
        Sample rates in Hz. EDF files carry their own (a differing value is an error); for CSV
        they replace inference from the time column.

    Raises
    ------
    RecordingError
        Unreadable file, no EMG channel, unknown units, inconsistent or irregular rates.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".edf", ".bdf"):
        from simulator import edf  # the format modules import this module's types

        return edf.read_edf(path, emg_rate_hz, acc_rate_hz)
    if suffix in (".csv", ".txt"):
        from simulator import csvfile

        return csvfile.read_csv(path, emg_rate_hz, acc_rate_hz)
    raise RecordingError(f"{path}: unknown recording format {suffix!r} (use .edf or .csv)")


def write_edf(path: str | Path, rec: Recording, *, emg_label: str = "EMG calf") -> None:
    """Write ``rec`` as EDF+ (see :func:`simulator.edf.write_edf`)."""
    from simulator import edf

    edf.write_edf(path, rec, emg_label=emg_label)


def write_csv(path: str | Path, rec: Recording) -> None:
    """Write ``rec`` as CSV (see :func:`simulator.csvfile.write_csv`)."""
    from simulator import csvfile

    csvfile.write_csv(path, rec)


def check_rate(path: Path, what: str, in_file: float, asked: float | None) -> None:
    """Raise :class:`RecordingError` when a rate given by the caller disagrees with the file."""
    if asked is not None and abs(asked - in_file) > 1e-6 * in_file:
        raise RecordingError(
            f"{path}: {what} rate in the file is {in_file:g} Hz but {asked:g} Hz was given"
        )


def unit_factor(path: Path, column: str, unit: str, kind: str = "acc") -> float:
    """Factor from the header's ``unit`` to µV (``kind="emg"``) or g; RecordingError if unknown."""
    key = unit.strip().lower().replace("²", "^2").replace(" ", "")
    table = EMG_UNITS_TO_UV if kind == "emg" else ACC_UNITS_TO_G
    if key not in table:
        allowed = "µV, uV, mV, V" if kind == "emg" else "g, mg, m/s^2"
        raise RecordingError(f"{path}: column {column!r} has unit {unit!r}; expected {allowed}")
    return table[key]
