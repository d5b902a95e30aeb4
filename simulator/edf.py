"""EDF/EDF+ recordings via pyedflib: EMG channels in uV, accelerometer ``ACC X/Y/Z`` in g.

EDF has no time zone; its start time is read and written as UTC.
"""

from __future__ import annotations

import contextlib
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyedflib

from simulator.recording import (
    ACC_AXES,
    Annotation,
    Recording,
    RecordingError,
    check_rate,
    unit_factor,
)

_LENGTH_NOTE: Final = "crampwatch:length_s="
_START_NOTE: Final = "crampwatch:start_us="
_EDF_DIGITAL: Final = 32767


def write_edf(path: str | Path, rec: Recording, *, emg_label: str = "EMG calf") -> None:
    """Write ``rec`` as EDF+ with channels ``EMG calf`` (uV) and ``ACC X/Y/Z`` (g).

    The physical range of each channel is the data's own (rounded up), so the resolution is
    range / 65535 and every sample is within half of it. Annotations become EDF+ annotations; a last partial data record is padded
    and the true length stored in a ``crampwatch:length_s=`` annotation that
    :func:`read_recording` honours.
    """
    n_emg = rec.emg_uv.shape[1]
    signals: list[npt.NDArray[np.float64]] = []
    headers: list[dict[str, str | int | float | None]] = []
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
) -> dict[str, str | int | float | None]:
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


def _digital(
    data: npt.NDArray[np.float64], header: dict[str, str | int | float | None]
) -> npt.NDArray[np.int32]:
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


def read_edf(path: Path, emg_rate: float | None, acc_rate: float | None) -> Recording:
    """Read an EDF/EDF+ file (see :func:`simulator.recording.read_recording`)."""
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
        check_rate(path, "EMG", file_emg_rate, emg_rate)
        emg = np.column_stack(
            [
                reader.readSignal(i) * unit_factor(path, labels[i], _dimension(reader, i), "emg")
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
        columns.append(reader.readSignal(i) * unit_factor(path, labels[i], _dimension(reader, i)))
    if len(rates) != 1 or len({len(c) for c in columns}) != 1:
        raise RecordingError(f"{path}: accelerometer axes have different rates {sorted(rates)}")
    rate = rates.pop()
    check_rate(path, "ACC", rate, acc_rate)
    return np.column_stack(columns), rate


def _dimension(reader: pyedflib.EdfReader, index: int) -> str:
    return str(reader.getPhysicalDimension(index)).strip()
