"""The embedded broker delivers QoS 1 and keeps a named persistent session's messages."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from crampwatch.broker import BrokerStartError, EmbeddedBroker
from tests.servers import wait_for

pytestmark = pytest.mark.integration


def _client(port: int, client_id: str, sink: list[bytes] | None = None) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.username_pw_set(client_id, "any")
    if sink is not None:
        lock = threading.Lock()

        def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
            with lock:
                sink.append(message.payload)

        client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_for(client.is_connected, what=f"{client_id} to connect")
    return client


def test_persistent_session_gets_messages_published_while_it_was_away() -> None:
    with EmbeddedBroker(port=0) as broker:
        first: list[bytes] = []
        worker = _client(broker.port, "worker", first)
        worker.subscribe("crampwatch/v1/+/emg", qos=1)
        publisher = _client(broker.port, "device-1")
        publisher.publish("crampwatch/v1/device-1/emg", b"live", qos=1).wait_for_publish(5)
        wait_for(lambda: first == [b"live"], what="live message")
        worker.disconnect()
        worker.loop_stop()
        wait_for(lambda: "worker" not in broker.connected_clients(), what="broker to see it go")
        for index in range(5):
            publisher.publish("crampwatch/v1/device-1/emg", b"%d" % index, qos=1).wait_for_publish(
                5
            )
        later: list[bytes] = []
        back = _client(broker.port, "worker", later)
        wait_for(lambda: len(later) == 5, what="queued messages")
        assert sorted(later) == [b"0", b"1", b"2", b"3", b"4"]
        for client in (back, publisher):
            client.disconnect()
            client.loop_stop()


def test_a_taken_port_is_a_clear_error() -> None:
    with (
        EmbeddedBroker(port=0) as broker,
        pytest.raises(BrokerStartError, match="already in use"),
    ):
        EmbeddedBroker(port=broker.port).start()
