"""A real local pipeline for the end-to-end benchmarks: mosquitto, an IngestWorker, a store
(SQLite or a real ``influxd``) and the live alert sink, with a subscriber timing the alerts.

Servers come from ``tests/servers.py`` (free ports, temporary directories).
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from detection.events import DetectorEvent, EpisodeEvent, EventKind

Backend = Literal["sqlite", "influx"]
Cores = tuple[set[int], set[int]]  # the worker's CPUs, and those of everything else


def worker_core() -> Cores | None:
    """One CPU for the worker's threads and the others for the publisher and the servers,
    from the CPUs this process may use; None with fewer than two (or where a thread cannot
    be pinned), and then everything shares what there is."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    return {allowed[-1]}, set(allowed[:-1])


def pin_process(pid: int, cpus: set[int]) -> None:
    """Put every thread of process ``pid`` on ``cpus``; threads it starts later inherit that."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task.name), cpus)


def wall_us() -> int:
    return time.time_ns() // 1000


def rss_peak_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class AlertTimer:
    """Event sink in front of the alert sink: notes when each confirmation reached the worker.

    ``handle`` is called by the worker with the arrival time of the frames that caused the
    events; a ``started`` event is the confirmation.
    """

    inner: Any | None
    confirmed_at_us: dict[str, int] = field(default_factory=dict)
    alerted_at_us: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, device_id: str, events: Sequence[DetectorEvent], arrival_us: int) -> None:
        self.handle_many([(device_id, events)], arrival_us)

    def handle_many(
        self, handoffs: Sequence[tuple[str, Sequence[DetectorEvent]]], arrival_us: int
    ) -> None:
        """The worker's batch: noted, then handed to the alert sink in one call, as the
        service's worker hands it."""
        with self.lock:
            for _device_id, events in handoffs:
                for event in events:
                    if isinstance(event, EpisodeEvent) and event.kind is EventKind.STARTED:
                        self.confirmed_at_us.setdefault(event.episode.episode_id, arrival_us)
        if self.inner is not None:
            self.inner.handle_many(handoffs, arrival_us)

    def on_alert(self, payload: bytes) -> None:
        """Subscriber callback for ``crampwatch/v1/+/alerts``."""
        from alerts.messages import AlertMessageError, AlertType, CrampAlert

        now = wall_us()
        try:
            alert = CrampAlert.from_json(payload)
        except AlertMessageError:
            return  # red-flag or other documents on the topic: not timed here
        if alert.type is AlertType.CRAMP_STARTED:
            with self.lock:
                self.alerted_at_us.setdefault(alert.episode_id, now)

    def wait_quiet(self, quiet_s: float, timeout_s: float) -> None:
        """Return once no alert has arrived for ``quiet_s`` (or after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        seen, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            with self.lock:
                count = len(self.alerted_at_us)
            if count != seen:
                seen, since = count, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.05)

    def latencies_ms(self) -> list[float]:
        with self.lock:
            return [
                (self.alerted_at_us[k] - t) / 1000
                for k, t in self.confirmed_at_us.items()
                if k in self.alerted_at_us
            ]


@contextlib.contextmanager
def mqtt_client(port: int, client_id: str) -> Iterator[Any]:
    """A connected paho client with its network loop running."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError(f"no MQTT connection to port {port}")
        yield client
    finally:
        client.loop_stop()
        client.disconnect()


@dataclass
class Pipeline:
    """Handles of a running pipeline."""

    broker_url: str
    worker: Any
    store: Any
    timer: AlertTimer
    influx_url: str | None


@contextlib.contextmanager
def pipeline(
    workdir: Path,
    backend: Backend,
    *,
    alerts: bool = True,
    finish_after_s: float = 3.0,
    cores: Cores | None = None,
) -> Iterator[Pipeline]:
    """Start mosquitto (+ influxd), a worker with the store and the alert sink; stop them after.

    With ``cores`` the worker gets CPUs of its own: the servers go on the other CPUs, and the
    calling thread on the worker's while the pipeline runs (the worker's threads, the alert
    sink's client and a publisher process started meanwhile inherit that;
    :func:`child_publisher` moves its process to the other CPUs).
    """

    from crampwatch.wiring import tune_collector
    from ingest.detectors import StreamDetectorFactory
    from ingest.intake import BrokerConfig
    from ingest.worker import IngestWorker
    from storage.factory import open_store
    from tests.servers import Influxd, Mosquitto, wait_for

    with contextlib.ExitStack() as stack:
        mosquitto = Mosquitto.create(workdir / "mosquitto")
        mosquitto.start()
        stack.callback(mosquitto.stop)
        if cores is not None and mosquitto.proc is not None:
            pin_process(mosquitto.proc.pid, cores[1])
        influx_url = None
        if backend == "influx":
            influxd = Influxd.create(workdir / "influxd")
            influxd.start(timeout_s=60)
            stack.callback(influxd.stop)
            if cores is not None and influxd.proc is not None:
                pin_process(influxd.proc.pid, cores[1])
            influx_url = influxd.url
            store = open_store(
                "influx",
                workdir / "data",
                url=influx_url,
                database="bench",
                write_mode="v1",
                create_database=True,
            )
        else:
            store = open_store("sqlite", workdir / "data")
        stack.callback(store.close)
        # the benchmark's alert subscriber is not the worker's: it starts before the pinning,
        # free to run on any CPU (it times about one alert per wearer and cramp)
        subscriber = stack.enter_context(mqtt_client(mosquitto.port, "bench-alerts-in"))
        if cores is not None:
            mask = os.sched_getaffinity(0)
            os.sched_setaffinity(0, cores[0])  # this thread, and the threads it starts now
            stack.callback(os.sched_setaffinity, 0, mask)
        inner = None
        if alerts:
            from alerts.live import LiveAlertSink
            from storage.metadata.db import MetadataDB

            publisher = stack.enter_context(mqtt_client(mosquitto.port, "bench-alerts-out"))
            # the service's metadata database, with its engine settings (WAL, synchronous=NORMAL)
            metadata = MetadataDB(f"sqlite:///{workdir / 'metadata.sqlite'}")
            stack.callback(metadata.engine.dispose)
            inner = LiveAlertSink(metadata.engine, publisher)
        timer = AlertTimer(inner)
        online = threading.Event()

        def on_message(_client: Any, _userdata: Any, msg: Any) -> None:
            if msg.topic.endswith("/alerts"):
                timer.on_alert(msg.payload)
            elif b"online" in msg.payload:
                online.set()

        subscriber.on_message = on_message
        subscriber.subscribe("crampwatch/v1/+/alerts", qos=1)
        tune_collector()  # as the service's build_worker does
        worker = IngestWorker(
            BrokerConfig("127.0.0.1", mosquitto.port, "bench-worker"),
            store,
            StreamDetectorFactory("auto"),
            workdir / "data",
            idle_flush_s=1.0,
            finish_after_s=finish_after_s,
            sinks=[timer],
        )
        worker.start()
        stack.callback(worker.stop)
        # The worker announces itself on its status topic right after subscribing, on the same
        # connection: once that message is seen, its subscription is in place.
        subscriber.subscribe(worker.intake.status_topic, qos=1)
        wait_for(online.is_set, 20, what="worker online")
        yield Pipeline(mosquitto.url, worker, store, timer, influx_url)


def wait_episodes_closed(worker: Any, timeout_s: float) -> None:
    """Block until every started episode has ended (detectors finish after their last frame)."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        stats = worker.stats()
        if stats.episodes_ended >= stats.episodes_started:
            return
        time.sleep(0.02)
    raise TimeoutError(f"episodes still open after {timeout_s} s")


def wait_drained(worker: Any, frames: int, timeout_s: float) -> float:
    """Block until the worker has acknowledged ``frames`` messages and accounted for each:
    pushed into a detector, or dropped as a duplicate or as late (its stream had declared a gap
    and moved past it). Acknowledged frames may still be held for reordering. Wall time, s."""
    t0 = time.perf_counter()
    deadline = t0 + timeout_s
    while time.perf_counter() < deadline:
        if worker.failure is not None:
            raise RuntimeError(f"worker failed: {worker.failure!r}")
        stats = worker.stats()
        accounted = stats.frames_released + stats.late + stats.duplicates
        if stats.acked >= frames and accounted >= frames:
            return time.perf_counter() - t0
        time.sleep(0.02)
    stats = worker.stats()
    raise TimeoutError(
        f"worker acked {stats.acked} and released {stats.frames_released} of {frames} frames "
        f"(late {stats.late}, duplicates {stats.duplicates}) "
        f"in {timeout_s} s (received {stats.received}, queued {stats.queued}, store retries "
        f"{stats.store_retries}, unstorable {stats.unstorable}, batches {stats.batches})"
    )


@dataclass
class ChildPublisher:
    """The simulator in a process of its own, as wearables are: it builds its nights first
    (not timed), then publishes when :meth:`go` is called; :meth:`report` waits for the end."""

    process: Any
    conn: Any

    def go(self) -> None:
        self.conn.send("go")

    def report(self, timeout_s: float) -> Any:
        if not self.conn.poll(timeout_s):
            raise TimeoutError(f"publisher still running after {timeout_s} s")
        result = self.conn.recv()
        self.process.join(10)
        if isinstance(result, BaseException):
            raise RuntimeError(f"publisher failed: {result!r}")
        return result


@contextlib.contextmanager
def child_publisher(
    devices: int,
    duration_s: float,
    seed: int,
    broker_url: str,
    options: Any,
    scenario: str = "frequent-cramps",
    cpus: set[int] | None = None,
) -> Iterator[ChildPublisher]:
    """Start the publisher process and wait until its nights are built (on ``cpus``, when
    given)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads running
    parent, child = ctx.Pipe()
    process = ctx.Process(
        target=_publish_child,
        args=(child, devices, duration_s, seed, broker_url, options, scenario, cpus),
        name="bench-publisher",
    )
    process.start()
    try:
        if not parent.poll(300) or parent.recv() != "ready":
            raise RuntimeError("publisher process did not get ready")
        yield ChildPublisher(process, parent)
    finally:
        if process.is_alive():
            process.terminate()
        process.join(10)


def _publish_child(
    conn: Any,
    devices: int,
    duration_s: float,
    seed: int,
    broker_url: str,
    options: Any,
    scenario: str,
    cpus: set[int] | None,
) -> None:
    from bench.bench_e2e import device_nights
    from simulator.publisher import publish_nights

    if cpus is not None:
        os.sched_setaffinity(0, cpus)  # before any thread of this process starts
    nights = device_nights(devices, duration_s, seed, scenario)
    conn.send("ready")
    conn.recv()
    try:
        conn.send(publish_nights(nights, broker_url, options))
    except Exception as exc:  # reported to the parent, which raises it
        conn.send(exc)
