"""Liveness, readiness and Prometheus metrics (no key needed; nothing personal in them)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from api.metrics import CONTENT_TYPE_LATEST, ApiMetrics
from api.models import HealthPublic, ReadyPublic

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthPublic, summary="The process is alive")
def healthz() -> HealthPublic:
    return HealthPublic(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyPublic,
    summary="Broker and stores reachable",
    responses={503: {"model": ReadyPublic, "description": "A dependency is unreachable."}},
)
def readyz(request: Request) -> JSONResponse:
    checks: Mapping[str, Callable[[], bool]] = request.app.state.readiness
    results = {name: _run_check(name, check) for name, check in checks.items()}
    ready = all(results.values())
    body = ReadyPublic(status="ready" if ready else "not_ready", checks=results)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


def _run_check(name: str, check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception as exc:  # a readiness probe reports any failure as "not ready"
        log.warning("readiness check %s failed: %s", name, type(exc).__name__)
        return False


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
def metrics(request: Request) -> Response:
    api_metrics: ApiMetrics = request.app.state.metrics
    return Response(api_metrics.render(), media_type=CONTENT_TYPE_LATEST)
