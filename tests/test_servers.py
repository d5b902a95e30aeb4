"""The real-server fixtures start, answer and restart."""

from __future__ import annotations

import json

import paho.mqtt.client as mqtt
import pytest

from tests.servers import Influxd, Mosquitto, wait_for

pytestmark = pytest.mark.integration


def test_mosquitto_fixture_delivers_a_message(mosquitto: Mosquitto) -> None:
    received: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fixture-test")
    client.on_message = lambda _c, _u, msg: received.append(msg.payload)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    try:
        client.subscribe("fixture/test", qos=1)
        wait_for(lambda: client.is_connected(), what="connect")
        client.publish("fixture/test", b"hello", qos=1).wait_for_publish(5)
        wait_for(lambda: received, what="message")
    finally:
        client.loop_stop()
        client.disconnect()
    assert received == [b"hello"]


def test_influxd_fixture_answers_influxql(influxd: Influxd) -> None:
    influxd.query("CREATE DATABASE fixture_check")
    body = json.loads(influxd.query("SHOW DATABASES"))
    names = [row[0] for row in body["results"][0]["series"][0]["values"]]
    assert "fixture_check" in names


def test_influxd_survives_restart_with_its_data(tmp_path) -> None:
    server = Influxd.create(tmp_path / "influx")
    server.start(timeout_s=60)
    try:
        server.query("CREATE DATABASE kept")
        server.restart()
        names = json.loads(server.query("SHOW DATABASES"))["results"][0]["series"][0]["values"]
        assert ["kept"] in names
    finally:
        server.stop()
