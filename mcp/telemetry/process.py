"""What every long-running process does first: its logs, its tracer, its `/metrics`."""

from __future__ import annotations

from mcp.settings import Settings
from mcp.telemetry import tracing
from mcp.telemetry.logs import configure_logging
from mcp.telemetry.metrics import serve


def start_telemetry(
    service: str, settings: Settings, metrics_port: int | None = None, **static: str
) -> int | None:
    """Configure logging and tracing for `service` and serve `/metrics` on `metrics_port` (else
    `telemetry.metrics_port`; None: not served). Returns the port metrics are served on."""
    configure_logging(settings, service=service, **static)
    tracing.setup(service, settings)
    port = metrics_port if metrics_port is not None else settings.telemetry.metrics_port
    return serve(port, settings.telemetry.metrics_host)
