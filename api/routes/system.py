"""Models, workers, health, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.metrics import PROJECTED, TRANSACTIONS
from api.routes.tasks import json_response, services_of
from mcp.heartbeat import list_workers

router = APIRouter(tags=["system"])


@router.get("/v1/models")
async def models(request: Request) -> Response:
    return json_response(200, {"models": services_of(request).registry.describe()})


@router.get("/v1/workers")
async def workers(request: Request) -> Response:
    services = services_of(request)
    return json_response(
        200, {"workers": await list_workers(services.settings, services.store.redis)}
    )


@router.get("/healthz")
async def healthz() -> Response:
    return json_response(200, {"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    services = services_of(request)
    checks = {"kafka": services.producer.ready and services.topics_ready, "redis": False}
    try:
        checks["redis"] = await services.store.ping()
    except Exception:
        checks["redis"] = False
    ready = all(checks.values())
    return json_response(
        200 if ready else 503, {"status": "ready" if ready else "not_ready", "checks": checks}
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    services = services_of(request)
    TRANSACTIONS.set(services.producer.transactions)
    if services.projector is not None:
        PROJECTED.set(services.projector.applied)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
