"""Uploads: a simulator EDF+ gives the same episodes as the detector over that night; bad files
are refused with a specific reason and store nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from detection.offline import detect_recording
from simulator.night import simulate_night
from simulator.recording import Recording, read_recording, write_csv, write_edf
from storage.base import EpisodeQuery
from storage.localtime import to_us
from tests.api.conftest import NOW, World
from tests.servers import wait_for

DAY_US = 86_400_000_000


def _upload(world: World, path: Path, who: str = "ann", **data: str):  # type: ignore[no-untyped-def]
    with path.open("rb") as handle:
        return world.client.post(
            "/v1/devices/ann-left/recordings",
            headers=world.headers(who),
            files={"file": (path.name, handle, "application/octet-stream")},
            data=data,
        )


def _finished(world: World, job_id: str) -> dict:  # type: ignore[type-arg]
    url = f"/v1/devices/ann-left/recordings/{job_id}"
    wait_for(
        lambda: world.get("ann", url).json()["state"] in ("done", "failed"),
        timeout_s=60,
        what="upload job",
    )
    return world.get("ann", url).json()  # type: ignore[no-any-return]


def _stored_ids(world: World, start_us: int) -> list[str]:
    episodes = world.store.episodes(
        EpisodeQuery(("ann-left",), start_us - DAY_US, start_us + DAY_US)
    )
    return [e.episode_id for e in episodes]


def test_simulator_edf_gives_the_detector_episodes(world: World, tmp_path: Path) -> None:
    start_us = to_us(NOW - timedelta(hours=30))
    night = simulate_night(
        np.random.default_rng(11),
        "frequent-cramps",
        duration_s=600,
        start_us=start_us,
        device_id="ann-left",
    )
    path = tmp_path / "night.edf"
    write_edf(path, night.recording)
    on_disk = read_recording(path)
    expected = detect_recording(
        on_disk.emg_uv,
        on_disk.emg_rate_hz,
        on_disk.acc_g,
        on_disk.acc_rate_hz,
        start_us=on_disk.start_us,
        device_id="ann-left",
        site="left_calf",
        mvc_uv=400.0,
    )
    assert expected.episodes, "the scenario should contain cramps"
    before = set(_stored_ids(world, start_us))

    answer = _upload(world, path)
    assert answer.status_code == 202, answer.text
    assert answer.headers["location"].endswith(answer.json()["job_id"])
    job = _finished(world, answer.json()["job_id"])

    assert job["state"] == "done", job
    assert job["episode_ids"] == [e.episode_id for e in expected.episodes]
    stored = world.store.episodes(EpisodeQuery(("ann-left",), start_us, start_us + DAY_US))
    new = [e for e in stored if e.episode_id not in before]
    assert new == list(expected.episodes)
    assert world.store.series("ann-left", start_us, start_us + 600_000_000, max_points=10_000)


def _refused(world: World, path: Path, status: int, reason: str, **data: str) -> None:
    before = world.store.episodes(
        EpisodeQuery(("ann-left",), to_us(NOW) - 100 * DAY_US, to_us(NOW) + DAY_US)
    )
    answer = _upload(world, path, **data)
    assert answer.status_code == status, answer.text
    assert reason in answer.text
    after = world.store.episodes(
        EpisodeQuery(("ann-left",), to_us(NOW) - 100 * DAY_US, to_us(NOW) + DAY_US)
    )
    assert after == before


def _short_recording(rate_hz: float, seconds: float = 4.0, start: bool = True) -> Recording:
    rng = np.random.default_rng(5)
    return Recording(
        emg_uv=rng.normal(0, 3, size=(int(rate_hz * seconds), 1)),
        emg_rate_hz=rate_hz,
        start=NOW - timedelta(days=1) if start else None,
    )


def test_wrong_format_is_refused(world: World, tmp_path: Path) -> None:
    path = tmp_path / "picture.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    _refused(world, path, 415, "not an EDF/EDF+ or CSV file")


def test_truncated_edf_is_refused(world: World, tmp_path: Path) -> None:
    whole = tmp_path / "whole.edf"
    write_edf(whole, _short_recording(1000.0, seconds=30))
    cut = tmp_path / "cut.edf"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    _refused(world, cut, 422, "cut.edf: not a readable EDF/EDF+ file")
    text = _upload(world, cut).text  # no server paths
    assert "receiving-" not in text and str(world.client.app.state.jobs.upload_dir) not in text


def test_wrong_rate_is_refused(world: World, tmp_path: Path) -> None:
    path = tmp_path / "slow.csv"
    write_csv(path, _short_recording(250.0))
    _refused(world, path, 422, "EMG rate 250 Hz outside 500-4000 Hz")


def test_wrong_accelerometer_rate_is_refused(world: World, tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    recording = Recording(
        emg_uv=rng.normal(0, 3, size=(4000, 1)),
        emg_rate_hz=1000.0,
        acc_g=np.tile([0.0, 0.0, -1.0], (20, 1)),
        acc_rate_hz=5.0,
        start=NOW - timedelta(days=1),
    )
    path = tmp_path / "slow-acc.edf"
    write_edf(path, recording)
    _refused(world, path, 422, "accelerometer rate 5 Hz outside 12.5-200 Hz")


def test_csv_without_start_needs_one(world: World, tmp_path: Path) -> None:
    path = tmp_path / "nostart.csv"
    write_csv(path, _short_recording(1000.0, start=False))
    _refused(world, path, 422, "no start time")
    answer = _upload(world, path, start="2026-11-24T22:00:00")
    assert answer.status_code == 422 and "UTC offset" in answer.text
    answer = _upload(world, path, start="2026-11-24T22:00:00Z")
    assert answer.status_code == 202, answer.text
    assert _finished(world, answer.json()["job_id"])["state"] == "done"


@pytest.mark.parametrize("limit_bytes", [10_000])
def test_too_large_is_refused(world: World, tmp_path: Path, limit_bytes: int) -> None:
    world.client.app.state.max_upload_bytes = limit_bytes  # type: ignore[attr-defined]
    path = tmp_path / "big.csv"
    write_csv(path, _short_recording(1000.0, seconds=5))
    _refused(world, path, 413, f"larger than {limit_bytes} bytes")


def test_unknown_job_is_404(world: World) -> None:
    assert world.get("ann", "/v1/devices/ann-left/recordings/job_nope").status_code == 404


def test_declared_oversize_is_refused_before_reading(world: World, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app

    app = create_app(store=world.store, metadata=world.metadata, max_upload_bytes=1000)
    path = tmp_path / "big.csv"
    write_csv(path, _short_recording(1000.0, seconds=5))
    with TestClient(app) as client, path.open("rb") as handle:
        answer = client.post(
            "/v1/devices/ann-left/recordings",
            headers=world.headers("ann"),
            files={"file": ("big.csv", handle, "text/csv")},
        )
    assert answer.status_code == 413 and "upload larger than 1000 bytes" in answer.text


def _night_file(tmp_path: Path, name: str, seed: int, duration_s: float = 300.0) -> Path:
    night = simulate_night(
        np.random.default_rng(seed),
        "frequent-cramps",
        duration_s=duration_s,
        start_us=to_us(NOW - timedelta(hours=30)),
        device_id="ann-left",
    )
    path = tmp_path / name
    write_edf(path, night.recording)
    return path


def test_a_job_is_answered_by_any_api_process_on_the_same_database(
    world: World, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app

    answer = _upload(world, _night_file(tmp_path, "night.edf", 3))
    assert answer.status_code == 202, answer.text
    job = _finished(world, answer.json()["job_id"])
    assert job["state"] == "done" and job["episode_ids"]
    # another API process (its own runner, its own upload directory) on the same database
    other = create_app(store=world.store, metadata=world.metadata, upload_dir=tmp_path / "other")
    with TestClient(other) as client:
        seen = client.get(
            f"/v1/devices/ann-left/recordings/{job['job_id']}", headers=world.headers("ann")
        )
        assert seen.status_code == 200 and seen.json() == job
        # and still only for those who may read the device
        hidden = client.get(
            f"/v1/devices/ann-left/recordings/{job['job_id']}", headers=world.headers("bob")
        )
        assert hidden.status_code == 404


def test_a_finished_job_keeps_no_file_and_the_oldest_finished_jobs_go_first(
    world: World, tmp_path: Path
) -> None:
    import shutil

    from api.jobs import DetectionRequest, JobRunner, UploadedFile

    uploads = tmp_path / "uploads"
    runner = JobRunner(world.store, world.metadata.engine, uploads, max_jobs=2)
    night = _night_file(tmp_path, "night.edf", 4, duration_s=60.0)
    recording = read_recording(night)
    request = DetectionRequest("ann-left", "left_calf", None, recording.start_us)
    ids = []
    try:
        for k in range(3):
            copy = shutil.copy(night, tmp_path / f"upload-{k}.edf")
            ids.append(runner.submit(recording, request, UploadedFile(Path(copy))).job_id)
            assert not Path(copy).exists()  # moved into the upload directory for the job
            wait_for(
                lambda: (job := runner.get(ids[-1])) is not None and job.state == "done",
                timeout_s=60,
                what="upload job",
            )
    finally:
        runner.shutdown()
    assert [runner.get(i) is not None for i in ids] == [False, True, True]  # 2 finished kept
    assert list(uploads.iterdir()) == []  # the files of finished jobs are removed


def test_without_an_upload_directory_a_stop_fails_the_jobs_it_cut_short(
    world: World, tmp_path: Path
) -> None:
    from api.jobs import DetectionRequest, JobRunner, UploadedFile

    runner = JobRunner(world.store, world.metadata.engine)  # a temporary upload directory
    night = _night_file(tmp_path, "night.edf", 6, duration_s=3600.0)
    recording = read_recording(night)
    request = DetectionRequest("ann-left", "left_calf", None, recording.start_us)
    ids = []
    for k in range(4):  # one runs, the others wait behind it
        copy = tmp_path / f"upload-{k}.edf"
        copy.write_bytes(night.read_bytes())
        ids.append(runner.submit(recording, request, UploadedFile(copy)).job_id)
    runner.shutdown()
    jobs = [runner.get(i) for i in ids]
    assert all(job is not None and job.state in ("done", "failed") for job in jobs)
    cut = [job for job in jobs if job is not None and job.state == "failed"]
    assert cut and all("upload the file again" in (job.error or "") for job in cut)
    assert not runner.upload_dir.exists()
    assert runner.resume() == []  # nothing of a temporary directory is run again


def test_a_restart_deletes_only_stale_half_received_uploads(world: World, tmp_path: Path) -> None:
    import os
    import time

    from api.jobs import STALE_RECEIPT_S, JobRunner

    uploads = tmp_path / "uploads"
    stale, fresh = uploads / "receiving-old", uploads / "receiving-now"
    for partial in (stale, fresh):
        partial.mkdir(parents=True)
        (partial / "recording.edf").write_bytes(b"0       half a file")
    old = time.time() - STALE_RECEIPT_S - 60
    for path in (stale / "recording.edf", stale):
        os.utime(path, (old, old))
    runner = JobRunner(world.store, world.metadata.engine, uploads)
    try:
        assert runner.resume() == []
    finally:
        runner.shutdown()
    assert not stale.exists()  # cut short by a stopped process
    assert (fresh / "recording.edf").exists()  # maybe being received by another process
