"""Joining a device's released frames into few detector pushes without changing the results.

A 1 s frame costs the detector mostly per-call overhead, so a worker with a backlog pushes
each device's released frames as few joined runs (``push_emg_parts`` / ``push_acc_parts``),
which give exactly what pushing the frames one at a time gives.

Joining consecutive frames of one stream never changes a result. Pulling accelerometer frames
ahead of EMG frames that were released before them could: the detector decides EMG blocks
without the accelerometer once the EMG has run ``acc_wait`` past it. So an accelerometer frame
joins a round only while, in the released order, no EMG frame of the round had run that far
ahead (with a margin); otherwise the round is pushed first, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ingest.protocol import Frame, StreamKind

T = TypeVar("T")

SAFETY_MARGIN_US = 500_000  # covers block rounding and the detector's jitter allowance
# A round spans at most this much device time: its accelerometer goes in ahead of its EMG, and
# the detector keeps only an hour of accelerometer history ahead of its decisions.
MAX_ROUND_US = 600_000_000


@dataclass
class Push(Generic[T]):
    """Frames of one stream pushed in one call, in released order, each with its tag."""

    kind: StreamKind
    items: list[tuple[Frame, T]] = field(default_factory=list)

    @property
    def frames(self) -> list[Frame]:
        return [frame for frame, _ in self.items]


def plan_pushes(
    released: Sequence[tuple[Frame, T]],
    acc_end_us: int | None,
    acc_wait_us: int,
) -> list[Push[T]]:
    """Group ``released`` (frames in the order the sequencer released them, each with a tag
    the caller wants back) into pushes that give the detector's results of pushing them one
    by one in that order.

    Parameters
    ----------
    acc_end_us : int or None
        Where the detector's accelerometer stream ends now, µs (None: not seen yet).
    acc_wait_us : int
        The detector's ``acc_wait``, µs.

    Returns
    -------
    list of Push
        Each round's accelerometer push, then its EMG push; rounds in order.
    """
    limit = acc_wait_us - SAFETY_MARGIN_US
    pushes: list[Push[T]] = []
    acc_run: Push[T] = Push(StreamKind.ACC)
    emg_run: Push[T] = Push(StreamKind.EMG)
    acc_closed = False  # an EMG frame of this round ran too far ahead: no ACC may pass it
    acc_end = acc_end_us
    round_start: int | None = None

    def close_round() -> None:
        nonlocal acc_run, emg_run, acc_closed, round_start
        for run in (acc_run, emg_run):
            if run.items:
                pushes.append(run)
        acc_run, emg_run, acc_closed = Push(StreamKind.ACC), Push(StreamKind.EMG), False
        round_start = None

    for frame, tag in released:
        if round_start is not None and frame.end_us - round_start > MAX_ROUND_US:
            close_round()
        if frame.kind is StreamKind.ACC:
            if acc_closed or (acc_run.items and not _joins(acc_run.items[-1][0], frame)):
                close_round()
            acc_run.items.append((frame, tag))
            acc_end = frame.end_us if acc_end is None else max(acc_end, frame.end_us)
        else:
            if emg_run.items and not _joins(emg_run.items[-1][0], frame):
                close_round()
            emg_run.items.append((frame, tag))
            if acc_end is None or frame.end_us - acc_end >= limit:
                acc_closed = True
        if round_start is None:
            round_start = frame.start_us
    close_round()
    return pushes


def _joins(last: Frame, frame: Frame) -> bool:
    """Whether ``frame`` can go in one call with ``last`` (same rate and channel count)."""
    return frame.rate_hz == last.rate_hz and frame.channels == last.channels
