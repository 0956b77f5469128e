"""`autoglm api`: serve the HTTP API with uvicorn."""

from __future__ import annotations

import uvicorn

from mcp.settings import get_settings
from mcp.telemetry import tracing
from mcp.telemetry.logs import configure_logging
from mcp.threads import share_the_interpreter


def run(host: str | None = None, port: int | None = None) -> int:
    settings = get_settings()
    configure_logging(settings, service="api")
    share_the_interpreter(settings)
    tracing.setup("api", settings)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host or settings.server.host,
        port=port or settings.server.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
    return 0
