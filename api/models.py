"""Pydantic request and response models of the HTTP API (``Create`` / ``Public`` / ``…sPublic``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from storage.metadata import Role

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SITE_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"

_EXAMPLE_TIME = "2026-11-20T23:41:07Z"


def _examples(**values: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [values]})


class Problem(BaseModel):
    """An error: FastAPI's ``{"detail": ...}`` shape."""

    detail: str | list[dict[str, Any]]
    model_config = _examples(detail="not found")


# -- people ---------------------------------------------------------------------------------------


class WearerCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    time_zone: str = Field(default="UTC", min_length=1, max_length=64, description="IANA zone.")
    wearer_id: str | None = Field(default=None, pattern=ID_PATTERN)
    model_config = _examples(name="Ann Example", time_zone="Europe/Paris")


class WearerPublic(BaseModel):
    wearer_id: str
    name: str
    time_zone: str
    created_at: datetime
    model_config = _examples(
        wearer_id="w_3f2a", name="Ann Example", time_zone="Europe/Paris", created_at=_EXAMPLE_TIME
    )


class WearersPublic(BaseModel):
    data: list[WearerPublic]
    count: int


class ClinicianCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    clinician_id: str | None = Field(default=None, pattern=ID_PATTERN)
    model_config = _examples(name="Dr. Bea Example")


class ClinicianPublic(BaseModel):
    clinician_id: str
    name: str
    created_at: datetime
    model_config = _examples(
        clinician_id="c_91be", name="Dr. Bea Example", created_at=_EXAMPLE_TIME
    )


class CliniciansPublic(BaseModel):
    data: list[ClinicianPublic]
    count: int


# -- devices --------------------------------------------------------------------------------------


class DeviceCreate(BaseModel):
    device_id: str = Field(pattern=ID_PATTERN)
    owner_id: str = Field(pattern=ID_PATTERN)
    site: str = Field(default="calf", pattern=SITE_PATTERN, description="e.g. left_calf")
    mvc_uv: float | None = Field(default=None, gt=0, lt=1e6, description="MVC amplitude, µV.")
    model_config = _examples(device_id="cw-0042", owner_id="w_3f2a", site="left_calf", mvc_uv=410)


class DevicePublic(BaseModel):
    device_id: str
    owner_id: str
    site: str
    mvc_uv: float | None
    time_zone: str
    created_at: datetime
    model_config = _examples(
        device_id="cw-0042",
        owner_id="w_3f2a",
        site="left_calf",
        mvc_uv=410.0,
        time_zone="Europe/Paris",
        created_at=_EXAMPLE_TIME,
    )


class DeviceIssued(DevicePublic):
    mqtt_username: str | None = Field(description="MQTT user name (the device id), if issued.")
    mqtt_password: str | None = Field(description="MQTT password, shown once, if issued.")


class CalibrationUpdate(BaseModel):
    mvc_uv: float | None = Field(gt=0, lt=1e6, description="MVC amplitude, µV; null clears it.")
    model_config = _examples(mvc_uv=410.0)


class DevicesPublic(BaseModel):
    data: list[DevicePublic]
    count: int


# -- grants and keys ------------------------------------------------------------------------------


class GrantCreate(BaseModel):
    clinician_id: str = Field(pattern=ID_PATTERN)
    model_config = _examples(clinician_id="c_91be")


class GrantPublic(BaseModel):
    grant_id: str
    clinician_id: str
    wearer_id: str
    granted_by: Role
    created_at: datetime
    revoked_at: datetime | None
    active: bool
    model_config = _examples(
        grant_id="g_77aa",
        clinician_id="c_91be",
        wearer_id="w_3f2a",
        granted_by="wearer",
        created_at=_EXAMPLE_TIME,
        revoked_at=None,
        active=True,
    )


class GrantsPublic(BaseModel):
    data: list[GrantPublic]
    count: int


class KeyCreate(BaseModel):
    role: Role
    wearer_id: str | None = Field(default=None, pattern=ID_PATTERN)
    clinician_id: str | None = Field(default=None, pattern=ID_PATTERN)
    name: str = Field(default="", max_length=200)
    expires_in_days: float | None = Field(
        default=90, gt=0, le=3650, description="Null: never expires."
    )
    model_config = _examples(role="clinician", clinician_id="c_91be", name="clinic EHR")


class KeyPublic(BaseModel):
    key_id: str
    name: str
    role: Role
    wearer_id: str | None
    clinician_id: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    model_config = _examples(
        key_id="5c1e0b7d9a22",
        name="clinic EHR",
        role="clinician",
        wearer_id=None,
        clinician_id="c_91be",
        created_at=_EXAMPLE_TIME,
        expires_at="2027-02-18T23:41:07Z",
        revoked_at=None,
    )


class KeyIssued(KeyPublic):
    token: str = Field(description="The bearer token. Shown once; only its hash is stored.")


class KeysPublic(BaseModel):
    data: list[KeyPublic]
    count: int


class MePublic(BaseModel):
    key_id: str
    role: Role
    wearer_id: str | None
    clinician_id: str | None
    model_config = _examples(
        key_id="5c1e0b7d9a22", role="wearer", wearer_id="w_3f2a", clinician_id=None
    )


# -- webhooks -------------------------------------------------------------------------------------


class WebhookCreate(BaseModel):
    url: AnyHttpUrl
    device_id: str | None = Field(default=None, pattern=ID_PATTERN)
    model_config = _examples(url="https://clinic.example/hooks/crampwatch", device_id=None)


class WebhookPublic(BaseModel):
    webhook_id: str
    url: str
    device_id: str | None
    created_at: datetime
    model_config = _examples(
        webhook_id="wh_12ab",
        url="https://clinic.example/hooks/crampwatch",
        device_id=None,
        created_at=_EXAMPLE_TIME,
    )


class WebhookIssued(WebhookPublic):
    secret: str = Field(description="Signing secret. Shown once.")


class WebhooksPublic(BaseModel):
    data: list[WebhookPublic]
    count: int


# -- results --------------------------------------------------------------------------------------


class EpisodePublic(BaseModel):
    episode_id: str
    device_id: str
    site: str
    onset: datetime
    confirmed: datetime
    offset: datetime | None
    duration_s: float
    peak_intensity: float = Field(description="Peak EMG envelope / noise floor.")
    mean_intensity: float
    peak_mvc_pct: float | None
    mean_mvc_pct: float | None
    confidence: float
    movement: str
    got_up_after: bool | None
    quality_flags: list[str]
    model_config = _examples(
        episode_id="cw-0042:1763682067000000",
        device_id="cw-0042",
        site="left_calf",
        onset="2026-11-20T23:41:07Z",
        confirmed="2026-11-20T23:41:09Z",
        offset="2026-11-20T23:42:52Z",
        duration_s=105.0,
        peak_intensity=38.2,
        mean_intensity=17.5,
        peak_mvc_pct=61.0,
        mean_mvc_pct=28.4,
        confidence=0.93,
        movement="still",
        got_up_after=True,
        quality_flags=[],
    )


class EpisodesPublic(BaseModel):
    data: list[EpisodePublic]
    count: int
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class NightPublic(BaseModel):
    device_id: str
    night: str = Field(description="ISO date of the evening the night starts (local time).")
    sleep_start: datetime | None = Field(description="First data seen in the night window.")
    sleep_end: datetime | None
    cramps: int
    total_cramp_min: float
    longest_cramp_min: float
    mean_peak_intensity: float | None
    got_up: bool
    data_coverage: float = Field(ge=0, le=1)
    quality_flags: list[str]
    model_config = _examples(
        device_id="cw-0042",
        night="2026-11-20",
        sleep_start="2026-11-20T22:05:00Z",
        sleep_end="2026-11-21T06:12:00Z",
        cramps=2,
        total_cramp_min=3.1,
        longest_cramp_min=1.75,
        mean_peak_intensity=31.0,
        got_up=True,
        data_coverage=0.97,
        quality_flags=["gap"],
    )


class NightsPublic(BaseModel):
    data: list[NightPublic]
    count: int


class WeekPublic(BaseModel):
    week: str
    cramp_nights: int
    episodes: int
    median_duration_s: float | None
    longest_duration_s: float | None
    hour_histogram: list[int] = Field(description="24 counts of episode onsets by local hour.")
    model_config = _examples(
        week="2026-W47",
        cramp_nights=3,
        episodes=5,
        median_duration_s=84.0,
        longest_duration_s=320.0,
        hour_histogram=[0, 0, 1, 2, 1, 1] + [0] * 18,
    )


class TrendPublic(BaseModel):
    slope_episodes_per_week: float = Field(
        description="Least-squares change of weekly episode count per week."
    )
    direction: Literal["rising", "stable", "falling", "unknown"]
    weeks: int


class RedFlagPublic(BaseModel):
    rule: Literal["frequent_nights", "long_episode", "worsening_trend", "sensor_off"]
    device_id: str
    nights: list[str] = Field(description="Nights (ISO dates) that triggered the rule.")
    message: str
    model_config = _examples(
        rule="frequent_nights",
        device_id="cw-0042",
        nights=["2026-11-17", "2026-11-19", "2026-11-20"],
        message="Cramps on 3 of the last 7 nights.",
    )


class WeeklySummaryPublic(BaseModel):
    data: list[WeekPublic]
    count: int
    trend: TrendPublic
    red_flags: list[RedFlagPublic] = Field(
        description="Rules firing as of the latest night: cramps on more than 2 of 7 nights, "
        "an episode of several minutes, a worsening 4-week trend, sensor off."
    )


class StoredRedFlagPublic(BaseModel):
    flag_id: str
    device_id: str
    rule: Literal["frequent_nights", "long_episode", "worsening_trend", "sensor_off"]
    state: Literal["active", "cleared"] = Field(
        description="`active` while the rule keeps firing; `cleared` by the first night it "
        "does not."
    )
    raised_night: str = Field(description="Night (ISO date) whose evaluation raised the flag.")
    last_night: str = Field(description="Latest night evaluated that still fired the rule.")
    nights: list[str] = Field(description="Every night (ISO date) that triggered the rule.")
    summary: str
    detail: dict[str, Any] = Field(description="The rule's figures.")
    raised_at: datetime
    cleared_at: datetime | None
    model_config = _examples(
        flag_id="8d0c1f3e-5b7a-5d2e-9c41-0a6f2b3c4d5e",
        device_id="cw-0042",
        rule="frequent_nights",
        state="active",
        raised_night="2026-11-20",
        last_night="2026-11-21",
        nights=["2026-11-17", "2026-11-19", "2026-11-20"],
        summary="Cramps on 3 of the last 7 nights (more than 2).",
        detail={"cramp_nights": 3, "threshold": 2},
        raised_at="2026-11-21T12:00:03Z",
        cleared_at=None,
    )


class StoredRedFlagsPublic(BaseModel):
    data: list[StoredRedFlagPublic]
    count: int


class RedFlagEvaluationPublic(BaseModel):
    night: str = Field(description="The night evaluated (ISO date of its evening).")
    device_ids: list[str] = Field(description="Devices evaluated.")
    data: list[StoredRedFlagPublic] = Field(description="Flags newly raised by this evaluation.")
    count: int


DeliveryStatus = Literal["pending", "delivered", "dead"]


class DeliveryPublic(BaseModel):
    delivery_id: str
    event_id: str = Field(description="The event's id; its `Idempotency-Key` on every attempt.")
    event_type: Literal["cramp.started", "cramp.ended", "redflag.raised"]
    webhook_id: str
    device_id: str
    url: str
    status: DeliveryStatus = Field(description="`dead`: finally failed (the dead-letter list).")
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    last_status_code: int | None
    created_at: datetime
    finished_at: datetime | None
    model_config = _examples(
        delivery_id="3b9e6a51-0c7d-5f1e-8a2b-4c5d6e7f8a9b",
        event_id="67420fc7-00c3-58dd-a897-52e185282931",
        event_type="cramp.started",
        webhook_id="wh_12ab",
        device_id="cw-0042",
        url="https://clinic.example/hooks/crampwatch",
        status="dead",
        attempts=8,
        next_attempt_at=_EXAMPLE_TIME,
        last_error="http_410: gone",
        last_status_code=410,
        created_at=_EXAMPLE_TIME,
        finished_at="2026-11-21T02:13:40Z",
    )


class DeliveriesPublic(BaseModel):
    data: list[DeliveryPublic]
    count: int


# -- jobs and health ------------------------------------------------------------------------------


class JobPublic(BaseModel):
    job_id: str
    device_id: str
    state: Literal["queued", "running", "done", "failed"]
    progress: float = Field(ge=0, le=1)
    created_at: datetime
    finished_at: datetime | None
    error: str | None
    episodes: int | None
    episode_ids: list[str]
    model_config = _examples(
        job_id="job_0d1e2f",
        device_id="cw-0042",
        state="done",
        progress=1.0,
        created_at=_EXAMPLE_TIME,
        finished_at=_EXAMPLE_TIME,
        error=None,
        episodes=2,
        episode_ids=["cw-0042:1763682067000000", "cw-0042:1763690012000000"],
    )


class HealthPublic(BaseModel):
    status: Literal["ok"]


class ReadyPublic(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]
    model_config = _examples(status="ready", checks={"store": True, "broker": True})
