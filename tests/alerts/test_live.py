"""Live alert lifecycles against a real mosquitto: counts, merging, restarts, latency."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from alerts.live import LiveAlertSink
from alerts.messages import AlertType, CrampAlert
from detection.events import EpisodeEvent, EventKind, QualityEvent, QualityFlag
from detection.stream import StreamDetector
from simulator.night import simulate_night
from simulator.scenarios import get_scenario
from tests.alerts.builders import (
    NIGHT_START_US,
    S,
    alert_listener,
    by_time,
    connected_client,
    drain,
    episode_events,
)
from tests.alerts.conftest import sqlite_engine
from tests.servers import Mosquitto, wait_for

FRAME_US = 250_000  # the simulated worker hands events over at the end of each 0.25 s frame
LAG_US = 40_000  # network + queueing between the device and the worker, simulated


def night_of(device_id: str, shift_s: float) -> list[EpisodeEvent]:
    """Three cramps; the second pauses for 4 s and resumes (two detector episodes)."""
    return (
        episode_events(device_id, shift_s + 60, 30)
        + episode_events(device_id, shift_s + 300, 20, peak=12.0, mean=6.0)
        + episode_events(device_id, shift_s + 324, 25, peak=7.0, mean=4.0)
        + episode_events(device_id, shift_s + 700, 90)
    )


def percentile_ms(values_us: list[int], q: float) -> float:
    return float(np.percentile(np.array(values_us, dtype=float), q)) / 1000.0


@pytest.mark.integration
@pytest.mark.slow
def test_twenty_devices_with_three_cramps_each_get_exactly_three_started_and_ended(
    mosquitto: Mosquitto, engine: Engine
) -> None:
    rng = np.random.default_rng(8)
    devices = [f"bed-{i:02d}" for i in range(20)]
    streams = [night_of(d, float(rng.uniform(0, 120))) for d in devices]
    listener = alert_listener(mosquitto.port, "listener-20")
    client = connected_client(mosquitto.port, "alerts-20")
    sink = LiveAlertSink(engine, client, merge_gap_s=10.0)
    # The simulated worker: frames of FRAME_US; each frame's events are handed over at its
    # end (+ lag); the ticker runs once per simulated second.
    batches: dict[tuple[int, str], list[EpisodeEvent]] = defaultdict(list)
    for event in by_time(streams):
        frame = (event.at_us - NIGHT_START_US) // FRAME_US
        batches[(frame, event.episode.device_id)].append(event)
    last_frame = max(f for f, _ in batches) + int(15 * S / FRAME_US)
    handed_us: dict[str, int] = {}  # episode id -> simulated arrival of its STARTED event
    for frame in range(last_frame + 1):
        arrival_us = NIGHT_START_US + (frame + 1) * FRAME_US + LAG_US
        for device_id in devices:
            batch = batches.get((frame, device_id))
            if batch:
                for event in batch:
                    if event.kind is EventKind.STARTED:
                        handed_us[event.episode.episode_id] = arrival_us
                sink.handle(device_id, batch, arrival_us)
        if frame % 4 == 3:
            sink.tick(arrival_us)

    wait_for(lambda: len(listener.messages) >= 120, 20, what="120 alerts")
    for device_id in devices:
        drain(listener, client, device_id)
    for device_id in devices:
        started = listener.of_type("cramp.started", device_id)
        ended = listener.of_type("cramp.ended", device_id)
        assert len(started) == 3, device_id
        assert len(ended) == 3, device_id
        assert {m.doc["alert_id"] for m in started} == {m.doc["alert_id"] for m in ended}
        paused = [m for m in ended if len(m.doc["episode_ids"]) == 2]
        assert len(paused) == 1
        merged = CrampAlert.from_json(json.dumps(paused[0].doc))
        assert merged.duration_s == pytest.approx(49.0)
        assert merged.active_s == pytest.approx(45.0)
        assert merged.peak_intensity == 12.0
        assert merged.mean_intensity == pytest.approx((6.0 * 20 + 4.0 * 25) / 45)
    lifecycles = sink.lifecycles()
    assert len(lifecycles) == 60
    assert {lc.state for lc in lifecycles} == {"resolved"}

    # Confirmation -> PUBACK: simulated device/transport part + measured processing part.
    records = {r.event_id: r for r in sink.outbox()}
    latencies_us = []
    processing = []
    for message in listener.of_type("cramp.started"):
        record = records[message.doc["event_id"]]
        assert record.published_us is not None
        simulated_us = handed_us[message.doc["episode_id"]] - message.doc["confirmed_us"]
        processing_us = record.published_us - record.created_us
        latencies_us.append(simulated_us + processing_us)
        processing.append(processing_us)
    assert max(latencies_us) < 1 * S
    print(
        f"\nconfirmation->PUBACK over {len(latencies_us)} started alerts: "
        f"p50 {percentile_ms(latencies_us, 50):.1f} ms, p99 {percentile_ms(latencies_us, 99):.1f}"
        f" ms, max {max(latencies_us) / 1000:.1f} ms (of which simulated frame+lag <= "
        f"{(FRAME_US + LAG_US) / 1000:.0f} ms); handle()->PUBACK alone: p50 "
        f"{percentile_ms(processing, 50):.1f} ms, p99 {percentile_ms(processing, 99):.1f} ms"
    )
    client.loop_stop()
    listener.client.loop_stop()


def test_pause_shorter_than_the_merge_gap_is_one_alert_and_a_longer_one_is_two(
    engine: Engine,
) -> None:
    sink = LiveAlertSink(engine, None, merge_gap_s=10.0)
    # gap 9.9 s: merged; then a gap of exactly 10 s: a new alert.
    first = episode_events("dev-a", 0, 20)
    second = episode_events("dev-a", 29.9, 10)
    third = episode_events("dev-a", 49.9, 10)
    for event in [*first, *second, *third]:
        sink.handle("dev-a", [event], event.at_us)
    sink.tick(NIGHT_START_US + 80 * S)
    lifecycles = sink.lifecycles("dev-a")
    assert [len(lc.episode_ids) for lc in lifecycles] == [2, 1]
    types = [r.event_type for r in sink.outbox("dev-a")]
    assert types == [
        AlertType.CRAMP_STARTED,
        AlertType.CRAMP_ENDED,
        AlertType.CRAMP_STARTED,
        AlertType.CRAMP_ENDED,
    ]


def test_ended_waits_for_the_merge_gap_plus_confirmation_delay_on_device_time(
    engine: Engine,
) -> None:
    sink = LiveAlertSink(engine, None, merge_gap_s=10.0)  # the episodes confirm after 1.5 s
    far_future_arrival = 0  # arrival clock never passes the gap here: only device time counts
    for event in episode_events("dev-b", 0, 20):
        sink.handle("dev-b", [event], far_future_arrival)
    offset_us = NIGHT_START_US + 20 * S
    quiet = QualityEvent("dev-b", QualityFlag.GAP, offset_us, None, offset_us + 11_499_999)
    sink.handle("dev-b", [quiet], far_future_arrival)
    assert [lc.state for lc in sink.lifecycles("dev-b")] == ["paused"]
    later = QualityEvent("dev-b", QualityFlag.GAP, offset_us, None, offset_us + 11_500_000)
    sink.handle("dev-b", [later], far_future_arrival)
    assert [lc.state for lc in sink.lifecycles("dev-b")] == ["resolved"]


def test_late_end_reports_neither_merge_separate_cramps_nor_split_a_resumed_one(
    engine: Engine,
) -> None:
    sink = LiveAlertSink(engine, None, merge_gap_s=10.0)
    a = episode_events("dev-l", 0, 30, end_report_delay_s=60)  # offset 30 s, reported at 90 s
    b = episode_events("dev-l", 60, 20, end_report_delay_s=60)  # starts 30 s after a's offset
    c = episode_events("dev-l", 84, 10, end_report_delay_s=60)  # resumes 4 s after b's offset
    for event in by_time([a, b, c]):
        sink.handle("dev-l", [event], event.at_us)
    sink.tick(NIGHT_START_US + 400 * S)
    lifecycles = sink.lifecycles("dev-l")
    assert [len(lc.episode_ids) for lc in lifecycles] == [1, 2]
    ended = [CrampAlert.from_json(r.body) for r in sink.outbox("dev-l")]
    ended = [e for e in ended if e.type is AlertType.CRAMP_ENDED]
    assert [(e.duration_s, e.active_s) for e in ended] == [(30.0, 30.0), (34.0, 30.0)]


def test_a_cramp_whose_end_is_never_reported_resolves_after_the_end_wait(engine: Engine) -> None:
    sink = LiveAlertSink(engine, None, merge_gap_s=10.0, end_wait_s=120.0)
    lost = episode_events("dev-n", 0, 30)[:-1]  # the detector restarted without its state
    new = episode_events("dev-n", 100, 10)
    for event in [*lost, *new[:1]]:
        sink.handle("dev-n", [event], event.at_us)
    assert [lc.state for lc in sink.lifecycles("dev-n")] == ["closing", "open"]
    sink.tick(new[0].at_us + 119 * S)
    assert sink.lifecycles("dev-n")[0].state == "closing"
    sink.tick(new[0].at_us + 120 * S)
    first = sink.lifecycles("dev-n")[0]
    assert first.state == "resolved"
    assert first.offset_us == lost[-1].at_us  # the last report is the best estimate


def test_events_of_another_device_are_dropped_and_an_ended_episode_alone_is_announced(
    engine: Engine,
) -> None:
    sink = LiveAlertSink(engine, None, merge_gap_s=0.0)
    events = episode_events("dev-c", 0, 12)
    sink.handle("dev-x", events, NIGHT_START_US)  # wrong device: nothing happens
    assert sink.outbox() == []
    sink.handle("dev-c", [events[-1]], NIGHT_START_US + 12 * S)  # only the ENDED event
    records = sink.outbox("dev-c")
    assert [r.event_type for r in records] == [AlertType.CRAMP_STARTED, AlertType.CRAMP_ENDED]
    ended = CrampAlert.from_json(records[1].body)
    assert ended.duration_s == pytest.approx(12.0)


@pytest.mark.integration
def test_redelivered_events_after_a_restart_keep_one_lifecycle(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    listener = alert_listener(mosquitto.port, "listener-restart")
    events = episode_events("dev-r", 0, 30)
    engine = sqlite_engine(tmp_path / "a.db")
    client = connected_client(mosquitto.port, "alerts-restart-1")
    first = LiveAlertSink(engine, client, merge_gap_s=5.0)
    for event in events[:3]:
        first.handle("dev-r", [event], event.at_us)
    client.loop_stop()
    client.disconnect()
    engine.dispose()

    engine = sqlite_engine(tmp_path / "a.db")
    client = connected_client(mosquitto.port, "alerts-restart-2")
    second = LiveAlertSink(engine, client, merge_gap_s=5.0)
    for event in events:  # the whole episode again, as after a checkpoint restore
        second.handle("dev-r", [event], event.at_us)
    second.tick(events[-1].at_us + 8 * S)
    wait_for(lambda: len(listener.of_type("cramp.ended", "dev-r")) == 1, 10, what="ended alert")
    drain(listener, client, "dev-r")
    assert len(listener.of_type("cramp.started", "dev-r")) == 1
    assert len(listener.of_type("cramp.ended", "dev-r")) == 1
    assert len(second.lifecycles("dev-r")) == 1
    client.loop_stop()
    listener.client.loop_stop()


CRASHING_WORKER = """
import sys, time
from alerts.live import LiveAlertSink
from tests.alerts.builders import connected_client, episode_events
from tests.alerts.conftest import sqlite_engine

engine = sqlite_engine(sys.argv[1])
sink = LiveAlertSink(engine, connected_client(int(sys.argv[2]), "crashing"), merge_gap_s=5.0)
events = episode_events("dev-k", 0, 40)
for event in events[:4]:
    sink.handle("dev-k", [event], event.at_us)
print("mid-cramp", flush=True)
time.sleep(60)
"""


@pytest.mark.integration
def test_kill_9_of_the_worker_mid_cramp_keeps_one_lifecycle(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    listener = alert_listener(mosquitto.port, "listener-kill")
    db = tmp_path / "kill.db"
    worker = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WORKER, str(db), str(mosquitto.port)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
        text=True,
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "mid-cramp"
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    wait_for(lambda: len(listener.of_type("cramp.started", "dev-k")) == 1, 10, what="started")

    engine = sqlite_engine(db)
    client = connected_client(mosquitto.port, "after-kill")
    sink = LiveAlertSink(engine, client, merge_gap_s=5.0)
    for event in episode_events("dev-k", 0, 40)[2:]:  # redelivered from an older checkpoint
        sink.handle("dev-k", [event], event.at_us)
    sink.tick(NIGHT_START_US + 50 * S)
    wait_for(lambda: len(listener.of_type("cramp.ended", "dev-k")) == 1, 10, what="ended")
    drain(listener, client, "dev-k")
    assert len(listener.of_type("cramp.started", "dev-k")) == 1
    assert len(listener.of_type("cramp.ended", "dev-k")) == 1
    [lifecycle] = sink.lifecycles("dev-k")
    assert lifecycle.state == "resolved"
    assert lifecycle.active_s == pytest.approx(40.0)
    client.loop_stop()
    listener.client.loop_stop()
    engine.dispose()


@pytest.mark.integration
def test_an_alert_raised_while_the_broker_is_down_is_published_after_it_returns(
    tmp_path: Path, engine: Engine
) -> None:
    broker = Mosquitto.create(tmp_path / "broker")
    broker.start()
    try:
        client = connected_client(broker.port, "alerts-outage")
        client.reconnect_delay_set(min_delay=1, max_delay=1)
        sink = LiveAlertSink(engine, client, merge_gap_s=5.0, republish_after_s=0.0)
        broker.stop()
        started = episode_events("dev-o", 0, 20)[0]
        sink.handle("dev-o", [started], started.at_us)  # returns although nothing can be sent
        [record] = sink.outbox("dev-o")
        assert record.published_us is None
        broker.start()
        listener = alert_listener(broker.port, "listener-outage")
        wait_for(lambda: sink.tick(started.at_us) >= 0 and sink.outbox()[0].published_us, 20)
        wait_for(lambda: listener.of_type("cramp.started", "dev-o"), 10, what="started alert")
        assert {m.doc["event_id"] for m in listener.of_type("cramp.started")} == {record.event_id}
        client.loop_stop()
        listener.client.loop_stop()
    finally:
        broker.stop()


def merged_count(episodes: list[tuple[int, int]], gap_us: int) -> int:
    """Reference: alerts expected from (onset, offset) episodes with a merge gap."""
    count, last_offset = 0, None
    for onset, offset in sorted(episodes):
        if last_offset is None or onset - last_offset >= gap_us:
            count += 1
            last_offset = offset
        else:
            last_offset = max(last_offset, offset)
    return count


@pytest.mark.integration
@pytest.mark.slow
def test_a_simulated_night_through_the_stream_detector_gives_one_alert_per_merged_episode(
    mosquitto: Mosquitto, engine: Engine
) -> None:
    scenario = replace(
        get_scenario("frequent-cramps"),
        name="three-cramps",
        cramps=(3, 3),
        recurrence_p=0.0,
        night_walks=(0, 0),
    )
    emg_hz, acc_hz = 500.0, 25.0
    night = simulate_night(
        np.random.default_rng(4),
        scenario,
        duration_s=900,
        emg_rate_hz=emg_hz,
        acc_rate_hz=acc_hz,
        device_id="det-1",
        start_us=NIGHT_START_US,
    )
    rec = night.recording
    assert rec.acc_g is not None
    listener = alert_listener(mosquitto.port, "listener-detector")
    client = connected_client(mosquitto.port, "alerts-detector")
    sink = LiveAlertSink(engine, client, merge_gap_s=10.0)
    detector = StreamDetector("det-1")
    emg_step, acc_step = int(emg_hz * FRAME_US / S), int(acc_hz * FRAME_US / S)
    episodes: dict[str, tuple[int, int]] = {}
    handed_us: dict[str, int] = {}
    frames = rec.emg_uv.shape[0] // emg_step
    for k in range(frames + 1):
        start_us = NIGHT_START_US + k * FRAME_US
        events = []
        if k < frames:
            emg = rec.emg_uv[k * emg_step : (k + 1) * emg_step]
            events += detector.push_emg(emg, start_us, emg_hz)
            acc = rec.acc_g[k * acc_step : (k + 1) * acc_step]
            if len(acc):
                events += detector.push_acc(acc, start_us, acc_hz)
        else:
            events += detector.finish()
        arrival_us = start_us + FRAME_US + LAG_US
        for event in events:
            if isinstance(event, EpisodeEvent):
                if event.kind is EventKind.STARTED:
                    handed_us.setdefault(event.episode.episode_id, arrival_us)
                if event.kind is EventKind.ENDED:
                    assert event.episode.offset_us is not None
                    episodes[event.episode.episode_id] = (
                        event.episode.onset_us,
                        event.episode.offset_us,
                    )
        if events:
            sink.handle("det-1", events, arrival_us)
        if k % 4 == 3:
            sink.tick(arrival_us)
    sink.tick(NIGHT_START_US + 960 * S)

    assert episodes, "the detector found no episode in a night with three cramps"
    expected = merged_count(list(episodes.values()), 10 * S)

    wait_for(lambda: len(listener.of_type("cramp.ended", "det-1")) >= expected, 10, what="ended")
    drain(listener, client, "det-1")
    started = listener.of_type("cramp.started", "det-1")
    ended = listener.of_type("cramp.ended", "det-1")
    assert len(started) == len(ended) == expected
    for onset_us, offset_us in episodes.values():  # every detector episode is in one alert
        covering = [
            m for m in ended if m.doc["onset_us"] <= onset_us and m.doc["offset_us"] >= offset_us
        ]
        assert len(covering) == 1
    assert sum(len(m.doc["episode_ids"]) for m in ended) == len(episodes)
    records = {r.event_id: r for r in sink.outbox("det-1")}
    for message in started:
        record = records[message.doc["event_id"]]
        assert record.published_us is not None
        simulated_us = handed_us[message.doc["episode_id"]] - message.doc["confirmed_us"]
        assert simulated_us + record.published_us - record.created_us < 1 * S
    client.loop_stop()
    listener.client.loop_stop()
