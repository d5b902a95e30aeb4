"""A wearer's grants to clinicians (given by the wearer or an admin, revocable)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from api.deps import MetadataDep, OwnerAccess
from api.errors import invalid, not_found
from api.models import GrantCreate, GrantPublic, GrantsPublic, Problem
from storage.metadata import Conflict, GrantRecord, NotFound, Role

router = APIRouter(
    prefix="/v1/wearers/{wearer_id}/grants",
    tags=["grants"],
    responses={401: {"model": Problem}, 404: {"model": Problem}},
)


def _public(g: GrantRecord) -> GrantPublic:
    return GrantPublic(
        grant_id=g.grant_id,
        clinician_id=g.clinician_id,
        wearer_id=g.wearer_id,
        granted_by=g.granted_by,
        created_at=g.created_at,
        revoked_at=g.revoked_at,
        active=g.active,
    )


@router.get("", response_model=GrantsPublic, summary="Grants of a wearer (owner or admin)")
def list_grants(subject: OwnerAccess, metadata: MetadataDep) -> GrantsPublic:
    grants = [_public(g) for g in metadata.grants(wearer_id=subject.wearer_or_404.wearer_id)]
    return GrantsPublic(data=grants, count=len(grants))


@router.post(
    "",
    response_model=GrantPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Give a clinician access to this wearer's data",
    responses={409: {"model": Problem}},
)
def create_grant(body: GrantCreate, subject: OwnerAccess, metadata: MetadataDep) -> GrantPublic:
    wearer = subject.wearer_or_404
    if metadata.clinician(body.clinician_id) is None:
        raise invalid(("body", "clinician_id"), "no such clinician")
    by = Role.ADMIN if subject.principal.role is Role.ADMIN else Role.WEARER
    try:
        grant = metadata.grant(body.clinician_id, wearer.wearer_id, granted_by=by)
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return _public(grant)


@router.delete(
    "/{grant_id}",
    response_model=GrantPublic,
    summary="Revoke a grant (takes effect with the clinician's next request)",
)
def revoke_grant(grant_id: str, subject: OwnerAccess, metadata: MetadataDep) -> GrantPublic:
    grant = metadata.grant_by_id(grant_id)
    if grant is None or grant.wearer_id != subject.wearer_or_404.wearer_id:
        raise not_found()
    try:
        return _public(metadata.revoke_grant(grant_id))
    except NotFound:
        raise not_found() from None
