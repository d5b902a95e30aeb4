"""The FastAPI application factory: every dependency is passed in and kept on ``app.state``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI, Request, Response, status
from fastapi.responses import JSONResponse

from alerts.directory import MetadataDirectory
from alerts.redflag_store import RedFlagStore
from alerts.redflags import RedFlagRules
from alerts.webhooks import DeliveryLog
from api.jobs import JobRunner
from api.metrics import ApiMetrics
from api.ratelimit import RateLimiter
from api.routes import (
    deliveries,
    devices,
    grants,
    health,
    history,
    keys,
    me,
    nights,
    people,
    redflags,
    summary,
    uploads,
)
from storage.base import QueryError, Store, StoreUnavailable
from storage.localtime import to_us
from storage.metadata import MetadataDB
from storage.metadata.db import utc_now

API_VERSION = "1.0.0"
DESCRIPTION = """
Nights, episode history, summaries, pictures and uploads of CrampWatch wearers.

Every `/v1` endpoint needs `Authorization: Bearer <API key>`. Wearers see their own data,
clinicians the data of wearers who granted them access, admins everything. Another person's
resource answers 404, exactly like a missing one. Times are ISO 8601 with an offset (UTC in
responses); a night runs noon to noon in the wearer's time zone and is named by the date of
its evening.
"""


def create_app(
    *,
    store: Store,
    metadata: MetadataDB,
    readiness: Mapping[str, Callable[[], bool]] | None = None,
    rate_limit_per_min: int = 600,
    max_upload_bytes: int = 200 * 1024 * 1024,
    red_flags: RedFlagRules | None = None,
    red_flag_store: RedFlagStore | None = None,
    on_webhook_work: Callable[[], None] | None = None,
    rising_slope: float = 0.5,
    device_credentials: Callable[[str], str] | None = None,
    mains_hz: str = "auto",
    upload_dir: Path | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> FastAPI:
    """Build the API.

    Parameters
    ----------
    store : Store
        Results store (episodes, series, quality, summaries).
    metadata : MetadataDB
        People, devices, grants, keys, webhooks.
    readiness : mapping of name to callable, optional
        Extra ``/readyz`` checks (e.g. ``{"broker": ...}``); the store and the metadata DB are
        always checked.
    rate_limit_per_min : int
        Requests per minute per API key.
    max_upload_bytes : int
        Largest accepted recording upload.
    red_flags : RedFlagRules, optional
        Thresholds of the red-flag rules (shared with the alerts); defaults when None.
    red_flag_store : RedFlagStore, optional
        Stored red flags (listed and evaluated on demand); when None, one is built on
        ``metadata.engine`` with ``red_flags`` and the metadata DB's webhooks.
    on_webhook_work : callable, optional
        Called after new webhook deliveries were queued (a requeue, a raised flag), e.g.
        ``WebhookDispatcher.wake``; without it the dispatcher finds them on its next pass.
    rising_slope : float
        Weekly-episode slope (episodes/week per week) from which the weekly trend is "rising".
    device_credentials : callable, optional
        ``device_id -> MQTT password``; when given, ``POST /v1/devices`` issues credentials.
    mains_hz : str
        Mains notch of the upload detector (``auto``, ``50``, ``60``, ``both``, ``off``), as
        configured for ingest.
    upload_dir : Path, optional
        Where accepted uploads wait for their detection job; jobs that a stopped process left
        queued or running there are run again now. None: a temporary directory (jobs cut short
        by a stop are not run again).
    clock : callable
        Current timezone-aware UTC time.
    """
    jobs = JobRunner(store, metadata.engine, upload_dir, clock=clock)
    jobs.resume()
    rules = red_flags or RedFlagRules()
    if red_flag_store is None:
        red_flag_store = RedFlagStore(
            metadata.engine,
            MetadataDirectory(metadata),
            rules=rules,
            clock_us=lambda: to_us(clock()),
            on_webhook_work=on_webhook_work,
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.shutdown()

    app = FastAPI(
        title="CrampWatch API",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    api_metrics = ApiMetrics()
    app.state.store = store
    app.state.metadata = metadata
    app.state.readiness = {"store": store.ping, "metadata": metadata.ping, **(readiness or {})}
    app.state.rate_limiter = RateLimiter(rate_limit_per_min)
    app.state.max_upload_bytes = max_upload_bytes
    app.state.red_flags = rules
    app.state.red_flag_store = red_flag_store
    app.state.delivery_log = DeliveryLog(metadata.engine)
    app.state.on_webhook_work = on_webhook_work
    app.state.rising_slope = rising_slope
    app.state.device_credentials = device_credentials
    app.state.mains_hz = mains_hz
    app.state.clock = clock
    app.state.jobs = jobs
    app.state.metrics = api_metrics
    app.middleware("http")(_upload_size_guard(max_upload_bytes))
    app.middleware("http")(api_metrics.middleware)
    app.add_exception_handler(QueryError, _query_error)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    for module in (
        health,
        me,
        deliveries,
        people,
        grants,
        keys,
        devices,
        nights,
        history,
        summary,
        redflags,
        uploads,
    ):
        app.include_router(module.router)
    return app


async def _query_error(_: Request, exc: Exception) -> JSONResponse:
    """A query the store refuses is the caller's: 422 in the validation-error shape."""
    return JSONResponse(
        {"detail": [{"loc": ["query"], "msg": str(exc), "type": "query_error"}]},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


async def _store_unavailable(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "results store unavailable; retry later"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


_MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _upload_size_guard(
    max_upload_bytes: int,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """Refuse an upload whose declared length is over the limit before its body is read.

    Bodies without a length (chunked) are counted while they are copied (``routes.uploads``).
    """

    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        declared = request.headers.get("content-length", "")
        if (
            request.method == "POST"
            and declared.isdigit()
            and int(declared) > max_upload_bytes + _MULTIPART_OVERHEAD_BYTES
        ):
            return JSONResponse(
                {"detail": f"upload larger than {max_upload_bytes} bytes"},
                status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            )
        return await call_next(request)

    return guard
