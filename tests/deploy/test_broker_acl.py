"""The generated password/ACL files in a real mosquitto running the stack's config: devices
publish only as themselves and read only their own alerts, bad logins are refused, and new
accounts are picked up on SIGHUP (by hand or by deploy/mosquitto/run.sh) without dropping
anyone."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ingest.broker_auth import (
    add_device_credentials,
    add_service_account,
    remove_device,
)
from tests.deploy.mqtt_helpers import (
    ROOT,
    Client,
    connect,
    deploy_conf_for_test,
    login,
    start_broker,
)
from tests.servers import Mosquitto, ServerProcess, free_port, require_binary, wait_for

pytestmark = pytest.mark.integration

OK = "Success"
REFUSED = "Not authorized"


@dataclass
class Stack:
    broker: Mosquitto
    auth: Path
    passwords: dict[str, str]

    @property
    def port(self) -> int:
        return self.broker.port

    def add_device(self, device_id: str) -> str:
        password = add_device_credentials(self.auth / "passwd", self.auth / "acl", device_id)
        self.passwords[device_id] = password
        return password

    def client(self, username: str) -> Client:
        client = connect(self.port, username, self.passwords[username])
        assert client.rc == OK, f"{username}: {client.rc}"
        return client


@pytest.fixture
def stack(tmp_path: Path, auth_dir: Path) -> Iterator[Stack]:
    passwd, acl = auth_dir / "passwd", auth_dir / "acl"
    passwords = {name: add_service_account(passwd, acl, name) for name in ("_ingest", "_health")}
    stack = Stack(Mosquitto.create(tmp_path), auth_dir, passwords)
    stack.add_device("dev-a")
    stack.add_device("dev-b")
    stack.broker = start_broker(tmp_path / "broker", auth_dir)
    yield stack
    stack.broker.stop()


def test_logins(stack: Stack) -> None:
    assert login(stack.port, "dev-a", stack.passwords["dev-a"]) == OK
    assert login(stack.port, "dev-a", stack.passwords["dev-b"]) == REFUSED
    assert login(stack.port, "dev-a", "") == REFUSED
    assert login(stack.port, "nobody", "x") == REFUSED
    assert login(stack.port, None, None) == REFUSED


def test_device_cannot_publish_as_another_device(stack: Stack) -> None:
    ingest = stack.client("_ingest")
    ingest.subscribe("$share/ingest/crampwatch/v1/#")
    device = stack.client("dev-a")
    for topic in (
        "crampwatch/v1/dev-b/emg",
        "crampwatch/v1/dev-b/sync/acc",
        "crampwatch/v1/dev-a/alerts",
        "crampwatch/v1/_dead/dev-b",
        "crampwatch/v1/dev-a/other",
    ):
        device.publish(topic, b"forged")
    # Its own topics arrive, in order, after the forged ones would have.
    own = ["crampwatch/v1/dev-a/emg", "crampwatch/v1/dev-a/sync/acc"]
    for topic in own:
        device.publish(topic, b"real")
    wait_for(lambda: len(ingest.topics()) >= len(own), 5.0, what="the device's own frames")
    assert ingest.topics() == own
    device.close()
    ingest.close()


def test_device_reads_its_own_alerts_only(stack: Stack) -> None:
    device = stack.client("dev-a")
    device.subscribe("crampwatch/v1/dev-b/alerts", "crampwatch/v1/+/alerts", "crampwatch/v1/#")
    device.subscribe("crampwatch/v1/dev-a/alerts")
    ingest = stack.client("_ingest")
    ingest.publish("crampwatch/v1/dev-b/alerts", b'{"type": "cramp.started"}')
    ingest.publish("crampwatch/v1/dev-b/emg", b"frame of b")
    ingest.publish("crampwatch/v1/dev-a/alerts", b'{"type": "cramp.started"}')
    wait_for(lambda: "crampwatch/v1/dev-a/alerts" in device.topics(), 5.0, what="own alert")
    assert set(device.topics()) == {"crampwatch/v1/dev-a/alerts"}
    device.close()
    ingest.close()


def test_sighup_adds_and_removes_devices_without_dropping_others(stack: Stack) -> None:
    a = stack.client("dev-a")
    b = stack.client("dev-b")
    ingest = stack.client("_ingest")
    ingest.subscribe("crampwatch/v1/+/emg")
    c_password = stack.add_device("dev-c")
    assert remove_device(stack.auth / "passwd", stack.auth / "acl", "dev-b")
    assert login(stack.port, "dev-c", c_password) == REFUSED  # not before the reload

    assert stack.broker.proc is not None
    stack.broker.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: login(stack.port, "dev-c", c_password) == OK, 10.0, what="dev-c login")

    assert a.client.is_connected()
    a.publish("crampwatch/v1/dev-a/emg", b"still here")
    wait_for(lambda: "crampwatch/v1/dev-a/emg" in ingest.topics(), 5.0, what="dev-a frame")
    assert login(stack.port, "dev-a", stack.passwords["dev-a"]) == OK
    # The removed device is disconnected by the reload and cannot come back.
    wait_for(lambda: not b.client.is_connected(), 10.0, what="dev-b to be disconnected")
    assert login(stack.port, "dev-b", stack.passwords["dev-b"]) == REFUSED
    for client in (a, b, ingest):
        client.close()


def test_health_check_of_compose_reads_the_broker_version(stack: Stack) -> None:
    """The mosquitto health check command in docker-compose.yml, run against this broker."""
    require_binary("mosquitto_sub", "mosquitto-clients")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kind, command = compose["services"]["mosquitto"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    command = command.replace("$$", "$").replace("-p 1883", f"-p {stack.port}")
    env = {**os.environ, "MQTT_HEALTH_PASSWORD": stack.passwords["_health"]}
    assert subprocess.run(["sh", "-c", command], env=env, timeout=15).returncode == 0
    env["MQTT_HEALTH_PASSWORD"] = "wrong"
    assert subprocess.run(["sh", "-c", command], env=env, timeout=15).returncode != 0


def test_run_script_reloads_when_accounts_change(tmp_path: Path, auth_dir: Path) -> None:
    """deploy/mosquitto/run.sh notices changed files and reloads; clients stay connected."""
    passwd, acl = auth_dir / "passwd", auth_dir / "acl"
    a_password = add_device_credentials(passwd, acl, "dev-a")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nlog_dest stdout\nlog_type error\nlog_type warning\n"
        + deploy_conf_for_test(auth_dir)
    )
    mosquitto_bin = require_binary("mosquitto", "mosquitto")
    argv = [
        "env",
        f"MOSQUITTO_BIN={mosquitto_bin}",
        f"MOSQUITTO_CONF={conf}",
        f"MOSQUITTO_WATCH={passwd} {acl}",
        "MOSQUITTO_RELOAD_INTERVAL_S=0.2",
        "sh",
        str(ROOT / "deploy" / "mosquitto" / "run.sh"),
    ]
    server = ServerProcess("run.sh", argv, port, tmp_path)
    server.start()
    try:
        a = connect(port, "dev-a", a_password)
        assert a.rc == OK
        c_password = add_device_credentials(passwd, acl, "dev-c")
        wait_for(lambda: login(port, "dev-c", c_password) == OK, 10.0, what="automatic reload")
        assert a.client.is_connected()
        a.close()
        assert "reloading mosquitto" in server.log_path.read_text()
        script = server.proc
    finally:
        server.stop()  # SIGTERM to the script; returns once the broker's port is closed
    assert script is not None and script.returncode == 0


def test_run_script_refuses_to_start_without_accounts(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(ROOT / "deploy" / "mosquitto" / "run.sh")],
        env={**os.environ, "MOSQUITTO_WATCH": f"{tmp_path}/passwd"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 78
    assert "crampwatch init --broker-dir" in result.stderr
