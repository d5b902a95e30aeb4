"""Nights: per-night summaries, one night's episodes and its picture."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from api.convert import episode_public, night_public
from api.deps import ReadAccess, StoreDep, Subject
from api.errors import invalid
from api.models import EpisodesPublic, NightsPublic, Problem
from api.params import FirstNightQuery, LastNightQuery, night_range
from api.picture import HEIGHT_RANGE_PX, MEDIA_TYPES, WIDTH_RANGE_PX, DeviceNight, render_night
from detection.events import Episode
from storage.base import EpisodeQuery, NightSummary, Store
from storage.localtime import night_of, night_segments, night_window_us, to_us

MAX_NIGHT_EPISODES = 10_000
PREFIXES = (("/v1/me", "my"), ("/v1/wearers/{wearer_id}", "a wearer's"))

router = APIRouter(tags=["nights"], responses={401: {"model": Problem}, 404: {"model": Problem}})


def list_nights(
    request: Request,
    subject: ReadAccess,
    store: StoreDep,
    first: FirstNightQuery = None,
    last: LastNightQuery = None,
) -> NightsPublic:
    wearer = subject.wearer_or_404
    today = night_of(to_us(request.app.state.clock()), wearer.time_zone)
    first_night, last_night = night_range(first, last, today, default_nights=30)
    nights = night_summaries(store, subject, first_night, last_night)
    data = [night_public(n) for n in sorted(nights, key=lambda n: (n.night, n.device_id))]
    return NightsPublic(data=data, count=len(data))


def night_summaries(store: Store, subject: Subject, first: date, last: date) -> list[NightSummary]:
    """The subject's nights ``first..last`` (inclusive), right across DST changes."""
    if not subject.devices:
        return []
    time_zone = subject.wearer_or_404.time_zone
    return [
        summary
        for start_us, end_us, offset_s in night_segments(first, last, time_zone)
        for summary in store.night_summaries(subject.device_ids, start_us, end_us, offset_s)
    ]


def _night_episodes(subject: Subject, store: Store, night: date) -> list[Episode]:
    if not subject.devices:
        return []
    start_us, end_us = night_window_us(night, subject.wearer_or_404.time_zone)
    return store.episodes(
        EpisodeQuery(subject.device_ids, start_us, end_us, limit=MAX_NIGHT_EPISODES)
    )


def night_episodes(night: date, subject: ReadAccess, store: StoreDep) -> EpisodesPublic:
    episodes = [episode_public(e) for e in _night_episodes(subject, store, night)]
    return EpisodesPublic(data=episodes, count=len(episodes), next_cursor=None)


def night_picture(
    night: date,
    subject: ReadAccess,
    store: StoreDep,
    format: Annotated[Literal["png", "svg"], Query(description="Image format.")] = "png",
    width: Annotated[
        int, Query(ge=WIDTH_RANGE_PX[0], le=WIDTH_RANGE_PX[1], description="Pixels.")
    ] = 1200,
    height: Annotated[
        int, Query(ge=HEIGHT_RANGE_PX[0], le=HEIGHT_RANGE_PX[1], description="Pixels.")
    ] = 500,
    device_id: Annotated[str | None, Query(max_length=64, description="One device only.")] = None,
) -> Response:
    wearer = subject.wearer_or_404
    devices = subject.devices
    if device_id is not None:
        devices = tuple(d for d in devices if d.device_id == device_id)
        if not devices:
            raise invalid(("query", "device_id"), "not one of this wearer's devices")
    start_us, end_us = night_window_us(night, wearer.time_zone)
    panels = [
        DeviceNight(
            device_id=d.device_id,
            site=d.site,
            series=store.series(d.device_id, start_us, end_us, max_points=min(4 * width, 20_000)),
            episodes=store.episodes(
                EpisodeQuery((d.device_id,), start_us, end_us, limit=MAX_NIGHT_EPISODES)
            ),
            quality=store.quality(d.device_id, start_us, end_us),
        )
        for d in devices
    ]
    image = render_night(
        panels,
        start_us,
        end_us,
        wearer.time_zone,
        width_px=width,
        height_px=height,
        fmt=format,
        title=f"Night of {night.isoformat()}",
    )
    return Response(image, media_type=MEDIA_TYPES[format])


_IMAGE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "content": {"image/png": {}, "image/svg+xml": {}},
        "description": "The night's picture at the requested size.",
    }
}

for _prefix, _whose in PREFIXES:
    router.add_api_route(
        f"{_prefix}/nights",
        list_nights,
        methods=["GET"],
        response_model=NightsPublic,
        summary=f"{_whose.capitalize()} nights: sleep window, cramps, got up, data quality",
    )
    router.add_api_route(
        f"{_prefix}/nights/{{night}}/episodes",
        night_episodes,
        methods=["GET"],
        response_model=EpisodesPublic,
        summary=f"Episodes of one of {_whose} nights",
    )
    router.add_api_route(
        f"{_prefix}/nights/{{night}}/picture",
        night_picture,
        methods=["GET"],
        response_class=Response,
        responses=_IMAGE_RESPONSES,
        summary=f"Picture of one of {_whose} nights (PNG or SVG)",
    )
