"""EDF+ and CSV recordings: round trips, unit conversion and clear errors for bad files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyedflib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.labels import annotations_to_labels
from simulator.night import simulate_night
from simulator.recording import (
    Annotation,
    Recording,
    RecordingError,
    read_recording,
    write_csv,
    write_edf,
)


@pytest.fixture(scope="module")
def sim_night():
    return simulate_night(np.random.default_rng(8), "faulty-sensor", duration_s=300.0)


def edf_half_steps(path: Path) -> list[float]:
    """Half a digital step per channel, from the file's header: the most a sample may move."""
    reader = pyedflib.EdfReader(str(path))
    try:
        return [
            (reader.getPhysicalMaximum(i) - reader.getPhysicalMinimum(i))
            / (reader.getDigitalMaximum(i) - reader.getDigitalMinimum(i))
            / 2.0
            * 1.0001
            for i in range(reader.signals_in_file)
        ]
    finally:
        reader.close()


def test_edf_round_trip_keeps_samples_within_resolution_and_the_labels(
    tmp_path: Path, sim_night
) -> None:
    rec, labels = sim_night.recording, sim_night.labels
    path = tmp_path / "night.edf"
    write_edf(path, rec)
    back = read_recording(path)
    assert back.emg_rate_hz == rec.emg_rate_hz
    assert back.acc_rate_hz == rec.acc_rate_hz
    assert back.start == rec.start
    assert back.emg_uv.shape == rec.emg_uv.shape
    half_steps = edf_half_steps(path)
    assert half_steps[0] < 0.05  # µV: far finer than the resting EMG
    assert np.max(np.abs(back.emg_uv - rec.emg_uv)) <= half_steps[0]
    assert rec.acc_g is not None and back.acc_g is not None
    assert back.acc_g.shape == rec.acc_g.shape
    for axis in range(3):
        error = np.max(np.abs(back.acc_g[:, axis] - rec.acc_g[:, axis]))
        assert error <= half_steps[1 + axis]
    events, faults = annotations_to_labels(back.annotations)
    assert len(events) == len(labels.events) > 0
    for got, want in zip(events, labels.events, strict=True):
        assert got.type == want.type
        assert got.onset_s == pytest.approx(want.onset_s, abs=1e-4)
        assert got.offset_s == pytest.approx(want.offset_s, abs=2e-4)
        assert got.intensity == pytest.approx(want.intensity, abs=1e-3)
    signal_faults = [f for f in labels.faults if not f.is_frame_fault]
    assert [f.type for f in faults] == [f.type for f in signal_faults]


def test_edf_keeps_sub_second_start_and_odd_lengths(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    start = datetime(2026, 3, 28, 23, 59, 59, 250_000, tzinfo=UTC)
    rec = Recording(rng.normal(0, 40, (10_500, 1)), 1000.0, rng.normal(0, 1, (131, 3)), 12.5, start)
    path = tmp_path / "odd.edf"
    write_edf(path, rec)
    back = read_recording(path)
    assert back.start == start
    assert back.emg_uv.shape == (10_500, 1)
    assert back.acc_g is not None and back.acc_g.shape == (131, 3)
    assert back.annotations == ()


def test_edf_reads_other_labels_and_units(tmp_path: Path) -> None:
    """A foreign EDF: EMG in mV labelled 'EMG gastroc', ACC in m/s^2 as 'Accel X'."""
    rate = 512
    emg_mv = np.sin(np.arange(rate * 4) / 7.0) * 0.5
    acc_ms2 = np.full(64 * 4, 9.80665)
    path = tmp_path / "foreign.edf"
    writer = pyedflib.EdfWriter(str(path), 4, file_type=pyedflib.FILETYPE_EDFPLUS)
    headers = [
        {"label": "EMG gastroc", "dimension": "mV", "sample_frequency": rate,
         "physical_max": 1.0, "physical_min": -1.0, "digital_max": 32767,
         "digital_min": -32768, "transducer": "", "prefilter": ""},
    ] + [
        {"label": f"Accel {axis}", "dimension": "m/s^2", "sample_frequency": 64,
         "physical_max": 20.0, "physical_min": -20.0, "digital_max": 32767,
         "digital_min": -32768, "transducer": "", "prefilter": ""}
        for axis in "XYZ"
    ]  # fmt: skip
    writer.setSignalHeaders(headers)
    writer.writeSamples([emg_mv, acc_ms2, acc_ms2, acc_ms2])
    writer.close()
    back = read_recording(path)
    assert back.emg_rate_hz == rate
    np.testing.assert_allclose(back.emg_uv[:, 0], emg_mv * 1000.0, atol=0.05)
    assert back.acc_g is not None
    np.testing.assert_allclose(back.acc_g, 1.0, atol=1e-3)


def test_edf_without_emg_channel_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ecg.edf"
    writer = pyedflib.EdfWriter(str(path), 1, file_type=pyedflib.FILETYPE_EDFPLUS)
    writer.setSignalHeaders(
        [
            {"label": "ECG", "dimension": "uV", "sample_frequency": 256, "physical_max": 100.0,
             "physical_min": -100.0, "digital_max": 32767, "digital_min": -32768,
             "transducer": "", "prefilter": ""}
        ]
    )  # fmt: skip
    writer.writeSamples([np.zeros(512)])
    writer.close()
    with pytest.raises(RecordingError, match="no EMG channel"):
        read_recording(path)


def test_edf_rate_that_disagrees_with_the_file_is_refused(tmp_path: Path, sim_night) -> None:
    path = tmp_path / "night.edf"
    write_edf(path, sim_night.recording)
    with pytest.raises(RecordingError, match="1000 Hz but 2000 Hz"):
        read_recording(path, emg_rate_hz=2000.0)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("junk.edf", b"this is not an EDF file at all" * 20, "not a readable EDF"),
        ("empty.csv", b"", "no header"),
        ("noemg.csv", b"time_s,ecg_uv\n0,1\n0.001,2\n", "no EMG column"),
        ("ragged.csv", b"time_s,emg_uv\n0,1\n0.001\n", "ragged|non-numeric|cells"),
        ("text.csv", b"time_s,emg_uv\n0,abc\n0.001,2\n", "non-numeric"),
        ("units.csv", b"time_s,EMG [furlongs]\n0,1\n0.001,2\n", "unit 'furlongs'"),
        ("irregular.csv", b"time_s,emg_uv\n0,1\n0.001,2\n0.005,3\n0.006,1\n", "irregular"),
        ("backwards.csv", b"time_s,emg_uv\n0,1\n0.002,2\n0.001,3\n", "increasing"),
        ("night.wav", b"RIFF", "unknown recording format"),
    ],
)
def test_bad_files_raise_recording_error(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=message):
        read_recording(path)


def test_missing_file_is_a_recording_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no such file"):
        read_recording(tmp_path / "nowhere.edf")


def test_csv_round_trip_infers_rates_and_start(tmp_path: Path, sim_night) -> None:
    rec = sim_night.recording
    short = Recording(rec.emg_uv[:20_000], 1000.0, rec.acc_g[:1000], 50.0, rec.start)
    path = tmp_path / "night.csv"
    write_csv(path, short)
    back = read_recording(path)
    assert back.emg_rate_hz == 1000.0
    assert back.acc_rate_hz == 50.0
    assert back.start == rec.start
    np.testing.assert_allclose(back.emg_uv, short.emg_uv, atol=5e-5)
    assert back.acc_g is not None
    np.testing.assert_allclose(back.acc_g, short.acc_g, atol=5e-6)


def test_csv_converts_units_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "foreign.csv"
    rows = ["t (s),EMG calf (mV),Acc X [m/s^2],Acc Y [m/s^2],Acc Z [m/s^2]"]
    rows += [f"{k / 500:.3f},{0.001 * k:.3f},0,0,9.80665" for k in range(1000)]
    path.write_text("\n".join(rows) + "\n")
    back = read_recording(path)
    assert back.emg_rate_hz == 500.0
    np.testing.assert_allclose(back.emg_uv[:, 0], np.arange(1000) * 1.0, atol=1e-9)
    assert back.acc_g is not None
    np.testing.assert_allclose(back.acc_g[:, 2], 1.0)


def test_csv_without_time_needs_a_rate(tmp_path: Path) -> None:
    path = tmp_path / "notime.csv"
    path.write_text("emg_uv\n1\n2\n3\n")
    with pytest.raises(RecordingError, match="give the EMG rate"):
        read_recording(path)
    assert read_recording(path, emg_rate_hz=800.0).emg_rate_hz == 800.0


def test_csv_rate_option_must_agree_with_the_time_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("time_s,emg_uv\n" + "".join(f"{k / 1000},{k}\n" for k in range(50)))
    with pytest.raises(RecordingError, match=r"implies 1000\.000 Hz but 2000 Hz"):
        read_recording(path, emg_rate_hz=2000.0)


def test_recording_refuses_inconsistent_fields() -> None:
    with pytest.raises(RecordingError, match="given together"):
        Recording(np.zeros((10, 1)), 1000.0, np.zeros((5, 3)), None)
    with pytest.raises(RecordingError, match="UTC"):
        Recording(np.zeros((10, 1)), 1000.0, start=datetime(2026, 1, 1))
    with pytest.raises(RecordingError, match="shape"):
        Recording(np.zeros(10), 1000.0)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n_seconds=st.integers(1, 4),
    emg_rate_hz=st.sampled_from([500.0, 1000.0, 2000.0]),
    acc_rate_hz=st.sampled_from([12.5, 25.0, 50.0, 100.0]),
    seed=st.integers(0, 1000),
    scale=st.floats(1.0, 5000.0),
)
def test_csv_and_edf_round_trips_for_any_rates(
    tmp_path: Path,
    n_seconds: int,
    emg_rate_hz: float,
    acc_rate_hz: float,
    seed: int,
    scale: float,
) -> None:
    rng = np.random.default_rng(seed)
    n_emg = int(n_seconds * 2 * emg_rate_hz)
    n_acc = int(n_seconds * 2 * acc_rate_hz)
    rec = Recording(
        rng.normal(0.0, scale, (n_emg, 1)),
        emg_rate_hz,
        rng.normal(0.0, 1.0, (n_acc, 3)),
        acc_rate_hz,
        datetime(2026, 1, 1, tzinfo=UTC),
        (Annotation(0.5, 1.0, "cramp i=0.500"),),
    )
    csv_path, edf_path = tmp_path / f"r{seed}.csv", tmp_path / f"r{seed}.edf"
    write_csv(csv_path, rec)
    write_edf(edf_path, rec)
    for back, tolerance in (
        (read_recording(csv_path), 5e-5),
        (read_recording(edf_path), edf_half_steps(edf_path)[0]),
    ):
        assert back.emg_rate_hz == emg_rate_hz
        assert back.acc_rate_hz == acc_rate_hz
        assert back.emg_uv.shape == rec.emg_uv.shape
        assert np.max(np.abs(back.emg_uv - rec.emg_uv)) <= tolerance
        assert back.acc_g is not None and back.acc_g.shape == (n_acc, 3)
