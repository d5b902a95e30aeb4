"""The ingest service of the stack against the stack's authenticated broker, as compose runs
it: accounts written by ``crampwatch init`` (the broker-accounts service), a device registered
with ``crampwatch devices add`` (credentials into the broker's files), and the stages of
``crampwatch serve --no-api`` (worker + live alerts) under the ``_ingest`` account. Everything
the service needs must be allowed by the ACL."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crampwatch.cli import build_app
from crampwatch.service import Service
from crampwatch.settings import load_settings
from ingest.protocol import SampleType, StreamKind, encode_binary, make_frame, topic_for
from simulator.night import simulate_night
from tests.deploy.mqtt_helpers import Client, connect, load_script, login, start_broker
from tests.servers import wait_for

pytestmark = pytest.mark.integration
health = load_script("worker_healthcheck.py")

NIGHT_S = 120
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
PASSWORDS = {
    "MQTT_INGEST_PASSWORD": "ingest-secret-0123456789",
    "MQTT_API_PASSWORD": "api-secret-0123456789",
    "MQTT_ALERTS_PASSWORD": "alerts-secret-0123456789",
    "MQTT_HEALTH_PASSWORD": "health-secret-0123456789",
}


def _frames(device_id: str) -> list[tuple[str, bytes]]:
    """Two minutes of a simulated night (with one cramp) as live int16 frames."""
    night = simulate_night(
        np.random.default_rng(3), "typical", duration_s=NIGHT_S, start_us=START_US
    ).recording
    assert night.acc_g is not None
    out = []
    for s in range(NIGHT_S):
        start_us = START_US + s * 1_000_000
        emg = np.round(night.emg_uv[s * 1000 : (s + 1) * 1000] / 0.5)
        acc = np.round(night.acc_g[s * 50 : (s + 1) * 50] / 0.001)
        for kind, rate, counts, scale in (
            (StreamKind.EMG, 1000.0, emg, 0.5),
            (StreamKind.ACC, 50.0, acc, 0.001),
        ):
            frame = make_frame(
                kind, rate, start_us, s, counts, scale=scale, sample_type=SampleType.INT16
            )
            out.append((topic_for(device_id, kind), encode_binary(frame)))
    return out


def _cli(*args: str, env: dict[str, str]) -> str:
    result = CliRunner().invoke(build_app(), list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _register(env: dict[str, str], device_id: str) -> str:
    """``crampwatch users add`` + ``devices add``, as an operator does; returns the password."""
    wearer_id = _cli("users", "add", "Test wearer", env=env).strip().splitlines()[-1]
    output = _cli("devices", "add", device_id, "--owner", wearer_id, "--site", "left_calf", env=env)
    match = re.search(r"mqtt password: (\S+)", output)
    assert match, output
    return match.group(1)


def test_ingest_service_runs_under_its_account(tmp_path: Path, auth_dir: Path) -> None:
    _cli("init", "--no-env-file", "--broker-dir", str(auth_dir), env=PASSWORDS)
    broker = start_broker(tmp_path / "broker", auth_dir)
    env = {
        "CRAMPWATCH_DATA_DIR": str(tmp_path / "data"),
        "CRAMPWATCH_API_DATABASE_URL": f"sqlite:///{tmp_path / 'metadata.db'}",
        "CRAMPWATCH_BROKER_URL": broker.url,
        "CRAMPWATCH_BROKER_PASSWORD_FILE": str(auth_dir / "passwd"),
        "CRAMPWATCH_BROKER_ACL_FILE": str(auth_dir / "acl"),
        "CRAMPWATCH_LOG_LEVEL": "WARNING",
    }
    device_password = _register(env, "dev-a")
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGHUP)  # what deploy/mosquitto/run.sh does on a change
    wait_for(lambda: login(broker.port, "dev-a", device_password) == "Success", 10.0)
    env |= {
        "CRAMPWATCH_BROKER_USERNAME": "_ingest",
        "CRAMPWATCH_BROKER_PASSWORD": PASSWORDS["MQTT_INGEST_PASSWORD"],
        "CRAMPWATCH_BROKER_CLIENT_ID": "crampwatch-ingest",
        "CRAMPWATCH_INGEST_REQUIRE_REGISTRATION": "true",
        "CRAMPWATCH_INGEST_WORKER_INDEX": "0",
    }
    service = Service(load_settings(None, env), run_ingest=True, run_api=False)
    clients: list[Client] = []
    try:
        service.start()
        worker = service.worker
        assert worker is not None
        wait_for(worker.intake.connected.is_set, 10.0, what="worker connected")
        wait_for(lambda: _state(env) == "online", 10.0, what="worker status online")

        dead = connect(broker.port, "_ingest", PASSWORDS["MQTT_INGEST_PASSWORD"])
        dead.subscribe("crampwatch/v1/_dead/#")
        device = connect(broker.port, "dev-a", device_password)
        device.subscribe("crampwatch/v1/dev-a/alerts")
        clients += [dead, device]

        frames = _frames("dev-a")
        device.publish("crampwatch/v1/dev-b/emg", frames[0][1])  # forged: dropped by the broker
        device.publish("crampwatch/v1/dev-a/emg", b"not a frame")
        for topic, payload in frames:
            device.client.publish(topic, payload, qos=1)
        wait_for(lambda: worker.stats().frames_accepted >= len(frames), 120.0, what="frames")
        stats = worker.stats()
        # The forged frame never reached the worker (ignored: its own outbound messages).
        assert stats.received - stats.ignored == len(frames) + 1
        assert stats.frames_accepted == len(frames)
        assert stats.dead_letters == 1
        wait_for(lambda: dead.topics() == ["crampwatch/v1/_dead/dev-a"], 10.0, what="dead letter")
        assert json.loads(dead.messages[0][1])["reason"]
        assert stats.episodes_started >= 1
        wait_for(lambda: bool(device.topics()), 15.0, what="a live alert on the device's topic")
        assert json.loads(device.messages[0][1])["device_id"] == "dev-a"
    finally:
        for client in clients:
            client.close()
        service.stop()
        broker.stop()


def _state(env: dict[str, str]) -> str | None:
    try:
        return str(health.worker_state(env, timeout_s=1.0))
    except health.HealthError:
        return None
