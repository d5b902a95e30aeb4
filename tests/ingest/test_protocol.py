"""Wire codec: round trips, fuzzing and the documented limits."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ingest.protocol import (
    HEADER,
    HEADER_BYTES,
    MAX_FRAME_BYTES,
    Frame,
    FrameError,
    SampleType,
    StreamKind,
    Transport,
    decode,
    decode_binary,
    decode_json,
    encode_binary,
    encode_json,
    make_frame,
    parse_topic,
    topic_for,
)

T0 = 1_790_000_000_000_000


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    kind = draw(st.sampled_from(StreamKind))
    stype = draw(st.sampled_from(SampleType))
    channels = 3 if kind is StreamKind.ACC else draw(st.integers(1, 8))
    n = draw(st.integers(1, 64))
    if kind is StreamKind.EMG:
        rate_mhz = draw(st.integers(500_000, 4_000_000))
    else:
        rate_mhz = draw(st.integers(12_500, 200_000))
    if stype is SampleType.FLOAT32:
        elements = st.floats(-1048576.0, 1048576.0, width=32, allow_nan=False)
    else:
        bits = 16 if stype is SampleType.INT16 else 32
        elements = st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    samples = draw(hnp.arrays(stype.dtype, (n, channels), elements=elements))
    scale = draw(st.floats(0.0009765625, 1024.0, width=32))
    return make_frame(
        kind,
        rate_mhz / 1000,
        draw(st.integers(0, 2**62 - 1)),
        draw(st.integers(0, 2**32 - 1)),
        samples,
        scale=scale,
        sample_type=stype,
    )


@settings(max_examples=200, deadline=None)
@given(frames())
def test_binary_round_trip_is_exact(frame: Frame) -> None:
    assert decode_binary(encode_binary(frame)) == frame
    assert decode(encode_binary(frame)) == frame
    # the received bytes stand for the frame where it is stored again (checkpoint)
    received = decode_binary(bytes(encode_binary(frame)))
    assert received.wire == encode_binary(received) == frame.wire


@settings(max_examples=300, deadline=None)
@given(frames())
def test_physical_values_are_each_sample_times_the_scale_in_float64(frame: Frame) -> None:
    physical = frame.physical()
    reference = frame.samples.astype(np.float64) * np.float64(frame.scale)
    assert physical.dtype == np.float64 and physical.shape == frame.samples.shape
    assert physical.tobytes() == reference.tobytes()  # to the bit


@settings(max_examples=200, deadline=None)
@given(frames())
def test_a_json_frame_is_stored_as_its_binary_encoding(frame: Frame) -> None:
    received = decode_json(encode_json(frame))
    assert received.wire == encode_binary(frame)
    assert decode_binary(received.wire) == frame


@settings(max_examples=200, deadline=None)
@given(frames())
def test_json_round_trip_is_exact(frame: Frame) -> None:
    assert decode_json(encode_json(frame)) == frame
    assert decode(encode_json(frame)) == frame


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_frame_error(data: bytes) -> None:
    try:
        decode(data)
    except FrameError as error:
        assert error.reason and error.detail


@settings(max_examples=300, deadline=None)
@given(frames(), st.data())
def test_mutated_binary_frames_raise_only_frame_error(frame: Frame, data: st.DataObject) -> None:
    wire = bytearray(encode_binary(frame))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    for candidate in (bytes(wire), bytes(wire[:cut])):
        try:
            decoded = decode(candidate)
        except FrameError:
            continue
        assert isinstance(decoded, Frame)


@settings(max_examples=300, deadline=None)
@given(frames(), st.data())
def test_mutated_binary_frames_with_fixed_crc_raise_only_frame_error(
    frame: Frame, data: st.DataObject
) -> None:
    body = bytearray(encode_binary(frame)[:-4])
    i = data.draw(st.integers(0, HEADER_BYTES - 1))
    body[i] = data.draw(st.integers(0, 255))
    wire = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
    try:
        decoded = decode_binary(wire)
    except FrameError as error:
        assert error.reason
    else:
        assert decode_binary(encode_binary(decoded)) == decoded


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=20,
    ),
    st.dictionaries(
        st.sampled_from(["v", "kind", "rate_hz", "start_us", "seq", "scale", "sample_type"]),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    ),
)
def test_json_documents_raise_only_frame_error(junk: object, overrides: dict[str, object]) -> None:
    good = json.loads(
        encode_json(make_frame(StreamKind.EMG, 1000, T0, 1, np.zeros(10, np.float32)))
    )
    for doc in (junk, {**good, **overrides}, {**good, "samples": junk}):
        try:
            text = json.dumps(doc)
        except ValueError:
            continue
        try:
            decoded = decode(text.encode())
        except FrameError as error:
            assert error.reason
        else:
            assert decode(encode_json(decoded)) == decoded


def reason(data: bytes) -> str:
    with pytest.raises(FrameError) as info:
        decode(data)
    return info.value.reason


def good_frame() -> Frame:
    return make_frame(
        StreamKind.EMG,
        1000,
        T0,
        7,
        np.arange(10, dtype=np.int16),
        scale=0.5,
        sample_type=SampleType.INT16,
    )


@pytest.mark.filterwarnings("error")  # refused by the check, not by a cast that warns
@pytest.mark.parametrize("scale", [1e39, -1e300, 1e300])
@pytest.mark.parametrize("sample_type", ["float32", "int16"])
def test_a_scale_beyond_the_float32_field_is_refused(scale: float, sample_type: str) -> None:
    doc = {
        "v": 1,
        "kind": "emg",
        "rate_hz": 1000,
        "start_us": T0,
        "seq": 1,
        "scale": scale,
        "sample_type": sample_type,
        "samples": [1, 2],
    }
    assert reason(json.dumps(doc).encode()) == "bad_scale"


def test_each_rejection_has_its_own_reason() -> None:
    wire = encode_binary(good_frame())

    def resealed(body: bytes) -> bytes:
        return body + struct.pack("<I", zlib.crc32(body))

    assert reason(wire[:-1] + bytes([wire[-1] ^ 1])) == "bad_crc"
    assert reason(resealed(wire[:2] + b"\x02" + wire[3:-4])) == "unsupported_version"
    assert reason(b"XX" + wire[2:]) == "bad_magic"
    assert reason(wire[:20]) == "truncated"
    assert reason(b"\x00" * (MAX_FRAME_BYTES + 1)) == "too_large"
    rate = struct.pack("<I", 5_000_000)  # 5 kHz EMG
    assert reason(resealed(wire[:8] + rate + wire[12:-4])) == "bad_rate"
    nan = json.dumps(
        {
            "v": 1,
            "kind": "emg",
            "rate_hz": 1000,
            "start_us": T0,
            "seq": 1,
            "samples": [1.0, float("nan")],
        }
    )
    assert reason(nan.encode()) == "nan"
    f32 = make_frame(StreamKind.EMG, 1000, T0, 1, np.zeros(4, np.float32))
    body = bytearray(encode_binary(f32)[:-4])
    body[HEADER_BYTES : HEADER_BYTES + 4] = struct.pack("<f", float("inf"))
    assert reason(resealed(bytes(body))) == "nan"


@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 40), st.integers(1, 8)),  # samples x channels
        elements=st.one_of(
            st.floats(width=32),  # any float32: NaN and infinities included
            st.sampled_from([3.4028235e38, -3.4028235e38, 1e-45, -0.0]),  # finite extremes
        ),
    )
)
def test_float32_samples_are_rejected_exactly_when_one_is_not_finite(samples: np.ndarray) -> None:
    frame = Frame(StreamKind.EMG, 1000.0, T0, 1, 1.0, SampleType.FLOAT32, samples)
    n, channels = samples.shape
    header = HEADER.pack(
        b"CW", 1, 1, int(SampleType.FLOAT32), channels, 0, 1_000_000, T0, 1, n, 1.0
    )
    wire = header + samples.astype("<f4").tobytes()
    wire += struct.pack("<I", zlib.crc32(wire))
    if np.isfinite(samples).all():
        assert decode(wire) == frame
    else:
        assert reason(wire) == "nan"


def test_topics_round_trip_and_bad_ones_are_rejected() -> None:
    for kind in StreamKind:
        for transport in Transport:
            topic = parse_topic(topic_for("calf-01", kind, transport))
            assert (topic.device_id, topic.kind, topic.transport) == ("calf-01", kind, transport)
    for bad in ("crampwatch/v1/dev/eeg", "crampwatch/v2/dev/emg", "crampwatch/v1/a/b/emg", ""):
        with pytest.raises(FrameError) as info:
            parse_topic(bad)
        assert info.value.reason == "bad_topic"
    with pytest.raises(FrameError) as info:
        parse_topic("crampwatch/v1/_x/emg")
    assert info.value.reason == "bad_device_id"
