"""What the ingest worker needs from a detector, and the factory for the real one.

The worker holds one detector per device and checkpoints it with ``snapshot()``; any object
with these methods plugs in (the real one is :class:`detection.stream.StreamDetector`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from detection.errors import DetectorError
from detection.events import DetectorEvent, SeriesPoint
from ingest.protocol import StreamKind


class Detector(Protocol):
    """A stateful streaming detector of one device."""

    def push_emg(
        self, samples_uv: npt.NDArray[np.float64], start_us: int, rate_hz: float
    ) -> list[DetectorEvent]: ...

    def push_acc(
        self, samples_g: npt.NDArray[np.float64], start_us: int, rate_hz: float
    ) -> list[DetectorEvent]: ...

    def push_emg_parts(
        self, parts: Sequence[tuple[npt.NDArray[np.float64], int]], rate_hz: float
    ) -> list[DetectorEvent]: ...

    def push_acc_parts(
        self, parts: Sequence[tuple[npt.NDArray[np.float64], int]], rate_hz: float
    ) -> list[DetectorEvent]: ...

    def stream_ends_us(self) -> tuple[int | None, int | None]: ...

    @property
    def acc_wait_us(self) -> int: ...

    def finish(self, end_us: int | None = None) -> list[DetectorEvent]: ...

    def pop_series(self) -> list[SeriesPoint]: ...

    def snapshot(self) -> bytes: ...


PushMany = Callable[
    [StreamKind, Sequence[tuple[Detector, npt.NDArray[np.float64], int, float]]],
    list[list[DetectorEvent] | DetectorError],
]
"""``push_many(kind, [(detector, samples, start_us, rate_hz), ...])``: the results of each
detector's own ``push_emg`` / ``push_acc``, in order, an error where that push would raise
(that detector unchanged). A factory may offer it; the worker then pushes a second of many
wearers in one call per stream kind."""


class DetectorFactory(Protocol):
    """Makes a fresh detector for a device, or restores one from a checkpoint."""

    def create(self, device_id: str) -> Detector: ...

    def restore(self, data: bytes) -> Detector: ...


class EventSink(Protocol):
    """Receives every detector event before the frames that caused it are acknowledged."""

    def handle(self, device_id: str, events: Sequence[DetectorEvent], arrival_us: int) -> None: ...


Handoff = tuple[str, Sequence[DetectorEvent]]  # one device's events of a batch


@runtime_checkable
class BatchEventSink(EventSink, Protocol):
    """A sink that takes a whole batch's events in one call (one transaction, say).

    ``handle_many(handoffs, arrival_us)`` must have the effect of ``handle`` of each
    ``(device_id, events)`` in turn; the worker prefers it when a sink has it.
    """

    def handle_many(self, handoffs: Sequence[Handoff], arrival_us: int) -> None: ...


class StreamDetectorFactory:
    """Builds :class:`detection.stream.StreamDetector` instances.

    Parameters
    ----------
    mains_hz : str
        ``"auto"``, ``"50"``, ``"60"``, ``"both"`` or ``"off"``, passed through.
    site_for : callable, optional
        Device id -> sensor site (e.g. from the metadata DB); default ``default_site``.
    mvc_uv_for : callable, optional
        Device id -> calibrated MVC in µV, or None.
    """

    def __init__(
        self,
        mains_hz: Any = "auto",
        site_for: Callable[[str], str] | None = None,
        mvc_uv_for: Callable[[str], float | None] | None = None,
        *,
        default_site: str = "calf",
    ) -> None:
        self.mains_hz = mains_hz
        self.site_for = site_for or (lambda _device_id: default_site)
        self.mvc_uv_for = mvc_uv_for or (lambda _device_id: None)

    def create(self, device_id: str) -> Detector:
        from detection.stream import StreamDetector

        detector: Detector = StreamDetector(
            device_id,
            self.site_for(device_id),
            mains_hz=self.mains_hz,
            mvc_uv=self.mvc_uv_for(device_id),
        )
        return detector

    def restore(self, data: bytes) -> Detector:
        from detection.stream import StreamDetector

        detector: Detector = StreamDetector.restore(data)
        return detector

    def push_many(
        self,
        kind: StreamKind,
        pushes: Sequence[tuple[Detector, npt.NDArray[np.float64], int, float]],
    ) -> list[list[DetectorEvent] | DetectorError]:
        """:data:`PushMany` through one stacked front end per stream kind
        (:func:`detection.stream.push_emg_many` / ``push_acc_many``)."""
        from detection.stream import StreamDetector, push_acc_many, push_emg_many

        own: list[tuple[StreamDetector, npt.NDArray[np.float64], int, float]] = []
        for detector, samples, start_us, rate_hz in pushes:
            if not isinstance(detector, StreamDetector):
                raise TypeError(f"push_many takes this factory's detectors, got {detector!r}")
            own.append((detector, samples, start_us, rate_hz))
        return push_emg_many(own) if kind is StreamKind.EMG else push_acc_many(own)
