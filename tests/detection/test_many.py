"""Many devices' EMG and ACC chunks through one stacked front end give what each device's own
pushes give: the same events, series and state, to the bit, whatever mix of devices."""

from __future__ import annotations

import functools
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detection import DetectorError, StreamDetector, push_acc_many, push_emg_many
from detection.config import DetectorConfig
from detection.emg import EmgStream, ingest_many
from tests.detection import synth

T0_US = 1_700_000_000_000_000
SECONDS = 30


@functools.cache
def device_signals(
    seed: int, rate_hz: float, channels: int, acc_rate_hz: float = 50.0
) -> tuple[np.ndarray, np.ndarray]:
    """30 s of EMG (rest, a cramp-like burst from 8 s for 12 s) and ACC."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(channels):
        x = synth.rest(rng, SECONDS, rate_hz, rest_uv=3.0 + c)
        rows.append(synth.add_burst(rng, x, rate_hz, 8.0, 12.0, 90.0 + 40.0 * c))
    acc = synth.accelerometer(rng, SECONDS, acc_rate_hz)
    acc = synth.turn_over(rng, acc, acc_rate_hz, 21.0, synth.LEFT_UP)
    return np.stack(rows, axis=1), acc


DEVICE = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 3),
        "rate": st.sampled_from([1000.0, 1000.0, 1000.0, 512.0]),
        "channels": st.sampled_from([1, 1, 2]),
        "mains": st.sampled_from(["auto", "auto", "off"]),
        "chunk_s": st.sampled_from([1.0, 1.0, 1.0, 0.5, 0.73]),
        "late_s": st.integers(0, 3),  # joins after this many seconds
        "skip": st.lists(st.integers(0, SECONDS - 1), max_size=2),  # chunks never sent: gaps
        "bad": st.lists(st.integers(0, SECONDS - 1), max_size=1),  # chunks sent with a NaN
        "acc_rate": st.sampled_from([50.0, 50.0, 25.0]),
        "acc_skip": st.lists(st.integers(0, SECONDS - 1), max_size=1),  # an ACC gap
        "acc_bad": st.lists(st.integers(0, SECONDS - 1), max_size=1),
    }
)


def _plan(device: dict) -> list[tuple[float, int, int]]:
    """(send time, first sample, end sample) of each EMG chunk of a device."""
    rate = device["rate"]
    emg, _ = device_signals(device["seed"], rate, device["channels"])
    step = round(device["chunk_s"] * rate)
    plan = []
    for lo in range(round(device["late_s"] * rate), emg.shape[0], step):
        if int(lo / rate) in device["skip"]:
            continue
        plan.append((lo / rate, lo, min(lo + step, emg.shape[0])))
    return plan


def _samples(device: dict, lo: int, hi: int) -> np.ndarray:
    emg, _ = device_signals(device["seed"], device["rate"], device["channels"])
    chunk = emg[lo:hi].copy()
    if int(lo / device["rate"]) in device["bad"]:
        chunk[0, 0] = np.nan
    return chunk


@settings(max_examples=30, deadline=None)
@given(devices=st.lists(DEVICE, min_size=1, max_size=6))
def test_many_devices_push_as_each_alone(devices: list[dict]) -> None:
    alone = [StreamDetector(f"dev-{k}", mains_hz=d["mains"]) for k, d in enumerate(devices)]
    many = [StreamDetector(f"dev-{k}", mains_hz=d["mains"]) for k, d in enumerate(devices)]
    plans = [_plan(d) for d in devices]
    for second in range(SECONDS + 1):
        pushes = []
        expected: list[object] = []
        after: list[tuple[int, np.ndarray, int, float, object]] = []
        acc_pushes = []
        acc_expected: list[object] = []
        for k, device in enumerate(devices):  # each wearer's ACC second first
            if second >= SECONDS or second < device["late_s"] or second in device["acc_skip"]:
                continue
            rate = device["acc_rate"]
            _, acc = device_signals(device["seed"], device["rate"], device["channels"], rate)
            lo, hi = round(second * rate), round((second + 1) * rate)
            chunk = acc[lo:hi].copy()
            if second in device["acc_bad"]:
                chunk[-1, 2] = np.inf
            start = T0_US + round(lo * 1e6 / rate)
            acc_pushes.append((many[k], chunk, start, rate))
            acc_expected.append(_try_acc(alone[k], chunk, start, rate))
        for got, want in zip(push_acc_many(acc_pushes), acc_expected, strict=True):
            assert (type(got) if isinstance(got, DetectorError) else got) == want
        for k, device in enumerate(devices):
            due = [p for p in plans[k] if second <= p[0] < second + 1]
            # one chunk per device and call: the rest of this second follows device by device
            for n, (_, lo, hi) in enumerate(due):
                push = (_samples(device, lo, hi), T0_US + round(lo * 1e6 / device["rate"]))
                if n == 0:
                    pushes.append((many[k], *push, device["rate"]))
                    expected.append(_try(alone[k], *push, device["rate"]))
                else:
                    after.append((k, *push, device["rate"], _try(alone[k], *push, device["rate"])))
        results = push_emg_many(pushes)
        for got, want in zip(results, expected, strict=True):
            assert (type(got) if isinstance(got, DetectorError) else got) == want
        for k, samples, start, rate, want in after:
            assert _try(many[k], samples, start, rate) == want
        for a, m in zip(alone, many, strict=True):
            assert a.pop_series() == m.pop_series()
    assert_end_alike(alone, many)


def assert_end_alike(alone: list[StreamDetector], many: list[StreamDetector]) -> None:
    """The same state, to the bit, then the same events and series when they finish."""
    for a, m in zip(alone, many, strict=True):
        assert _same(a.__dict__, m.__dict__)
        assert a.finish() == m.finish()
        assert a.pop_series() == m.pop_series()


def _same(a: object, b: object) -> bool:
    """Equal states: the same values, array by array to the bit (a snapshot's bytes also
    depend on whether an array is a view, which the values do not). Objects are compared
    by what they pickle (an accelerometer history's spare room is not part of its state)."""
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    if hasattr(a, "__dict__") and not isinstance(a, type):
        return type(a) is type(b) and _same(a.__getstate__(), b.__getstate__())
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
        )
    if isinstance(a, list | tuple):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    return bool(a == b) or (a != a and b != b)  # NaN floats are the same value


def _try_acc(detector: StreamDetector, samples: np.ndarray, start: int, rate: float) -> object:
    try:
        return detector.push_acc(samples, start, rate)
    except DetectorError as error:
        return type(error)


def _try(detector: StreamDetector, samples: np.ndarray, start: int, rate: float) -> object:
    try:
        return detector.push_emg(samples, start, rate)
    except DetectorError as error:
        return type(error)


def test_a_bad_chunk_fails_alone_and_the_others_go_through() -> None:
    emg, _ = device_signals(0, 1000.0, 1)
    detectors = [StreamDetector(f"dev-{k}") for k in range(3)]
    for second in range(2):
        for d in detectors:
            d.push_emg(emg[second * 1000 : (second + 1) * 1000], T0_US + second * 10**6, 1000.0)
    before = detectors[1].snapshot()
    chunk = emg[2000:3000]
    bad = chunk.copy()
    bad[10, 0] = np.inf
    results = push_emg_many(
        [
            (detectors[0], chunk, T0_US + 2 * 10**6, 1000.0),
            (detectors[1], bad, T0_US + 2 * 10**6, 1000.0),
            (detectors[2], chunk, T0_US + 2 * 10**6 - 5 * 10**6, 1000.0),  # time went back
        ]
    )
    assert isinstance(results[0], list)
    assert isinstance(results[1], DetectorError) and "NaN/inf" in str(results[1])
    assert isinstance(results[2], DetectorError)
    assert detectors[1].snapshot() == before
    assert detectors[0].stream_ends_us()[0] == T0_US + 3 * 10**6
    assert detectors[2].stream_ends_us()[0] == T0_US + 2 * 10**6


def test_a_detector_twice_in_one_call_is_refused() -> None:
    detector = StreamDetector("dev-1")
    chunk = np.zeros((1000, 1))
    with pytest.raises(ValueError, match="at most one chunk per detector"):
        push_emg_many([(detector, chunk, T0_US, 1000.0), (detector, chunk, T0_US, 1000.0)])
    assert detector.stream_ends_us() == (None, None)


def test_streams_that_cannot_share_a_front_end_are_refused() -> None:
    config = DetectorConfig()
    a = EmgStream.create(config, 1000.0, 1, (50.0,))
    b = EmgStream.create(config, 1000.0, 1, ())
    for s in (a, b):
        s.start_segment(np.zeros(1), T0_US)
    with pytest.raises(ValueError, match="do not share one front end"):
        ingest_many([a, b], [np.zeros((1000, 1)), np.zeros((1000, 1))])


def test_front_keys_tell_streams_apart_by_rules_filters_and_grid_and_survive_a_restore() -> None:
    def stream(config: DetectorConfig, rate: float = 1000.0, notch: tuple = (50.0,)) -> EmgStream:
        s = EmgStream.create(config, rate, 1, notch)
        s.start_segment(np.zeros(1), T0_US)
        return s

    a = stream(DetectorConfig())
    assert stream(DetectorConfig()).front_key(1000) == a.front_key(1000)
    assert stream(DetectorConfig(on_ratio=4.0)).front_key(1000) != a.front_key(1000)
    assert stream(DetectorConfig(), notch=()).front_key(1000) != a.front_key(1000)
    assert stream(DetectorConfig(), rate=1024.0).front_key(1024) != a.front_key(1024)
    assert a.front_key(999) != a.front_key(1000)
    restored = pickle.loads(pickle.dumps(a))
    assert restored.front_id == -1  # numbered again in the process that restores it
    assert restored.front_key(1000) == a.front_key(1000)
    ingest_many([a, restored], [np.ones((1000, 1)), np.ones((1000, 1))])
    assert a.front_key(1000) == restored.front_key(1000)
    assert a.front_key(1000) != stream(DetectorConfig()).front_key(
        1000
    )  # smoothing carries blocks now


def test_the_settling_blocks_of_a_new_segment_go_through_the_stacked_path() -> None:
    """Short chunks: the first 0.5 s of blocks (not valid yet) are decided in stacked pushes."""
    devices = [device_signals(seed, 1000.0, 1)[0] for seed in range(3)]
    alone = [StreamDetector(f"dev-{k}") for k in range(3)]
    many = [StreamDetector(f"dev-{k}") for k in range(3)]
    for lo in range(0, 6000, 150):  # 3 blocks per chunk; the first chunk goes alone
        start = T0_US + lo * 1000
        pushes = [
            (m, emg[lo : lo + 150], start, 1000.0) for m, emg in zip(many, devices, strict=True)
        ]
        expected = [
            a.push_emg(emg[lo : lo + 150], start, 1000.0)
            for a, emg in zip(alone, devices, strict=True)
        ]
        assert push_emg_many(pushes) == expected
    assert_end_alike(alone, many)


def test_whole_seconds_of_valid_blocks_take_the_shared_path_and_the_others_their_own() -> None:
    """1 s chunks: one device a second out of step with the others (half a second carried),
    one with a flat (invalid) second among them; all as each pushed alone."""
    signals = [device_signals(seed, 1000.0, 1)[0].copy() for seed in range(4)]
    signals[2][9_000:10_000] = signals[2][9_000]  # a flat second: lead-off
    alone = [StreamDetector(f"dev-{k}") for k in range(4)]
    many = [StreamDetector(f"dev-{k}") for k in range(4)]
    first = [1000, 1500, 1000, 1000]  # device 1 starts with 1.5 s: half a second carried on
    for k in range(4):
        for detector in (alone[k], many[k]):
            detector.push_emg(signals[k][: first[k]], T0_US, 1000.0)
    for second in range(1, 14):
        pushes = []
        expected = []
        for k in range(4):
            lo = first[k] + (second - 1) * 1000
            start = T0_US + lo * 1000
            pushes.append((many[k], signals[k][lo : lo + 1000], start, 1000.0))
            expected.append(alone[k].push_emg(signals[k][lo : lo + 1000], start, 1000.0))
        assert push_emg_many(pushes) == expected
        for a, m in zip(alone, many, strict=True):
            assert a.pop_series() == m.pop_series()
    assert_end_alike(alone, many)
