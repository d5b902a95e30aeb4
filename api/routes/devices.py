"""Devices: registration (admin), listing, calibration."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, HTTPException, Request, status

from api.deps import AdminAccess, MetadataDep, OwnerAccess, ReadAccess
from api.errors import invalid, not_found
from api.models import (
    CalibrationUpdate,
    DeviceCreate,
    DeviceIssued,
    DevicePublic,
    DevicesPublic,
    Problem,
)
from storage.metadata import Conflict, DeviceRecord, NotFound

router = APIRouter(tags=["devices"], responses={401: {"model": Problem}, 404: {"model": Problem}})


def _public(d: DeviceRecord) -> DevicePublic:
    return DevicePublic(
        device_id=d.device_id,
        owner_id=d.owner_id,
        site=d.site,
        mvc_uv=d.mvc_uv,
        time_zone=d.time_zone,
        created_at=d.created_at,
    )


@router.post(
    "/v1/devices",
    response_model=DeviceIssued,
    status_code=status.HTTP_201_CREATED,
    summary="Register a device (admin); issues its MQTT credentials when the broker is managed",
    responses={403: {"model": Problem}, 409: {"model": Problem}},
)
def create_device(
    body: DeviceCreate, request: Request, _: AdminAccess, metadata: MetadataDep
) -> DeviceIssued:
    try:
        device = metadata.add_device(
            body.device_id, body.owner_id, site=body.site, mvc_uv=body.mvc_uv
        )
    except NotFound as exc:
        raise invalid(("body", "owner_id"), str(exc)) from None
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    issue: Callable[[str], str] | None = request.app.state.device_credentials
    password = issue(device.device_id) if issue is not None else None
    return DeviceIssued(
        **_public(device).model_dump(),
        mqtt_username=device.device_id if password is not None else None,
        mqtt_password=password,
    )


@router.get("/v1/devices/{device_id}", response_model=DevicePublic, summary="One device")
def get_device(subject: ReadAccess) -> DevicePublic:
    if subject.device is None:
        raise not_found()
    return _public(subject.device)


@router.put(
    "/v1/devices/{device_id}/calibration",
    response_model=DevicePublic,
    summary="Set or clear the device's MVC calibration (owner or admin)",
)
def set_calibration(
    body: CalibrationUpdate, subject: OwnerAccess, metadata: MetadataDep
) -> DevicePublic:
    if subject.device is None:
        raise not_found()
    return _public(metadata.set_calibration(subject.device.device_id, body.mvc_uv))


def list_devices(subject: ReadAccess) -> DevicesPublic:
    devices = [_public(d) for d in subject.devices]
    return DevicesPublic(data=devices, count=len(devices))


for _path, _summary in (
    ("/v1/me/devices", "My devices"),
    ("/v1/wearers/{wearer_id}/devices", "A wearer's devices"),
):
    router.add_api_route(
        _path, list_devices, methods=["GET"], response_model=DevicesPublic, summary=_summary
    )
