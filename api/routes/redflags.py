"""Stored red flags of a wearer (with the nights that triggered them) and on-demand evaluation."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request

from alerts.nightly import evaluate_nights, latest_completed_night, night_problem
from api.convert import stored_red_flag_public
from api.deps import ClinicalAccess, ReadAccess, RedFlagStoreDep, StoreDep
from api.errors import invalid
from api.models import Problem, RedFlagEvaluationPublic, StoredRedFlagsPublic

MAX_FLAGS = 500
PREFIXES = (("/v1/me", "my"), ("/v1/wearers/{wearer_id}", "a wearer's"))

router = APIRouter(tags=["red flags"], responses={401: {"model": Problem}, 404: {"model": Problem}})


def list_red_flags(
    subject: ReadAccess,
    flags: RedFlagStoreDep,
    active: Annotated[bool, Query(description="Only flags whose rule still fires.")] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_FLAGS, description="Most flags returned.")] = 100,
) -> StoredRedFlagsPublic:
    stored = flags.flags(subject.device_ids, active_only=active, limit=limit)
    data = [stored_red_flag_public(f) for f in stored]
    return StoredRedFlagsPublic(data=data, count=len(data))


for _prefix, _whose in PREFIXES:
    router.add_api_route(
        f"{_prefix}/red-flags",
        list_red_flags,
        methods=["GET"],
        response_model=StoredRedFlagsPublic,
        summary=f"Stored red flags of {_whose} devices, newest first, with their nights",
    )


@router.post(
    "/v1/wearers/{wearer_id}/red-flags/evaluate",
    response_model=RedFlagEvaluationPublic,
    summary="Evaluate the red-flag rules now (clinician with a grant, or admin)",
    responses={403: {"model": Problem}, 422: {"model": Problem}},
)
def evaluate_red_flags(
    request: Request,
    subject: ClinicalAccess,
    flags: RedFlagStoreDep,
    store: StoreDep,
    night: Annotated[
        date | None,
        Query(
            description="Night to evaluate (ISO date of its evening); default: the latest "
            "completed night (noon to noon in the wearer's time zone)."
        ),
    ] = None,
) -> RedFlagEvaluationPublic:
    wearer = subject.wearer_or_404
    latest = latest_completed_night(request.app.state.clock(), wearer.time_zone)
    night = night or latest
    problem = night_problem(night, latest)
    if problem is not None:
        raise invalid(("query", "night"), problem)
    raised = evaluate_nights(flags, store, subject.device_ids, night, wearer.time_zone)
    data = [stored_red_flag_public(f) for f in raised]
    return RedFlagEvaluationPublic(
        night=night.isoformat(), device_ids=list(subject.device_ids), data=data, count=len(data)
    )
