"""Wearers, clinicians and a clinician's patients."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from api.deps import AdminAccess, CurrentUser, MetadataDep, ReadAccess
from api.errors import invalid
from api.models import (
    ClinicianCreate,
    ClinicianPublic,
    CliniciansPublic,
    Problem,
    WearerCreate,
    WearerPublic,
    WearersPublic,
)
from storage.metadata import Conflict, Role, WearerRecord

router = APIRouter(
    prefix="/v1",
    tags=["people"],
    responses={401: {"model": Problem}, 404: {"model": Problem}},
)


def _wearer(w: WearerRecord) -> WearerPublic:
    return WearerPublic(
        wearer_id=w.wearer_id, name=w.name, time_zone=w.time_zone, created_at=w.created_at
    )


@router.post(
    "/wearers",
    response_model=WearerPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Create a wearer (admin)",
    responses={403: {"model": Problem}, 409: {"model": Problem}},
)
def create_wearer(body: WearerCreate, _: AdminAccess, metadata: MetadataDep) -> WearerPublic:
    try:
        wearer = metadata.add_wearer(body.name, time_zone=body.time_zone, wearer_id=body.wearer_id)
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except ValueError as exc:
        raise invalid(("body", "time_zone"), str(exc)) from None
    return _wearer(wearer)


@router.get(
    "/wearers",
    response_model=WearersPublic,
    summary="All wearers (admin)",
    responses={403: {"model": Problem}},
)
def list_wearers(_: AdminAccess, metadata: MetadataDep) -> WearersPublic:
    wearers = [_wearer(w) for w in metadata.wearers()]
    return WearersPublic(data=wearers, count=len(wearers))


@router.get("/wearers/{wearer_id}", response_model=WearerPublic, summary="One wearer")
def get_wearer(subject: ReadAccess) -> WearerPublic:
    return _wearer(subject.wearer_or_404)


@router.post(
    "/clinicians",
    response_model=ClinicianPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Create a clinician (admin)",
    responses={403: {"model": Problem}, 409: {"model": Problem}},
)
def create_clinician(
    body: ClinicianCreate, _: AdminAccess, metadata: MetadataDep
) -> ClinicianPublic:
    try:
        c = metadata.add_clinician(body.name, clinician_id=body.clinician_id)
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return ClinicianPublic(clinician_id=c.clinician_id, name=c.name, created_at=c.created_at)


@router.get(
    "/clinicians",
    response_model=CliniciansPublic,
    summary="All clinicians (admin)",
    responses={403: {"model": Problem}},
)
def list_clinicians(_: AdminAccess, metadata: MetadataDep) -> CliniciansPublic:
    data = [
        ClinicianPublic(clinician_id=c.clinician_id, name=c.name, created_at=c.created_at)
        for c in metadata.clinicians()
    ]
    return CliniciansPublic(data=data, count=len(data))


@router.get(
    "/patients",
    response_model=WearersPublic,
    summary="My patients: wearers who granted me access (admin: everyone)",
    responses={403: {"model": Problem}},
)
def my_patients(principal: CurrentUser, metadata: MetadataDep) -> WearersPublic:
    if principal.role is Role.ADMIN:
        wearers = metadata.wearers()
    elif principal.clinician_id is not None:
        wearers = metadata.patients_of(principal.clinician_id)
    else:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "clinician or admin key required")
    data = [_wearer(w) for w in wearers]
    return WearersPublic(data=data, count=len(data))
