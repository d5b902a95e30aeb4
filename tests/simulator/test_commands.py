"""``crampwatch simulate`` and ``crampwatch replay`` end to end against a real mosquitto."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crampwatch.cli import build_app
from ingest.protocol import StreamKind, Transport
from simulator.labels import load_labels
from simulator.night import simulate_night
from simulator.publisher import plan_frames
from simulator.recording import read_recording, write_csv, write_edf
from tests.servers import Mosquitto, require_binary, wait_for
from tests.simulator.mqtt_sink import FrameSink

runner = CliRunner()


@pytest.mark.integration
def test_simulate_publishes_every_device_and_writes_labels(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    out = tmp_path / "labels"
    args = [
        "simulate", "--devices", "3", "--nights", "2", "--speed", "max",
        "--broker", mosquitto.url, "--duration-min", "0.5", "--seed", "4", "--out", str(out),
        "--scenario", "faulty-sensor",
    ]  # fmt: skip
    with FrameSink(mosquitto.port) as sink:
        result = runner.invoke(build_app(), args)
        assert result.exit_code == 0, result.output
        files = sorted(out.glob("*.labels.json"))
        assert len(files) == 6
        plans = {}
        for path in files:
            labels = load_labels(path)
            assert labels.scenario == "faulty-sensor"
            n_emg = round(labels.duration_s * labels.emg_rate_hz)
            n_acc = round(labels.duration_s * (labels.acc_rate_hz or 0))
            plans[path.name] = plan_frames(labels, n_emg, n_acc)
        expected = sum(len(p) for p in plans.values())
        wait_for(lambda: sink.count() >= expected, 20, what="every frame")
    assert sink.count() == expected
    assert "acked" in result.output
    second_start_us = load_labels(out / "sim-0001-night1.labels.json").start_us
    first_night = [
        (r.topic.kind, r.frame.seq, r.frame.start_us)
        for r in sink.received
        if r.topic.device_id == "sim-0001" and r.frame.start_us < second_start_us - 3_600_000_000
    ]
    want = [(p.kind, p.seq, p.start_us) for p in plans["sim-0001-night0.labels.json"]]
    assert first_night == want


@pytest.mark.integration
def test_replay_publishes_a_recorded_edf_night(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sim = simulate_night(np.random.default_rng(2), "typical", duration_s=25.0)
    path = tmp_path / "night.edf"
    write_edf(path, sim.recording)
    rec = read_recording(path)
    with FrameSink(mosquitto.port) as sink:
        result = runner.invoke(
            build_app(),
            ["replay", str(path), "--broker", mosquitto.url, "--speed", "max", "--device", "edf-7"],
        )
        assert result.exit_code == 0, result.output
        wait_for(lambda: sink.count() >= 25 + 25, 10)
    streams = sink.by_stream()
    emg = streams[("edf-7", StreamKind.EMG)]
    acc = streams[("edf-7", StreamKind.ACC)]
    assert len(emg) == 25 and len(acc) == 25
    assert emg[0].frame.start_us == rec.start_us
    assert np.array_equal(
        np.concatenate([r.frame.physical() for r in emg]), rec.emg_uv.astype(np.float32)
    )
    assert acc[0].topic.transport is Transport.LIVE


@pytest.mark.integration
def test_replay_of_a_csv_in_sync_mode(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sim = simulate_night(np.random.default_rng(3), "quiet", duration_s=12.0, acc_rate_hz=25.0)
    path = tmp_path / "night.csv"
    write_csv(path, sim.recording)
    with FrameSink(mosquitto.port) as sink:
        result = runner.invoke(
            build_app(),
            ["replay", str(path), "--broker", mosquitto.url, "--sync", "--device", "csv-1"],
        )
        assert result.exit_code == 0, result.output
        wait_for(lambda: sink.count() >= 2, 10)  # an upload sends one 12 s frame per stream
    assert {r.topic.transport for r in sink.received} == {Transport.SYNC}
    assert sink.count() == 2
    assert sum(r.frame.n_samples for r in sink.received if r.topic.kind is StreamKind.ACC) == 300
    with FrameSink(mosquitto.port) as sink:
        args = ["replay", str(path), "--broker", mosquitto.url, "--sync", "--frame-s", "2"]
        result = runner.invoke(build_app(), [*args, "--device", "csv-2"])
        assert result.exit_code == 0, result.output
        wait_for(lambda: sink.count() >= 12, 10)
    assert sorted({r.frame.n_samples for r in sink.received}) == [50, 2000]
    bad = runner.invoke(build_app(), [*args[:-1], "90"])
    assert bad.exit_code == 2 and "--frame-s" in bad.output


def test_replay_of_a_bad_file_fails_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.edf"
    path.write_bytes(b"0" * 300)
    result = runner.invoke(build_app(), ["replay", str(path), "--broker", "mqtt://127.0.0.1:1"])
    assert result.exit_code == 2
    assert "not a readable EDF" in result.output


def test_simulate_rejects_bad_speed_and_scenario() -> None:
    result = runner.invoke(build_app(), ["simulate", "--speed", "fast", "--broker", "mqtt://x:1"])
    assert result.exit_code == 2 and "--speed" in result.output
    result = runner.invoke(build_app(), ["simulate", "--scenario", "nope", "--broker", "mqtt://x"])
    assert result.exit_code == 2 and "unknown scenario" in result.output


def test_simulate_suite_writes_index_and_nights(tmp_path: Path) -> None:
    result = runner.invoke(
        build_app(),
        ["simulate", "--suite", str(tmp_path), "--nights", "6", "--duration-min", "0.25"],
    )
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("*.edf"))) == 6
    assert len(list(tmp_path.glob("*.labels.json"))) == 6
    assert (tmp_path / "index.json").is_file()


@pytest.mark.integration
def test_simulate_uses_the_configured_broker_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passwords = tmp_path / "passwords"
    subprocess.run(
        [
            require_binary("mosquitto_passwd", "mosquitto"),
            "-c",
            "-b",
            str(passwords),
            "sim",
            "s3cret",
        ],
        check=True,
    )
    broker = Mosquitto.create(
        tmp_path / "broker",
        extra_conf=f"allow_anonymous false\npassword_file {passwords}\n",
    )
    broker.start()
    args = ["simulate", "--broker", broker.url, "--speed", "max", "--duration-min", "0.2"]
    args += ["--out", str(tmp_path / "labels")]
    try:
        refused = runner.invoke(build_app(), args)
        assert refused.exit_code == 2
        assert "refused" in refused.output
        monkeypatch.setenv("CRAMPWATCH_BROKER_USERNAME", "sim")
        monkeypatch.setenv("CRAMPWATCH_BROKER_PASSWORD", "s3cret")
        accepted = runner.invoke(build_app(), args)
        assert accepted.exit_code == 0, accepted.output
        assert "24/24 frames sent, 24 acked" in accepted.output
    finally:
        broker.stop()
