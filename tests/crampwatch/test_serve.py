"""``crampwatch serve --simulate N``: the embedded default serves episodes and stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_serve_with_simulated_wearables_finds_episodes_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    api_port = free_port()
    env = {
        **os.environ,
        "CRAMPWATCH_DATA_DIR": str(tmp_path / "data"),
        "CRAMPWATCH_API_PORT": str(api_port),
        "CRAMPWATCH_BROKER_EMBEDDED_PORT": str(free_port()),
    }
    env.pop("CRAMPWATCH_BROKER_URL", None)
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "crampwatch", "serve", "--simulate", "2", "--speed", "300"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    try:
        key = None
        deadline = time.monotonic() + 60
        episodes = 0
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(1)
            text = (tmp_path / "serve.log").read_text()
            match = re.search(r"wearer key\s*:\s*(\S+)", text)
            if match is None:
                continue
            key = match.group(1)
            response = httpx.get(
                f"http://127.0.0.1:{api_port}/v1/me/nights",
                headers={"Authorization": f"Bearer {key}"},
                timeout=5,
            )
            assert response.status_code == 200, response.text
            episodes = sum(night["cramps"] for night in response.json()["data"])
            if episodes:
                break
        output = (tmp_path / "serve.log").read_text()
        assert process.poll() is None, output[-3000:]
        assert key is not None, output[-3000:]
        assert episodes > 0, output[-3000:]
        assert f"http://127.0.0.1:{api_port}" in output
        assert "episodes found" in output
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
    assert "stopped." in (tmp_path / "serve.log").read_text()
    assert _children(process.pid) == []
