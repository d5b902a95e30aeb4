"""One device inside an ingest worker: its sequencer, its detector, and what the batch in hand
changed, down to the checkpoint update that commits it.

Frames released by the sequencer are queued during a batch and pushed at its end, each stream's
frames joined into few detector calls (:mod:`ingest.coalesce`). The detector state is committed
as a snapshot, or as the frames pushed since the last snapshot (a replay log): loading a device
restores the snapshot and pushes the logged frames again, dropping what they produce (it was
stored and handed to the sinks when they were first pushed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from detection.errors import DetectorError
from detection.events import DetectorEvent, SeriesPoint
from ingest.checkpoint import CheckpointError, DeviceCheckpoint, DeviceUpdate
from ingest.coalesce import Push, plan_pushes
from ingest.detectors import Detector, DetectorFactory, PushMany
from ingest.intake import Inbound
from ingest.protocol import Frame, FrameError, StreamKind, Transport
from ingest.sequencing import DeviceSequencer, Step
from storage.base import DeadLetter

log = logging.getLogger(__name__)


@dataclass
class DeviceState:
    """A device's sequencer and detector, and the changes of the batch in hand."""

    device_id: str
    sequencer: DeviceSequencer
    detector: Detector | None
    last_arrival_us: int
    events: list[DetectorEvent] = field(default_factory=list)
    series: list[SeriesPoint] = field(default_factory=list)
    added: dict[tuple[StreamKind, int], tuple[Frame, Transport]] = field(default_factory=dict)
    removed: set[tuple[StreamKind, int]] = field(default_factory=set)
    dirty: bool = False
    pushed: list[Frame] = field(default_factory=list)  # into the detector, this batch, in order
    queued: list[tuple[Frame, Inbound | None]] = field(default_factory=list)  # released, not pushed
    logged: int = 0  # frames in the committed replay log after the committed snapshot
    fresh: bool = False  # detector created since the last commit (it has no snapshot yet)

    @classmethod
    def load(
        cls,
        device_id: str,
        saved: DeviceCheckpoint | None,
        detectors: DetectorFactory,
        *,
        reorder_window_us: int,
        max_pending: int,
        now_us: int,
    ) -> DeviceState:
        """The device as committed (``saved``; None: never committed), its detector restored
        and its replay log pushed again."""
        if saved is None:
            sequencer = DeviceSequencer(
                device_id, reorder_window_us=reorder_window_us, max_pending=max_pending
            )
            return cls(device_id, sequencer, None, now_us)
        sequencer = DeviceSequencer.from_positions(
            device_id,
            saved.positions,
            saved.pending,
            reorder_window_us=reorder_window_us,
            max_pending=max_pending,
        )
        detector = None
        if saved.detector is not None:
            detector = detectors.restore(saved.detector)
            _replay(detector, saved.replay)
        elif saved.replay:
            raise CheckpointError(f"{device_id} has a replay log but no detector snapshot")
        return cls(device_id, sequencer, detector, now_us, logged=len(saved.replay))

    def queue(self, step: Step, item: Inbound | None) -> None:
        """Queue the frames ``step`` released for the detector (pushed by :meth:`push_queued`);
        ``item`` is the message whose frame was offered, if any."""
        for frame in step.released:
            self.removed.add((frame.kind, frame.seq))
            self.pushed.append(frame)
            self.queued.append((frame, item if item is not None and item.frame is frame else None))

    def push_queued(self, detectors: DetectorFactory) -> tuple[int, list[DeadLetter]]:
        """Push the queued frames into the detector (created when there is none), joined into
        few calls. Returns the frames the detector took and dead letters for offered frames it
        refused."""
        return push_devices([self], detectors)

    def plan_queued(self, detectors: DetectorFactory) -> list[Push[Inbound | None]]:
        """Take the queued frames as the detector pushes that give the results of pushing
        them one at a time (:func:`ingest.coalesce.plan_pushes`); creates the detector when
        there is none."""
        queued, self.queued = self.queued, []
        if not queued:
            return []
        if self.detector is None:
            self.detector = detectors.create(self.device_id)
            self.fresh = True
        detector = self.detector
        return plan_pushes(queued, detector.stream_ends_us()[1], detector.acc_wait_us)

    def took(
        self, push: Push[Inbound | None], result: list[DetectorEvent] | DetectorError
    ) -> tuple[int, list[DeadLetter]]:
        """Record what one planned push gave: its events, or, when the detector refused it
        (and used nothing), its frames pushed one at a time to find the ones refused.
        Returns the frames the detector took and dead letters for refused offered frames."""
        if not isinstance(result, DetectorError):
            self.events.extend(result)
            return len(push.items), []
        detector = self.detector
        if detector is None:
            raise RuntimeError(f"{self.device_id}: a push result without a detector")
        taken = 0
        letters: list[DeadLetter] = []
        for frame, item in push.items:
            took, letter = self._push_one(detector, frame, item)
            taken += took
            if letter is not None:
                letters.append(letter)
        return taken, letters

    def _push_one(
        self, detector: Detector, frame: Frame, item: Inbound | None
    ) -> tuple[bool, DeadLetter | None]:
        """Push one frame: whether the detector took it, and a dead letter when it refused
        the frame of a message of this batch."""
        try:
            events = push_frame(detector, frame)
        except DetectorError as exc:
            log.warning(
                "detector rejected %s frame %d of %s: %s",
                frame.kind,
                frame.seq,
                self.device_id,
                exc,
            )
            letter = None if item is None else dead_letter_for(item, "detector_rejected", str(exc))
            return False, letter
        self.events.extend(events)
        return True, None

    def release_held(self, detectors: DetectorFactory) -> int:
        """Release every held frame (the device went quiet: what is missing is not coming) and
        push it; returns the frames the detector took."""
        self.queue(self.sequencer.flush(), None)
        self.dirty = True
        return self.push_queued(detectors)[0]

    def finish_detector(self, detectors: DetectorFactory) -> int:
        """End of the device's data for now: push every held frame, finish the detector (open
        episodes and faults close) and drop it; returns the frames the detector took."""
        taken = self.release_held(detectors)
        if self.detector is not None:
            ends = [s.frontier_us for s in self.sequencer.streams.values() if s.frontier_us]
            self.events.extend(self.detector.finish(max(ends) if ends else None))
            self.series.extend(self.detector.pop_series())
            self.detector = None
        return taken

    def update(self, snapshot_every_frames: int) -> DeviceUpdate:
        """What to commit: positions, held frames, and either a new detector snapshot or the
        frames pushed this batch appended to the replay log."""
        pending = self.sequencer.pending_keys()
        add_pending = [v for k, v in self.added.items() if k in pending]
        remove_pending = sorted(self.removed - pending)
        positions = self.sequencer.positions()
        detector = self.detector
        if (
            detector is None
            or self.fresh
            or self.logged + len(self.pushed) >= snapshot_every_frames
        ):
            snapshot = None if detector is None else detector.snapshot()
            return DeviceUpdate(self.device_id, positions, snapshot, add_pending, remove_pending)
        return DeviceUpdate(
            self.device_id,
            positions,
            None,
            add_pending,
            remove_pending,
            snapshot=False,
            replay=self.pushed,
            replay_from=self.logged,
        )

    def committed(self, update: DeviceUpdate) -> None:
        """``update`` is durable: start the next batch from it."""
        self.logged = 0 if update.snapshot else update.replay_from + len(update.replay)
        self.events = []
        self.series = []
        self.added = {}
        self.removed = set()
        self.dirty = False
        self.pushed = []
        self.fresh = False


def push_devices(
    devices: Sequence[DeviceState], detectors: DetectorFactory
) -> tuple[int, list[DeadLetter]]:
    """Push every device's queued frames (:meth:`DeviceState.push_queued` of each).

    Each device's planned pushes go in order; the n-th pushes of all devices go together,
    and where the factory has ``push_many`` the single-frame pushes among them (a live second
    of many wearers) go through it in one call per stream kind, which gives each detector what
    its own push gives. Returns the frames taken and the dead letters of refused frames.
    """
    plans = [(device, device.plan_queued(detectors)) for device in devices if device.queued]
    many: PushMany | None = getattr(detectors, "push_many", None)
    taken = 0
    letters: list[DeadLetter] = []
    for index in range(max((len(plan) for _, plan in plans), default=0)):
        pushes = [(device, plan[index]) for device, plan in plans if index < len(plan)]
        results: dict[int, list[DetectorEvent] | DetectorError] = {}
        if many is not None:
            for kind in (StreamKind.ACC, StreamKind.EMG):
                shared: list[int] = []
                calls: list[tuple[Detector, npt.NDArray[np.float64], int, float]] = []
                for k, (device, push) in enumerate(pushes):
                    detector = device.detector
                    if push.kind is kind and len(push.items) == 1 and detector is not None:
                        shared.append(k)
                        calls.append((detector, *_frame_args(push.items[0][0])))
                if len(calls) >= 2:
                    results.update(zip(shared, many(kind, calls), strict=True))
        for k, (device, push) in enumerate(pushes):
            result = results.get(k)
            if result is None:
                result = _push_planned(device, push)
            took, refused = device.took(push, result)
            taken += took
            letters.extend(refused)
    return taken, letters


def _frame_args(frame: Frame) -> tuple[npt.NDArray[np.float64], int, float]:
    """A frame as a detector push takes it: samples in physical units, start, rate."""
    return frame.physical(), frame.start_us, frame.rate_hz


def _push_planned(
    device: DeviceState, push: Push[Inbound | None]
) -> list[DetectorEvent] | DetectorError:
    """One planned push through the detector's joined-parts call (or its error)."""
    detector = device.detector
    if detector is None:
        raise RuntimeError(f"{device.device_id}: a planned push without a detector")
    parts = [(frame.physical(), frame.start_us) for frame, _ in push.items]
    rate_hz = push.items[0][0].rate_hz
    try:
        if push.kind is StreamKind.EMG:
            return detector.push_emg_parts(parts, rate_hz)
        return detector.push_acc_parts(parts, rate_hz)
    except DetectorError as error:  # nothing was used
        return error


def push_frame(detector: Detector, frame: Frame) -> list[DetectorEvent]:
    """Push one frame into the detector stream of its kind."""
    push = detector.push_emg if frame.kind is StreamKind.EMG else detector.push_acc
    return push(*_frame_args(frame))


def dead_letter_for(item: Inbound, reason: str, detail: str) -> DeadLetter:
    """A dead letter for a well-formed message refused after decoding."""
    error = FrameError(reason, detail)
    return DeadLetter(
        arrival_us=item.arrival_us,
        topic=str(item.topic),
        device_id=item.topic.device_id,
        reason=error.reason,
        detail=error.detail,
        payload_bytes=item.payload_bytes,
        payload_head_hex=item.payload_head_hex,
    )


def _replay(detector: Detector, frames: Sequence[Frame]) -> None:
    """Push logged frames into a restored detector again and drop what they produce: their
    events and series were stored and handed to the sinks when they were first pushed."""
    for frame in frames:
        try:
            push_frame(detector, frame)
        except ValueError:  # refused the first time too (dead-lettered then); same state now
            continue
    detector.pop_series()
