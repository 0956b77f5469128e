"""Models, workers, health, readiness and metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from api.auth import Permission, require
from api.contract import errors
from api.deps import json_response, services_of
from api.metrics import PROJECTED, TRANSACTIONS
from mcp.heartbeat import list_workers

router = APIRouter(tags=["system"])
# Mounted when `auth.metrics` is "token"; with "port", metrics are served on a port of their own.
metrics_router = APIRouter(tags=["system"])


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]


class Health(BaseModel):
    status: Literal["ok"]


class PrometheusText(Response):
    media_type = "text/plain"


@router.get("/v1/models", responses=errors(401), dependencies=[require(Permission.MODELS_READ)])
async def models(request: Request) -> Response:
    return json_response(200, {"models": services_of(request).registry.describe()})


@router.get(
    "/v1/workers", responses=errors(401, 503), dependencies=[require(Permission.WORKERS_READ)]
)
async def workers(request: Request) -> Response:
    services = services_of(request)
    return json_response(
        200, {"workers": await list_workers(services.settings, services.store.redis)}
    )


@router.get("/healthz", response_model=Health, dependencies=[require(Permission.PUBLIC)])
async def healthz() -> Response:
    return json_response(200, {"status": "ok"})


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Kafka, Redis or the keys not ready"}},
    dependencies=[require(Permission.PUBLIC)],
)
async def readyz(request: Request) -> Response:
    checks = await services_of(request).readiness()
    ready = all(checks.values())
    return json_response(
        200 if ready else 503, {"status": "ready" if ready else "not_ready", "checks": checks}
    )


@metrics_router.get(
    "/metrics",
    response_class=PrometheusText,
    responses=errors(401, 403),
    dependencies=[require(Permission.METRICS_READ)],
)
async def metrics(request: Request) -> Response:
    services = services_of(request)
    TRANSACTIONS.set(services.producer.transactions)
    if services.projector is not None:
        PROJECTED.set(services.projector.applied)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
