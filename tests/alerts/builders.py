"""Detector events, MQTT listeners and an HTTP webhook receiver for the alert tests."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as mqtt
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from detection.events import Episode, EpisodeEvent, EventKind, Movement
from tests.servers import wait_for

NIGHT_START_US = 1_764_021_600_000_000  # 2025-11-24T22:00:00Z
S = 1_000_000


def episode_events(
    device_id: str,
    onset_s: float,
    duration_s: float,
    *,
    confirm_after_s: float = 1.5,
    update_every_s: float = 5.0,
    peak: float = 9.0,
    mean: float = 5.0,
    start_us: int = NIGHT_START_US,
    site: str = "calf",
    end_report_delay_s: float = 0.0,
) -> list[EpisodeEvent]:
    """started (at confirmation) / updated (every few s) / ended events of one episode.

    ``end_report_delay_s`` delays the ended event past the offset, as the detector does while
    it watches whether the wearer gets up.
    """
    onset_us = start_us + int(onset_s * S)
    confirmed_us = onset_us + int(confirm_after_s * S)
    offset_us = onset_us + int(duration_s * S)
    episode_id = f"{device_id}:{onset_us}"

    def ep(at_us: int, ended: bool) -> Episode:
        return Episode(
            episode_id=episode_id,
            device_id=device_id,
            site=site,
            onset_us=onset_us,
            confirmed_us=confirmed_us,
            offset_us=offset_us if ended else None,
            duration_s=(at_us - onset_us) / S,
            peak_intensity=peak,
            mean_intensity=mean,
            confidence=0.9,
            movement=Movement.STILL,
        )

    events = [EpisodeEvent(EventKind.STARTED, ep(confirmed_us, False), confirmed_us)]
    at_us = confirmed_us + int(update_every_s * S)
    while at_us < offset_us:
        events.append(EpisodeEvent(EventKind.UPDATED, ep(at_us, False), at_us))
        at_us += int(update_every_s * S)
    report_us = offset_us + int(end_report_delay_s * S)
    events.append(EpisodeEvent(EventKind.ENDED, ep(offset_us, True), report_us))
    return events


@dataclass
class Received:
    topic: str
    doc: dict
    wall_us: int


@dataclass
class AlertListener:
    """Subscribes to every device's alert topic and keeps what arrives, with arrival times."""

    client: mqtt.Client
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of_type(self, event_type: str, device_id: str | None = None) -> list[Received]:
        with self.lock:
            return [
                m
                for m in self.messages
                if m.doc["type"] == event_type and device_id in (None, m.doc["device_id"])
            ]


def drain(listener: AlertListener, client: mqtt.Client, device_id: str) -> None:
    """Wait until everything ``client`` published on the device's alert topic has arrived.

    A marker published after the alerts arrives after them (MQTT keeps one client's QoS 1
    messages on a topic in order), so any duplicate would be seen before the marker.
    """
    marker = f"marker-{time.monotonic_ns()}"
    body = json.dumps({"type": "marker", "device_id": device_id, "marker": marker})
    client.publish(f"crampwatch/v1/{device_id}/alerts", body, qos=1)
    wait_for(
        lambda: any(m.doc.get("marker") == marker for m in listener.of_type("marker")),
        10,
        what="marker",
    )


def connected_client(port: int, client_id: str) -> mqtt.Client:
    """A paho 2.x client connected to 127.0.0.1:port with its loop running."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_for(connected.is_set, 10, what="MQTT connection")
    return client


def alert_listener(port: int, client_id: str = "alert-listener") -> AlertListener:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    listener = AlertListener(client)
    subscribed = threading.Event()

    def on_message(c: mqtt.Client, u: object, message: mqtt.MQTTMessage) -> None:
        received = Received(message.topic, json.loads(message.payload), time.time_ns() // 1000)
        with listener.lock:
            listener.messages.append(received)

    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("crampwatch/v1/+/alerts", qos=1)
    client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_for(subscribed.is_set, 10, what="alert subscription")
    return listener


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """A local HTTP endpoint that records every POST; it can be stopped and started again."""

    def __init__(
        self,
        port: int,
        respond: Callable[[Hit], int | tuple[int, dict[str, str]]] = lambda hit: 200,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port
        self.tls = tls
        self.respond = respond
        self.hits: list[Hit] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hit = Hit({k: v for k, v in self.headers.items()}, body)
                receiver.hits.append(hit)
                answer = receiver.respond(hit)
                code, headers = answer if isinstance(answer, tuple) else (answer, {})
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SimClock:
    """A settable clock in Unix seconds; ``sleep`` advances it instead of waiting."""

    def __init__(self, start_s: float) -> None:
        self.now_s = start_s
        self.on_advance: list[Callable[[float], None]] = []

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.now_s += seconds
        for hook in self.on_advance:
            hook(self.now_s)

    def us(self) -> int:
        return int(self.now_s * S)


def by_time(streams: list[list[EpisodeEvent]]) -> Iterator[EpisodeEvent]:
    """All events of several streams in device-time order."""
    merged = [e for stream in streams for e in stream]
    return iter(sorted(merged, key=lambda e: (e.at_us, e.episode.device_id)))


class SettableClock:
    """A wall clock the test sets (``clock_us`` of a sink)."""

    def __init__(self) -> None:
        self.now_us = NIGHT_START_US

    def __call__(self) -> int:
        return self.now_us


def random_cramps(devices: list[str]) -> st.SearchStrategy[tuple[str, float, float, float, bool]]:
    """One cramp of a random device: onset (s into the night), duration (s), how late its end
    is reported (s) and whether it is reported at all."""
    return st.tuples(
        st.sampled_from(devices),
        st.floats(0, 600),
        st.floats(2, 90),
        st.sampled_from([0.0, 0.0, 30.0, 200.0]),
        st.booleans(),
    )


def cramp_events(cramps: list[tuple[str, float, float, float, bool]]) -> list[EpisodeEvent]:
    """The episode events of :func:`random_cramps` draws, in device-time order."""
    streams = []
    for device, onset_s, duration_s, delay_s, reported in cramps:
        events = episode_events(device, onset_s, duration_s, end_report_delay_s=delay_s)
        streams.append(events if reported else events[:-1])
    return list(by_time(streams))


def self_signed_tls(workdir: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 with a fresh self-signed certificate, and its path."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert
