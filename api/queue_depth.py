"""Each model's Kafka lag for `GET /v1/queues`: the worker group's committed offsets against
the lanes' last stable offsets, two admin requests per model, shared by every caller for
`MAX_AGE_S` (a dashboard polling each second costs Kafka no more than one poller)."""

from __future__ import annotations

import asyncio
import logging
import time

from mcp.names import Topics
from mcp.settings import Settings
from mcp.telemetry.lag import GroupLag

log = logging.getLogger(__name__)

MAX_AGE_S = 1.0


class QueueDepth:
    def __init__(self, settings: Settings) -> None:
        self.topics = Topics.of(settings)
        self.settings = settings
        self._lag: GroupLag | None = None
        self._measured: dict[str, int | None] = {}
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def lags(self, models: list[str], partitions: dict[str, int]) -> dict[str, int | None]:
        """Lag per model (None where Kafka did not answer or the lanes are not known yet)."""
        async with self._lock:
            if time.monotonic() - self._at > MAX_AGE_S or set(models) - set(self._measured):
                self._measured = await asyncio.to_thread(self._measure, models, partitions)
                self._at = time.monotonic()
            return {m: self._measured.get(m) for m in models}

    def _measure(self, models: list[str], partitions: dict[str, int]) -> dict[str, int | None]:
        if self._lag is None:
            self._lag = GroupLag(self.settings, timeout_s=2.0)
        out: dict[str, int | None] = {}
        for model in models:
            lanes = [
                (lane, p)
                for lane in self.topics.lanes(model)
                for p in range(partitions.get(lane, 0))
            ]
            if not lanes:
                out[model] = None
                continue
            try:
                out[model] = sum(
                    self._lag.measure(self.topics.group(f"worker.{model}"), lanes).values()
                )
            except Exception as exc:
                log.warning("lag of %s unavailable: %s", model, exc)
                out[model] = None
        return out
