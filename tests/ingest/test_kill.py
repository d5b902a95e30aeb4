"""kill -9 of a ``crampwatch ingest`` process mid-night, then a restart: every frame counts
exactly once in effect (the real detector and the real SQLite store)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from detection.offline import detect_recording
from ingest.checkpoint import Checkpoint
from ingest.protocol import topic_for
from simulator.night import simulate_night
from simulator.publisher import frame_payload, plan_frames
from storage.base import EpisodeQuery, HealthRecord
from storage.sqlite import SqliteStore
from tests.ingest.support import NIGHT_START_US, Collector, publish
from tests.servers import Mosquitto, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DURATION_S = 2400
DAY_US = 86_400_000_000


def start_ingest(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "crampwatch", "ingest"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_kill_9_mid_night_then_restart_counts_every_frame_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = Mosquitto.create(
        tmp_path / "broker", extra_conf="user root\n" if os.geteuid() == 0 else ""
    )
    broker.start()
    device = f"kill-{uuid.uuid4().hex[:6]}"
    night = simulate_night(
        np.random.default_rng(21),
        "frequent-cramps",
        duration_s=DURATION_S,
        device_id=device,
        start_us=NIGHT_START_US,
    )
    rec = night.recording
    assert rec.acc_g is not None and rec.acc_rate_hz is not None
    plan = plan_frames(night.labels, len(rec.emg_uv), len(rec.acc_g), faults=False)
    messages = [(topic_for(device, p.kind), frame_payload(rec, p)) for p in plan]
    reference = detect_recording(
        rec.emg_uv,
        rec.emg_rate_hz,
        rec.acc_g,
        rec.acc_rate_hz,
        start_us=NIGHT_START_US,
        device_id=device,
    )
    expected = [(e.onset_us, e.offset_us, round(e.peak_intensity, 6)) for e in reference.episodes]
    assert len(expected) >= 3

    data_dir = tmp_path / "data"
    client_id = f"kill-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "CRAMPWATCH_BROKER_URL": broker.url,
        "CRAMPWATCH_BROKER_CLIENT_ID": client_id,
        "CRAMPWATCH_DATA_DIR": str(data_dir),
        "CRAMPWATCH_LOG_LEVEL": "INFO",
        "CRAMPWATCH_INGEST_IDLE_FLUSH_S": "1",
        "CRAMPWATCH_INGEST_FINISH_AFTER_S": "4",
        "CRAMPWATCH_INGEST_HEALTH_INTERVAL_S": "0.2",
        "CRAMPWATCH_INGEST_MAX_PENDING_FRAMES": "100000",
    }
    status = Collector(broker.port, f"crampwatch/v1/_workers/{client_id}-0/status")
    log = tmp_path / "ingest.log"
    proc = start_ingest(env, log)
    try:
        wait_for(lambda: _online(status) == 1, 60, what="first worker online")
        store = SqliteStore(data_dir / "results.sqlite3")

        def emg_health() -> HealthRecord | None:
            rows = [h for h in store.latest_health([device]) if h.stream == "emg"]
            return rows[0] if rows else None

        publish(broker.port, messages)
        wait_for(
            lambda: (h := emg_health()) is not None and h.frames >= DURATION_S // 4,
            120,
            what="a quarter of the night processed",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        checkpoint = Checkpoint(data_dir / "ingest-0.sqlite")
        saved = checkpoint.load(device)
        checkpoint.close()
        assert saved is not None
        # committed: released into the detector, or held in the checkpoint (an EMG frame
        # waits there for the accelerometer frame that covers its end)
        released = sum(s["counters"]["frames"] for s in saved.positions["streams"].values())
        committed = released + len(saved.pending)
        assert 0 < committed < len(messages), "the kill did not land mid-night"
        proc = start_ingest(env, log)
        wait_for(lambda: _online(status) == 2, 60, what="restarted worker online")
        final_query = EpisodeQuery((device,), NIGHT_START_US - DAY_US, NIGHT_START_US + DAY_US)

        def night_done() -> bool:
            episodes = store.episodes(final_query)
            return len(episodes) == len(expected) and not any(e.is_open for e in episodes)

        wait_for(night_done, 120, what="the night's episodes")
        got = [
            (e.onset_us, e.offset_us, round(e.peak_intensity, 6))
            for e in store.episodes(final_query)
        ]
        assert got == expected
        wait_for(
            lambda: (h := emg_health()) is not None and h.frames == DURATION_S, 30, what="health"
        )
        health = {h.stream: h for h in store.latest_health([device])}
        assert health["emg"].samples == len(rec.emg_uv)
        assert health["acc"].samples == len(rec.acc_g)
        assert health["emg"].gaps == health["acc"].gaps == 0
        # the last second is decided once no later frame can add to it: when the worker
        # finishes the quiet device (FINISH_AFTER_S)
        night_end_us = NIGHT_START_US + DURATION_S * 10**6
        wait_for(
            lambda: (
                len(store.series(device, NIGHT_START_US, night_end_us, 20_000))
                >= len(reference.series)
            ),
            30,
            what="the night's series",
        )
        series = store.series(device, NIGHT_START_US, night_end_us, 20_000)
        assert len(series) == len(reference.series)
        duplicates = health["emg"].duplicates + health["acc"].duplicates
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        final = json.loads(log.read_text().rsplit("ingest stopped: ", 1)[1].splitlines()[0])
        assert final["frames_accepted"] == len(messages) - committed
        frames_again = final["received"] - final["ignored"]
        assert frames_again == len(messages) - committed + duplicates
        with capsys.disabled():
            print(
                f"\nkill -9 with {committed} of {len(messages)} frames committed; the restarted "
                f"worker received {frames_again} frames ({final['redelivered']} flagged DUP by "
                f"the broker), {duplicates} of them already committed (dropped as duplicates); "
                f"{len(got)} episodes and {health['emg'].samples} EMG samples, as without the kill"
            )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        status.close()
        broker.stop()


def _online(status: Collector) -> int:
    return sum(1 for _, payload in status.messages if json.loads(payload)["state"] == "online")
