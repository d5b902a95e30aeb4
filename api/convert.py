"""Domain records to response models."""

from __future__ import annotations

from alerts.redflag_store import StoredRedFlag
from alerts.webhooks import DeliveryRecord
from api.jobs import Job
from api.models import (
    DeliveryPublic,
    EpisodePublic,
    JobPublic,
    NightPublic,
    StoredRedFlagPublic,
    WeekPublic,
)
from detection.events import Episode
from storage.base import NightSummary, WeekSummary
from storage.localtime import from_us


def episode_public(e: Episode) -> EpisodePublic:
    return EpisodePublic(
        episode_id=e.episode_id,
        device_id=e.device_id,
        site=e.site,
        onset=from_us(e.onset_us),
        confirmed=from_us(e.confirmed_us),
        offset=None if e.offset_us is None else from_us(e.offset_us),
        duration_s=e.duration_s,
        peak_intensity=e.peak_intensity,
        mean_intensity=e.mean_intensity,
        peak_mvc_pct=e.peak_mvc_pct,
        mean_mvc_pct=e.mean_mvc_pct,
        confidence=e.confidence,
        movement=str(e.movement),
        got_up_after=e.got_up_after,
        quality_flags=[str(f) for f in e.quality_flags],
    )


def night_public(n: NightSummary) -> NightPublic:
    return NightPublic(
        device_id=n.device_id,
        night=n.night,
        sleep_start=None if n.first_data_us is None else from_us(n.first_data_us),
        sleep_end=None if n.last_data_us is None else from_us(n.last_data_us),
        cramps=n.episodes,
        total_cramp_min=n.total_cramp_s / 60.0,
        longest_cramp_min=n.longest_cramp_s / 60.0,
        mean_peak_intensity=n.mean_peak_intensity,
        got_up=n.got_up,
        data_coverage=min(1.0, max(0.0, n.data_coverage)),
        quality_flags=list(n.quality_flags),
    )


def week_public(w: WeekSummary) -> WeekPublic:
    return WeekPublic(
        week=w.week,
        cramp_nights=w.cramp_nights,
        episodes=w.episodes,
        median_duration_s=w.median_duration_s,
        longest_duration_s=w.longest_duration_s,
        hour_histogram=list(w.hour_histogram),
    )


def job_public(job: Job) -> JobPublic:
    return JobPublic(
        job_id=job.job_id,
        device_id=job.device_id,
        state=job.state,
        progress=job.progress,
        created_at=job.created_at,
        finished_at=job.finished_at,
        error=job.error,
        episodes=len(job.episode_ids) if job.state == "done" else None,
        episode_ids=list(job.episode_ids),
    )


def stored_red_flag_public(f: StoredRedFlag) -> StoredRedFlagPublic:
    return StoredRedFlagPublic(
        flag_id=f.flag_id,
        device_id=f.device_id,
        rule=f.rule.value,
        state=f.state,  # type: ignore[arg-type]  # active | cleared
        raised_night=f.raised_night,
        last_night=f.last_night,
        nights=list(f.nights),
        summary=f.summary,
        detail=f.detail,
        raised_at=from_us(f.raised_us),
        cleared_at=None if f.cleared_us is None else from_us(f.cleared_us),
    )


def delivery_public(d: DeliveryRecord) -> DeliveryPublic:
    return DeliveryPublic(
        delivery_id=d.delivery_id,
        event_id=d.event_id,
        event_type=d.event_type.value,
        webhook_id=d.subscription_id,
        device_id=d.device_id,
        url=d.url,
        status=d.status,  # type: ignore[arg-type]  # pending | delivered | dead
        attempts=d.attempts,
        next_attempt_at=from_us(d.next_attempt_us),
        last_error=d.last_error,
        last_status_code=d.last_status_code,
        created_at=from_us(d.created_us),
        finished_at=None if d.finished_us is None else from_us(d.finished_us),
    )
