"""Webhook deliveries and their dead letters: owners see their own webhooks', admins all."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import status as http_status

from api.convert import delivery_public
from api.deps import AdminAccess, CurrentUser, DeliveryLogDep, MetadataDep
from api.errors import invalid, not_found
from api.models import ID_PATTERN, DeliveriesPublic, DeliveryPublic, DeliveryStatus, Problem
from api.routes.me import webhook_owner
from storage.localtime import to_us

MAX_DELIVERIES = 500

router = APIRouter(tags=["webhooks"], responses={401: {"model": Problem}})

StatusQuery = Annotated[
    DeliveryStatus | None,
    Query(description="`pending`, `delivered` or `dead` (the dead-letter list)."),
]
SinceQuery = Annotated[
    datetime | None, Query(description="Only deliveries created at or after this time.")
]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_DELIVERIES, description="Most deliveries returned.")]


def _since_us(since: datetime | None) -> int | None:
    if since is None:
        return None
    if since.tzinfo is None:
        raise invalid(("query", "since"), "needs a UTC offset, e.g. 2026-11-20T23:00:00Z")
    return to_us(since)


@router.get(
    "/v1/me/webhooks/deliveries",
    response_model=DeliveriesPublic,
    summary="Deliveries to my webhooks, newest first (status=dead: my dead letters)",
    responses={403: {"model": Problem}, 422: {"model": Problem}},
)
def my_deliveries(
    principal: CurrentUser,
    metadata: MetadataDep,
    log: DeliveryLogDep,
    status: StatusQuery = None,
    since: SinceQuery = None,
    limit: LimitQuery = 100,
) -> DeliveriesPublic:
    role, owner_id = webhook_owner(principal)
    webhook_ids = [h.webhook_id for h in metadata.webhooks_of(role, owner_id)]
    found = log.deliveries(
        subscription_ids=webhook_ids, status=status, since_us=_since_us(since), limit=limit
    )
    data = [delivery_public(d) for d in found]
    return DeliveriesPublic(data=data, count=len(data))


@router.get(
    "/v1/webhooks/deliveries",
    response_model=DeliveriesPublic,
    summary="Every webhook delivery, newest first (admin; status=dead: the dead-letter list)",
    responses={403: {"model": Problem}, 422: {"model": Problem}},
)
def all_deliveries(
    _: AdminAccess,
    log: DeliveryLogDep,
    status: StatusQuery = None,
    device_id: Annotated[
        str | None, Query(pattern=ID_PATTERN, description="Only this device's deliveries.")
    ] = None,
    since: SinceQuery = None,
    limit: LimitQuery = 100,
) -> DeliveriesPublic:
    found = log.deliveries(
        device_ids=None if device_id is None else [device_id],
        status=status,
        since_us=_since_us(since),
        limit=limit,
    )
    data = [delivery_public(d) for d in found]
    return DeliveriesPublic(data=data, count=len(data))


@router.post(
    "/v1/webhooks/deliveries/{delivery_id}/requeue",
    response_model=DeliveryPublic,
    summary="Retry a dead-lettered delivery with a fresh attempt budget (admin)",
    responses={403: {"model": Problem}, 404: {"model": Problem}, 409: {"model": Problem}},
)
def requeue_delivery(
    delivery_id: str,
    request: Request,
    _: AdminAccess,
    log: DeliveryLogDep,
) -> DeliveryPublic:
    if log.delivery(delivery_id) is None:
        raise not_found()
    if not log.requeue(delivery_id, to_us(request.app.state.clock())):
        raise HTTPException(http_status.HTTP_409_CONFLICT, "only a dead delivery can be requeued")
    wake = request.app.state.on_webhook_work
    if wake is not None:
        wake()
    requeued = log.delivery(delivery_id)
    if requeued is None:  # removed in between
        raise not_found()
    return delivery_public(requeued)
