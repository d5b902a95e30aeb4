"""Helpers of the deployment tests: the stack's broker config, broker-readable directories and
MQTT clients that record what they receive."""

from __future__ import annotations

import grp
import importlib.util
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.servers import Mosquitto, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"


def load_script(name: str) -> ModuleType:
    """Import a script of ``deploy/`` (they are not in a package) as a module."""
    path = ROOT / "deploy" / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_auth_dir() -> Path:
    """A directory the broker can read, as the mosquitto-auth volume is in the stack.

    Started as root, mosquitto drops to the ``mosquitto`` user before it reads the password
    file, so (like the image's gid 1883) the directory belongs to that group, with the setgid
    bit so the 0640 files written into it do too. pytest's own tmp dirs are 0700.
    """
    path = Path(tempfile.mkdtemp(prefix="crampwatch-auth-", dir="/tmp"))
    os.chmod(path, 0o2750)
    if os.geteuid() == 0:
        os.chown(path, -1, grp.getgrnam("mosquitto").gr_gid)
    return path


def deploy_conf_for_test(auth: Path) -> str:
    """deploy/mosquitto/mosquitto.conf with the test's paths; the fixture adds the listener."""
    text = DEPLOY_CONF.read_text()
    text = text.replace("/mosquitto/auth/", f"{auth}/")
    kept = [
        line
        for line in text.splitlines()
        if not re.match(r"\s*(listener|protocol|persistence|persistence_location|log_)", line)
    ]
    return "\n".join(kept) + "\n"


def start_broker(workdir: Path, auth: Path) -> Mosquitto:
    """A real mosquitto running the stack's config against ``auth``/passwd and ``auth``/acl."""
    server = Mosquitto.create(workdir, extra_conf=deploy_conf_for_test(auth))
    server.start()
    return server


@dataclass
class Client:
    """A connected paho client that records what it receives."""

    client: mqtt.Client
    rc: str
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def topics(self) -> list[str]:
        with self.lock:
            return [topic for topic, _ in self.messages]

    def publish(self, topic: str, payload: bytes = b"x") -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=5)

    def subscribe(self, *topics: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_args: done.set()
        self.client.subscribe([(topic, 1) for topic in topics])
        if not done.wait(5):
            raise TimeoutError(f"no SUBACK for {topics}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    port: int,
    username: str | None,
    password: str | None,
    *,
    client_id: str | None = None,
    protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTProtocolVersion.MQTTv311,
) -> Client:
    """Connect and wait for the CONNACK; ``rc`` is its reason ("Success", "Not authorized"...)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"test-{username}-{os.urandom(4).hex()}",
        protocol=protocol,
    )
    if username is not None:
        client.username_pw_set(username, password)
    result = Client(client, "")
    got = threading.Event()

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        result.rc = str(reason)
        got.set()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with result.lock:
            result.messages.append((message.topic, message.payload))

    client.on_connect = on_connect
    client.on_message = on_message
    client.reconnect_delay_set(30, 60)  # a refused client must not hammer the broker
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    wait_for(got.is_set, 5.0, what=f"CONNACK for {username}")
    return result


def login(port: int, username: str | None, password: str | None) -> str:
    """The CONNACK reason for these credentials; the client is closed again."""
    client = connect(port, username, password)
    client.close()
    return client.rc
