"""Every bad input gets its own DetectorError subclass and a precise message."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from detection import (
    DetectorConfig,
    DetectorError,
    DetectorInputError,
    DetectorRateError,
    DetectorStateError,
    DetectorTimeError,
    StreamDetector,
    detect_recording,
)

EMG = np.ones((100, 1))
ACC = np.zeros((10, 3))


def _detector() -> StreamDetector:
    return StreamDetector("d")


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.zeros((0, 1)), "empty"),
        (np.zeros(0), "empty"),
        (np.zeros((10, 2, 2)), r"shape \(n,\) or \(n, channels\)"),
        (np.zeros((10, 9)), "1-8 channels"),
        (np.array([[1.0], [np.nan]]), "NaN/inf \\(first at sample 1\\)"),
        (np.array([[1.0], [np.inf]]), "NaN/inf"),
        ([["a"], ["b"]], "not numeric"),
        (np.array([[1.0], [3e7]]), "magnitude 3e\\+07, beyond 1e\\+07 \\(µV\\): wrong units"),
    ],
)
def test_bad_emg_chunks_are_refused(samples: object, message: str) -> None:
    with pytest.raises(DetectorInputError, match=message):
        _detector().push_emg(samples, 0, 1000.0)


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.zeros((10, 2)), r"shape \(n, 3\)"),
        (np.zeros(30), r"shape \(n, 3\)"),
        (np.zeros((0, 3)), "empty"),
        (np.full((4, 3), -np.inf), "NaN/inf"),
        (np.full((4, 3), 9810.0), "wrong units"),
    ],
)
def test_bad_acc_chunks_are_refused(samples: np.ndarray, message: str) -> None:
    with pytest.raises(DetectorInputError, match=message):
        _detector().push_acc(samples, 0, 50.0)


@pytest.mark.parametrize("rate", [499.0, 4001.0, float("nan"), float("inf"), 0.0, "fast"])
def test_unsupported_emg_rates_are_refused(rate: object) -> None:
    with pytest.raises(DetectorRateError, match="EMG rate"):
        _detector().push_emg(EMG, 0, rate)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [12.4, 200.5, -50.0])
def test_unsupported_acc_rates_are_refused(rate: float) -> None:
    with pytest.raises(DetectorRateError, match="ACC rate"):
        _detector().push_acc(ACC, 0, rate)


def test_rate_changes_mid_stream_are_refused() -> None:
    detector = _detector()
    detector.push_emg(EMG, 0, 1000.0)
    detector.push_acc(ACC, 0, 50.0)
    with pytest.raises(DetectorRateError, match="changed from 1000 Hz to 2000 Hz"):
        detector.push_emg(EMG, 100_000, 2000.0)
    with pytest.raises(DetectorRateError, match="changed from 50 Hz to 25 Hz"):
        detector.push_acc(ACC, 200_000, 25.0)


def test_channel_count_changes_are_refused() -> None:
    detector = _detector()
    detector.push_emg(EMG, 0, 1000.0)
    with pytest.raises(DetectorInputError, match="channel count changed from 1 to 2"):
        detector.push_emg(np.ones((100, 2)), 100_000, 1000.0)


def test_time_going_backwards_is_refused_for_both_streams() -> None:
    detector = _detector()
    detector.push_emg(EMG, 1_000_000, 1000.0)  # ends at 1.1 s
    with pytest.raises(DetectorTimeError, match="time went backwards"):
        detector.push_emg(EMG, 1_050_000, 1000.0)
    detector.push_acc(ACC, 1_000_000, 50.0)  # ends at 1.2 s
    with pytest.raises(DetectorTimeError, match="before the end of the previous chunk"):
        detector.push_acc(ACC, 1_000_000, 50.0)


def test_jitter_within_tolerance_is_accepted() -> None:
    detector = _detector()
    detector.push_emg(EMG, 1_000_000, 1000.0)
    detector.push_emg(EMG, 1_100_000 - 19_000, 1000.0)  # 19 ms early: within 20 ms


@pytest.mark.parametrize("start", [1.5, "0", None, True])
def test_start_time_must_be_integer_microseconds(start: object) -> None:
    with pytest.raises(DetectorInputError, match="start_us must be an integer"):
        _detector().push_emg(EMG, start, 1000.0)  # type: ignore[arg-type]


def test_a_finished_detector_takes_no_more_data() -> None:
    detector = _detector()
    detector.push_emg(EMG, 0, 1000.0)
    detector.finish()
    with pytest.raises(DetectorStateError, match="finished"):
        detector.push_emg(EMG, 100_000, 1000.0)
    with pytest.raises(DetectorStateError, match="finished"):
        detector.finish()


def test_finish_before_the_decided_time_is_refused() -> None:
    detector = _detector()
    detector.push_emg(np.ones((20_000, 1)), 0, 1000.0)
    with pytest.raises(DetectorTimeError, match="before the last decided time"):
        detector.finish(end_us=1_000_000)


@pytest.mark.parametrize(
    "data", [b"not a snapshot", pickle.dumps((99, "state")), pickle.dumps((1, {"a": 1}))]
)
def test_restore_refuses_foreign_bytes(data: bytes) -> None:
    with pytest.raises(DetectorStateError):
        StreamDetector.restore(data)


def test_bad_constructor_arguments_are_refused() -> None:
    with pytest.raises(DetectorError, match="mains_hz"):
        StreamDetector("d", mains_hz="55")
    with pytest.raises(DetectorInputError, match="mvc_uv"):
        StreamDetector("d", mvc_uv=-3.0)
    with pytest.raises(DetectorError, match="off_ratio must not exceed on_ratio"):
        DetectorConfig(on_ratio=2.0, off_ratio=3.0)
    with pytest.raises(DetectorError, match="confirm_s must be > 0"):
        DetectorConfig(confirm_s=0.0)


def test_detect_recording_needs_acc_and_its_rate_together() -> None:
    with pytest.raises(DetectorInputError, match="together"):
        detect_recording(np.ones(1000), 1000.0, acc_g=ACC)
    with pytest.raises(DetectorInputError, match="empty"):
        detect_recording(np.ones(0), 1000.0)
    with pytest.raises(DetectorRateError):
        detect_recording(np.ones(1000), 100.0)


def test_errors_are_value_errors() -> None:
    for cls in (DetectorInputError, DetectorRateError, DetectorTimeError, DetectorStateError):
        assert issubclass(cls, DetectorError) and issubclass(cls, ValueError)


def test_a_refused_chunk_leaves_the_detector_unchanged() -> None:
    rng = np.random.default_rng(3)
    x = 3.0 * rng.standard_normal((30_000, 1)) + 100.0
    x[12_000:22_000] *= 30.0  # a burst, so there is something to detect
    clean = StreamDetector("d")
    disturbed = StreamDetector("d")
    events_clean: list[object] = []
    events_disturbed: list[object] = []
    for second in range(30):
        chunk = x[second * 1000 : (second + 1) * 1000]
        start = second * 1_000_000
        events_clean += clean.push_emg(chunk, start, 1000.0)
        if second:
            bad_calls = [
                (np.full((10, 1), np.nan), start, 1000.0),  # NaN
                (chunk, start - 500_000, 1000.0),  # time went backwards
                (chunk, start, 2000.0),  # rate change
            ]
            for samples, bad_start, rate in bad_calls:
                with pytest.raises(DetectorError):
                    disturbed.push_emg(samples, bad_start, rate)
        events_disturbed += disturbed.push_emg(chunk, start, 1000.0)
    assert events_clean
    assert events_disturbed == events_clean
    assert clean.finish() == disturbed.finish()
