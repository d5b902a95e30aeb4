"""Grafana provisioning: the datasource and dashboard files parse, point at each other and at the
compose mounts, and every dashboard query runs against a real influxd holding what the
InfluxDB store writes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from detection.events import (
    Episode,
    EpisodeEvent,
    EventKind,
    Movement,
    QualityEvent,
    QualityFlag,
    SeriesPoint,
)
from storage.base import DeadLetter, HealthRecord
from storage.influx import InfluxStore
from storage.influx_schema import MEASUREMENTS
from tests.deploy.mqtt_helpers import ROOT
from tests.servers import Influxd

GRAFANA = ROOT / "deploy" / "grafana"
DATASOURCES = yaml.safe_load((GRAFANA / "provisioning/datasources/influxdb.yaml").read_text())
PROVIDERS = yaml.safe_load((GRAFANA / "provisioning/dashboards/crampwatch.yaml").read_text())
DASHBOARDS = {p.name: json.loads(p.read_text()) for p in sorted(GRAFANA.glob("dashboards/*.json"))}
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
GRAFANA_SERVICE = COMPOSE["services"]["grafana"]


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, InfluxQL) of every panel target, annotation and template variable."""
    found = [
        (panel["title"], target["query"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]
    found += [(f"annotation {a['name']}", a["query"]) for a in dashboard["annotations"]["list"]]
    found += [(f"variable {v['name']}", v["query"]) for v in dashboard["templating"]["list"]]
    return found


def test_datasource_is_influxql_with_the_read_only_login() -> None:
    (source,) = DATASOURCES["datasources"]
    assert source["type"] == "influxdb" and source["jsonData"]["version"] == "InfluxQL"
    assert source["url"] == "http://influxdb:8086"
    assert source["user"] == "grafana"
    assert source["secureJsonData"]["password"] == "${GRAFANA_INFLUX_PASSWORD}"
    assert source["jsonData"]["dbName"] == "${INFLUXDB_BUCKET}"
    referenced = set(re.findall(r"\$\{(\w+)\}", json.dumps(DATASOURCES)))
    assert referenced <= set(GRAFANA_SERVICE["environment"])


def test_dashboard_provider_reads_the_mounted_directory() -> None:
    (provider,) = PROVIDERS["providers"]
    assert provider["type"] == "file"
    mounts = [str(v) for v in GRAFANA_SERVICE["volumes"]]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_two_dashboards_with_unique_ids_on_the_provisioned_datasource() -> None:
    (source,) = DATASOURCES["datasources"]
    assert set(DASHBOARDS) == {"wearer-night.json", "fleet-health.json"}
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)
    for dashboard in DASHBOARDS.values():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids)
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == source["uid"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == source["uid"] and target["rawQuery"]


def test_queries_use_only_stored_measurements() -> None:
    for dashboard in DASHBOARDS.values():
        for where, query in queries(dashboard):
            names = set(re.findall(r'FROM "(\w+)"', query))
            assert names and names <= set(MEASUREMENTS), f"{where}: {names}"


def test_night_view_is_per_device() -> None:
    night = DASHBOARDS["wearer-night.json"]
    assert [v["name"] for v in night["templating"]["list"]] == ["device"]
    for where, query in queries(night):
        if not where.startswith("variable"):
            assert '"device_id" =~ /^$device$/' in query, where


@pytest.mark.integration
def test_every_query_returns_data_from_a_real_influxd(tmp_path: Path) -> None:
    server = Influxd.create(tmp_path / "influxd")
    server.start(timeout_s=60)
    try:
        now_us = time.time_ns() // 1000
        start_us = now_us - 3_600_000_000
        _write_a_night(server.url, start_us)
        for name, dashboard in DASHBOARDS.items():
            for where, query in queries(dashboard):
                concrete = (
                    query.replace("$timeFilter", f"time >= {start_us}u AND time <= {now_us}u")
                    .replace("$__interval", "1m")
                    .replace("$device", "night-dev")
                )
                result = json.loads(server.query(concrete, db="crampwatch"))["results"][0]
                assert "error" not in result, f"{name} / {where}: {result.get('error')}"
                values = [row for series in result.get("series", []) for row in series["values"]]
                assert values, f"{name} / {where}: no data"
    finally:
        server.stop()


def _write_a_night(url: str, start_us: int) -> None:
    """An hour of one device: 1 Hz series, one cramp, a fault, health and a dead letter."""
    store = InfluxStore(url, "crampwatch", write_mode="v1", create_database=True)
    onset_us = start_us + 600_000_000
    episode = Episode(
        episode_id=f"night-dev:{onset_us}",
        device_id="night-dev",
        site="left_calf",
        onset_us=onset_us,
        confirmed_us=onset_us + 3_000_000,
        offset_us=onset_us + 45_000_000,
        duration_s=45.0,
        peak_intensity=12.0,
        mean_intensity=6.0,
        confidence=0.9,
        movement=Movement.STILL,
        got_up_after=False,
    )
    store.write_events([EpisodeEvent(EventKind.ENDED, episode, onset_us + 45_000_000)])
    store.write_series(
        "night-dev",
        [
            SeriesPoint(start_us + s * 1_000_000, 4.0 + s % 5, 3.0, 0.01, "supine")
            for s in range(3600)
        ],
    )
    store.write_quality(
        [QualityEvent("night-dev", QualityFlag.LEAD_OFF, start_us, start_us + 10**7, start_us)]
    )
    store.write_health([_health(start_us + i * 10_000_000, i) for i in range(360)])
    store.write_dead_letters(
        [DeadLetter(start_us, "crampwatch/v1/night-dev/emg", "night-dev", "bad_crc", "", 9, "")]
    )
    store.close()


def _health(arrival_us: int, i: int) -> HealthRecord:
    return HealthRecord(
        device_id="night-dev",
        stream="emg",
        arrival_us=arrival_us,
        last_device_us=arrival_us - 400_000,
        frames=10 * i,
        samples=10_000 * i,
        gaps=i // 50,
        gap_samples=0,
        duplicates=i // 100,
        reordered=0,
        dead_letters=0,
        frames_per_s=1.0,
        lag_s=0.4,
    )
