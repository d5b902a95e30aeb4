"""Dependencies: the store, the metadata DB, the current user and the one access check."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alerts.redflag_store import RedFlagStore
from alerts.webhooks import DeliveryLog
from api.errors import not_found
from api.ratelimit import RateLimiter
from storage.base import Store
from storage.metadata import DeviceRecord, MetadataDB, Principal, Role, WearerRecord

bearer = HTTPBearer(
    auto_error=False,
    description="An API key: `Authorization: Bearer cw_<key id>_<secret>`.",
)


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_metadata(request: Request) -> MetadataDB:
    metadata: MetadataDB = request.app.state.metadata
    return metadata


def get_red_flag_store(request: Request) -> RedFlagStore:
    flags: RedFlagStore = request.app.state.red_flag_store
    return flags


def get_delivery_log(request: Request) -> DeliveryLog:
    log: DeliveryLog = request.app.state.delivery_log
    return log


StoreDep = Annotated[Store, Depends(get_store)]
MetadataDep = Annotated[MetadataDB, Depends(get_metadata)]
RedFlagStoreDep = Annotated[RedFlagStore, Depends(get_red_flag_store)]
DeliveryLogDep = Annotated[DeliveryLog, Depends(get_delivery_log)]


def current_user(
    request: Request,
    metadata: MetadataDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    """The caller of a valid key; 401 otherwise; 429 over the key's rate limit (or, for
    requests without a valid key, over the client address's)."""
    unauthorized = HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "missing, invalid, revoked or expired API key",
        headers={"WWW-Authenticate": "Bearer"},
    )
    limiter: RateLimiter = request.app.state.rate_limiter
    principal = None
    if credentials is not None and len(credentials.credentials) <= 200:
        principal = metadata.authenticate(credentials.credentials)
    if principal is None:
        # Failed attempts count against the client address, so guessing is slowed too.
        _limit(limiter, f"client:{request.client.host if request.client else '?'}")
        raise unauthorized
    _limit(limiter, principal.key_id)
    return principal


def _limit(limiter: RateLimiter, bucket: str) -> None:
    wait_s = limiter.take(bucket)
    if wait_s > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "rate limit exceeded",
            headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
        )


CurrentUser = Annotated[Principal, Depends(current_user)]

Level = Literal["read", "own", "clinical", "admin"]


@dataclass(frozen=True)
class Subject:
    """What a request is about, after the access check.

    ``wearer`` and ``devices`` are None for admin-only operations that address no wearer.
    ``device`` is set when the path names one.
    """

    principal: Principal
    wearer: WearerRecord | None
    devices: tuple[DeviceRecord, ...]
    device: DeviceRecord | None

    @property
    def device_ids(self) -> tuple[str, ...]:
        return tuple(d.device_id for d in self.devices)

    @property
    def wearer_or_404(self) -> WearerRecord:
        if self.wearer is None:
            raise not_found()
        return self.wearer


class Authorize:
    """The access check, configured per route family.

    ``read``: the wearer, a clinician with an active grant, or an admin. ``own``: the wearer
    or an admin. ``clinical``: a clinician with an active grant or an admin (wearers: 403).
    ``admin``: admins only. The wearer comes from the path (``wearer_id`` or
    ``device_id``) or, on ``/v1/me`` routes, from the key. Anything else is a 404 that looks
    exactly like a missing resource (403 only for a role that can never use the route).
    """

    def __init__(self, level: Level) -> None:
        self.level = level

    def __call__(self, request: Request, principal: CurrentUser, metadata: MetadataDep) -> Subject:
        if self.level == "admin":
            if principal.role is not Role.ADMIN:
                raise HTTPException(status.HTTP_403_FORBIDDEN, "admin key required")
            return Subject(principal, None, (), None)
        if self.level == "clinical" and principal.role is Role.WEARER:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "clinician or admin key required")
        params = request.path_params
        device: DeviceRecord | None = None
        if "device_id" in params:
            device = metadata.device(params["device_id"])
            if device is None:
                raise not_found()
            wearer_id: str | None = device.owner_id
        elif "wearer_id" in params:
            wearer_id = params["wearer_id"]
        else:
            wearer_id = principal.wearer_id
        if wearer_id is None or not self._allowed(principal, wearer_id, metadata):
            raise not_found()
        wearer = metadata.wearer(wearer_id)
        if wearer is None:
            raise not_found()
        return Subject(principal, wearer, tuple(metadata.devices_of(wearer_id)), device)

    def _allowed(self, principal: Principal, wearer_id: str, metadata: MetadataDB) -> bool:
        if principal.role is Role.ADMIN or principal.wearer_id == wearer_id:
            return True
        return (
            self.level in ("read", "clinical")
            and principal.clinician_id is not None
            and metadata.has_access(principal.clinician_id, wearer_id)
        )


ReadAccess = Annotated[Subject, Depends(Authorize("read"))]
OwnerAccess = Annotated[Subject, Depends(Authorize("own"))]
ClinicalAccess = Annotated[Subject, Depends(Authorize("clinical"))]
AdminAccess = Annotated[Subject, Depends(Authorize("admin"))]
