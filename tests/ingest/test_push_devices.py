"""push_devices: a batch's frames of many devices, pushed with the factory's push_many, give
every device what pushing its own frames gives: the same events, refusals and detector."""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detection.stream import StreamDetector
from ingest.detectors import Detector, StreamDetectorFactory
from ingest.devices import DeviceState, push_devices
from ingest.protocol import Frame, SampleType, StreamKind
from ingest.sequencing import DeviceSequencer
from tests.detection import synth

T0_US = 1_700_000_000_000_000
SECONDS = 12


class OneByOneFactory:
    """The real detectors without ``push_many``: each device's pushes go on their own."""

    def __init__(self) -> None:
        self.inner = StreamDetectorFactory()

    def create(self, device_id: str) -> Detector:
        return self.inner.create(device_id)

    def restore(self, data: bytes) -> Detector:
        return self.inner.restore(data)


@functools.cache
def signals(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """12 s of 1 kHz EMG with a burst and 50 Hz ACC with a turn, as float32 counts."""
    rng = np.random.default_rng(seed)
    emg = synth.add_burst(rng, synth.rest(rng, SECONDS, 1000.0), 1000.0, 3.0, 6.0, 120.0)
    acc = synth.turn_over(rng, synth.accelerometer(rng, SECONDS, 50.0), 50.0, 8.0, synth.LEFT_UP)
    return emg.astype(np.float32)[:, None], acc.astype(np.float32)


def frame(kind: StreamKind, samples: np.ndarray, rate: float, first: int, seq: int) -> Frame:
    return Frame(
        kind=kind,
        rate_hz=rate,
        start_us=T0_US + round(first * 1e6 / rate),
        seq=seq,
        scale=1.0,
        sample_type=SampleType.FLOAT32,
        samples=samples,
    )


def device(device_id: str) -> DeviceState:
    sequencer = DeviceSequencer(device_id, reorder_window_us=5_000_000, max_pending=100)
    return DeviceState(device_id, sequencer, None, 0)


DEVICE = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2),
        "per_batch": st.sampled_from([1, 1, 2]),  # seconds per batch: 2 joins the frames
        "bad": st.lists(st.integers(0, SECONDS - 1), max_size=1),  # an EMG frame with a NaN
        "skip": st.lists(st.integers(0, SECONDS - 1), max_size=1),  # a lost second (a gap)
    }
)


@settings(max_examples=25, deadline=None)
@given(specs=st.lists(DEVICE, min_size=1, max_size=5))
def test_a_batch_of_many_devices_pushes_as_each_device_alone(specs: list[dict]) -> None:
    together = [device(f"dev-{k}") for k in range(len(specs))]
    alone = [device(f"dev-{k}") for k in range(len(specs))]
    many, one_by_one = StreamDetectorFactory(), OneByOneFactory()
    for second in range(SECONDS):
        for k, spec in enumerate(specs):
            if second in spec["skip"]:
                continue
            emg, acc = signals(spec["seed"])
            e = emg[second * 1000 : (second + 1) * 1000].copy()
            if second in spec["bad"]:
                e[17, 0] = np.nan
            frames = [
                frame(
                    StreamKind.ACC, acc[second * 50 : (second + 1) * 50], 50.0, second * 50, second
                ),
                frame(StreamKind.EMG, e, 1000.0, second * 1000, second),
            ]
            for state in (together[k], alone[k]):
                state.queued.extend((f, None) for f in frames)
        # a batch ends every second for some devices, every other second for the others
        ends = [
            spec["per_batch"] == 1 or second % 2 == 1 or second == SECONDS - 1 for spec in specs
        ]
        got = push_devices([s for s, end in zip(together, ends, strict=True) if end], many)
        want = push_devices([s for s, end in zip(alone, ends, strict=True) if end], one_by_one)
        assert got == want
    for a, b in zip(together, alone, strict=True):
        assert a.events == b.events
        assert a.detector is not None and b.detector is not None
        assert a.detector.finish() == b.detector.finish()
        assert a.detector.pop_series() == b.detector.pop_series()


def test_push_many_is_used_for_a_live_second_of_many_devices() -> None:
    calls: list[tuple[StreamKind, int]] = []

    class Counting(StreamDetectorFactory):
        def push_many(self, kind, pushes):  # type: ignore[no-untyped-def]
            calls.append((kind, len(pushes)))
            return super().push_many(kind, pushes)

    states = [device(f"dev-{k}") for k in range(4)]
    emg, acc = signals(0)
    for second in range(2):
        for state in states:
            state.queued += [
                (
                    frame(
                        StreamKind.ACC,
                        acc[second * 50 : (second + 1) * 50],
                        50.0,
                        second * 50,
                        second,
                    ),
                    None,
                ),
                (
                    frame(
                        StreamKind.EMG,
                        emg[second * 1000 : (second + 1) * 1000],
                        1000.0,
                        second * 1000,
                        second,
                    ),
                    None,
                ),
            ]
        taken, letters = push_devices(states, Counting())
        assert (taken, letters) == (8, [])
    # the first second creates the detectors and has no stream yet; both kinds go as one call
    assert calls == [
        (StreamKind.ACC, 4),
        (StreamKind.EMG, 4),
        (StreamKind.ACC, 4),
        (StreamKind.EMG, 4),
    ]
    assert all(isinstance(s.detector, StreamDetector) for s in states)
