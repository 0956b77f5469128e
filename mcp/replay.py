"""Rebuild Redis from Kafka after Redis lost its data: task hashes, their indexes, timelines and
idempotency keys from `task-events` (the same scripts as the projector), the dead-letter index
from `tasks.dlq`, webhook secrets, batch manifests, and webhook deliveries (schedule, history,
dead ones) from `webhook-deliveries`."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from mcp.dead_letters import DeadLetter
from mcp.kafka import consumer_config, latest_values
from mcp.names import Keys, Topics
from mcp.projector import decode_events
from mcp.redis_client import connect
from mcp.settings import Settings, get_settings
from mcp.store import SyncTaskStore
from mcp.webhooks.projection import WebhookProjection
from mcp.webhooks.secrets import replay_secrets
from mcp.webhooks.store import WebhookStore
from schemas import dumps, loads
from schemas.batch import BatchManifest

log = logging.getLogger(__name__)


def replay(settings: Settings, store: SyncTaskStore, timeout_s: float = 300.0) -> int:
    """Apply every committed task event and dead letter from the beginning; returns how many
    task events were applied."""
    topics = Topics.of(settings)
    group = topics.group(f"replay-{uuid.uuid4().hex[:8]}")
    consumer = Consumer(consumer_config(settings, group, **{"enable.partition.eof": True}))
    remaining: set[tuple[str, int]] = set()
    for topic in (topics.events, topics.dlq):
        metadata = consumer.list_topics(topic, timeout=30)
        remaining |= {(topic, p) for p in metadata.topics[topic].partitions}
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in sorted(remaining)])
    applied = 0
    deadline = time.monotonic() + timeout_s
    while remaining and time.monotonic() < deadline:
        messages = consumer.consume(1000, 0.5)
        values: list[Message] = []
        letters = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    remaining.discard((msg.topic() or "", msg.partition() or 0))
                continue
            if msg.topic() == topics.dlq:
                letters.append(DeadLetter.of(msg))
            else:
                values.append(msg)
        events = decode_events(values)
        store.apply_events(events)
        store.index_dead_letters([d for d in letters if d is not None])
        applied += len(events)
    consumer.close()
    if remaining:
        raise TimeoutError(f"replay did not reach the end of partitions {sorted(remaining)}")
    return applied


def replay_batches(settings: Settings, store: SyncTaskStore) -> int:
    """The manifests of JSONL batches, from the compacted `batches` topic."""
    keys = Keys.of(settings)
    manifests = [
        loads(BatchManifest, raw) for raw in latest_values(settings, Topics.of(settings).batches)
    ]
    with store.redis.pipeline(transaction=False) as pipe:
        for manifest in manifests:
            pipe.set(
                keys.batch(manifest.batch_id), dumps(manifest), ex=settings.redis.task_retention_s
            )
        pipe.execute()
    return len(manifests)


def replay_webhooks(settings: Settings, timeout_s: float = 300.0) -> int:
    """Apply every webhook delivery record from the beginning; returns how many were applied.
    Pending deliveries are due again at their recorded times, finished ones stay finished."""

    async def rebuild() -> int:
        client = connect(settings)
        projection = WebhookProjection(settings, WebhookStore(client, settings))
        try:
            return await projection.sync(from_start=True, timeout_s=timeout_s)
        finally:
            await asyncio.to_thread(projection.close)
            await client.aclose()

    return asyncio.run(rebuild())


def run(flush: bool = False) -> int:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level)
    store = SyncTaskStore(settings)
    if flush:
        print(f"replay: deleted {store.flush_tasks()} task keys")
    started = time.monotonic()
    applied = replay(settings, store)
    print(f"replay: applied {applied} task events in {time.monotonic() - started:.1f} s")
    projects = replay_secrets(settings, store.redis)
    print(f"replay: restored the webhook secrets of {projects} project(s)")
    print(f"replay: restored {replay_batches(settings, store)} batch manifest(s)")
    started = time.monotonic()
    applied = replay_webhooks(settings)
    print(f"replay: applied {applied} webhook records in {time.monotonic() - started:.1f} s")
    return 0
