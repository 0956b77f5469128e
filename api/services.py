"""The long-lived objects of an API process, built once at start-up."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from api.auth.guard import Authenticator
from api.auth.keys import KeyFeed, KeyRing
from api.limits import RateLimiter
from mcp.active import ActiveTasks
from mcp.kafka import ensure_topics
from mcp.names import Keys, Topics
from mcp.producer import TaskProducer
from mcp.projector import Projector
from mcp.registry import ModelRegistry
from mcp.settings import Settings
from mcp.store import SyncTaskStore, TaskStore
from mcp.webhook_store import WebhookStore
from schemas import TaskEvent

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    store: TaskStore
    webhooks: WebhookStore
    producer: TaskProducer
    registry: ModelRegistry
    limiter: RateLimiter
    active: ActiveTasks
    topics: Topics
    keyring: KeyRing
    authenticator: Authenticator | None = None
    key_feed: KeyFeed | None = None
    projector: Projector | None = None
    sync_store: SyncTaskStore | None = None
    topics_ready: bool = field(default=False)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        sync_store = SyncTaskStore(settings)
        store = TaskStore(settings)
        topics = Topics.of(settings)

        def project_queued(notes: list[Any]) -> None:
            sync_store.apply_events([n for n in notes if isinstance(n, TaskEvent)])

        producer = TaskProducer(
            settings,
            topics.transactional_id("api", settings.instance_id),
            after_commit=project_queued,
        )
        keyring = KeyRing()
        return cls(
            settings=settings,
            keyring=keyring,
            authenticator=Authenticator(settings.auth, keyring) if settings.auth.enabled else None,
            key_feed=KeyFeed(settings, keyring) if settings.auth.enabled else None,
            store=store,
            webhooks=WebhookStore(store.redis, settings),
            producer=producer,
            registry=ModelRegistry(settings),
            limiter=RateLimiter(settings.server, settings.quotas),
            active=ActiveTasks(store.redis, Keys.of(settings)),
            topics=topics,
            projector=Projector(settings) if settings.server.run_projector else None,
            sync_store=sync_store,
        )

    async def start(self) -> None:
        self.producer.start()
        asyncio.get_running_loop().run_in_executor(None, self._prepare_topics)

    def _prepare_topics(self) -> None:
        """Topics are created off the event loop; the API answers 503 until Kafka is there."""
        try:
            ensure_topics(self.settings)
            self.topics_ready = True
        except Exception as exc:
            log.warning("could not create topics yet: %s", exc)
        if self.projector is not None:
            self.projector.start()
        if self.key_feed is not None:
            self.key_feed.start()

    @property
    def keys_ready(self) -> bool:
        return self.key_feed is None or self.key_feed.caught_up.is_set()

    async def stop(self) -> None:
        if self.key_feed is not None:
            self.key_feed.stop()
        if self.projector is not None:
            self.projector.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.producer.close)
        await self.store.close()
