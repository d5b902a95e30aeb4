"""The composition root: build every stage from :class:`~crampwatch.settings.Settings`.

``crampwatch serve`` runs a :class:`Service`: broker (embedded unless configured), results store,
metadata DB, live alerts and webhooks, the ingest worker and the API, optionally fed by simulated
wearables. Stages know nothing of settings; this module maps settings to their parameters.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import numpy as np
import paho.mqtt.client as mqtt
import uvicorn

from crampwatch.broker import EmbeddedBroker
from crampwatch.settings import Settings
from detection.events import DetectorEvent, EpisodeEvent, EventKind
from ingest.detectors import StreamDetectorFactory
from ingest.intake import BrokerConfig
from ingest.worker import IngestWorker
from storage.base import Store
from storage.factory import open_store
from storage.metadata.db import MetadataDB

log = logging.getLogger(__name__)

EMBEDDED_USER = "crampwatch"


class ServiceError(RuntimeError):
    """A stage could not be built or started; the message is one line for the console."""


@dataclass(frozen=True)
class BrokerEndpoint:
    """Host, port and credentials parsed from a broker URL."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @property
    def url(self) -> str:
        auth = f"{self.username}:{self.password or ''}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{self.host}:{self.port}"

    def config(self, client_id: str, keepalive_s: int, protocol: str) -> BrokerConfig:
        """The ingest worker's broker configuration for this endpoint."""
        return BrokerConfig(
            host=self.host,
            port=self.port,
            client_id=client_id,
            username=self.username,
            password=self.password,
            keepalive_s=keepalive_s,
            tls=self.tls,
            protocol=protocol,
        )


def parse_broker_url(url: str, username: str | None = None, password: str | None = None) -> BrokerEndpoint:
    """Split ``mqtt[s]://[user:pass@]host[:port]``; explicit credentials win over the URL's."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ServiceError(f"broker URL {url!r} is not mqtt://host[:port] or mqtts://host[:port]")
    tls = parts.scheme == "mqtts"
    return BrokerEndpoint(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        username=username or (unquote(parts.username) if parts.username else None),
        password=password or (unquote(parts.password) if parts.password else None),
        tls=tls,
    )


@dataclass
class Progress:
    """Counters for the console: what came in and what was found."""

    episodes_started: int = 0
    episodes_ended: int = 0
    quality_events: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, device_id: str, events: Sequence[DetectorEvent], arrival_us: int) -> None:
        """Event sink: count episodes as the worker finds them."""
        with self.lock:
            for event in events:
                if isinstance(event, EpisodeEvent):
                    if event.kind is EventKind.STARTED:
                        self.episodes_started += 1
                    elif event.kind is EventKind.ENDED:
                        self.episodes_ended += 1
                else:
                    self.quality_events += 1


def metadata_url(settings: Settings) -> str:
    """The metadata DB URL: configured, or a SQLite file in the data dir."""
    if settings.api.database_url:
        return settings.api.database_url
    return f"sqlite:///{(settings.data_dir / 'metadata.sqlite3').resolve()}"


def build_store(settings: Settings) -> Store:
    """The results store the settings ask for."""
    store_settings = settings.store
    if store_settings.backend == "sqlite":
        return open_store("sqlite", settings.data_dir)
    token = store_settings.influx_token.get_secret_value() if store_settings.influx_token else None
    return open_store(
        "influx",
        settings.data_dir,
        url=store_settings.influx_url,
        database=store_settings.influx_database,
        token=token,
        org=store_settings.influx_org,
        write_mode=store_settings.influx_write_mode,
        retention_policy=store_settings.influx_retention_policy,
        batch_size=store_settings.influx_batch_size,
        flush_interval_ms=store_settings.influx_flush_interval_ms,
        spool_max_mb=store_settings.spool_max_mb,
    )


class Service:
    """Every stage of one CrampWatch process, started and stopped in order.

    Parameters
    ----------
    settings : Settings
    run_ingest, run_api : bool
        Which stages this process runs (docker-compose runs them as separate services).
    """

    def __init__(self, settings: Settings, *, run_ingest: bool = True, run_api: bool = True) -> None:
        self.settings = settings
        self.run_ingest = run_ingest
        self.run_api = run_api
        self.progress = Progress()
        self.broker: EmbeddedBroker | None = None
        self.endpoint: BrokerEndpoint | None = None
        self.store: Store | None = None
        self.metadata: MetadataDB | None = None
        self.worker: IngestWorker | None = None
        self.alert_client: mqtt.Client | None = None
        self.alert_sink: Any = None
        self.dispatcher: Any = None
        self._http: httpx.Client | None = None
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self._stack = contextlib.ExitStack()

    # ------------------------------------------------------------------ start / stop

    def start(self) -> None:
        """Build and start every stage; on failure stop what was started and raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.endpoint = self._start_broker()
        self.store = build_store(settings)
        self._stack.callback(self.store.close)
        self.metadata = MetadataDB(metadata_url(settings))
        self._stack.callback(self.metadata.close)
        if self.run_ingest:
            self._start_alerts()
            self._start_worker()
        if self.run_api:
            self._start_api()

    def _start_broker(self) -> BrokerEndpoint:
        broker = self.settings.broker
        password = broker.password.get_secret_value() if broker.password else None
        if broker.url:
            return parse_broker_url(broker.url, broker.username, password)
        self.broker = EmbeddedBroker("127.0.0.1", broker.embedded_port).start()
        self._stack.callback(self.broker.stop)
        return BrokerEndpoint("127.0.0.1", self.broker.port, broker.username or EMBEDDED_USER, password, False)

    @property
    def mqtt_protocol(self) -> str:
        """MQTT 3.1.1 for the embedded broker (amqtt), MQTT 5 for a real one."""
        return "3.1.1" if self.broker is not None else "5"

    def _start_alerts(self) -> None:
        from alerts.live import LiveAlertSink
        from alerts.webhooks import WebhookDispatcher

        assert self.metadata is not None and self.endpoint is not None
        alerts = self.settings.alerts
        self.alert_client = self._mqtt_client(f"{self.settings.broker.client_id}-alerts-{self.settings.ingest.worker_index}")
        self._http = httpx.Client(timeout=alerts.webhook_timeout_s)
        self._stack.callback(self._http.close)
        self.dispatcher = WebhookDispatcher(
            self.metadata.engine,
            self.metadata,
            http=self._http,
            rng=np.random.default_rng(),
            max_attempts=alerts.webhook_max_attempts,
            timeout_s=alerts.webhook_timeout_s,
            allow_http_hosts=frozenset(),
        )
        self.alert_sink = LiveAlertSink(
            self.metadata.engine,
            self.alert_client,
            directory=self.metadata,
            wearer_of=self._wearer_of,
            merge_gap_s=alerts.merge_gap_s,
            on_webhook_work=self.dispatcher.wake,
        )
        self.dispatcher.start()
        self._stack.callback(self.dispatcher.stop)
        self.alert_sink.start_ticker()
        self._stack.callback(self.alert_sink.stop)

    def _wearer_of(self, device_id: str) -> str | None:
        assert self.metadata is not None
        device = self.metadata.device(device_id)
        return device.owner_id if device is not None else None

    def _mqtt_client(self, client_id: str) -> mqtt.Client:
        assert self.endpoint is not None
        version = mqtt.MQTTv311 if self.mqtt_protocol == "3.1.1" else mqtt.MQTTv5
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version)
        if self.endpoint.username:
            client.username_pw_set(self.endpoint.username, self.endpoint.password)
        if self.endpoint.tls:
            client.tls_set()
        client.reconnect_delay_set(1, 30)
        client.connect_async(self.endpoint.host, self.endpoint.port, self.settings.broker.keepalive_s)
        client.loop_start()

        def close() -> None:
            client.disconnect()
            client.loop_stop()

        self._stack.callback(close)
        return client

    def _start_worker(self) -> None:
        assert self.store is not None and self.metadata is not None and self.endpoint is not None
        settings = self.settings
        metadata = self.metadata

        def site_for(device_id: str) -> str:
            device = metadata.device(device_id)
            return device.site if device is not None else settings.detector.default_site

        def mvc_for(device_id: str) -> float | None:
            device = metadata.device(device_id)
            return device.mvc_uv if device is not None else None

        ingest = settings.ingest
        client_id = f"{settings.broker.client_id}-{ingest.worker_index}"
        sinks: list[Any] = [self.progress]
        if self.alert_sink is not None:
            sinks.append(self.alert_sink)
        self.worker = IngestWorker(
            self.endpoint.config(client_id, settings.broker.keepalive_s, self.mqtt_protocol),
            self.store,
            StreamDetectorFactory(settings.detector.mains_hz, site_for, mvc_for),
            settings.data_dir,
            worker_index=ingest.worker_index,
            worker_count=ingest.worker_count,
            queue_frames=ingest.queue_frames,
            reorder_window_s=ingest.reorder_window_s,
            health_interval_s=ingest.health_interval_s,
            is_registered=metadata.is_registered if ingest.require_registration else None,
            sinks=sinks,
        )
        self.worker.start()
        self._stack.callback(self.worker.stop)

    def _start_api(self) -> None:
        from api.app import create_app

        assert self.store is not None and self.metadata is not None
        api = self.settings.api
        readiness: dict[str, Callable[[], bool]] = {"broker": self.broker_reachable}
        app = create_app(
            store=self.store,
            metadata=self.metadata,
            readiness=readiness,
            rate_limit_per_min=api.rate_limit_per_min,
            max_upload_bytes=api.max_upload_mb * 1024 * 1024,
        )
        config = uvicorn.Config(app, host=api.host, port=api.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(target=self._server.run, name="api", daemon=True)
        self._server_thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._server_thread.is_alive():
                raise ServiceError(f"the API could not listen on {api.host}:{api.port} (port in use?)")
            if time.monotonic() > deadline:
                raise ServiceError("the API did not start within 15 s")
            time.sleep(0.05)
        self._stack.callback(self._stop_api)

    def _stop_api(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._server_thread is not None:
            self._server_thread.join(10)

    def broker_reachable(self) -> bool:
        """Readiness: the worker is connected, or (API-only) a TCP connect to the broker works."""
        if self.worker is not None:
            return self.worker.intake.connected.is_set()
        import socket

        assert self.endpoint is not None
        try:
            with socket.create_connection((self.endpoint.host, self.endpoint.port), timeout=1):
                return True
        except OSError:
            return False

    @property
    def api_url(self) -> str:
        api = self.settings.api
        return api.public_url or f"http://{api.host}:{api.port}"

    def stop(self) -> None:
        """Stop every started stage, newest first. Safe to call twice."""
        self._stack.close()

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``condition`` until true or ``timeout_s`` passes; return its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return bool(condition())


def data_path(settings: Settings, name: str) -> Path:
    """A file in the data dir."""
    return settings.data_dir / name
