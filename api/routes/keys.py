"""API keys (admin): issued once, stored hashed, revocable, expiring."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, status

from api.deps import AdminAccess, MetadataDep
from api.errors import invalid, not_found
from api.models import KeyCreate, KeyIssued, KeyPublic, KeysPublic, Problem
from storage.metadata import ApiKeyRecord, NotFound

router = APIRouter(
    prefix="/v1/keys",
    tags=["keys"],
    responses={401: {"model": Problem}, 403: {"model": Problem}},
)


def _public(k: ApiKeyRecord) -> KeyPublic:
    return KeyPublic(
        key_id=k.key_id,
        name=k.name,
        role=k.role,
        wearer_id=k.wearer_id,
        clinician_id=k.clinician_id,
        created_at=k.created_at,
        expires_at=k.expires_at,
        revoked_at=k.revoked_at,
    )


@router.post(
    "",
    response_model=KeyIssued,
    status_code=status.HTTP_201_CREATED,
    summary="Issue an API key (the token is in this response only)",
)
def create_key(
    body: KeyCreate, request: Request, _: AdminAccess, metadata: MetadataDep
) -> KeyIssued:
    expires_at = None
    if body.expires_in_days is not None:
        expires_at = request.app.state.clock() + timedelta(days=body.expires_in_days)
    try:
        issued = metadata.create_key(
            body.role,
            wearer_id=body.wearer_id,
            clinician_id=body.clinician_id,
            name=body.name,
            expires_at=expires_at,
        )
    except NotFound as exc:
        raise invalid(
            ("body", "wearer_id" if body.wearer_id else "clinician_id"), str(exc)
        ) from None
    except ValueError as exc:
        raise invalid(("body", "role"), str(exc)) from None
    return KeyIssued(**_public(issued.record).model_dump(), token=issued.token)


@router.get("", response_model=KeysPublic, summary="All keys (never their secrets)")
def list_keys(_: AdminAccess, metadata: MetadataDep) -> KeysPublic:
    keys = [_public(k) for k in metadata.api_keys()]
    return KeysPublic(data=keys, count=len(keys))


@router.delete(
    "/{key_id}",
    response_model=KeyPublic,
    summary="Revoke a key (it fails from the next request on)",
    responses={404: {"model": Problem}},
)
def revoke_key(key_id: str, _: AdminAccess, metadata: MetadataDep) -> KeyPublic:
    try:
        return _public(metadata.revoke_key(key_id))
    except NotFound:
        raise not_found() from None
