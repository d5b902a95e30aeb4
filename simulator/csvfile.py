"""CSV recordings: a header row, a time column in seconds and EMG / accelerometer columns.

Units come from the header (``name [unit]``, ``name (unit)`` or a ``_uv``/``_g`` suffix) and
rates from the time column unless given.
"""

from __future__ import annotations

import csv
import math
import re
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TextIO

import numpy as np
import numpy.typing as npt

from simulator.recording import Recording, RecordingError, unit_factor


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
    n_emg = rec.emg_uv.shape[1]
    plain = ",".join([f"%.{decimals}f"] + ["%.4f"] * n_emg)
    values = np.column_stack([rows / rec.emg_rate_hz, rec.emg_uv[rows]]).tolist()
    if not ratio or rec.acc_g is None:
        return [plain % tuple(v) + "\n" for v in values]
    with_acc = plain + ",%.5f,%.5f,%.5f\n"
    acc = rec.acc_g
    lines = []
    for row, v in zip(rows.tolist(), values, strict=True):
        acc_row = row // ratio
        if row % ratio == 0 and acc_row < acc.shape[0]:
            lines.append(with_acc % (*v, *acc[acc_row].tolist()))
        else:
            lines.append(plain % tuple(v) + ",,,\n")
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


def read_csv(path: Path, emg_rate: float | None, acc_rate: float | None) -> Recording:
    """Read a CSV night (see :func:`simulator.recording.read_recording`)."""
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
    emg_factor = [unit_factor(path, header[i], columns[i][1] or "uV", "emg") for i in emg_cols]
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
        factors = np.array([unit_factor(path, header[i], columns[i][1] or "g") for i in idx])
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
        with warnings.catch_warnings():
            # an empty table is reported below as a RecordingError, not as numpy's warning
            warnings.filterwarnings("ignore", "loadtxt: input contained no data", UserWarning)
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
