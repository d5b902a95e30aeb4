"""Offline detection of a whole recording: the streaming detector fed in time order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from detection.config import DetectorConfig
from detection.errors import DetectorInputError
from detection.events import (
    DetectorEvent,
    Episode,
    EpisodeEvent,
    EventKind,
    QualityEvent,
    SeriesPoint,
)
from detection.stream import StreamDetector

CHUNK_S = 60.0  # feeding step; results do not depend on it


@dataclass(frozen=True)
class DetectionResult:
    """Everything the detector found in a recording.

    Attributes
    ----------
    episodes : list of Episode
        Final (ended) episodes in onset order.
    quality : list of QualityEvent
        Closed fault intervals in start order.
    series : list of SeriesPoint
        1 s summary points.
    events : list of DetectorEvent
        Every event in emission order (what a live run would have sent).
    """

    episodes: list[Episode]
    quality: list[QualityEvent]
    series: list[SeriesPoint]
    events: list[DetectorEvent]


def detect_recording(
    emg_uv: Any,
    emg_rate_hz: float,
    acc_g: Any = None,
    acc_rate_hz: float | None = None,
    *,
    start_us: int = 0,
    device_id: str = "offline",
    site: str = "calf",
    mains_hz: str | float | None = "auto",
    mvc_uv: float | None = None,
    config: DetectorConfig | None = None,
) -> DetectionResult:
    """Run the streaming detector over a whole recording.

    Parameters
    ----------
    emg_uv : array, shape (n,) or (n, channels)
        EMG, µV.
    emg_rate_hz : float
        EMG sample rate, Hz (500-4000).
    acc_g : array, shape (m, 3), optional
        Accelerometer, g, starting at the same time as the EMG.
    acc_rate_hz : float, optional
        Accelerometer sample rate, Hz (12.5-200); required with ``acc_g``.
    start_us : int
        Device time of the first sample, µs since the Unix epoch.
    device_id, site, mains_hz, mvc_uv, config
        As for :class:`~detection.stream.StreamDetector`.

    Returns
    -------
    DetectionResult
        Identical to what a live :class:`StreamDetector` fed the same samples produces.
    """
    if (acc_g is None) != (acc_rate_hz is None):
        raise DetectorInputError("acc_g and acc_rate_hz must be given together")
    detector = StreamDetector(device_id, site, mains_hz=mains_hz, mvc_uv=mvc_uv, config=config)
    emg = np.asarray(emg_uv, dtype=np.float64)
    if emg.ndim == 0 or emg.shape[0] == 0:
        raise DetectorInputError(f"EMG recording is empty (shape {emg.shape})")
    acc = None if acc_g is None else np.asarray(acc_g, dtype=np.float64)
    if acc is not None and (acc.ndim != 2 or acc.shape[0] == 0):
        raise DetectorInputError(f"ACC recording must have shape (m, 3), got {acc.shape}")
    events: list[DetectorEvent] = []
    series: list[SeriesPoint] = []
    emg_step = max(1, round(CHUNK_S * float(emg_rate_hz)))
    acc_done = 0
    for lo in range(0, emg.shape[0], emg_step):
        hi = min(lo + emg_step, emg.shape[0])
        if acc is not None and acc_rate_hz is not None:
            acc_hi = acc.shape[0] if hi == emg.shape[0] else round(hi / emg_rate_hz * acc_rate_hz)
            acc_hi = min(acc_hi, acc.shape[0])
            if acc_hi > acc_done:
                acc_start = start_us + round(acc_done * 1e6 / acc_rate_hz)
                events.extend(detector.push_acc(acc[acc_done:acc_hi], acc_start, acc_rate_hz))
                acc_done = acc_hi
        chunk_start = start_us + round(lo * 1e6 / emg_rate_hz)
        events.extend(detector.push_emg(emg[lo:hi], chunk_start, emg_rate_hz))
        series.extend(detector.pop_series())
    events.extend(detector.finish())
    series.extend(detector.pop_series())
    episodes = [
        e.episode for e in events if isinstance(e, EpisodeEvent) and e.kind is EventKind.ENDED
    ]
    quality = [e for e in events if isinstance(e, QualityEvent) and e.end_us is not None]
    return DetectionResult(
        episodes=sorted(episodes, key=lambda ep: ep.onset_us),
        quality=sorted(quality, key=lambda q: (q.start_us, q.flag.value)),
        series=series,
        events=events,
    )
