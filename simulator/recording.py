"""Recorded nights on disk: EDF+ (via pyedflib) and CSV, read into one :class:`Recording`.

Units are converted explicitly from the file's own header: EMG to µV (from µV, uV, mV or V),
accelerometer to g (from g, mg or m/s^2). Nothing is resampled. EDF has no time zone; its start
time is read and written as UTC.
"""

from __future__ import annotations

import contextlib
import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, TextIO

import numpy as np
import numpy.typing as npt
import pyedflib

G_M_PER_S2: Final = 9.80665
EMG_UNITS_TO_UV: Final = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "mv": 1e3, "v": 1e6}
ACC_UNITS_TO_G: Final = {"g": 1.0, "mg": 1e-3, "m/s^2": 1 / G_M_PER_S2, "m/s2": 1 / G_M_PER_S2}
ACC_AXES: Final = ("X", "Y", "Z")
_LENGTH_NOTE: Final = "crampwatch:length_s="
_START_NOTE: Final = "crampwatch:start_us="
_EDF_DIGITAL: Final = 32767


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
        return self.emg_uv.shape[0] / self.emg_rate_hz

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
        return _read_edf(path, emg_rate_hz, acc_rate_hz)
    if suffix in (".csv", ".txt"):
        return _read_csv(path, emg_rate_hz, acc_rate_hz)
    raise RecordingError(f"{path}: unknown recording format {suffix!r} (use .edf or .csv)")


# --------------------------------------------------------------------------------------- EDF


def write_edf(path: str | Path, rec: Recording, *, emg_label: str = "EMG calf") -> None:
    """Write ``rec`` as EDF+ with channels ``EMG calf`` (uV) and ``ACC X/Y/Z`` (g).

    The physical range of each channel is the data's own (rounded up), so the resolution is
    range / 65535 and every sample is within half of it. Annotations become EDF+ annotations; a last partial data record is padded
    and the true length stored in a ``crampwatch:length_s=`` annotation that
    :func:`read_recording` honours.
    """
    n_emg = rec.emg_uv.shape[1]
    signals: list[npt.NDArray[np.float64]] = []
    headers: list[dict[str, object]] = []
    for ch in range(n_emg):
        label = emg_label if n_emg == 1 else f"{emg_label} {ch + 1}"
        signals.append(np.ascontiguousarray(rec.emg_uv[:, ch], dtype=np.float64))
        headers.append(_edf_header(label, "uV", rec.emg_rate_hz, signals[-1]))
    if rec.acc_g is not None and rec.acc_rate_hz is not None:
        for axis, name in enumerate(ACC_AXES):
            signals.append(np.ascontiguousarray(rec.acc_g[:, axis], dtype=np.float64))
            headers.append(_edf_header(f"ACC {name}", "g", rec.acc_rate_hz, signals[-1]))
    try:
        writer = pyedflib.EdfWriter(str(path), len(signals), file_type=pyedflib.FILETYPE_EDFPLUS)
    except OSError as exc:
        raise RecordingError(f"{path}: cannot write EDF+: {exc}") from None
    try:
        writer.setSignalHeaders(headers)
        start = rec.start or datetime(1985, 1, 1, tzinfo=UTC)
        writer.setStartdatetime(start.replace(tzinfo=None, microsecond=0))
        if start.microsecond:
            # EDF+ keeps sub-second starts in a header field pyedflib mis-scales; keep ours.
            writer.writeAnnotation(0, -1, f"{_START_NOTE}{rec.start_us}")
        record_s = writer.record_duration
        whole = rec.duration_s / record_s
        if abs(whole - round(whole)) > 1e-9:
            writer.writeAnnotation(0, -1, f"{_LENGTH_NOTE}{rec.duration_s!r}")
        for note in rec.annotations:
            writer.writeAnnotation(note.onset_s, note.duration_s, note.text[:40])
        writer.writeSamples([_digital(x, h) for x, h in zip(signals, headers, strict=True)], True)
    except (ValueError, OSError, TypeError) as exc:
        raise RecordingError(f"{path}: cannot write EDF+: {exc}") from None
    finally:
        writer.close()


def _edf_header(
    label: str, unit: str, rate_hz: float, data: npt.NDArray[np.float64]
) -> dict[str, object]:
    peak = float(np.max(np.abs(data))) if data.size else 1.0
    if not math.isfinite(peak):
        raise RecordingError(f"channel {label} contains NaN or infinity")
    limit = _edf_limit(peak)
    return {
        "label": label,
        "dimension": unit,
        "sample_frequency": rate_hz,
        "physical_max": limit,
        "physical_min": -limit,
        "digital_max": _EDF_DIGITAL,
        "digital_min": -_EDF_DIGITAL - 1,
        "transducer": "surface electrodes" if unit == "uV" else "accelerometer",
        "prefilter": "",
    }


def _digital(data: npt.NDArray[np.float64], header: dict[str, object]) -> npt.NDArray[np.int32]:
    """Physical -> digital with rounding (pyedflib truncates, which doubles the error)."""
    pmin, pmax = float(header["physical_min"]), float(header["physical_max"])  # type: ignore[arg-type]
    span = _EDF_DIGITAL - (-_EDF_DIGITAL - 1)
    counts = np.round((data - pmin) * (span / (pmax - pmin))) - _EDF_DIGITAL - 1
    return np.clip(counts, -_EDF_DIGITAL - 1, _EDF_DIGITAL).astype(np.int32)


def _edf_limit(peak: float) -> float:
    """A physical range limit >= peak that edflib's 8-character header field keeps exactly.

    edflib truncates the decimal expansion of the limit, so only values exact in binary with
    few digits survive: whole numbers from 10 up, multiples of 1/8 below.
    """
    target = max(peak * 1.001, 1e-3)
    value = float(math.ceil(target)) if target >= 10 else math.ceil(target * 8) / 8
    if value > 9_999_999:
        raise RecordingError(f"peak {peak:g} is too large for an EDF physical range")
    return value


def _read_edf(path: Path, emg_rate: float | None, acc_rate: float | None) -> Recording:
    try:
        reader = pyedflib.EdfReader(str(path))
    except OSError as exc:
        raise RecordingError(f"{path}: not a readable EDF/EDF+ file ({exc})") from None
    try:
        labels = [label.strip() for label in reader.getSignalLabels()]
        emg_idx = [i for i, label in enumerate(labels) if "emg" in label.lower()]
        if not emg_idx:
            raise RecordingError(f"{path}: no EMG channel (channels: {', '.join(labels)})")
        emg_rates = {float(reader.getSampleFrequency(i)) for i in emg_idx}
        if len(emg_rates) != 1:
            raise RecordingError(f"{path}: EMG channels have different rates {sorted(emg_rates)}")
        file_emg_rate = emg_rates.pop()
        _check_rate(path, "EMG", file_emg_rate, emg_rate)
        emg = np.column_stack(
            [
                reader.readSignal(i) * _unit_factor(path, labels[i], _dimension(reader, i), "emg")
                for i in emg_idx
            ]
        )
        acc, file_acc_rate = _read_edf_acc(path, reader, labels, acc_rate)
        start = reader.getStartdatetime().replace(tzinfo=UTC, microsecond=0)
        onsets, durations, texts = reader.readAnnotations()
    except RecordingError:
        raise
    except (OSError, ValueError) as exc:
        raise RecordingError(f"{path}: cannot read EDF data ({exc})") from None
    finally:
        reader.close()
    notes: list[Annotation] = []
    length_s: float | None = None
    for onset, duration, text in zip(onsets, durations, texts, strict=True):
        if text.startswith(_LENGTH_NOTE):
            with contextlib.suppress(ValueError):
                length_s = float(text.removeprefix(_LENGTH_NOTE))
            continue
        if text.startswith(_START_NOTE):
            with contextlib.suppress(ValueError, OverflowError):
                start_us = int(text.removeprefix(_START_NOTE))
                start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=start_us)
            continue
        notes.append(Annotation(float(onset), max(float(duration), 0.0), str(text)))
    if length_s is not None:
        emg = emg[: round(length_s * file_emg_rate)]
        if acc is not None and file_acc_rate is not None:
            acc = acc[: round(length_s * file_acc_rate)]
    return Recording(emg, file_emg_rate, acc, file_acc_rate, start, tuple(notes))


def _read_edf_acc(
    path: Path, reader: pyedflib.EdfReader, labels: list[str], acc_rate: float | None
) -> tuple[npt.NDArray[np.float64] | None, float | None]:
    columns: list[npt.NDArray[np.float64]] = []
    rates: set[float] = set()
    for axis in ACC_AXES:
        pattern = re.compile(rf"^(acc|accel\w*)[\s_.-]*{axis}$", re.IGNORECASE)
        found = [i for i, label in enumerate(labels) if pattern.match(label)]
        if not found:
            return None, None
        i = found[0]
        rates.add(float(reader.getSampleFrequency(i)))
        columns.append(reader.readSignal(i) * _unit_factor(path, labels[i], _dimension(reader, i)))
    if len(rates) != 1 or len({len(c) for c in columns}) != 1:
        raise RecordingError(f"{path}: accelerometer axes have different rates {sorted(rates)}")
    rate = rates.pop()
    _check_rate(path, "ACC", rate, acc_rate)
    return np.column_stack(columns), rate


def _dimension(reader: pyedflib.EdfReader, index: int) -> str:
    return str(reader.getPhysicalDimension(index)).strip()


def _check_rate(path: Path, what: str, in_file: float, asked: float | None) -> None:
    if asked is not None and abs(asked - in_file) > 1e-6 * in_file:
        raise RecordingError(
            f"{path}: {what} rate in the file is {in_file:g} Hz but {asked:g} Hz was given"
        )


def _unit_factor(path: Path, column: str, unit: str, kind: str = "acc") -> float:
    key = unit.strip().lower().replace("²", "^2").replace(" ", "")
    table = EMG_UNITS_TO_UV if kind == "emg" else ACC_UNITS_TO_G
    if key not in table:
        allowed = "µV, uV, mV, V" if kind == "emg" else "g, mg, m/s^2"
        raise RecordingError(f"{path}: column {column!r} has unit {unit!r}; expected {allowed}")
    return table[key]


# --------------------------------------------------------------------------------------- CSV


def write_csv(path: str | Path, rec: Recording) -> None:
    """Write ``rec`` as CSV: ``time_s``, ``emg_uv`` (or ``emg<k>_uv``), ``acc_x_g``...

    One row per EMG sample; accelerometer cells are filled only on rows where an accelerometer
    sample falls, so the EMG rate must be a whole multiple of the ACC rate. The start time goes
    in a leading ``# start=<ISO 8601>`` comment line.
    """
    n, n_emg = rec.emg_uv.shape
    ratio = 0
    if rec.acc_g is not None and rec.acc_rate_hz is not None:
        ratio = round(rec.emg_rate_hz / rec.acc_rate_hz)
        if abs(ratio * rec.acc_rate_hz - rec.emg_rate_hz) > 1e-9:
            raise RecordingError(
                f"CSV needs the EMG rate ({rec.emg_rate_hz:g} Hz) to be a whole multiple of "
                f"the ACC rate ({rec.acc_rate_hz:g} Hz)"
            )
    emg_names = ["emg_uv"] if n_emg == 1 else [f"emg{k + 1}_uv" for k in range(n_emg)]
    acc_names = ["acc_x_g", "acc_y_g", "acc_z_g"] if ratio else []
    decimals = max(3, math.ceil(math.log10(rec.emg_rate_hz)) + 2)
    try:
        with Path(path).open("w", newline="", encoding="utf-8") as out:
            if rec.start is not None:
                out.write(f"# start={rec.start.isoformat()}\n")
            out.write(",".join(["time_s", *emg_names, *acc_names]) + "\n")
            block = 100_000
            for first in range(0, n, block):
                rows = np.arange(first, min(n, first + block))
                out.writelines(_csv_lines(rec, rows, ratio, decimals))
    except OSError as exc:
        raise RecordingError(f"{path}: cannot write CSV: {exc.strerror or exc}") from None


def _csv_lines(rec: Recording, rows: npt.NDArray[np.int64], ratio: int, decimals: int) -> list[str]:
    times = rows / rec.emg_rate_hz
    emg = rec.emg_uv[rows]
    lines = []
    for k, row in enumerate(rows):
        cells = [f"{times[k]:.{decimals}f}", *(f"{v:.4f}" for v in emg[k])]
        if ratio:
            acc_row = row // ratio
            if row % ratio == 0 and rec.acc_g is not None and acc_row < rec.acc_g.shape[0]:
                cells.extend(f"{v:.5f}" for v in rec.acc_g[acc_row])
            else:
                cells.extend(("", "", ""))
        lines.append(",".join(cells) + "\n")
    return lines


_UNIT_IN_NAME: Final = re.compile(r"^(?P<name>.*?)\s*[\[(](?P<unit>[^\])]+)[\])]\s*$")
_SUFFIX_UNITS: Final = {
    "_uv": "uV",
    "_mv": "mV",
    "_v": "V",
    "_g": "g",
    "_mg": "mg",
    "_ms2": "m/s^2",
    "_s": "s",
}


def _split_unit(column: str) -> tuple[str, str]:
    """('emg calf', 'uV') from 'EMG calf [uV]', 'EMG calf (uV)' or 'emg_calf_uv'."""
    match = _UNIT_IN_NAME.match(column)
    if match:
        return match["name"].strip().lower(), match["unit"].strip()
    lower = column.strip().lower()
    for suffix, unit in sorted(_SUFFIX_UNITS.items(), key=lambda kv: -len(kv[0])):
        if lower.endswith(suffix):
            return lower[: -len(suffix)], unit
    return lower, ""


def _read_csv(path: Path, emg_rate: float | None, acc_rate: float | None) -> Recording:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            start: datetime | None = None
            header: list[str] | None = None
            for line in handle:
                if line.startswith("#"):
                    if line[1:].strip().startswith("start="):
                        start = _parse_start(path, line[1:].strip().removeprefix("start="))
                    continue
                if line.strip():
                    header = next(csv.reader([line]))
                    break
            if header is None:
                raise RecordingError(f"{path}: CSV has no header row")
            table = _csv_table(path, handle, len(header))
    except UnicodeDecodeError:
        raise RecordingError(f"{path}: CSV is not UTF-8 text") from None
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read CSV: {exc.strerror or exc}") from None
    columns = [_split_unit(c) for c in header]
    time_col = next(
        (i for i, (name, _) in enumerate(columns) if "time" in name or name in ("t", "ts")), None
    )
    emg_cols = [i for i, (name, _) in enumerate(columns) if "emg" in name]
    if not emg_cols:
        raise RecordingError(f"{path}: no EMG column (header: {', '.join(header)})")
    acc_cols = []
    for axis in ("x", "y", "z"):
        pattern = re.compile(rf"^(acc|accel\w*)[\s_.-]*{axis}$")
        found = [i for i, (name, _) in enumerate(columns) if pattern.match(name)]
        acc_cols.append(found[0] if found else None)
    emg_factor = [_unit_factor(path, header[i], columns[i][1] or "uV", "emg") for i in emg_cols]
    emg_rows = ~np.isnan(table[:, emg_cols[0]])
    emg = table[emg_rows][:, emg_cols] * np.array(emg_factor)
    if np.isnan(emg).any():
        raise RecordingError(f"{path}: EMG columns have empty or non-numeric cells")
    times = table[emg_rows, time_col] if time_col is not None else None
    if times is not None and start is None and times.size and times[0] > 1e8:
        start = datetime.fromtimestamp(float(times[0]), tz=UTC)
    file_emg_rate = _csv_rate(path, "EMG", times, emg_rate)
    acc: npt.NDArray[np.float64] | None = None
    file_acc_rate: float | None = None
    if all(c is not None for c in acc_cols):
        idx = [c for c in acc_cols if c is not None]
        acc_rows = ~np.isnan(table[:, idx[0]])
        factors = np.array([_unit_factor(path, header[i], columns[i][1] or "g") for i in idx])
        acc = table[acc_rows][:, idx] * factors
        if np.isnan(acc).any():
            raise RecordingError(f"{path}: accelerometer rows have empty cells")
        acc_times = table[acc_rows, time_col] if time_col is not None else None
        file_acc_rate = _csv_rate(path, "ACC", acc_times, acc_rate)
    return Recording(emg, file_emg_rate, acc, file_acc_rate, start, ())


def _csv_table(path: Path, handle: TextIO, width: int) -> npt.NDArray[np.float64]:
    def cell(text: str) -> float:
        return float(text) if text.strip() else math.nan

    try:
        table = np.loadtxt(
            handle,
            delimiter=",",
            ndmin=2,
            converters=cell,
            dtype=np.float64,
            comments="#",
        )
    except ValueError as exc:
        raise RecordingError(f"{path}: CSV has a non-numeric or ragged row ({exc})") from None
    if table.shape[0] == 0:
        raise RecordingError(f"{path}: CSV has no data rows")
    if table.shape[1] != width:
        raise RecordingError(f"{path}: rows have {table.shape[1]} cells, header has {width}")
    return table


def _csv_rate(
    path: Path, what: str, times: npt.NDArray[np.float64] | None, asked: float | None
) -> float:
    if times is None or times.size < 2:
        if asked is None:
            raise RecordingError(f"{path}: no time column; give the {what} rate explicitly")
        return float(asked)
    steps = np.diff(times)
    if np.any(steps <= 0):
        raise RecordingError(f"{path}: {what} time column is not strictly increasing")
    inferred = (times.size - 1) / float(times[-1] - times[0])
    period = 1.0 / inferred
    if np.max(np.abs(steps - period)) > 0.25 * period:
        raise RecordingError(
            f"{path}: {what} samples are irregular (steps {steps.min():g}-{steps.max():g} s)"
        )
    if asked is not None:
        if abs(asked - inferred) > 0.01 * asked:
            raise RecordingError(
                f"{path}: {what} time column implies {inferred:.3f} Hz but {asked:g} Hz was given"
            )
        return float(asked)
    return _round_rate(inferred)


def _round_rate(rate_hz: float) -> float:
    """Snap an inferred rate to the nearest millihertz (the wire format's resolution)."""
    for step in (1.0, 0.5, 0.1, 0.001):
        snapped = round(rate_hz / step) * step
        if abs(snapped - rate_hz) <= 1e-4 * rate_hz:
            return float(round(snapped, 3))
    return float(round(rate_hz, 3))


def _parse_start(path: Path, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RecordingError(f"{path}: start {text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise RecordingError(f"{path}: start {text!r} has no time zone")
    return value.astimezone(UTC)


def annotations_sorted(notes: Sequence[Annotation]) -> tuple[Annotation, ...]:
    """Annotations in onset order (stable)."""
    return tuple(sorted(notes, key=lambda a: a.onset_s))
