"""The composition root: build every stage from :class:`~crampwatch.settings.Settings`.

``crampwatch serve`` runs a :class:`Service`: broker (embedded unless configured), results store,
metadata DB, live alerts and webhooks, the ingest worker and the API, optionally fed by simulated
wearables. Stages know nothing of settings; this module maps settings to their parameters.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import paho.mqtt.client as mqtt
import uvicorn

from crampwatch.broker import EmbeddedBroker
from crampwatch.settings import Settings
from crampwatch.wiring import (
    broker_config,
    broker_url,
    build_worker,
    open_configured_store,
    open_metadata,
    red_flag_rules,
)
from detection.events import DetectorEvent, EpisodeEvent, EventKind
from ingest.intake import BrokerConfig
from ingest.worker import IngestWorker
from storage.base import Store
from storage.metadata.db import MetadataDB

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """A stage could not be built or started; the message is one line for the console."""


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


class Service:
    """Every stage of one CrampWatch process, started and stopped in order.

    Parameters
    ----------
    settings : Settings
    run_ingest, run_api : bool
        Which stages this process runs (docker-compose runs them as separate services).
    """

    def __init__(
        self, settings: Settings, *, run_ingest: bool = True, run_api: bool = True
    ) -> None:
        self.settings = settings
        self.run_ingest = run_ingest
        self.run_api = run_api
        self.progress = Progress()
        self.broker: EmbeddedBroker | None = None
        self.endpoint: BrokerConfig | None = None  # the ingest worker's connection
        self.store: Store | None = None
        self.metadata: MetadataDB | None = None
        self.worker: IngestWorker | None = None
        self.alert_client: mqtt.Client | None = None
        self.alert_sink: Any = None
        self.dispatcher: Any = None
        self._http: httpx.Client | None = None
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self.red_flags: Any = None
        self.night_check_interval_s = 3600.0
        self._stop_watch = threading.Event()
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
        self.store = open_configured_store(settings)
        self._stack.callback(self.store.close)
        self.metadata = open_metadata(settings)
        self._stack.callback(self.metadata.close)
        if self.run_ingest:
            self._start_alerts()
            self._start_worker()
        if self.run_api:
            self._start_api()

    def _start_broker(self) -> BrokerConfig:
        """Start the embedded broker unless a URL is configured; the worker's connection."""
        if self.settings.broker.url is None:
            self.broker = EmbeddedBroker("127.0.0.1", self.settings.broker.embedded_port).start()
            self._stack.callback(self.broker.stop)
            return broker_config(
                self.settings, self.settings.ingest.worker_index, embedded_port=self.broker.port
            )
        return broker_config(self.settings, self.settings.ingest.worker_index)

    @property
    def broker_url(self) -> str:
        """URL publishers (the simulator) use to reach the broker this service uses."""
        assert self.endpoint is not None
        return broker_url(self.endpoint)

    @property
    def mqtt_version(self) -> int:
        """311 (MQTT 3.1.1) for the embedded broker (amqtt), 5 for a real one."""
        return 311 if self.broker is not None else 5

    def _start_alerts(self) -> None:
        from alerts.directory import MetadataDirectory
        from alerts.live import LiveAlertSink
        from alerts.redflag_store import RedFlagStore
        from alerts.webhooks import WebhookDispatcher

        assert self.metadata is not None and self.endpoint is not None
        alerts = self.settings.alerts
        directory = MetadataDirectory(self.metadata)
        self.alert_client = self._mqtt_client(
            broker_config(
                self.settings,
                self.settings.ingest.worker_index,
                embedded_port=self.broker.port if self.broker else None,
                purpose="alerts",
            )
        )
        self._http = httpx.Client(timeout=alerts.webhook_timeout_s)
        self._stack.callback(self._http.close)
        self.dispatcher = WebhookDispatcher(
            self.metadata.engine,
            directory,
            http=self._http,
            rng=np.random.default_rng(),
            max_attempts=alerts.webhook_max_attempts,
            backoff_base_s=alerts.webhook_backoff_base_s,
            backoff_max_s=alerts.webhook_backoff_max_s,
            timeout_s=alerts.webhook_timeout_s,
            allow_http_hosts=frozenset(),
        )
        self.alert_sink = LiveAlertSink(
            self.metadata.engine,
            self.alert_client,
            directory=directory,
            wearer_of=directory.wearer_of,
            merge_gap_s=alerts.merge_gap_s,
            end_wait_s=alerts.end_wait_s,
            on_webhook_work=self.dispatcher.wake,
        )
        self.red_flags = RedFlagStore(
            self.metadata.engine,
            directory,
            rules=red_flag_rules(self.settings),
            on_webhook_work=self.dispatcher.wake,
        )
        self.dispatcher.start()
        self._stack.callback(self.dispatcher.stop)
        self.alert_sink.start_ticker()
        self._stack.callback(self.alert_sink.stop)
        watcher = threading.Thread(target=self._watch_nights, name="red-flags", daemon=True)
        watcher.start()
        self._stack.callback(self._stop_watch.set)

    def _watch_nights(self) -> None:
        """Evaluate the red-flag rules for every device whose night has ended, each hour."""
        while not self._stop_watch.wait(self.night_check_interval_s):
            try:
                self.evaluate_red_flags()
            except Exception:  # logged; the next round tries again
                log.exception("red-flag evaluation failed")

    def evaluate_red_flags(self, now: datetime | None = None) -> int:
        """Run the red-flag rules on every wearer's last completed night; newly raised flags."""
        from alerts.nightly import evaluate_nights, latest_completed_night

        assert self.metadata is not None and self.store is not None
        now = now or datetime.now(UTC)
        raised = 0
        for wearer in self.metadata.wearers():
            devices = [d.device_id for d in self.metadata.devices_of(wearer.wearer_id)]
            if devices:
                night = latest_completed_night(now, wearer.time_zone)
                raised += len(
                    evaluate_nights(self.red_flags, self.store, devices, night, wearer.time_zone)
                )
        return raised

    def _mqtt_client(self, config: BrokerConfig) -> mqtt.Client:
        """A connected paho client (loop running) for publishing alerts."""
        version = mqtt.MQTTv311 if config.mqtt_version == 311 else mqtt.MQTTv5
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=config.client_id, protocol=version
        )
        if config.username:
            client.username_pw_set(config.username, config.password)
        if config.tls:
            client.tls_set()
        client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)
        client.connect_async(config.host, config.port, config.keepalive_s)
        client.loop_start()

        def close() -> None:
            client.disconnect()
            client.loop_stop()

        self._stack.callback(close)
        return client

    def _start_worker(self) -> None:
        assert self.store is not None and self.metadata is not None and self.endpoint is not None
        sinks: list[Any] = [self.progress]
        if self.alert_sink is not None:
            sinks.append(self.alert_sink)
        self.worker = build_worker(
            self.settings, self.store, metadata=self.metadata, sinks=sinks, broker=self.endpoint
        )
        self.worker.start()
        self._stack.callback(self.worker.stop)

    def _start_api(self) -> None:
        from api.app import create_app

        assert self.store is not None and self.metadata is not None
        api = self.settings.api
        readiness: dict[str, Callable[[], bool]] = {"broker": self.broker_reachable}
        broker = self.settings.broker
        credentials: Callable[[str], str] | None = None
        if broker.password_file is not None and broker.acl_file is not None:
            from ingest.broker_auth import add_device_credentials

            credentials = functools.partial(
                add_device_credentials, broker.password_file, broker.acl_file
            )
        app = create_app(
            store=self.store,
            metadata=self.metadata,
            readiness=readiness,
            rate_limit_per_min=api.rate_limit_per_min,
            max_upload_bytes=api.max_upload_mb * 1024 * 1024,
            device_credentials=credentials,
            red_flags=red_flag_rules(self.settings),
            red_flag_store=self.red_flags,
            on_webhook_work=self.dispatcher.wake if self.dispatcher is not None else None,
            mains_hz=self.settings.detector.mains_hz,
            upload_dir=self.settings.data_dir / "uploads",
        )
        config = uvicorn.Config(
            app, host=api.host, port=api.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(target=self._server.run, name="api", daemon=True)
        self._server_thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._server_thread.is_alive():
                raise ServiceError(
                    f"the API could not listen on {api.host}:{api.port} (port in use?)"
                )
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
