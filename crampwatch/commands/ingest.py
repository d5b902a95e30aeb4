"""``crampwatch ingest``: run one ingest worker until interrupted."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import typer

from crampwatch.commands._common import ConfigOption, fail, settings_or_exit
from crampwatch.settings import Settings
from ingest.detectors import EventSink, StreamDetectorFactory
from ingest.intake import BrokerConfig
from ingest.worker import IngestWorker
from storage.base import Store

log = logging.getLogger(__name__)


def broker_config(settings: Settings, worker_index: int) -> BrokerConfig:
    """The broker connection of worker ``worker_index`` from the broker settings.

    With no broker URL the worker connects to the embedded broker of ``crampwatch serve``
    (MQTT 3.1.1, user name required); a configured broker is spoken to in MQTT 5.
    """
    b = settings.broker
    client_id = f"{b.client_id}-{worker_index}"
    password = b.password.get_secret_value() if b.password is not None else None
    if b.url is None:
        return BrokerConfig(
            "127.0.0.1",
            b.embedded_port,
            client_id,
            username=b.username or client_id,
            password=password,
            keepalive_s=b.keepalive_s,
            mqtt_version=311,
        )
    url = urlsplit(b.url)
    if url.hostname is None:
        raise ValueError(f"broker URL {b.url!r} has no host")
    username = b.username or (unquote(url.username) if url.username else None)
    if password is None and url.password:
        password = unquote(url.password)
    tls = url.scheme == "mqtts"
    return BrokerConfig(
        url.hostname,
        url.port or (8883 if tls else 1883),
        client_id,
        username=username,
        password=password,
        keepalive_s=b.keepalive_s,
        tls=tls,
    )


def open_configured_store(settings: Settings) -> Store:
    """The results store the settings name."""
    from storage.factory import open_store

    s = settings.store
    if s.backend == "sqlite":
        return open_store("sqlite", settings.data_dir)
    options: dict[str, Any] = {
        "url": s.influx_url,
        "database": s.influx_database,
        "token": s.influx_token.get_secret_value() if s.influx_token else None,
        "org": s.influx_org,
        "write_mode": s.influx_write_mode,
        "retention_policy": s.influx_retention_policy,
        "batch_size": s.influx_batch_size,
        "flush_interval_ms": s.influx_flush_interval_ms,
        "spool_max_mb": s.spool_max_mb,
    }
    return open_store("influx", settings.data_dir, **options)


def build_worker(
    settings: Settings,
    store: Store,
    *,
    worker_index: int | None = None,
    sinks: Sequence[EventSink] = (),
) -> IngestWorker:
    """An :class:`IngestWorker` wired from the settings (detector, registration, limits)."""
    ingest = settings.ingest
    index = ingest.worker_index if worker_index is None else worker_index
    default_site = settings.detector.default_site
    is_registered: Callable[[str], bool] | None = None
    site_for: Callable[[str], str] | None = None
    mvc_for: Callable[[str], float | None] | None = None
    metadata_url = settings.api.database_url or f"sqlite:///{settings.data_dir / 'metadata.db'}"
    if ingest.require_registration:
        from storage.metadata.db import MetadataDB

        metadata = MetadataDB(metadata_url)
        is_registered = metadata.is_registered

        def registered_site(device_id: str) -> str:
            record = metadata.device(device_id)
            return record.site if record is not None and record.site else default_site

        def registered_mvc(device_id: str) -> float | None:
            record = metadata.device(device_id)
            return None if record is None else record.mvc_uv

        site_for, mvc_for = registered_site, registered_mvc

    detectors = StreamDetectorFactory(
        settings.detector.mains_hz, site_for, mvc_for, default_site=default_site
    )
    return IngestWorker(
        broker_config(settings, index),
        store,
        detectors,
        settings.data_dir,
        worker_index=index,
        worker_count=ingest.worker_count,
        queue_frames=ingest.queue_frames,
        reorder_window_s=ingest.reorder_window_s,
        max_pending_frames=ingest.max_pending_frames,
        idle_flush_s=ingest.idle_flush_s,
        finish_after_s=ingest.finish_after_s,
        health_interval_s=ingest.health_interval_s,
        is_registered=is_registered,
        sinks=sinks,
    )


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest_command(
        config: ConfigOption = None,
        worker_index: int | None = typer.Option(
            None, "--worker-index", help="Override CRAMPWATCH_INGEST_WORKER_INDEX."
        ),
        data_dir: Path | None = typer.Option(
            None, "--data-dir", help="Override CRAMPWATCH_DATA_DIR."
        ),
    ) -> None:
        """Run one ingest worker: MQTT frames in, episodes, series and health to the store."""
        settings = settings_or_exit(config)
        if data_dir is not None:
            settings.general.data_dir = data_dir
        if worker_index is not None and not 0 <= worker_index < settings.ingest.worker_count:
            fail(f"--worker-index {worker_index} is not in 0..{settings.ingest.worker_count - 1}")
        logging.basicConfig(
            level=settings.general.log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        try:
            store = open_configured_store(settings)
            worker = build_worker(settings, store, worker_index=worker_index)
        except (ValueError, OSError) as exc:
            fail(str(exc))
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        worker.start()
        log.info("ingest worker %d/%d started", worker.worker_index, worker.worker_count)
        while not done.wait(1.0):
            if worker.failure is not None:
                worker.stop()
                store.close()
                fail(f"ingest processing stopped: {worker.failure}", code=1)
        worker.stop()
        store.close()
