"""The dispatcher process: intake (Kafka → journal → Redis schedule), delivery pool, output
watcher, and the projection that keeps Redis's webhook state a copy of the journal."""

from __future__ import annotations

import asyncio
import logging

from mcp.kafka import ensure_topics
from mcp.redis_client import connect
from mcp.settings import Settings
from mcp.webhooks.intake import Intake
from mcp.webhooks.journal import WebhookJournal
from mcp.webhooks.output import OutputWatcher
from mcp.webhooks.policy import RetryPolicy
from mcp.webhooks.pool import DeliveryPool
from mcp.webhooks.projection import WebhookProjection
from mcp.webhooks.secrets import WebhookSecrets, validate_configured
from mcp.webhooks.sender import WebhookSender
from mcp.webhooks.store import WebhookStore
from mcp.webhooks.targets import TargetStore

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, settings: Settings, slot: str = "0") -> None:
        validate_configured(settings)
        hooks = settings.webhooks
        self.settings = settings
        self.slot = slot
        self.redis = connect(settings)
        self.store = WebhookStore(self.redis, settings)
        self.journal = WebhookJournal(settings, slot)
        self.projection = WebhookProjection(settings, self.store)
        ready = self.projection.ready
        self.sender = WebhookSender(settings, WebhookSecrets(self.redis, settings))
        policy = RetryPolicy(hooks.schedule_s, hooks.jitter)
        self.pool = DeliveryPool(
            settings, self.store, self.sender, policy, slot, self.journal, ready
        )
        self.projection.on_ready = self.pool.wake
        self.watcher = OutputWatcher(
            self.redis, settings, self.store, self.journal, slot, self.pool.wake
        )
        targets = TargetStore(self.redis, settings)
        self.intake = Intake(
            settings, self.store, self.journal, targets, self.watcher, ready, self.pool.wake
        )

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(ensure_topics, self.settings, [])
        self.journal.start()
        await self.watcher.load()
        log.info("dispatcher slot %s started", self.slot)
        # Intake and pool wait until the projection brought Redis's webhook state up to date
        # (rebuilt it, if Redis lost it), so nothing delivered is sent again because Redis forgot.
        parts = [
            asyncio.create_task(self.projection.run(stop), name="projection"),
            asyncio.create_task(self.intake.run(stop, self.slot), name="intake"),
            asyncio.create_task(self.pool.run(stop), name="pool"),
            asyncio.create_task(self.watcher.run(stop), name="output"),
        ]
        try:
            done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error
        finally:
            stop.set()
            await asyncio.gather(*parts, return_exceptions=True)
            await self.sender.aclose()
            await asyncio.to_thread(self.journal.close)
            await asyncio.to_thread(self.projection.close)
            await self.redis.aclose()
