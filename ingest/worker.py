"""The ingest worker: MQTT frames in, episodes and series out, at-least-once in, exactly once in
effect.

One processing thread takes batches from the :class:`~ingest.intake.Intake` queue and, per
batch: sequences every frame (:mod:`ingest.sequencing`), pushes released frames into the
device's detector in device-time order, writes events, series and dead letters to the store,
hands events to the sinks, commits stream positions + held frames + detector state to the
checkpoint in one transaction, and only then acknowledges the batch's MQTT messages. A crash
anywhere before the acknowledgements means the broker redelivers them to the same persistent
session; they are redone from the last checkpoint, and store writes are idempotent upserts.

Each device's sequencer and detector, and what a batch changed of them, live in a
:class:`~ingest.devices.DeviceState`: the detector state is committed as a snapshot every
``snapshot_every_frames`` pushed frames and, in between, as a replay log of the frames pushed
since the snapshot (:mod:`ingest.checkpoint`). The store's writes of a batch go in one
transaction when the store offers ``grouped()`` (:class:`GroupedWrites`).

Scale-out: ``worker_count`` workers each keep their own persistent session subscribed to every
device topic; worker ``i`` processes the devices with ``crc32(device_id) % worker_count == i``
and acknowledges the others unprocessed (see ``docs/protocol.md``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

from detection.events import DetectorEvent, EpisodeEvent, EventKind, QualityEvent, SeriesPoint
from ingest.checkpoint import Checkpoint, CheckpointError
from ingest.detectors import BatchEventSink, DetectorFactory, EventSink, Handoff
from ingest.devices import DeviceState, dead_letter_for, push_devices
from ingest.health import HealthTracker
from ingest.intake import BrokerConfig, Inbound, Intake, Rejected, owner_of
from ingest.sequencing import Outcome, StreamCounters
from storage.base import DeadLetter, HealthRecord, Store, StoreUnavailable, UnstorableValue

log = logging.getLogger(__name__)

REGISTRATION_CACHE_US = 60_000_000
HOUSEKEEPING_INTERVAL_US = 250_000


@runtime_checkable
class GroupedWrites(Protocol):
    """A store that can put the writes of one batch into one durable transaction.

    ``refused_in_groups`` counts the calls made in such blocks that the store refused only
    when the block ended (logged and dropped; the other calls of the block are kept): the
    worker counts them as unstorable, as it does a call refused when it is made.
    """

    refused_in_groups: int

    def grouped(self) -> AbstractContextManager[None]: ...


def wall_clock_us() -> int:
    """Wall clock, µs since the Unix epoch (UTC)."""
    return time.time_ns() // 1000


@dataclass(frozen=True)
class WorkerStats:
    """Progress counters of one worker since it started."""

    received: int  # MQTT messages taken from the broker
    redelivered: int  # of which the broker had sent before without getting an acknowledgement
    not_owned: int  # acknowledged unprocessed: another worker owns the device
    ignored: int  # acknowledged unprocessed: outbound topics (status, dead letters, alerts)
    frames_accepted: int
    frames_released: int  # pushed into a detector
    duplicates: int
    late: int
    dead_letters: int
    episodes_started: int
    episodes_ended: int
    batches: int
    acked: int
    queue_full_waits: int  # times intake blocked on a full queue (back-pressure)
    store_retries: int
    unstorable: int  # result writes the store refused (logged), when called or when grouped
    connects: int
    queued: int


class IngestWorker:
    """Consumes frames from MQTT for the devices this worker owns.

    Parameters
    ----------
    broker : BrokerConfig
        Broker address, credentials and this worker's stable client id.
    store : Store
        Where episodes, series, health and dead letters go.
    detectors : DetectorFactory
        Makes and restores the per-device detectors.
    data_dir : Path
        Holds the checkpoint ``ingest-{worker_index}.sqlite``.
    worker_index, worker_count : int
        This worker's share of the devices (crc32 of the device id mod the count).
    queue_frames : int
        Bound of the queue between MQTT and processing (also the MQTT 5 Receive Maximum).
    reorder_window_s : float
        Device time a live frame waits for missing earlier frames, seconds.
    max_pending_frames : int
        Most frames held per stream for reordering.
    idle_flush_s : float
        Wall time after a device's last frame when held frames are released regardless.
    finish_after_s : float
        Wall time after a device's last frame when its detector is finished (end of data:
        open episodes close) and dropped; the next frame starts a new one.
    health_interval_s : float
        How often health records are written to the store.
    is_registered : callable, optional
        Device id -> registered; when given, frames of unregistered devices are dead-lettered.
    sinks : sequence of EventSink
        Get every detector event before the causing messages are acknowledged.
    clock_us : callable
        Wall clock for arrival times, µs since the epoch.
    max_batch : int
        Most messages processed per checkpoint transaction.
    snapshot_every_frames : int
        A device's detector is snapshotted once this many frames were pushed into it since
        its last snapshot; until then the frames go to its replay log. 1 snapshots in every
        commit that pushed a frame.
    """

    def __init__(
        self,
        broker: BrokerConfig,
        store: Store,
        detectors: DetectorFactory,
        data_dir: Path,
        *,
        worker_index: int = 0,
        worker_count: int = 1,
        queue_frames: int = 2000,
        reorder_window_s: float = 5.0,
        max_pending_frames: int = 50_000,
        idle_flush_s: float = 60.0,
        finish_after_s: float = 300.0,
        health_interval_s: float = 10.0,
        is_registered: Callable[[str], bool] | None = None,
        sinks: Sequence[EventSink] = (),
        clock_us: Callable[[], int] = wall_clock_us,
        max_batch: int = 500,
        snapshot_every_frames: int = 60,
    ) -> None:
        if not 0 <= worker_index < worker_count:
            raise ValueError(f"worker_index {worker_index} is not in 0..{worker_count - 1}")
        if queue_frames < 1 or max_batch < 1 or snapshot_every_frames < 1:
            raise ValueError("queue_frames, max_batch and snapshot_every_frames must be >= 1")
        self.store = store
        self.detectors = detectors
        self.worker_index = worker_index
        self.worker_count = worker_count
        self.reorder_window_us = round(reorder_window_s * 1e6)
        self.max_pending_frames = max_pending_frames
        self.idle_flush_us = round(idle_flush_s * 1e6)
        self.finish_after_us = round(finish_after_s * 1e6)
        self.health_interval_us = round(health_interval_s * 1e6)
        self.is_registered = is_registered
        self.sinks = tuple(sinks)
        self.clock_us = clock_us
        self.max_batch = max_batch
        self.snapshot_every_frames = snapshot_every_frames
        self.checkpoint = Checkpoint(data_dir / f"ingest-{worker_index}.sqlite")
        self.intake = Intake(broker, broker.client_id, self.owns, queue_frames, clock_us)
        self.health = HealthTracker()
        self._devices: dict[str, DeviceState] = {}
        self._registered: dict[str, tuple[bool, int]] = {}
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._last_housekeeping_us = 0
        self._last_health_us = 0
        self._batch: Counter[str] = Counter()
        self._health_notes: list[tuple[str, str, int | None, int]] = []
        self._c = dict.fromkeys(
            (
                "frames_accepted",
                "frames_released",
                "duplicates",
                "late",
                "dead_letters",
                "episodes_started",
                "episodes_ended",
                "batches",
                "acked",
                "store_retries",
                "unstorable",
            ),
            0,
        )

    # ------------------------------------------------------------------ lifecycle

    def owns(self, device_id: str) -> bool:
        """Whether this worker processes ``device_id``."""
        return owner_of(device_id, self.worker_count) == self.worker_index

    def start(self) -> None:
        """Restore the checkpoint, start processing and connect to the broker."""
        now = self.clock_us()
        for device_id in self.checkpoint.device_ids():
            if self.owns(device_id):
                self._load(device_id, now)
        self._running.set()
        self._thread = threading.Thread(target=self._run, name="ingest-processing", daemon=True)
        self._thread.start()
        self.intake.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the batch in hand, commit it, disconnect; unprocessed messages stay queued
        at the broker for the next start. Stopping twice is harmless."""
        if self._stop_requested.is_set():
            return
        self.intake.stopping.set()
        self._running.clear()
        self._stop_requested.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.intake.stop()
        self.checkpoint.close()

    def __enter__(self) -> IngestWorker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def failure(self) -> BaseException | None:
        """The error that stopped the processing thread, if any."""
        return self._failure

    def stats(self) -> WorkerStats:
        """Progress counters."""
        c = self._c
        return WorkerStats(
            received=self.intake.received,
            redelivered=self.intake.redelivered,
            not_owned=self.intake.not_owned,
            ignored=self.intake.ignored,
            queue_full_waits=self.intake.queue_full_waits,
            connects=self.intake.connects,
            queued=self.intake.items.qsize(),
            **c,
        )

    def health_snapshot(self) -> list[HealthRecord]:
        """Current health of every (device, stream) this worker has seen."""
        with self._lock:
            return self.health.records(self._counters(), self.clock_us())

    # ------------------------------------------------------------------ processing thread

    def _run(self) -> None:
        try:
            while self._running.is_set():
                batch = self._next_batch()
                self._process_with_retry(batch)
        except BaseException as exc:
            self._failure = exc
            log.exception("ingest processing stopped")
            raise

    def _next_batch(self) -> list[Inbound | Rejected]:
        items = self.intake.items
        batch: list[Inbound | Rejected] = []
        try:
            batch.append(items.get(timeout=0.1))
        except queue.Empty:
            return batch
        while len(batch) < self.max_batch:
            try:
                batch.append(items.get_nowait())
            except queue.Empty:
                break
        return batch

    def _process_with_retry(self, batch: list[Inbound | Rejected]) -> None:
        delay_s = 0.5
        while True:
            try:
                with self._lock:
                    self._process(batch)
                return
            except (StoreUnavailable, CheckpointError) as exc:
                self._c["store_retries"] += 1
                log.warning("storing a batch failed (%s); retrying in %.1f s", exc, delay_s)
                with self._lock:
                    self._devices.clear()  # reload the committed state on the retry
                if not self._running.is_set():
                    return  # the batch stays unacknowledged and is redelivered
                self._stop_requested.wait(delay_s)
                delay_s = min(delay_s * 2, 30.0)

    def _process(self, batch: list[Inbound | Rejected]) -> None:
        """Process, store, commit and acknowledge one batch. Counters and health notes are
        applied only once the batch is committed, so a retried batch counts once."""
        now = self.clock_us()
        self._batch = Counter()
        self._health_notes = []
        letters: list[DeadLetter] = []
        for item in batch:
            if isinstance(item, Rejected):
                letters.append(item.letter)
                if item.stream is not None:
                    self._health_notes.append((item.letter.device_id, item.stream, None, now))
                continue
            letter = self._offer(item)
            if letter is not None:
                letters.append(letter)
        taken, refused = push_devices(list(self._devices.values()), self.detectors)
        self._batch["frames_released"] += taken
        letters.extend(refused)
        if now - self._last_housekeeping_us >= HOUSEKEEPING_INTERVAL_US:
            self._housekeeping(self._arrival_horizon(batch, now))
            self._last_housekeeping_us = now
        self._commit(letters, now)
        for key, count in self._batch.items():
            self._c[key] += count
        for device_id, stream, end_us, arrival_us in self._health_notes:
            if end_us is None:
                self.health.dead_letter(device_id, stream, arrival_us)
            else:
                self.health.frame(device_id, stream, end_us, arrival_us)
        for item in batch:
            self.intake.ack(item.mid, item.qos)
        self._c["acked"] += len(batch)
        self._c["dead_letters"] += len(letters)
        self._c["batches"] += 1 if batch else 0
        for letter in letters:
            self.intake.publish_dead_letter(letter)
        if now - self._last_health_us >= self.health_interval_us:
            records = self.health.records(self._counters(), now)
            self._guarded(
                what="health", device_id="-", write=self.store.write_health, args=(records,)
            )
            self._last_health_us = now

    def _offer(self, item: Inbound) -> DeadLetter | None:
        device_id = item.topic.device_id
        if not self._registered_device(device_id, item.arrival_us):
            self._health_notes.append((device_id, item.topic.kind.label, None, item.arrival_us))
            return dead_letter_for(item, "unregistered", f"device {device_id!r} is not registered")
        device = self._device(device_id, item.arrival_us)
        device.last_arrival_us = item.arrival_us
        step = device.sequencer.offer(item.frame, item.topic.transport, item.arrival_us)
        device.dirty = True
        if step.outcome is Outcome.DUPLICATE:
            self._batch["duplicates"] += 1
            return None
        if step.outcome is Outcome.LATE:
            self._batch["late"] += 1
            return None
        self._batch["frames_accepted"] += 1
        frame = item.frame
        self._health_notes.append((device_id, frame.kind.label, frame.end_us, item.arrival_us))
        device.added[(frame.kind, frame.seq)] = (frame, item.topic.transport)
        device.queue(step, item)
        return None

    def _arrival_horizon(self, batch: list[Inbound | Rejected], now: int) -> int:
        """Arrival time up to which every message has been processed, µs: now when nothing
        waits in the intake queue; otherwise the newest arrival of this batch (the queue is in
        arrival order). A worker working through a backlog thus judges a device quiet by the
        messages it has seen, not by how far behind it is."""
        if self.intake.items.empty():
            return now
        arrivals = [
            item.arrival_us if isinstance(item, Inbound) else item.letter.arrival_us
            for item in batch
        ]
        return max(arrivals, default=now)

    def _housekeeping(self, horizon_us: int) -> None:
        """Release held frames of quiet devices; finish detectors of devices gone silent.
        Quiet is judged at ``horizon_us`` (see :meth:`_arrival_horizon`)."""
        for device in self._devices.values():
            quiet_us = horizon_us - device.last_arrival_us
            if device.sequencer.pending_count() and quiet_us >= self.idle_flush_us:
                self._batch["frames_released"] += device.release_held(self.detectors)
            if device.detector is not None and quiet_us >= self.finish_after_us:
                self._batch["frames_released"] += device.finish_detector(self.detectors)

    def _commit(self, letters: list[DeadLetter], now: int) -> None:
        dirty = [d for d in self._devices.values() if d.dirty]
        updates = []
        handoffs: list[Handoff] = []
        refused_before = self._refused_in_groups()
        with self._grouped_writes():
            for device in dirty:
                events = device.events
                if device.detector is not None:
                    device.series.extend(device.detector.pop_series())
                self._write_results(device.device_id, events, device.series)
                if events:
                    handoffs.append((device.device_id, events))
                updates.append(device.update(self.snapshot_every_frames))
            if letters:
                self._guarded(
                    what="dead letters",
                    device_id="-",
                    write=self.store.write_dead_letters,
                    args=(letters,),
                )
        self._batch["unstorable"] += self._refused_in_groups() - refused_before
        if handoffs:
            for sink in self.sinks:
                self._hand_to_sink(sink, handoffs, now)
        self.checkpoint.commit(updates)
        for device, update in zip(dirty, updates, strict=True):
            for event in device.events:
                if isinstance(event, EpisodeEvent) and event.kind is EventKind.STARTED:
                    self._batch["episodes_started"] += 1
                elif isinstance(event, EpisodeEvent) and event.kind is EventKind.ENDED:
                    self._batch["episodes_ended"] += 1
            device.committed(update)

    def _refused_in_groups(self) -> int:
        return self.store.refused_in_groups if isinstance(self.store, GroupedWrites) else 0

    def _grouped_writes(self) -> AbstractContextManager[None]:
        """One store transaction for the batch's writes, when the store offers it."""
        if isinstance(self.store, GroupedWrites):
            return self.store.grouped()
        return nullcontext()

    def _write_results(
        self, device_id: str, events: list[DetectorEvent], series: list[SeriesPoint]
    ) -> None:
        """Write one device's results (nothing when there are none); a value the store refuses
        is logged and skipped, while an unavailable store raises (the batch is retried)."""
        episodes = [e for e in events if isinstance(e, EpisodeEvent)]
        quality = [e for e in events if isinstance(e, QualityEvent)]
        if episodes:
            self._guarded(
                what="episode events",
                device_id=device_id,
                write=self.store.write_events,
                args=(episodes,),
            )
        if quality:
            self._guarded(
                what="quality events",
                device_id=device_id,
                write=self.store.write_quality,
                args=(quality,),
            )
        if series:
            self._guarded(
                what="series points",
                device_id=device_id,
                write=self.store.write_series,
                args=(device_id, series),
            )

    def _guarded(
        self, *, what: str, device_id: str, write: Callable[..., None], args: tuple[object, ...]
    ) -> None:
        try:
            write(*args)
        except UnstorableValue as exc:
            self._batch["unstorable"] += 1
            log.error("store refused %s of %s: %s", what, device_id, exc)

    def _hand_to_sink(self, sink: EventSink, handoffs: list[Handoff], now: int) -> None:
        """The batch's events to one sink: in one call when it takes batches, else device by
        device. A failing sink must not stop ingest; it is logged with its trace."""
        if isinstance(sink, BatchEventSink):
            try:
                sink.handle_many(handoffs, now)
            except Exception:
                devices = ", ".join(device_id for device_id, _ in handoffs)
                log.exception("event sink %r failed for %s", sink, devices)
            return
        for device_id, events in handoffs:
            try:
                sink.handle(device_id, events, now)
            except Exception:
                log.exception("event sink %r failed for %s", sink, device_id)

    # ------------------------------------------------------------------ device state

    def _device(self, device_id: str, now: int) -> DeviceState:
        device = self._devices.get(device_id)
        return device if device is not None else self._load(device_id, now)

    def _load(self, device_id: str, now: int) -> DeviceState:
        device = DeviceState.load(
            device_id,
            self.checkpoint.load(device_id),
            self.detectors,
            reorder_window_us=self.reorder_window_us,
            max_pending=self.max_pending_frames,
            now_us=now,
        )
        self._devices[device_id] = device
        return device

    def _registered_device(self, device_id: str, now: int) -> bool:
        if self.is_registered is None:
            return True
        cached = self._registered.get(device_id)
        if cached is not None and now - cached[1] < REGISTRATION_CACHE_US:
            return cached[0]
        answer = bool(self.is_registered(device_id))
        self._registered[device_id] = (answer, now)
        return answer

    def _counters(self) -> dict[tuple[str, str], StreamCounters]:
        return {
            (device_id, kind.label): stream.counters
            for device_id, device in self._devices.items()
            for kind, stream in device.sequencer.streams.items()
        }
