"""`autoglm dispatcher`: deliver webhooks until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from mcp.settings import get_settings
from mcp.webhooks.dispatcher import Dispatcher

log = logging.getLogger(__name__)


async def _serve(slot: str) -> None:
    settings = get_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Dispatcher(settings, slot).run(stop)


def run(slot: str) -> int:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(_serve(slot))
    except Exception:
        log.exception("dispatcher stopped on an error")
        return 1
    return 0
