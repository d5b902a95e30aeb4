"""CrampWatch wire protocol v1: topics, the binary frame and the equivalent JSON frame.

Pure functions only: bytes in, :class:`Frame` out (and back). Shared by ``ingest/`` (decoding)
and ``simulator/`` (encoding). The byte layout is documented with examples in
``docs/protocol.md``; anything that does not match it raises :class:`FrameError` with a
machine-readable ``reason`` and a human-readable ``detail``.

Binary frame (all little-endian)::

    offset size field
    0      2    magic          b"CW"
    2      1    version        1
    3      1    kind           1 = EMG, 2 = ACC
    4      1    sample_type    1 = int16, 2 = int32, 3 = float32
    5      1    channels       EMG 1..8, ACC exactly 3
    6      2    flags          reserved, must be 0
    8      4    rate_mhz       sample rate in millihertz (uint32), e.g. 1000 Hz -> 1_000_000
    12     8    start_us       device-clock time of the first sample, µs since the epoch (int64)
    20     4    seq            per-(device, stream) sequence number (uint32)
    24     4    n_samples      samples per channel (uint32)
    28     4    scale          physical units per count (float32): µV for EMG, g for ACC
    32     ...  payload        n_samples x channels values, sample-major (interleaved)
    end-4  4    crc32          zlib.crc32 of every byte before it (uint32)
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from functools import cached_property, lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

MAGIC: Final = b"CW"
VERSION: Final = 1
HEADER = struct.Struct("<2sBBBBHIqIIf")
CRC = struct.Struct("<I")
HEADER_BYTES: Final = HEADER.size  # 32
MAX_FRAME_BYTES: Final = 1 << 20  # 1 MiB, also the JSON frame limit
MAX_SAMPLES_PER_FRAME: Final = 65_536  # per channel
EMG_RATE_RANGE_HZ: Final = (500.0, 4000.0)
ACC_RATE_RANGE_HZ: Final = (12.5, 200.0)
MAX_EMG_CHANNELS: Final = 8
ACC_CHANNELS: Final = 3
TOPIC_PREFIX: Final = "crampwatch/v1"
DEVICE_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOPIC_PATTERN: Final = re.compile(
    r"^crampwatch/v1/(?P<device>[^/]+)/(?:(?P<sync>sync)/)?(?P<kind>emg|acc)$"
)


class FrameError(ValueError):
    """A message that is not a valid v1 frame.

    Parameters
    ----------
    reason : str
        Short machine-readable code (``bad_crc``, ``bad_magic``, ``unsupported_version``,
        ``bad_rate``, ``too_large``, ``nan``, ``truncated``, ``bad_topic``, ...).
    detail : str
        One sentence for a human.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StreamKind(IntEnum):
    """Which sensor stream a frame carries."""

    EMG = 1
    ACC = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> StreamKind:
        try:
            return cls[label.upper()]
        except KeyError:
            raise FrameError("bad_kind", f"stream kind {label!r} is not 'emg' or 'acc'") from None


class SampleType(IntEnum):
    """Encoding of one sample value in the binary payload."""

    INT16 = 1
    INT32 = 2
    FLOAT32 = 3

    @property
    def dtype(self) -> np.dtype[Any]:
        return _DTYPES[self]


_DTYPES: dict[SampleType, np.dtype[Any]] = {
    SampleType.INT16: np.dtype("<i2"),
    SampleType.INT32: np.dtype("<i4"),
    SampleType.FLOAT32: np.dtype("<f4"),
}


class Transport(StrEnum):
    """Live frames arrive as recorded; sync frames are a bulk upload after the night."""

    LIVE = "live"
    SYNC = "sync"


@dataclass(frozen=True)
class Topic:
    """A parsed ingest topic ``crampwatch/v1/{device_id}/[sync/]{emg|acc}``."""

    device_id: str
    kind: StreamKind
    transport: Transport

    def __str__(self) -> str:
        middle = "sync/" if self.transport is Transport.SYNC else ""
        return f"{TOPIC_PREFIX}/{self.device_id}/{middle}{self.kind.label}"


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame.

    Attributes
    ----------
    kind : StreamKind
    rate_hz : float
        Sample rate in Hz (carried in millihertz on the wire).
    start_us : int
        Device-clock time of the first sample, µs since the Unix epoch (UTC).
    seq : int
        Sequence number of this frame within its (device, stream).
    scale : float
        Physical units per count: µV for EMG, g for ACC.
    sample_type : SampleType
    samples : ndarray, shape (n_samples, channels)
        Raw values as on the wire (counts); :meth:`physical` converts.
    """

    kind: StreamKind
    rate_hz: float
    start_us: int
    seq: int
    scale: float
    sample_type: SampleType
    samples: npt.NDArray[Any]

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @cached_property  # asked for many times per frame while sequencing
    def end_us(self) -> int:
        """Device-clock time just after the last sample, µs."""
        return self.start_us + round(self.n_samples * 1e6 / self.rate_hz)

    @cached_property  # the checkpoint stores it for every frame it logs or holds
    def wire(self) -> bytes:
        """The frame as a v1 binary message: the bytes it was decoded from, when it was."""
        return encode_binary(self)

    def physical(self) -> npt.NDArray[np.float64]:
        """Samples in physical units (µV or g), float64, shape (n_samples, channels).

        One pass: each sample is converted to float64 and multiplied by the scale, the
        values of ``samples.astype(np.float64) * scale`` without its intermediate array."""
        physical: npt.NDArray[np.float64] = np.multiply(
            self.samples, float(self.scale), dtype=np.float64
        )
        return physical

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (
            self.kind == other.kind
            and self.rate_hz == other.rate_hz
            and self.start_us == other.start_us
            and self.seq == other.seq
            and self.scale == other.scale
            and self.sample_type == other.sample_type
            and self.samples.shape == other.samples.shape
            and bool(np.array_equal(self.samples, other.samples))
        )

    __hash__ = None  # type: ignore[assignment]


@lru_cache(maxsize=16_384)  # a worker sees the same few topics per device over and over
def parse_topic(topic: str) -> Topic:
    """Parse an ingest topic, or raise ``FrameError('bad_topic')`` (errors are not cached)."""
    match = _TOPIC_PATTERN.match(topic)
    if match is None:
        raise FrameError(
            "bad_topic", f"topic {topic!r} is not crampwatch/v1/{{device_id}}/[sync/]{{emg|acc}}"
        )
    device_id = match["device"]
    if not DEVICE_ID_PATTERN.match(device_id):
        raise FrameError(
            "bad_device_id",
            f"device id {device_id!r} must be 1-64 of A-Z a-z 0-9 _ . - (not starting with . _ -)",
        )
    transport = Transport.SYNC if match["sync"] else Transport.LIVE
    return Topic(device_id, StreamKind.from_label(match["kind"]), transport)


def topic_for(device_id: str, kind: StreamKind, transport: Transport = Transport.LIVE) -> str:
    """The topic a device publishes ``kind`` frames on."""
    if not DEVICE_ID_PATTERN.match(device_id):
        raise FrameError("bad_device_id", f"device id {device_id!r} is not allowed")
    return str(Topic(device_id, kind, transport))


def make_frame(
    kind: StreamKind,
    rate_hz: float,
    start_us: int,
    seq: int,
    samples: npt.ArrayLike,
    *,
    scale: float = 1.0,
    sample_type: SampleType = SampleType.FLOAT32,
) -> Frame:
    """Build and validate a frame from counts (values as they go on the wire).

    Parameters
    ----------
    samples : array, shape (n_samples, channels) or (n_samples,) for one channel
        Counts; physical value = count x ``scale``. Cast to ``sample_type``.
    """
    raw = np.asarray(samples)
    if raw.ndim == 1:
        raw = raw[:, None]
    if raw.ndim != 2:
        raise FrameError("bad_shape", f"samples must be 1-D or 2-D, got {raw.ndim}-D")
    dtype = sample_type.dtype
    if sample_type is not SampleType.FLOAT32 and raw.size:
        info = np.iinfo(dtype)
        finite = np.asarray(raw, dtype=np.float64)
        if not np.all(np.isfinite(finite)):
            raise FrameError("nan", "samples contain NaN or infinity")
        if finite.min() < info.min or finite.max() > info.max:
            raise FrameError("out_of_range", f"samples exceed the {dtype} range")
        if not np.all(finite == np.round(finite)):
            raise FrameError("not_integer", f"{sample_type.name} samples must be whole counts")
    frame = Frame(
        kind=kind,
        rate_hz=float(rate_hz),
        start_us=int(start_us),
        seq=int(seq),
        scale=_wire_scale(scale),
        sample_type=sample_type,
        samples=np.ascontiguousarray(raw.astype(dtype)),
    )
    validate_frame(frame)
    return frame


def validate_frame(frame: Frame) -> None:
    """Check every protocol limit; raise :class:`FrameError` on the first violation."""
    low, high = EMG_RATE_RANGE_HZ if frame.kind is StreamKind.EMG else ACC_RATE_RANGE_HZ
    if not (math.isfinite(frame.rate_hz) and low <= frame.rate_hz <= high):
        raise FrameError(
            "bad_rate",
            f"{frame.kind.label} rate {frame.rate_hz} Hz is outside {low:g}-{high:g} Hz",
        )
    if round(frame.rate_hz * 1000) / 1000 != frame.rate_hz:  # exactly what the wire carries
        raise FrameError("bad_rate", f"rate {frame.rate_hz} Hz is not a whole number of mHz")
    channels = frame.channels
    if frame.kind is StreamKind.EMG and not 1 <= channels <= MAX_EMG_CHANNELS:
        raise FrameError("bad_channels", f"EMG needs 1-{MAX_EMG_CHANNELS} channels, got {channels}")
    if frame.kind is StreamKind.ACC and channels != ACC_CHANNELS:
        raise FrameError("bad_channels", f"ACC needs exactly 3 channels, got {channels}")
    if not 1 <= frame.n_samples <= MAX_SAMPLES_PER_FRAME:
        raise FrameError(
            "bad_length",
            f"{frame.n_samples} samples per channel, allowed 1-{MAX_SAMPLES_PER_FRAME}",
        )
    if not (math.isfinite(frame.scale) and frame.scale > 0):
        raise FrameError("bad_scale", f"scale must be a positive finite number, got {frame.scale}")
    if not 0 <= frame.seq <= 0xFFFFFFFF:
        raise FrameError("bad_seq", f"sequence number {frame.seq} is outside 0..2^32-1")
    if not 0 <= frame.start_us < 2**62:
        raise FrameError("bad_time", f"start time {frame.start_us} µs is negative or absurd")
    if frame.sample_type is SampleType.FLOAT32 and not _all_finite(frame.samples):
        raise FrameError("nan", "samples contain NaN or infinity")
    if HEADER_BYTES + frame.samples.nbytes + CRC.size > MAX_FRAME_BYTES:
        raise FrameError("too_large", f"frame would exceed {MAX_FRAME_BYTES} bytes")


_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)


def _all_finite(samples: npt.NDArray[Any]) -> bool:
    """Whether no sample is NaN or infinite (the array method: ``np.all`` adds a Python-level
    wrapper that costs more than the check on every frame)."""
    return bool(np.isfinite(samples).all())


def encode_binary(frame: Frame) -> bytes:
    """Encode a frame as a v1 binary message (header + payload + CRC32)."""
    validate_frame(frame)
    header = HEADER.pack(
        MAGIC,
        VERSION,
        int(frame.kind),
        int(frame.sample_type),
        frame.channels,
        0,
        round(frame.rate_hz * 1000),
        frame.start_us,
        frame.seq,
        frame.n_samples,
        frame.scale,
    )
    body = header + np.ascontiguousarray(frame.samples, dtype=frame.sample_type.dtype).tobytes()
    return body + CRC.pack(zlib.crc32(body))


def decode_binary(data: bytes) -> Frame:
    """Decode a v1 binary message; raise :class:`FrameError` for anything else."""
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError("too_large", f"{len(data)} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    if len(data) < HEADER_BYTES + CRC.size:
        raise FrameError("truncated", f"{len(data)} bytes is shorter than header + CRC")
    if data[:2] != MAGIC:
        raise FrameError("bad_magic", f"frame starts with {data[:2]!r}, expected {MAGIC!r}")
    (crc,) = CRC.unpack_from(data, len(data) - CRC.size)
    if zlib.crc32(data[: -CRC.size]) != crc:
        raise FrameError("bad_crc", "CRC32 does not match the frame contents")
    _magic, version, kind, stype, channels, flags, rate_mhz, start_us, seq, n, scale = (
        HEADER.unpack_from(data, 0)
    )
    if version != VERSION:
        raise FrameError("unsupported_version", f"frame version {version}, this server speaks 1")
    try:
        stream = StreamKind(kind)
    except ValueError:
        raise FrameError("bad_kind", f"stream kind code {kind} is not 1 (EMG) or 2 (ACC)") from None
    try:
        sample_type = SampleType(stype)
    except ValueError:
        raise FrameError("bad_sample_type", f"sample type code {stype} is not 1, 2 or 3") from None
    if flags != 0:
        raise FrameError("bad_flags", f"reserved flags must be 0, got {flags:#06x}")
    if channels == 0 or n == 0:
        raise FrameError("bad_length", "frame has no channels or no samples")
    expected = HEADER_BYTES + n * channels * sample_type.dtype.itemsize + CRC.size
    if len(data) != expected:
        raise FrameError("bad_length", f"frame is {len(data)} bytes, header implies {expected}")
    payload = np.frombuffer(data, dtype=sample_type.dtype, count=n * channels, offset=HEADER_BYTES)
    frame = Frame(
        kind=stream,
        rate_hz=rate_mhz / 1000.0,
        start_us=start_us,
        seq=seq,
        scale=float(scale),
        sample_type=sample_type,
        samples=payload.reshape(n, channels),
    )
    validate_frame(frame)
    if isinstance(data, bytes):  # immutable: they are what encode_binary(frame) gives
        frame.__dict__["wire"] = data
    return frame


def encode_json(frame: Frame) -> bytes:
    """Encode a frame as the equivalent v1 JSON frame (UTF-8)."""
    validate_frame(frame)
    if frame.sample_type is SampleType.FLOAT32:
        rows: list[Any] = frame.samples.astype(np.float64).tolist()
    else:
        rows = frame.samples.astype(np.int64).tolist()
    doc = {
        "v": VERSION,
        "kind": frame.kind.label,
        "rate_hz": frame.rate_hz,
        "start_us": frame.start_us,
        "seq": frame.seq,
        "scale": frame.scale,
        "sample_type": frame.sample_type.name.lower(),
        "samples": rows,
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


_JSON_KEYS: Final = frozenset(
    {"v", "kind", "rate_hz", "start_us", "seq", "scale", "sample_type", "samples"}
)


def decode_json(data: bytes) -> Frame:
    """Decode a v1 JSON frame; raise :class:`FrameError` for anything else."""
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError("too_large", f"{len(data)} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    try:
        doc = json.loads(data, parse_constant=_reject_constant)
    except FrameError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FrameError("bad_json", f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FrameError("bad_json", "JSON frame must be an object")
    missing = {"v", "kind", "rate_hz", "start_us", "seq", "samples"} - doc.keys()
    if missing:
        raise FrameError("bad_json", f"JSON frame lacks {sorted(missing)}")
    unknown = doc.keys() - _JSON_KEYS
    if unknown:
        raise FrameError("bad_json", f"JSON frame has unknown keys {sorted(unknown)}")
    if doc["v"] != VERSION or isinstance(doc["v"], bool):
        raise FrameError("unsupported_version", f"frame version {doc['v']!r}, this server speaks 1")
    if not isinstance(doc["kind"], str):
        raise FrameError("bad_kind", "kind must be 'emg' or 'acc'")
    kind = StreamKind.from_label(doc["kind"])
    stype_label = doc.get("sample_type", "float32")
    if stype_label not in ("int16", "int32", "float32"):
        raise FrameError(
            "bad_sample_type", f"sample_type {stype_label!r} is not int16/int32/float32"
        )
    sample_type = SampleType[stype_label.upper()]
    rate, scale = doc["rate_hz"], doc.get("scale", 1.0)
    start_us, seq = doc["start_us"], doc["seq"]
    for name, value, kinds in (
        ("rate_hz", rate, (int, float)),
        ("scale", scale, (int, float)),
        ("start_us", start_us, (int,)),
        ("seq", seq, (int,)),
    ):
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise FrameError("bad_json", f"{name} has the wrong type ({type(value).__name__})")
    samples = doc["samples"]
    if not isinstance(samples, list) or not samples:
        raise FrameError("bad_length", "samples must be a non-empty list")
    try:
        array = np.asarray(samples, dtype=np.float64)
    except (ValueError, TypeError):
        raise FrameError("bad_shape", "samples must be numbers or equal-length rows") from None
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise FrameError("bad_shape", "samples must be a list of numbers or of rows")
    if array.shape[0] > MAX_SAMPLES_PER_FRAME:
        raise FrameError("bad_length", f"more than {MAX_SAMPLES_PER_FRAME} samples")
    if not 0 <= start_us < 2**62:
        raise FrameError("bad_time", f"start time {start_us} µs is negative or absurd")
    if not 0 <= seq <= 0xFFFFFFFF:
        raise FrameError("bad_seq", f"sequence number {seq} is outside 0..2^32-1")
    if not math.isfinite(float(rate)) or not math.isfinite(float(scale)):
        raise FrameError("nan", "rate_hz and scale must be finite")
    if sample_type is SampleType.FLOAT32:
        with np.errstate(over="ignore"):  # overflow becomes inf, rejected just below
            f32 = array.astype(np.float32)
        if not np.all(np.isfinite(f32)):
            raise FrameError("nan", "samples contain NaN or infinity (or overflow float32)")
        return _validated(kind, float(rate), start_us, seq, float(scale), sample_type, f32)
    return _validated_counts(kind, float(rate), start_us, seq, float(scale), sample_type, array)


def _wire_scale(scale: float) -> float:
    """``scale`` as the frame's float32 field holds it; one beyond float32's range is refused
    (casting it would give infinity, with NumPy's overflow warning)."""
    if math.isfinite(scale) and abs(scale) > _FLOAT32_MAX:
        raise FrameError("bad_scale", f"scale {scale:g} does not fit the frame's float32 field")
    return float(np.float32(scale))


def _validated_counts(
    kind: StreamKind,
    rate: float,
    start_us: int,
    seq: int,
    scale: float,
    sample_type: SampleType,
    array: npt.NDArray[np.float64],
) -> Frame:
    try:
        return make_frame(kind, rate, start_us, seq, array, scale=scale, sample_type=sample_type)
    except OverflowError:
        raise FrameError("out_of_range", "samples exceed the sample type's range") from None


def _validated(
    kind: StreamKind,
    rate: float,
    start_us: int,
    seq: int,
    scale: float,
    sample_type: SampleType,
    array: npt.NDArray[Any],
) -> Frame:
    frame = Frame(kind, rate, start_us, seq, _wire_scale(scale), sample_type, array)
    validate_frame(frame)
    return frame


def _reject_constant(name: str) -> float:
    raise FrameError("nan", f"JSON frame contains {name}")


def decode(data: bytes) -> Frame:
    """Decode either encoding: JSON when the payload starts with ``{``, binary otherwise."""
    stripped = data.lstrip(b" \t\r\n")
    if stripped[:1] == b"{":
        return decode_json(data)
    return decode_binary(data)
