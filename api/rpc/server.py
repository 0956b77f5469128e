"""`autoglm grpc`: the gRPC front door as a process of its own, beside the HTTP API.

It builds the same services as the API (producer with its own transactional.id, task store,
projector, authenticator), serves `autoglm.v1.TaskService`, the standard health service
(`grpc.health.v1.Health`: SERVING when `/readyz` would answer ready: Kafka, Redis, keys) and
server reflection, and drains on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from api.rpc.front import SERVICE, Front
from api.rpc.service import TaskService
from api.services import Services
from api.submit import Submitter
from mcp.settings import Settings, get_settings
from mcp.telemetry.logs import configure_logging
from mcp.threads import share_the_interpreter
from schemas.autoglm.v1 import service_pb2_grpc as rpc_grpc

log = logging.getLogger(__name__)

HEALTH_EVERY_S = 1.0
GRACE_S = 10.0
FRAMING_BYTES = 65_536


def message_limit(settings: Settings) -> int:
    limit = settings.grpc.max_message_bytes
    return limit if limit is not None else settings.server.max_body_bytes + FRAMING_BYTES


def build_server(services: Services) -> tuple[grpc.aio.Server, health_aio.HealthServicer]:
    limit = message_limit(services.settings)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
        maximum_concurrent_rpcs=services.settings.grpc.max_concurrent_rpcs,
    )
    rpc_grpc.add_TaskServiceServicer_to_server(
        TaskService(Front(services, Submitter(services))), server
    )
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if services.settings.grpc.reflection:
        names = [SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
    return server, health


async def _report_health(services: Services, health: health_aio.HealthServicer) -> None:
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    while True:
        state = serving if all((await services.readiness()).values()) else not_serving
        for name in ("", SERVICE):
            await health.set(name, state)
        await asyncio.sleep(HEALTH_EVERY_S)


async def serve(settings: Settings, host: str, port: int) -> None:
    services = Services.build(settings, role="grpc")
    if settings.grpc.metrics_port is not None:
        start_http_server(settings.grpc.metrics_port, host)
    await services.start()
    server, health = build_server(services)
    # The health servicer starts out SERVING; until the first readiness check has run, say not.
    for name in ("", SERVICE):
        await health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    log.info("gRPC serving on %s:%d", host, bound)
    reporter = asyncio.create_task(_report_health(services, health), name="health")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await health.enter_graceful_shutdown()
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        await server.stop(GRACE_S)
        await services.stop()


def run(host: str | None = None, port: int | None = None) -> int:
    settings = get_settings()
    configure_logging(settings, service="grpc")
    share_the_interpreter(settings)
    port = settings.grpc.port if port is None else port
    asyncio.run(serve(settings, host or settings.grpc.host, port))
    return 0
