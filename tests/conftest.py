"""Session-scoped real servers (mosquitto, influxd) shared by the integration tests.

Tests that need a server of their own (to kill or restart it) build one with
``tests.servers.Mosquitto.create(tmp_path)`` / ``Influxd.create(tmp_path)`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import Influxd, Mosquitto


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A mosquitto broker on a free port for the whole test session."""
    server = Mosquitto.create(tmp_path_factory.mktemp("mosquitto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """An InfluxDB 1.x server on a free port for the whole test session."""
    server = Influxd.create(tmp_path_factory.mktemp("influxd"))
    server.start(timeout_s=60)
    yield server
    server.stop()
