"""``crampwatch ingest``: settings mapped to the broker connection, and the command's help."""

from __future__ import annotations

import gc
from pathlib import Path

from typer.testing import CliRunner

from crampwatch.cli import build_app
from crampwatch.settings import load_settings
from crampwatch.wiring import (
    COLLECTOR_THRESHOLDS,
    broker_config,
    build_worker,
    open_configured_store,
)


def test_broker_url_credentials_and_tls_map_to_the_connection(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "CRAMPWATCH_BROKER_URL": "mqtts://ingest:s%40cret@broker.example:8884",
            "CRAMPWATCH_BROKER_CLIENT_ID": "cw-ingest",
            "CRAMPWATCH_DATA_DIR": str(tmp_path),
        }
    )
    config = broker_config(settings, 2)
    assert (config.host, config.port, config.tls) == ("broker.example", 8884, True)
    assert (config.username, config.password) == ("ingest", "s@cret")
    assert config.client_id == "cw-ingest-2" and config.mqtt_version == 5


def test_without_a_url_the_worker_uses_the_embedded_broker_in_mqtt_3(tmp_path: Path) -> None:
    settings = load_settings(environ={"CRAMPWATCH_BROKER_EMBEDDED_PORT": "1999"})
    config = broker_config(settings, 0)
    assert (config.host, config.port, config.mqtt_version) == ("127.0.0.1", 1999, 311)
    assert config.username  # the embedded broker queues only for named sessions


def test_help_describes_the_command() -> None:
    result = CliRunner().invoke(build_app(), ["ingest", "--help"])
    assert result.exit_code == 0
    assert "Run one ingest worker" in result.output
    # it runs no alert sink, and says where the worker with alerts is
    assert "no live alerts" in result.output and "serve --no-api" in result.output


def test_an_out_of_range_worker_index_is_refused(monkeypatch: object) -> None:
    result = CliRunner().invoke(build_app(), ["ingest", "--worker-index", "3"])
    assert result.exit_code == 2
    assert "--worker-index 3 is not in 0..0" in result.output


def test_building_a_worker_makes_the_collector_run_less_often(tmp_path: Path) -> None:
    settings = load_settings(environ={"CRAMPWATCH_DATA_DIR": str(tmp_path)})
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # Python's default
    try:
        store = open_configured_store(settings)
        try:
            build_worker(settings, store)
            assert gc.get_threshold() == COLLECTOR_THRESHOLDS
            assert COLLECTOR_THRESHOLDS[0] > 700
        finally:
            store.close()
    finally:
        gc.set_threshold(*before)
