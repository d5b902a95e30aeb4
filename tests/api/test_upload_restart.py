"""kill -9 of an API process with upload jobs queued: after a restart every accepted upload is
detected and stored, and its job answers as done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, select

from api.jobs import UNFINISHED, UploadJobRow
from simulator.night import simulate_night
from simulator.recording import write_edf
from storage.base import EpisodeQuery
from storage.metadata import MetadataDB, Role
from storage.sqlite import SqliteStore
from tests.servers import free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UPLOADS = 4
DAY_US = 86_400_000_000


def _serve(data: Path, api_port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CRAMPWATCH_DATA_DIR": str(data),
        "CRAMPWATCH_API_PORT": str(api_port),
        "CRAMPWATCH_BROKER_EMBEDDED_PORT": str(free_port()),
    }
    env.pop("CRAMPWATCH_BROKER_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "crampwatch", "serve", "--no-ingest"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=data.parent,
    )

    def up() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout_s=60, what="the API")
    return process


def test_jobs_cut_short_by_kill_9_run_after_the_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    metadata = MetadataDB(f"sqlite:///{data / 'metadata.sqlite3'}")
    wearer = metadata.add_wearer("Ann", wearer_id="ann")
    metadata.add_device("ann-left", wearer.wearer_id, site="left_calf")
    token = metadata.create_key(Role.WEARER, wearer_id="ann").token
    metadata.close()
    night = simulate_night(
        np.random.default_rng(21), "frequent-cramps", duration_s=8 * 3600.0, device_id="ann-left"
    )
    path = tmp_path / "night.edf"
    write_edf(path, night.recording)
    api_port = free_port()
    base = f"http://127.0.0.1:{api_port}/v1/devices/ann-left/recordings"
    headers = {"Authorization": f"Bearer {token}"}
    log = tmp_path / "api.log"

    def upload(_: int) -> str:
        with path.open("rb") as handle:
            answer = httpx.post(
                base, headers=headers, files={"file": ("night.edf", handle)}, timeout=120
            )
        assert answer.status_code == 202, answer.text
        return str(answer.json()["job_id"])

    process = _serve(data, api_port, log)
    try:
        # accepted together; detection runs one job at a time (about a second per 8 h night)
        with ThreadPoolExecutor(UPLOADS) as pool:
            ids = list(pool.map(upload, range(UPLOADS)))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    engine = create_engine(f"sqlite:///{data / 'metadata.sqlite3'}")
    with engine.connect() as connection:
        rows = connection.execute(select(UploadJobRow.job_id, UploadJobRow.state)).all()
    engine.dispose()
    left = {job_id for job_id, state in rows if state in UNFINISHED}
    assert {job_id for job_id, _ in rows} == set(ids)
    assert left, "every job finished before the kill: nothing to run again"
    assert len(list((data / "uploads").glob("job_*.edf"))) == len(left)  # their files kept

    process = _serve(data, api_port, log)
    try:

        def done() -> bool:
            states = [httpx.get(f"{base}/{i}", headers=headers).json()["state"] for i in ids]
            assert "failed" not in states, states
            return states == ["done"] * UPLOADS

        wait_for(done, timeout_s=120, what="the jobs after the restart")
        jobs = [httpx.get(f"{base}/{i}", headers=headers).json() for i in ids]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    assert "upload job(s) again after a restart" in log.read_text()
    # the same night each time: every job found the same episodes, and they are stored
    [found] = {tuple(job["episode_ids"]) for job in jobs}
    assert found
    assert list((data / "uploads").glob("job_*")) == []
    store = SqliteStore(data / "results.sqlite3")
    start_us = night.recording.start_us
    stored = store.episodes(EpisodeQuery(("ann-left",), start_us, start_us + DAY_US))
    store.close()
    assert [e.episode_id for e in stored] == list(found)
