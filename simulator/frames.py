"""Frame plans: which frames a device sends for a night, in which order, with which times.

Pure: labels and sample counts in, :class:`PlannedFrame` lists out; :func:`frame_payload`
encodes one through the v1 wire protocol. The frame-level faults in the labels (gaps,
duplicated and out-of-order frames, clock drift and jumps) are applied exactly as labelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from ingest.protocol import (
    MAX_FRAME_BYTES,
    MAX_SAMPLES_PER_FRAME,
    SampleType,
    StreamKind,
    encode_binary,
    encode_json,
    make_frame,
)
from simulator.labels import NightLabels
from simulator.recording import Recording

DEFAULT_FRAME_S: Final = 1.0  # live: a frame leaves once its last sample is taken
SYNC_FRAME_S: Final = 30.0  # end-of-night upload: large frames, as far as the protocol allows
_HEADROOM_BYTES: Final = 4096  # header, CRC and JSON keys
_JSON_VALUE_BYTES: Final = 24  # widest float32 value as JSON text, with its separator


def largest_frame_s(rec: Recording, *, json: bool = False) -> float:
    """Longest frame (s, to 10 ms) that every stream of ``rec`` can send within the protocol's
    sample and byte limits, as float32 samples (binary) or JSON numbers."""
    value_bytes = _JSON_VALUE_BYTES if json else 4
    streams = [(rec.emg_rate_hz, rec.emg_uv.shape[1] if rec.emg_uv.ndim == 2 else 1)]
    if rec.acc_g is not None and rec.acc_rate_hz is not None:
        streams.append((rec.acc_rate_hz, 3))
    longest = math.inf
    for rate_hz, channels in streams:
        by_bytes = (MAX_FRAME_BYTES - _HEADROOM_BYTES) // (value_bytes * channels)
        samples = min(MAX_SAMPLES_PER_FRAME, by_bytes)
        longest = min(longest, math.floor(samples / rate_hz * 100) / 100)
    return longest


@dataclass(frozen=True)
class PlannedFrame:
    """One frame as it will be sent.

    Attributes
    ----------
    kind : StreamKind
    seq : int
        Sequence number within (device, stream); a duplicate repeats it, a gap skips numbers.
    first_sample, n_samples : int
        Slice of the recording's samples.
    start_us : int
        Device-clock time of the first sample (drift and jumps applied), µs.
    true_start_s : float
        Recording time of the first sample, seconds (no clock faults).
    due_s : float
        Recording time at which a live device sends it (after its last sample).
    """

    kind: StreamKind
    seq: int
    first_sample: int
    n_samples: int
    start_us: int
    true_start_s: float
    due_s: float


def plan_frames(
    labels: NightLabels,
    n_emg: int,
    n_acc: int,
    *,
    frame_s: float = DEFAULT_FRAME_S,
    faults: bool = True,
) -> list[PlannedFrame]:
    """Every frame a device sends for one night, in sending order.

    Frame faults from ``labels`` (when ``faults``): frames starting inside a ``gap`` are not
    sent (their sequence numbers are skipped); inside ``duplicate_frames`` every frame is sent
    twice in a row; inside ``out_of_order`` consecutive frames of a stream are sent in swapped
    pairs; ``clock_drift`` (ppm) and ``clock_jump`` (s, from its onset on) shift ``start_us``.
    """
    streams: list[tuple[StreamKind, float, int]] = [(StreamKind.EMG, labels.emg_rate_hz, n_emg)]
    if labels.acc_rate_hz is not None and n_acc > 0:
        streams.append((StreamKind.ACC, labels.acc_rate_hz, n_acc))
    drift_ppm = 0.0
    jumps: list[tuple[float, float]] = []
    windows: dict[str, list[tuple[float, float]]] = {
        "gap": [],
        "duplicate_frames": [],
        "out_of_order": [],
    }
    if faults:
        for fault in labels.faults:
            if fault.type == "clock_drift":
                drift_ppm = fault.value
            elif fault.type == "clock_jump":
                jumps.append((fault.onset_s, fault.value))
            elif fault.type in windows:
                windows[fault.type].append((fault.onset_s, fault.offset_s))

    def inside(kind: str, t_s: float) -> bool:
        return any(a <= t_s < b for a, b in windows[kind])

    def device_us(t_s: float) -> int:
        offset_s = t_s * (1.0 + drift_ppm * 1e-6) + sum(j for at, j in jumps if at <= t_s)
        return labels.start_us + round(offset_s * 1e6)

    merged: list[tuple[float, int, int, PlannedFrame]] = []
    for order, (kind, rate_hz, n_total) in enumerate(streams):
        per_frame = max(1, round(rate_hz * frame_s))
        frames: list[PlannedFrame] = []
        for seq, first in enumerate(range(0, n_total, per_frame)):
            n = min(per_frame, n_total - first)
            t_s = first / rate_hz
            if inside("gap", t_s):
                continue
            frame = PlannedFrame(kind, seq, first, n, device_us(t_s), t_s, (first + n) / rate_hz)
            frames.append(frame)
            if inside("duplicate_frames", t_s):
                frames.append(frame)
        k = 0
        while k + 1 < len(frames):
            a, b = frames[k], frames[k + 1]
            if inside("out_of_order", a.true_start_s) and a.seq != b.seq:
                frames[k] = b
                frames[k + 1] = PlannedFrame(
                    a.kind, a.seq, a.first_sample, a.n_samples, a.start_us, a.true_start_s, b.due_s
                )
                k += 2
            else:
                k += 1
        merged.extend((f.due_s, order, i, f) for i, f in enumerate(frames))
    merged.sort(key=lambda item: (item[0], item[1], item[2]))
    return [item[3] for item in merged]


def frame_payload(rec: Recording, planned: PlannedFrame, *, json: bool = False) -> bytes:
    """Encode one planned frame's samples (float32, physical units) as a v1 message."""
    if planned.kind is StreamKind.EMG:
        samples = rec.emg_uv[planned.first_sample : planned.first_sample + planned.n_samples]
        rate = rec.emg_rate_hz
    else:
        if rec.acc_g is None or rec.acc_rate_hz is None:
            raise ValueError("recording has no accelerometer")
        samples = rec.acc_g[planned.first_sample : planned.first_sample + planned.n_samples]
        rate = rec.acc_rate_hz
    frame = make_frame(
        planned.kind,
        rate,
        planned.start_us,
        planned.seq,
        np.asarray(samples, dtype=np.float32),
        scale=1.0,
        sample_type=SampleType.FLOAT32,
    )
    return encode_json(frame) if json else encode_binary(frame)
