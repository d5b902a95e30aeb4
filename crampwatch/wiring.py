"""Settings → stage objects: the one place that maps configuration to constructor parameters.

Used by :mod:`crampwatch.service` (``serve``) and by the single-stage commands (``ingest``).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from alerts.redflags import RedFlagRules
from crampwatch.settings import Settings
from ingest.detectors import EventSink, StreamDetectorFactory
from ingest.intake import BrokerConfig
from ingest.worker import IngestWorker
from storage.base import Store
from storage.metadata.db import MetadataDB

METADATA_FILE = "metadata.sqlite3"


class WiringError(ValueError):
    """Settings that cannot be turned into a working stage (one line for the console)."""


def broker_config(
    settings: Settings,
    worker_index: int,
    *,
    embedded_port: int | None = None,
    purpose: str = "",
) -> BrokerConfig:
    """The MQTT connection of ``worker_index`` (or of another ``purpose``, e.g. ``alerts``).

    With no broker URL the client speaks MQTT 3.1.1 to the embedded broker of ``crampwatch
    serve`` on 127.0.0.1 (its user name is required: it keys the persistent session); a
    configured broker is spoken to in MQTT 5.
    """
    b = settings.broker
    suffix = f"-{purpose}" if purpose else ""
    client_id = f"{b.client_id}{suffix}-{worker_index}"
    password = b.password.get_secret_value() if b.password is not None else None
    if b.url is None:
        return BrokerConfig(
            "127.0.0.1",
            embedded_port or b.embedded_port,
            client_id,
            username=b.username or client_id,
            password=password,
            keepalive_s=b.keepalive_s,
            mqtt_version=311,
        )
    url = urlsplit(b.url)
    if url.hostname is None:
        raise WiringError(f"broker URL {b.url!r} has no host")
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


def broker_url(config: BrokerConfig) -> str:
    """``mqtt[s]://[user:pass@]host:port`` of a broker configuration (for publishers)."""
    auth = f"{config.username}:{config.password or ''}@" if config.username else ""
    return f"{'mqtts' if config.tls else 'mqtt'}://{auth}{config.host}:{config.port}"


def metadata_url(settings: Settings) -> str:
    """The metadata DB URL: configured, or a SQLite file in the data dir."""
    if settings.api.database_url:
        return settings.api.database_url
    return f"sqlite:///{(settings.data_dir / METADATA_FILE).resolve()}"


def open_metadata(settings: Settings) -> MetadataDB:
    """The metadata DB the settings name (created if missing)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return MetadataDB(metadata_url(settings))


def open_configured_store(settings: Settings) -> Store:
    """The results store the settings name."""
    from storage.factory import open_store

    s = settings.store
    settings.data_dir.mkdir(parents=True, exist_ok=True)
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
        "create_database": s.influx_create_database,
    }
    return open_store("influx", settings.data_dir, **options)


def red_flag_rules(settings: Settings) -> RedFlagRules:
    """The red-flag thresholds, shared by the alerts and the API so both agree."""
    alerts = settings.alerts
    return RedFlagRules(
        nights_per_week=alerts.nights_per_week,
        long_episode_min=alerts.long_episode_min,
        min_coverage=alerts.sensor_min_coverage,
    )


# The cyclic garbage collector's thresholds for a process that runs an ingest worker. Python's
# default (700, 10, 10) runs a young-generation pass every 700 net allocations of tracked
# objects and now and then passes over the whole heap; a worker allocates a few small objects
# per frame and holds hundreds of devices' long-lived state, and with the default spent 7-10 %
# of its CPU collecting (400 wearers: 2.6-3.6 s of 26-37 s; 0.8-0.9 s with these). Reference
# counting still frees almost everything at once; only cyclic garbage waits longer.
COLLECTOR_THRESHOLDS = (10_000, 10, 10)


def tune_collector() -> None:
    """Set :data:`COLLECTOR_THRESHOLDS` for this process (called by :func:`build_worker`)."""
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


def build_worker(
    settings: Settings,
    store: Store,
    *,
    worker_index: int | None = None,
    metadata: MetadataDB | None = None,
    sinks: Sequence[EventSink] = (),
    broker: BrokerConfig | None = None,
    data_dir: Path | None = None,
) -> IngestWorker:
    """An :class:`IngestWorker` wired from the settings (detector, registration, limits).

    With ``metadata`` the detector takes each device's site and MVC calibration from it, and
    registration is enforced when ``ingest.require_registration`` is on (opened here if needed).
    """
    ingest = settings.ingest
    index = ingest.worker_index if worker_index is None else worker_index
    if not 0 <= index < ingest.worker_count:
        raise WiringError(f"worker index {index} is not in 0..{ingest.worker_count - 1}")
    default_site = settings.detector.default_site
    if metadata is None and ingest.require_registration:
        metadata = open_metadata(settings)
    site_for: Callable[[str], str] | None = None
    mvc_for: Callable[[str], float | None] | None = None
    is_registered: Callable[[str], bool] | None = None
    if metadata is not None:
        db = metadata

        def registered_site(device_id: str) -> str:
            record = db.device(device_id)
            return record.site if record is not None and record.site else default_site

        def registered_mvc(device_id: str) -> float | None:
            record = db.device(device_id)
            return None if record is None else record.mvc_uv

        site_for, mvc_for = registered_site, registered_mvc
        if ingest.require_registration:
            is_registered = db.is_registered
    detectors = StreamDetectorFactory(
        settings.detector.mains_hz, site_for, mvc_for, default_site=default_site
    )
    tune_collector()  # the process now runs a worker
    return IngestWorker(
        broker or broker_config(settings, index),
        store,
        detectors,
        data_dir or settings.data_dir,
        worker_index=index,
        worker_count=ingest.worker_count,
        queue_frames=ingest.queue_frames,
        reorder_window_s=ingest.reorder_window_s,
        max_pending_frames=ingest.max_pending_frames,
        idle_flush_s=ingest.idle_flush_s,
        finish_after_s=ingest.finish_after_s,
        health_interval_s=ingest.health_interval_s,
        snapshot_every_frames=ingest.snapshot_every_frames,
        is_registered=is_registered,
        sinks=sinks,
    )
