"""Episode history with filters and cursor pagination, and its CSV / FHIR exports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from api.convert import episode_public
from api.deps import ReadAccess, StoreDep
from api.errors import invalid
from api.exports import episodes_csv, fhir_bundle
from api.models import SITE_PATTERN, EpisodesPublic, Problem
from api.params import EndQuery, StartQuery, decode_cursor, encode_cursor, time_range_us
from detection.events import Episode
from storage.base import EpisodeQuery
from storage.validation import MAX_EPISODE_LIMIT

MAX_EXPORT_EPISODES = MAX_EPISODE_LIMIT - 1
DEFAULT_DAYS = 90

router = APIRouter(
    prefix="/v1/wearers/{wearer_id}",
    tags=["history"],
    responses={401: {"model": Problem}, 404: {"model": Problem}},
)


@dataclass(frozen=True)
class Filters:
    start_us: int
    end_us: int
    min_duration_s: float
    site: str | None


def filters(
    request: Request,
    start: StartQuery = None,
    end: EndQuery = None,
    min_duration_s: Annotated[
        float, Query(ge=0, le=86_400, description="Only episodes at least this long, seconds.")
    ] = 0.0,
    site: Annotated[
        str | None, Query(pattern=SITE_PATTERN, description="Sensor site, e.g. left_calf.")
    ] = None,
) -> Filters:
    start_us, end_us = time_range_us(start, end, request.app.state.clock(), DEFAULT_DAYS)
    return Filters(start_us, end_us, min_duration_s, site)


FiltersDep = Annotated[Filters, Depends(filters)]


def _query(subject_devices: tuple[str, ...], f: Filters, **more: object) -> EpisodeQuery:
    return EpisodeQuery(
        device_ids=subject_devices,
        start_us=f.start_us,
        end_us=f.end_us,
        min_duration_s=f.min_duration_s,
        site=f.site,
        **more,  # type: ignore[arg-type]
    )


@router.get(
    "/episodes",
    response_model=EpisodesPublic,
    summary="Episode history (time range, minimum duration, site; cursor pagination)",
)
def episode_history(
    subject: ReadAccess,
    store: StoreDep,
    f: FiltersDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
    ] = None,
) -> EpisodesPublic:
    if not subject.devices:
        return EpisodesPublic(data=[], count=0, next_cursor=None)
    after = decode_cursor(cursor) if cursor is not None else None
    page = store.episodes(_query(subject.device_ids, f, after_episode=after, limit=limit + 1))
    more = len(page) > limit
    page = page[:limit]
    next_cursor = encode_cursor(page[-1].onset_us, page[-1].episode_id) if more else None
    return EpisodesPublic(
        data=[episode_public(e) for e in page], count=len(page), next_cursor=next_cursor
    )


def _export(subject: ReadAccess, store: StoreDep, f: Filters) -> list[Episode]:
    if not subject.devices:
        return []
    episodes = store.episodes(_query(subject.device_ids, f, limit=MAX_EXPORT_EPISODES + 1))
    if len(episodes) > MAX_EXPORT_EPISODES:
        raise invalid(("query", "start"), f"more than {MAX_EXPORT_EPISODES} episodes; narrow it")
    return episodes


@router.get(
    "/episodes.csv",
    response_class=Response,
    summary="Episode history as CSV",
    responses={200: {"content": {"text/csv": {}}, "description": "One row per episode."}},
)
def export_csv(subject: ReadAccess, store: StoreDep, f: FiltersDep) -> Response:
    text = episodes_csv(_export(subject, store, f))
    name = f"{subject.wearer_or_404.wearer_id}-episodes.csv"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/episodes/fhir",
    response_class=JSONResponse,
    summary="Episode history as an HL7 FHIR R4 Bundle of Observations",
    responses={
        200: {
            "content": {"application/fhir+json": {}},
            "description": "A `collection` Bundle, one Observation per episode.",
        }
    },
)
def export_fhir(subject: ReadAccess, store: StoreDep, f: FiltersDep) -> JSONResponse:
    episodes = _export(subject, store, f)
    bundle = fhir_bundle(episodes, subject.wearer_or_404, subject.devices)
    return JSONResponse(bundle, media_type="application/fhir+json")
