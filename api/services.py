"""The long-lived objects of an API process, built once at start-up, stopped with it.

The process holds one asyncio Redis client (`store.redis`), shared by the task store, the webhook
store and the projector, and a blocking one for the committer's hook (`committer_store`), which
runs in a thread of the producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from api.auth.guard import Authenticator
from api.auth.keys import KeyFeed, KeyRing
from api.inputs.claim import ClaimCheck
from api.limits import RateLimiter
from mcp.active import ActiveTasks
from mcp.applied import AppliedHere, Queued
from mcp.blobs import open_blob_store
from mcp.blobs.files import FileStore
from mcp.blobs.sweeper import sweep_forever
from mcp.endings import Endings
from mcp.kafka import ensure_topics
from mcp.names import Keys, Topics
from mcp.producer import TaskProducer
from mcp.projector import ProjectorThread
from mcp.registry import ModelRegistry
from mcp.settings import Settings
from mcp.store import SyncTaskStore, TaskStore
from mcp.webhooks.deliveries import Publish
from mcp.webhooks.journal import api_publisher
from mcp.webhooks.secrets import WebhookSecrets
from mcp.webhooks.store import WebhookStore

log = logging.getLogger(__name__)

TOPICS_ATTEMPT_S = 5.0
TOPICS_RETRY_MAX_S = 10.0


@dataclass
class Services:
    settings: Settings
    store: TaskStore
    webhooks: WebhookStore
    secrets: WebhookSecrets
    producer: TaskProducer
    registry: ModelRegistry
    limiter: RateLimiter
    active: ActiveTasks
    topics: Topics
    keyring: KeyRing
    files: FileStore
    claim: ClaimCheck
    endings: Endings
    authenticator: Authenticator | None = None
    key_feed: KeyFeed | None = None
    projector: ProjectorThread | None = None  # on a thread and event loop of its own
    journal: Publish | None = None  # commits the webhook states the API makes (redeliveries)
    committer_store: SyncTaskStore | None = None  # writes each commit's `queued` events
    topics_ready: bool = False
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _topics_task: asyncio.Task[None] | None = None
    partitions: dict[str, int] = field(default_factory=dict)  # of each topic, once known
    _sweeper_task: asyncio.Task[None] | None = None

    @classmethod
    def build(cls, settings: Settings, role: str = "api") -> Services:
        """`role` names the front door (`api`, `grpc`): each has its own transactional.id."""
        store = TaskStore(settings)
        topics = Topics.of(settings)

        # Write path 1 of `mcp.store`: a submission's `queued` events, before its 202. The hook
        # runs in the producer's settler thread, on a blocking client of its own. What it wrote,
        # this process's projector reads past (`mcp.applied`).
        committer_store = SyncTaskStore(settings)
        applied_here = AppliedHere() if settings.server.run_projector else None

        def project_queued(notes: list[list[Queued]]) -> None:
            queued = [q for note in notes for q in note]
            committer_store.apply_events([q.event for q in queued])
            if applied_here is not None:
                applied_here.note((q.record.key, q.record.value) for q in queued)

        producer = TaskProducer(
            settings,
            topics.transactional_id(role, settings.instance_id),
            after_commit=project_queued,
        )
        keyring = KeyRing()
        files = FileStore(open_blob_store(settings))
        return cls(
            settings=settings,
            keyring=keyring,
            authenticator=Authenticator(settings.auth, keyring) if settings.auth.enabled else None,
            key_feed=KeyFeed(settings, keyring) if settings.auth.enabled else None,
            store=store,
            files=files,
            claim=ClaimCheck(files, settings),
            endings=Endings(settings, store.redis),
            webhooks=WebhookStore(store.redis, settings),
            secrets=WebhookSecrets(store.redis, settings),
            producer=producer,
            registry=ModelRegistry(settings),
            limiter=RateLimiter(settings.server, settings.quotas),
            active=ActiveTasks(store.redis, Keys.of(settings)),
            topics=topics,
            projector=(
                ProjectorThread(settings, applied_here) if applied_here is not None else None
            ),
            journal=api_publisher(settings, producer),
            committer_store=committer_store,
        )

    async def start(self) -> None:
        """Start the committer, create the topics in the background (the API answers 503 until
        Kafka is there; the managed-keys feed starts after) and start the projector."""
        self.producer.start()
        self.endings.start()
        self._topics_task = asyncio.create_task(self._prepare_topics(), name="topics")
        if self.projector is not None:
            self.projector.start()
        self._sweeper_task = asyncio.create_task(
            sweep_forever(self.files, self.settings.blobs.sweep_interval_s, self._stop),
            name="blob-sweeper",
        )

    async def _prepare_topics(self) -> None:
        """Until Kafka answers, try again with a growing pause (at most `TOPICS_RETRY_MAX_S`):
        a pod started before its brokers turns ready on its own, without a submission."""
        pause = 0.5
        while not self.topics_ready and not self._stop.is_set():
            try:
                partitions = await asyncio.to_thread(
                    ensure_topics, self.settings, None, TOPICS_ATTEMPT_S
                )
                await asyncio.to_thread(self.learn_record_limits)
            except Exception as exc:
                log.warning(
                    "Kafka not ready, topics not prepared yet (again in %.1f s): %s", pause, exc
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), pause)
                pause = min(pause * 2, TOPICS_RETRY_MAX_S)
                continue
            if not self.topics_ready:  # a submission may have prepared them meanwhile
                self.partitions = partitions
                self.topics_ready = True
            log.info("topics prepared")
        if self.key_feed is not None and not self._stop.is_set():
            self.key_feed.start()

    async def readiness(self) -> dict[str, bool]:
        """What `/readyz` and the gRPC health service report: Kafka, Redis, the managed keys."""
        checks = {
            "kafka": self.producer.ready and self.topics_ready,
            "redis": False,
            "keys": self.keys_ready,
        }
        try:
            checks["redis"] = await self.store.ping()
        except Exception:
            checks["redis"] = False
        return checks

    @property
    def keys_ready(self) -> bool:
        return self.key_feed is None or self.key_feed.caught_up.is_set()

    def learn_record_limits(self) -> None:
        """The topics' record limits, for refusing too large a task before it is batched."""
        lanes = [lane for m in self.registry.specs for lane in self.topics.lanes(m)]
        names = [self.topics.events, *lanes]
        limits = self.producer.limits
        limits.learn(self.settings, names)
        body_max = self.settings.server.max_body_bytes
        if body_max > limits.smallest():
            log.info(
                "bodies up to %d bytes are read, but records larger than %d bytes are refused "
                "(413 record_too_large); see the README on body and record limits",
                body_max,
                limits.smallest(),
            )

    async def stop(self) -> None:
        if self.key_feed is not None:
            self.key_feed.stop()
        self._stop.set()
        if self._topics_task is not None:
            self._topics_task.cancel()
        for task in (self._topics_task, self._sweeper_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.projector is not None:
            await asyncio.to_thread(self.projector.stop)
        await self.endings.close()
        await asyncio.to_thread(self.producer.close)
        await self.store.close()
        if self.committer_store is not None:
            self.committer_store.close()
