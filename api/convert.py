"""Domain records to response models."""

from __future__ import annotations

from api.jobs import Job
from api.models import EpisodePublic, JobPublic, NightPublic, WeekPublic
from api.timewin import from_us
from detection.events import Episode
from storage.base import NightSummary, WeekSummary


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
