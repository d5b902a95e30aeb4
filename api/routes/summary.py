"""Weekly summary with trend and red flags, and the per-patient HTML page."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from alerts.redflags import evaluate_red_flags
from api.convert import week_public
from api.deps import ReadAccess, StoreDep, Subject
from api.models import Problem, RedFlagPublic, TrendPublic, WeeklySummaryPublic
from api.page import patient_page
from api.picture import DeviceNight, render_night
from api.routes.nights import night_summaries
from api.summaries import Trend, fill_weeks, weekly_trend
from storage.base import EpisodeQuery, Store, WeekSummary
from storage.localtime import iso_weeks_between, night_of, night_window_us, to_us, utc_offset_s

router = APIRouter(
    prefix="/v1/wearers/{wearer_id}",
    tags=["summary"],
    responses={401: {"model": Problem}, 404: {"model": Problem}},
)

RED_FLAG_NIGHTS = 35  # the longest rule window (28-night trend) plus a week
WeeksQuery = Annotated[int, Query(ge=1, le=56, description="Weeks back, this week included.")]


def weekly(
    request: Request, subject: Subject, store: Store, weeks: int
) -> tuple[list[WeekSummary], Trend, list[RedFlagPublic]]:
    """Filled weekly summaries (oldest first), their trend and the red flags per device."""
    state = request.app.state
    wearer = subject.wearer_or_404
    zone = ZoneInfo(wearer.time_zone)
    now = state.clock()
    today = now.astimezone(zone).date()
    first_day = today - timedelta(days=today.weekday() + 7 * (weeks - 1))
    start_us = to_us(datetime.combine(first_day, time(0), tzinfo=zone))
    end_us = to_us(now)
    found: list[WeekSummary] = []
    if subject.devices:
        found = store.week_summaries(
            subject.device_ids, start_us, end_us, utc_offset_s(wearer.time_zone, end_us)
        )
    filled = fill_weeks(found, iso_weeks_between(first_day, today))
    trend = weekly_trend([w.episodes for w in filled], state.rising_slope)
    return filled, trend, red_flags_now(request, subject, store)


def red_flags_now(request: Request, subject: Subject, store: Store) -> list[RedFlagPublic]:
    """The :mod:`alerts.redflags` rules evaluated per device as of the latest night."""
    wearer = subject.wearer_or_404
    as_of = night_of(to_us(request.app.state.clock()), wearer.time_zone)
    all_nights = night_summaries(store, subject, as_of - timedelta(days=RED_FLAG_NIGHTS - 1), as_of)
    flags = []
    for device_id in subject.device_ids:
        nights = [n for n in all_nights if n.device_id == device_id]
        for finding in evaluate_red_flags(nights, as_of.isoformat(), request.app.state.red_flags):
            flags.append(
                RedFlagPublic(
                    rule=finding.rule.value,
                    device_id=device_id,
                    nights=list(finding.nights),
                    message=finding.summary,
                )
            )
    return flags


@router.get(
    "/summary/weekly",
    response_model=WeeklySummaryPublic,
    summary="Weekly summary: cramp nights, episodes, durations, time of night, trend, red flags",
)
def weekly_summary(
    request: Request, subject: ReadAccess, store: StoreDep, weeks: WeeksQuery = 8
) -> WeeklySummaryPublic:
    filled, trend, flags = weekly(request, subject, store, weeks)
    return WeeklySummaryPublic(
        data=[week_public(w) for w in filled],
        count=len(filled),
        trend=TrendPublic(
            slope_episodes_per_week=trend.slope_episodes_per_week,
            direction=trend.direction,
            weeks=trend.weeks,
        ),
        red_flags=flags,
    )


@router.get(
    "/page",
    response_class=HTMLResponse,
    summary="A small HTML page of the patient: weekly chart, red flags, latest nights",
    responses={200: {"content": {"text/html": {}}, "description": "Server-rendered HTML."}},
)
def patient_html(
    request: Request, subject: ReadAccess, store: StoreDep, weeks: WeeksQuery = 8
) -> HTMLResponse:
    wearer = subject.wearer_or_404
    filled, trend, flags = weekly(request, subject, store, weeks)
    today = night_of(to_us(request.app.state.clock()), wearer.time_zone)
    nights = night_summaries(store, subject, today - timedelta(days=13), today)
    nights = sorted(nights, key=lambda n: (n.night, n.device_id), reverse=True)
    night_svg = None
    if nights:
        latest = nights[0]
        n_start, n_end = night_window_us(date.fromisoformat(latest.night), wearer.time_zone)
        panels = [
            DeviceNight(
                d.device_id,
                d.site,
                store.series(d.device_id, n_start, n_end, max_points=1500),
                store.episodes(EpisodeQuery((d.device_id,), n_start, n_end, limit=1000)),
                store.quality(d.device_id, n_start, n_end),
            )
            for d in subject.devices
        ]
        night_svg = render_night(
            panels,
            n_start,
            n_end,
            wearer.time_zone,
            width_px=900,
            height_px=360,
            fmt="svg",
            title=f"Night of {latest.night}",
        ).decode()
    return HTMLResponse(patient_page(wearer, filled, trend, flags, nights[:14], night_svg))
