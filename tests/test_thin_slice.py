"""One night through every stage: simulator → real mosquitto → ingest → detector → stores → API.

Two services consume the same broker, one on the embedded SQLite store and one on a real
influxd, so the episode is checked in both and through the HTTP API of each.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from crampwatch.service import Service
from crampwatch.settings import load_settings
from simulator.night import simulate_night
from simulator.publisher import DeviceNight, PublishOptions, publish_nights
from simulator.scenarios import get_scenario
from storage.base import EpisodeQuery
from storage.metadata.records import Role
from tests.servers import Influxd, Mosquitto, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START_US = 1_790_000_000_000_000
DEVICE = "slice-01"
NIGHT_S = 12 * 60.0


def _night_with_one_cramp() -> DeviceNight:
    scenario = replace(
        get_scenario("quiet"),
        name="one-cramp",
        cramps=(1, 1),
        recurrence_p=0.0,
        walk_after_cramp_p=0.0,
        stretch_after_cramp_p=0.0,
        night_walks=(0, 0),
        plm_series=(0, 0),
        mains_p=0.0,
        lead_offs=(0, 0),
        frame_faults=False,
    )
    sim = simulate_night(
        np.random.default_rng(2), scenario, duration_s=NIGHT_S, start_us=START_US, device_id=DEVICE
    )
    return DeviceNight(sim.recording, sim.labels)


def _service(tmp: Path, mosquitto: Mosquitto, name: str, extra: dict[str, str]) -> Service:
    environ = {
        "CRAMPWATCH_DATA_DIR": str(tmp / name),
        "CRAMPWATCH_BROKER_URL": mosquitto.url,
        "CRAMPWATCH_BROKER_CLIENT_ID": f"slice-{name}",
        "CRAMPWATCH_API_PORT": str(free_port()),
        "CRAMPWATCH_INGEST_IDLE_FLUSH_S": "2",
        **extra,
    }
    return Service(load_settings(environ=environ))


def test_a_simulated_cramp_reaches_both_stores_and_the_api(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd
) -> None:
    night = _night_with_one_cramp()
    cramps = [e for e in night.labels.events if e.type == "cramp"]
    assert len(cramps) == 1, "the scenario places exactly one cramp"
    truth_onset_us = START_US + round(cramps[0].onset_s * 1e6)
    database = f"slice_{uuid.uuid4().hex[:8]}"
    services = [
        _service(tmp_path, mosquitto, "sqlite", {}),
        _service(
            tmp_path,
            mosquitto,
            "influx",
            {
                "CRAMPWATCH_STORE_BACKEND": "influx",
                "CRAMPWATCH_STORE_INFLUX_URL": influxd.url,
                "CRAMPWATCH_STORE_INFLUX_WRITE_MODE": "v1",
                "CRAMPWATCH_STORE_INFLUX_DATABASE": database,
                "CRAMPWATCH_STORE_INFLUX_CREATE_DATABASE": "true",
            },
        ),
    ]
    try:
        keys = []
        for service in services:
            service.start()
            assert service.metadata is not None
            service.metadata.add_wearer("Slice", wearer_id="w-slice")
            service.metadata.add_device(DEVICE, "w-slice", site="left_calf")
            keys.append(service.metadata.create_key(Role.ADMIN, name="slice").token)
        for service in services:
            assert service.worker is not None
            worker = service.worker
            wait_for(worker.intake.connected.is_set, 15, what="worker connection")

        report = publish_nights([night], mosquitto.url, PublishOptions(speed=None))
        assert report.frames_acked == report.frames_total > 0

        query = EpisodeQuery((DEVICE,), START_US, START_US + round(NIGHT_S * 1e6))
        for service in services:
            assert service.store is not None and service.worker is not None
            store, worker = service.store, service.worker
            wait_for(
                lambda w=worker: w.stats().frames_released >= report.frames_total,
                90,
                what="every frame processed",
            )
            wait_for(
                lambda s=store: any(not e.is_open for e in s.episodes(query)),
                60,
                what="the episode to end in the store",
            )
            episodes = store.episodes(query)
            assert len(episodes) == 1
            assert abs(episodes[0].onset_us - truth_onset_us) <= 2_000_000

        for service, key in zip(services, keys, strict=True):
            response = httpx.get(
                f"{service.api_url}/v1/wearers/w-slice/episodes",
                params={"start": "2026-09-21T00:00:00Z", "end": "2026-09-23T00:00:00Z"},
                headers={"Authorization": f"Bearer {key}"},
                timeout=10,
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["count"] == 1
            assert body["data"][0]["device_id"] == DEVICE
    finally:
        for service in services:
            service.stop()
