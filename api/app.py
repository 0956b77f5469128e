"""The FastAPI application of autoglm-mcp."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from prometheus_client import start_http_server
from starlette.routing import Route

from api import contract, errors
from api.admission import AdaptiveLimit, Admission, AdmissionControl
from api.auth.openapi import document_access
from api.front import Front, FrontedAPI
from api.limits import BodySizeLimit, CompressResponses
from api.metrics import RequestMetrics
from api.operations import MAX_WAIT_S
from api.routes import (
    batches,
    browse,
    dead_webhooks,
    dlq,
    files,
    infer,
    jsonl_batches,
    keys,
    queues,
    stream,
    system,
    tasks,
    webhooks,
)
from api.services import Services
from api.submit import Submitter
from api.ui import routes as ui
from mcp.heap import settle_the_heap
from mcp.registry import ModelRegistry
from mcp.settings import Settings, get_settings


def create_server_app() -> FastAPI:
    """The app of `autoglm api`: a process of its own, whose heap is settled once started."""
    return create_app(settle_heap=True)


def create_app(settings: Settings | None = None, settle_heap: bool = False) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.build(settings)
        app.state.services = services
        app.state.submitter = Submitter(services)
        if settings.auth.metrics == "port":
            start_http_server(settings.auth.metrics_port, settings.server.host)
        await services.start()
        if settle_heap:
            settle_the_heap(settings)
        try:
            yield
        finally:
            await services.stop()

    app = FrontedAPI(
        title="autoglm-mcp",
        version="1",
        description="Asynchronous inference for GLM-family models.",
        lifespan=lifespan,
        # Tracing context is carried in the task itself; per-request OTel lookups cost CPU.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    errors.install(app)
    # Submissions skip FastAPI's per-route machinery: the same endpoint as a plain Starlette
    # route in front; the FastAPI route behind it still documents the contract in OpenAPI.
    app.router.routes.insert(0, Route("/v1/tasks", tasks.submit, methods=["POST"]))
    app.include_router(browse.router)
    app.include_router(tasks.router)
    app.include_router(batches.router)
    app.include_router(jsonl_batches.router)
    app.include_router(webhooks.router)
    if settings.server.streaming:
        app.include_router(stream.router)
    app.include_router(files.router)
    app.include_router(infer.router)
    app.include_router(system.router)
    app.include_router(queues.router)
    app.include_router(dead_webhooks.router)
    app.include_router(dlq.router)
    app.include_router(ui.router)
    app.mount("/ui/static", ui.StaticAssets(), name="ui-static")
    if settings.auth.metrics == "token":
        app.include_router(system.metrics_router)
    app.include_router(keys.router)
    document_access(app)
    contract.install(app, ModelRegistry(settings), settings.default_model)
    if settings.server.compression == "gzip":
        app.add_middleware(CompressResponses, minimum_size=settings.server.compression_min_bytes)
    submit_bytes = settings.server.max_body_bytes
    # A multipart upload carries its part headers and boundaries around the file's bytes.
    upload_bytes = settings.blobs.max_file_bytes + 65_536
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.server.max_other_body_bytes,
        paths={"/v1/tasks": submit_bytes, "/v1/infer": submit_bytes, "/v1/files": upload_bytes},
    )
    server = settings.server
    if server.admission_control:
        limit = AdaptiveLimit(
            server.admission_min_inflight,
            server.admission_max_inflight,
            server.admission_target_ms / 1000,
        )
        admission = Admission(server, limit, app.state)
        admission.request_metrics = settings.telemetry.metrics
        # The HTTP protocol of `autoglm api` (api.protocol) decides with the same state.
        app.state.admission = admission
        # Outermost: a refusal costs no more than reading the headers.
        app.add_middleware(AdmissionControl, settings=server, limit=limit, admission=admission)
    if settings.telemetry.metrics:
        app.add_middleware(RequestMetrics, routes=app.router.routes)
    app.front = partial(
        Front,
        endpoint=tasks.submit,
        reader=tasks.poll,
        max_wait_s=MAX_WAIT_S,
        handlers=app.exception_handlers,
        max_bytes=submit_bytes,
        admission=getattr(app.state, "admission", None),
        metrics=settings.telemetry.metrics,
        gzip_min_bytes=(
            settings.server.compression_min_bytes if settings.server.compression == "gzip" else None
        ),
    )
    return app
