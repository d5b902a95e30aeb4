"""All configuration, one pydantic-settings class per concern, composed in :class:`Settings`.

Sources, strongest first: ``CRAMPWATCH_<CONCERN>_<FIELD>`` environment variables, then the
``[<concern>]`` table of an optional TOML file (``--config`` or ``CRAMPWATCH_CONFIG``), then the
defaults, which run everything on one machine. Nothing here is built at import time.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class SettingsError(Exception):
    """A setting has a value that is not allowed; the message is one line for the console."""


class _Concern(BaseSettings):
    """Base: environment beats values passed in (the TOML table), which beat defaults."""

    section: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


class GeneralSettings(_Concern):
    """Where local state lives and how loud the logs are."""

    model_config = SettingsConfigDict(env_prefix="CRAMPWATCH_", extra="forbid")
    section: ClassVar[str] = "general"

    data_dir: Path = Field(
        default=Path("./crampwatch-data"),
        description="Directory for the embedded store, ingest checkpoints, spool, metadata DB and accepted uploads.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Console log level."
    )


class BrokerSettings(_Concern):
    """The MQTT broker the ingest worker, alerts and simulator use."""

    model_config = SettingsConfigDict(env_prefix="CRAMPWATCH_BROKER_", extra="forbid")
    section: ClassVar[str] = "broker"

    url: str | None = Field(
        default=None,
        description="mqtt://[user:pass@]host:port (mqtts:// for TLS). Unset: start an "
        "in-process broker on 127.0.0.1:1884.",
    )
    embedded_port: int = Field(
        default=1884, ge=1, le=65535, description="Port of the in-process broker."
    )
    username: str | None = Field(
        default=None, description="Broker user name (overrides the URL's)."
    )
    password: SecretStr | None = Field(default=None, description="Broker password.")
    client_id: str = Field(
        default="crampwatch-ingest", description="Base MQTT client id of workers."
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive, seconds.")
    password_file: Path | None = Field(
        default=None,
        description="mosquitto password file that device registration updates (unset: no "
        "broker credentials are issued).",
    )
    acl_file: Path | None = Field(
        default=None, description="mosquitto ACL file updated together with the password file."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://, e.g. mqtt://127.0.0.1:1883")
        return value


class IngestSettings(_Concern):
    """The ingest worker: sequencing, back-pressure, scale-out."""

    model_config = SettingsConfigDict(env_prefix="CRAMPWATCH_INGEST_", extra="forbid")
    section: ClassVar[str] = "ingest"

    worker_index: int = Field(
        default=0, ge=0, description="This worker's index, 0..worker_count-1."
    )
    worker_count: int = Field(
        default=1, ge=1, le=1024, description="Number of ingest workers sharing devices."
    )
    queue_frames: int = Field(
        default=2000,
        ge=10,
        le=1_000_000,
        description="Bounded queue between MQTT and processing, frames.",
    )
    reorder_window_s: float = Field(
        default=5.0,
        ge=0,
        le=600,
        description="How long a live out-of-order frame is waited for, seconds of device time.",
    )
    snapshot_every_frames: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="Frames between full detector checkpoints; frames in between are replayed after a crash.",
    )
    require_registration: bool = Field(
        default=False,
        description="Dead-letter frames of devices not registered in the metadata DB.",
    )
    health_interval_s: float = Field(
        default=10.0, gt=0, le=3600, description="How often ingest health is stored, seconds."
    )
    max_pending_frames: int = Field(
        default=50_000,
        ge=1,
        le=10_000_000,
        description="Most out-of-order frames held per device stream (a night of 1 s frames "
        "is ~36,000).",
    )
    idle_flush_s: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="Release held (out-of-order, mostly synced) frames of a device quiet for "
        "this long (wall clock), declaring the holes gaps, seconds.",
    )
    finish_after_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="End a device's data (close open episodes) after this much silence, seconds.",
    )


class DetectorSettings(_Concern):
    """Detector options that differ between deployments."""

    model_config = SettingsConfigDict(env_prefix="CRAMPWATCH_DETECTOR_", extra="forbid")
    section: ClassVar[str] = "detector"

    mains_hz: Literal["auto", "50", "60", "both", "off"] = Field(
        default="auto", description="Mains notch: detect from the signal, or fixed 50/60 Hz."
    )
    default_site: str = Field(
        default="calf", description="Sensor site label when a device has none."
    )


class StoreSettings(_Concern):
    """Where results go: the embedded SQLite store or InfluxDB."""

    model_config = SettingsConfigDict(env_prefix="CRAMPWATCH_STORE_", extra="forbid")
    section: ClassVar[str] = "store"

    backend: Literal["sqlite", "influx"] = Field(default="sqlite", description="Results store.")
    influx_url: str = Field(default="http://127.0.0.1:8086", description="InfluxDB base URL.")
    influx_write_mode: Literal["v2", "v1"] = Field(
        default="v2",
        description="v2: /api/v2/write (InfluxDB 1.8+, 2.x, 3.x); v1: /write (1.0-1.7).",
    )
    influx_token: SecretStr | None = Field(
        default=None, description="InfluxDB token (2.x/3.x) or user:password (1.x)."
    )
    influx_org: str = Field(default="crampwatch", description="InfluxDB 2.x organisation.")
    influx_database: str = Field(
        default="crampwatch", description="Database (1.x) / bucket (2.x, 3.x) name."
    )
    influx_retention_policy: str = Field(
        default="", description="1.x retention policy ('' = default)."
    )
    influx_batch_size: int = Field(
        default=5000, ge=1, le=100_000, description="Points per write batch."
    )
    influx_flush_interval_ms: int = Field(
        default=1000, ge=10, le=60_000, description="Batch flush interval, ms."
    )
    influx_create_database: bool = Field(
        default=False,
        description="Create the database on start (InfluxDB 1.x; 2.x/3.x buckets are made by the server's set-up).",
    )
    spool_max_mb: int = Field(
        default=1024, ge=1, description="Largest local spool kept while InfluxDB is down, MiB."
    )


class ApiSettings(_Concern):
    """The HTTP API."""

    model_config = SettingsConfigDict(env_prefix="CRAMPWATCH_API_", extra="forbid")
    section: ClassVar[str] = "api"

    host: str = Field(default="127.0.0.1", description="Bind address.")
    port: int = Field(default=8000, ge=1, le=65535, description="Bind port.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata DB (sqlite:///… or postgresql+psycopg://…). "
        "Unset: SQLite file in the data dir.",
    )
    rate_limit_per_min: int = Field(
        default=600, ge=1, description="Requests per minute per API key."
    )
    max_upload_mb: int = Field(
        default=200, ge=1, le=4096, description="Largest accepted recording upload, MiB."
    )
    public_url: str | None = Field(default=None, description="External base URL printed in links.")


class AlertSettings(_Concern):
    """Live alerts, webhooks and red-flag rules."""

    model_config = SettingsConfigDict(env_prefix="CRAMPWATCH_ALERTS_", extra="forbid")
    section: ClassVar[str] = "alerts"

    merge_gap_s: float = Field(
        default=10.0,
        ge=0,
        le=600,
        description="A cramp that pauses for less than this stays one alert.",
    )
    long_episode_min: float = Field(
        default=5.0, gt=0, le=120, description="Red flag: any episode longer than this, minutes."
    )
    nights_per_week: int = Field(
        default=2,
        ge=1,
        le=7,
        description="Red flag: cramps on more than this many nights in 7 days.",
    )
    webhook_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="Per-attempt webhook timeout, seconds."
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=50, description="Attempts before a delivery is dead-lettered."
    )
    webhook_replay_window_s: int = Field(
        default=300,
        ge=10,
        le=3600,
        description="Receivers reject signatures older than this, seconds.",
    )
    webhook_backoff_base_s: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="Wait before the first webhook retry; it doubles per attempt, seconds.",
    )
    webhook_backoff_max_s: float = Field(
        default=600.0, gt=0, le=86_400, description="Longest wait between webhook retries, seconds."
    )
    end_wait_s: float = Field(
        default=180.0,
        gt=0,
        le=3600,
        description="How long an alert overtaken by a new cramp waits for its end report, seconds.",
    )
    sensor_min_coverage: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Red flag: a night with EMG for less than this fraction of it (sensor off).",
    )


_CONCERNS: tuple[type[_Concern], ...] = (
    GeneralSettings,
    BrokerSettings,
    IngestSettings,
    DetectorSettings,
    StoreSettings,
    ApiSettings,
    AlertSettings,
)


class Settings(BaseModel):
    """Every concern's settings together."""

    general: GeneralSettings
    broker: BrokerSettings
    ingest: IngestSettings
    detector: DetectorSettings
    store: StoreSettings
    api: ApiSettings
    alerts: AlertSettings

    @property
    def data_dir(self) -> Path:
        return self.general.data_dir


def load_settings(
    config_path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load settings from the environment and an optional TOML file.

    Raises
    ------
    SettingsError
        One line naming the setting (as its environment variable) and what is allowed.
    """
    environ = os.environ if environ is None else environ
    path = config_path or (
        Path(environ["CRAMPWATCH_CONFIG"]) if environ.get("CRAMPWATCH_CONFIG") else None
    )
    tables: dict[str, Any] = {}
    if path is not None:
        try:
            tables = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise SettingsError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
        unknown = set(tables) - {c.section for c in _CONCERNS}
        if unknown:
            allowed = ", ".join(c.section for c in _CONCERNS)
            raise SettingsError(
                f"config file {path}: unknown table(s) {sorted(unknown)}; allowed: {allowed}"
            )
    built: dict[str, _Concern] = {}
    saved = dict(os.environ)
    if environ is not os.environ:
        os.environ.clear()
        os.environ.update(environ)
    try:
        for concern in _CONCERNS:
            table = tables.get(concern.section, {})
            if not isinstance(table, dict):
                raise SettingsError(f"config file {path}: [{concern.section}] must be a table")
            try:
                built[concern.section] = concern(**table)
            except ValidationError as exc:
                raise SettingsError(_one_line(concern, exc)) from None
    finally:
        if environ is not os.environ:
            os.environ.clear()
            os.environ.update(saved)
    return Settings(**built)


def _one_line(concern: type[_Concern], exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "?"
    prefix = concern.model_config.get("env_prefix", "")
    if error["type"] == "extra_forbidden":
        return (
            f"unknown setting {prefix}{field.upper()} (in [{concern.section}] of the config file)"
        )
    got = error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    return f"setting {prefix}{field.upper()} ([{concern.section}] {field}) = {got!r}: {message}"


def settings_table() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting, for docs and --help."""
    rows = []
    for concern in _CONCERNS:
        prefix = concern.model_config.get("env_prefix", "")
        for name, info in concern.model_fields.items():
            default = "" if info.default is None else str(info.default)
            rows.append((f"{prefix}{name.upper()}", default, info.description or ""))
    return rows
