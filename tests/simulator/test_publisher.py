"""The publisher: frame plans (pure) and delivery through a real mosquitto."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.protocol import StreamKind, Transport
from simulator.night import simulate_night
from simulator.publisher import (
    BrokerAddress,
    DeviceNight,
    PlannedFrame,
    PublishError,
    PublishOptions,
    plan_frames,
    publish_nights,
)
from tests.servers import Mosquitto, free_port, wait_for
from tests.simulator.mqtt_sink import FrameSink, Received


def device_night(seed: int, scenario: str, duration_s: float, device_id: str) -> DeviceNight:
    sim = simulate_night(
        np.random.default_rng(seed),
        scenario,
        duration_s=duration_s,
        device_id=device_id,
        dtype=np.float32,
    )
    return DeviceNight(sim.recording, sim.labels)


def plan_of(night: DeviceNight, faults: bool = True, frame_s: float = 1.0) -> list[PlannedFrame]:
    acc = night.recording.acc_g
    return plan_frames(
        night.labels,
        night.recording.emg_uv.shape[0],
        0 if acc is None else acc.shape[0],
        faults=faults,
        frame_s=frame_s,
    )


def assert_delivered_as_planned(
    night: DeviceNight, got: dict, faults: bool = True, frame_s: float = 1.0
) -> None:
    """Every stream's frames arrived in plan order with the recording's samples."""
    plan = plan_of(night, faults, frame_s)
    for kind in (StreamKind.EMG, StreamKind.ACC):
        planned = [p for p in plan if p.kind is kind]
        received: list[Received] = got[(night.device_id, kind)]
        assert [(r.frame.seq, r.frame.start_us) for r in received] == [
            (p.seq, p.start_us) for p in planned
        ]
        source = night.recording.emg_uv if kind is StreamKind.EMG else night.recording.acc_g
        assert source is not None
        for r, p in zip(received, planned, strict=True):
            expected = np.asarray(source[p.first_sample : p.first_sample + p.n_samples])
            assert np.array_equal(r.frame.physical(), expected.astype(np.float32))


def test_broker_urls_parse_or_fail_clearly() -> None:
    assert BrokerAddress.from_url("mqtt://u:p%40ss@host:1999") == BrokerAddress(
        "host", 1999, "u", "p@ss", False
    )
    assert BrokerAddress.from_url("mqtts://broker").port == 8883
    with pytest.raises(ValueError, match="mqtt://host"):
        BrokerAddress.from_url("http://host:1883")
    with pytest.raises(ValueError, match="speed"):
        PublishOptions(speed=0)


# ------------------------------------------------------------------------ against mosquitto


@pytest.mark.integration
def test_twenty_devices_at_max_speed_deliver_every_frame_as_labelled(
    mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    scenarios = ("typical", "faulty-sensor", "plms", "restless")
    nights = [device_night(100 + k, scenarios[k % 4], 90.0, f"max-{k:02d}") for k in range(20)]
    assert any(f.type == "gap" for n in nights for f in n.labels.faults)
    with FrameSink(mosquitto.port) as sink:
        report = publish_nights(nights, mosquitto.url, PublishOptions(speed=None))
        expected = sum(len(plan_of(n)) for n in nights)
        assert report.frames_total == report.frames_sent == report.frames_acked == expected
        wait_for(lambda: sink.count() >= expected, 30, what="all frames at the subscriber")
    assert not sink.errors
    assert sink.count() == expected
    got = sink.by_stream()
    for night in nights:
        assert_delivered_as_planned(night, got)
    assert all(r.topic.transport is Transport.LIVE for items in got.values() for r in items)
    with capsys.disabled():
        print(f"\n[publisher] 20 devices, --speed max: {report.frames_per_s:.0f} frames/s")


@pytest.mark.integration
def test_live_speed_paces_frames_in_recording_time(mosquitto: Mosquitto) -> None:
    night = device_night(7, "quiet", 30.0, "paced-1")
    arrivals: list[float] = []
    with FrameSink(mosquitto.port) as sink:
        started = time.monotonic()
        original = sink._on_message

        def timed(client, userdata, message) -> None:
            arrivals.append(time.monotonic() - started)
            original(client, userdata, message)

        sink.client.on_message = timed
        report = publish_nights([night], mosquitto.url, PublishOptions(speed=15.0))
        wait_for(lambda: sink.count() >= report.frames_sent, 10)
    assert report.frames_acked == report.frames_sent == len(plan_of(night))
    # 30 s of recording at 15x: the last frame is due at 2 s, the first at 1/15 s
    assert 1.8 <= report.elapsed_s <= 4.0
    assert arrivals[0] < 0.8
    assert arrivals[-1] >= 1.8
    assert_delivered_as_planned(night, sink.by_stream())


@pytest.mark.integration
def test_sync_mode_sends_json_frames_on_sync_topics(mosquitto: Mosquitto) -> None:
    night = device_night(9, "faulty-sensor", 40.0, "sync-1")
    with FrameSink(mosquitto.port) as sink:
        report = publish_nights(
            [night], mosquitto.url, PublishOptions(speed=1.0, sync=True, json=True)
        )
        assert report.elapsed_s < 10.0  # a bulk upload is not paced
        wait_for(lambda: sink.count() >= report.frames_sent, 10)
    got = sink.by_stream()
    assert {r.topic.transport for items in got.values() for r in items} == {Transport.SYNC}
    # an upload sends 30 s frames (JSON fits: at most 1 MiB a frame)
    assert max(r.frame.n_samples for r in got[("sync-1", StreamKind.EMG)]) == 30_000
    assert_delivered_as_planned(night, got, frame_s=30.0)


@pytest.mark.integration
def test_stop_event_ends_publishing_early(mosquitto: Mosquitto) -> None:
    night = device_night(3, "quiet", 600.0, "stop-1")
    stop = threading.Event()

    def on_progress(p) -> None:
        if p.frames_sent > 50:
            stop.set()

    report = publish_nights(
        [night],
        mosquitto.url,
        PublishOptions(speed=200.0),
        stop=stop,
        progress=on_progress,
        progress_interval_s=0.0,
    )
    assert report.stopped
    assert 50 < report.frames_sent < report.frames_total
    assert report.frames_acked <= report.frames_sent


def test_unreachable_broker_is_a_publish_error() -> None:
    night = device_night(3, "quiet", 20.0, "lost-1")
    with pytest.raises(PublishError, match="no connection"):
        publish_nights(
            [night],
            f"mqtt://127.0.0.1:{free_port()}",
            PublishOptions(speed=None, connect_timeout_s=1.0),
        )


@pytest.mark.integration
@pytest.mark.slow
def test_publisher_reconnects_when_the_broker_restarts(tmp_path: Path) -> None:
    broker = Mosquitto.create(tmp_path / "broker")
    broker.start()
    night = device_night(5, "typical", 120.0, "restart-1")
    result: list = []
    try:
        with FrameSink(broker.port, persistent=True) as sink:
            worker = threading.Thread(
                target=lambda: result.append(
                    publish_nights([night], broker.url, PublishOptions(speed=30.0))
                )
            )
            worker.start()
            wait_for(lambda: sink.count() > 40, 10, what="first frames")
            broker.stop()
            time.sleep(1.0)  # the outage itself; nothing to wait on
            broker.start()
            worker.join(60)
            assert not worker.is_alive()
            report = result[0]
            assert report.frames_acked == report.frames_sent == report.frames_total
            assert report.reconnects >= 1
            wanted = {(p.kind, p.seq) for p in plan_of(night)}
            wait_for(
                lambda: {(r.topic.kind, r.frame.seq) for r in sink.received} >= wanted,
                30,
                what="every planned frame after the restart",
            )
    finally:
        broker.stop()
