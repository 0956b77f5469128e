"""Deletes expired files and bytes that a crashed writer left without metadata, now and then.

Every API process runs one; two sweeping at once only repeat deletes, which are idempotent.
"""

from __future__ import annotations

import asyncio
import logging

from mcp.blobs.files import FileStore
from mcp.errors import BlobError

log = logging.getLogger(__name__)


async def sweep_forever(files: FileStore, interval_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            removed = await files.sweep()
            if removed:
                log.info("blob sweep removed %d expired or orphaned file(s)", removed)
        except BlobError as exc:
            log.warning("blob sweep failed (%s); trying again in %.0f s", exc, interval_s)
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            pass
