"""The caller's own identity and webhooks."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from api.deps import CurrentUser, MetadataDep
from api.errors import invalid, not_found
from api.models import (
    MePublic,
    Problem,
    WebhookCreate,
    WebhookIssued,
    WebhookPublic,
    WebhooksPublic,
)
from storage.metadata import MetadataDB, NotFound, Principal, Role, WebhookRecord

router = APIRouter(prefix="/v1/me", tags=["me"], responses={401: {"model": Problem}})


@router.get("", response_model=MePublic, summary="Who the key belongs to")
def me(principal: CurrentUser) -> MePublic:
    return MePublic(
        key_id=principal.key_id,
        role=principal.role,
        wearer_id=principal.wearer_id,
        clinician_id=principal.clinician_id,
    )


def webhook_owner(principal: Principal) -> tuple[Role, str]:
    """Role and id of the caller as a webhook owner; 403 for admins (they own none)."""
    owner_id = principal.wearer_id or principal.clinician_id
    if owner_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "webhooks belong to wearers or clinicians")
    return principal.role, owner_id


def _webhook_public(hook: WebhookRecord) -> WebhookPublic:
    return WebhookPublic(
        webhook_id=hook.webhook_id,
        url=hook.url,
        device_id=hook.device_id,
        created_at=hook.created_at,
    )


def _may_watch(principal: Principal, device_id: str, metadata: MetadataDB) -> bool:
    device = metadata.device(device_id)
    if device is None:
        return False
    if principal.wearer_id is not None:
        return device.owner_id == principal.wearer_id
    return principal.clinician_id is not None and metadata.has_access(
        principal.clinician_id, device.owner_id
    )


@router.get("/webhooks", response_model=WebhooksPublic, summary="My webhooks")
def list_webhooks(principal: CurrentUser, metadata: MetadataDep) -> WebhooksPublic:
    role, owner_id = webhook_owner(principal)
    hooks = [_webhook_public(h) for h in metadata.webhooks_of(role, owner_id)]
    return WebhooksPublic(data=hooks, count=len(hooks))


@router.post(
    "/webhooks",
    response_model=WebhookIssued,
    status_code=status.HTTP_201_CREATED,
    summary="Subscribe a URL to episode events (the signing secret is shown once)",
)
def create_webhook(
    body: WebhookCreate, principal: CurrentUser, metadata: MetadataDep
) -> WebhookIssued:
    role, owner_id = webhook_owner(principal)
    if body.device_id is not None and not _may_watch(principal, body.device_id, metadata):
        raise invalid(("body", "device_id"), "no such device")
    hook = metadata.add_webhook(
        str(body.url), owner_role=role, owner_id=owner_id, device_id=body.device_id
    )
    return WebhookIssued(**_webhook_public(hook).model_dump(), secret=hook.secret)


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove one of my webhooks",
    responses={404: {"model": Problem}},
)
def delete_webhook(webhook_id: str, principal: CurrentUser, metadata: MetadataDep) -> None:
    role, owner_id = webhook_owner(principal)
    hook = metadata.webhook(webhook_id)
    if hook is None or hook.owner_role is not role or hook.owner_id != owner_id:
        raise not_found()
    try:
        metadata.delete_webhook(webhook_id)
    except NotFound:
        raise not_found() from None
