"""Kafka plumbing shared by every process: client configs, topic creation, error inspection."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from mcp.names import Topics
from mcp.registry import ModelRegistry
from mcp.settings import Settings

log = logging.getLogger(__name__)

# How long the broker holds a consumer's fetch while nothing is readable. A read_committed fetch
# is answered as soon as a commit makes records readable, so a longer wait costs no latency;
# an empty fetch every 5 ms cost the broker 0.15-0.3 of a core per consumer. What it delays: a
# partition resumed or sought while a fetch is in flight is fetched once that fetch returns.
FETCH_WAIT_MS = 50
# How long librdkafka waits before it fetches a partition again after finding the consumer's
# queue above its prefetch bounds (`queued.min.messages`, `queued.max.messages.kbytes`). Its
# default, 1 s, stalled every consumer with a backlog: a fetch returns up to 1 MiB a partition
# (thousands of records, over the bounds), the partition backs off, and the records are handled
# (or dropped when a worker pauses the partition) long before the second is over. One worker
# drained 4,000 queued echo tasks in 105 s with it and in 8.6 s with this.
FETCH_QUEUE_BACKOFF_MS = 10


def producer_config(settings: Settings, transactional_id: str, **extra: Any) -> dict[str, Any]:
    """A transactional, idempotent producer tuned for low-latency commits."""
    return settings.kafka_client_config(
        **{
            "transactional.id": transactional_id,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 0,
            # Back-to-back transactions hit CONCURRENT_TRANSACTIONS; retry fast, not after 100 ms.
            "retry.backoff.ms": 2,
            "retry.backoff.max.ms": 50,
            "socket.nagle.disable": True,
            "transaction.timeout.ms": settings.kafka.transaction_timeout_ms,
            # Records expire well before a waiting request gives up, so a 503 never hides a
            # transaction that commits later.
            "message.timeout.ms": int(settings.kafka.request_timeout_s * 500),
            **extra,
        }
    )


def consumer_config(settings: Settings, group: str, **extra: Any) -> dict[str, Any]:
    """A read_committed consumer whose offsets move only by transaction or explicit commit (a
    worker's group may then take the consumer protocol: `mcp.groups.under`)."""
    return settings.kafka_client_config(
        **{
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "fetch.wait.max.ms": FETCH_WAIT_MS,
            "fetch.error.backoff.ms": 50,
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
            "socket.nagle.disable": True,
            "queued.min.messages": settings.kafka.consumer_prefetch_messages,
            "queued.max.messages.kbytes": settings.kafka.consumer_prefetch_kbytes,
            **extra,
        }
    )


def webhook_topic_config(settings: Settings) -> dict[str, str]:
    """`webhook-deliveries` keeps the latest record of each delivery (compaction) for as long as
    Redis keeps finished deliveries (deletion): a replay reads one record per webhook. A
    delivery still waiting writes a new record at every attempt, and the retention is kept well
    above the longest wait between attempts, so it is never deleted while it waits."""
    longest_wait_s = max(settings.webhooks.schedule_s, default=0.0)
    retention_s = max(settings.redis.task_retention_s, 2 * longest_wait_s + 86_400)
    retention_ms = int(retention_s * 1000)
    return {
        "cleanup.policy": "compact,delete",
        "retention.ms": str(retention_ms),
        # Compaction and deletion only touch closed segments: roll them hourly.
        "segment.ms": str(min(3_600_000, retention_ms)),
        "min.cleanable.dirty.ratio": "0.2",
    }


def ensure_topics(
    settings: Settings, models: list[str] | None = None, timeout: float = 30
) -> dict[str, int]:
    """Create the platform's topics when missing (idempotent); the partition count of each."""
    topics = Topics.of(settings)
    partitions = settings.kafka.partitions
    wanted: dict[str, int] = {
        topics.events: partitions,
        topics.results: partitions,
        topics.dlq: 1,
        topics.api_keys: 1,
        topics.webhook_secrets: 1,
        topics.batches: 1,
        topics.webhooks: partitions,
    }
    replicas = settings.kafka.min_insync_replicas
    common = {} if replicas is None else {"min.insync.replicas": str(replicas)}
    compact = {**common, "cleanup.policy": "compact"}
    configs = {t: compact for t in (topics.api_keys, topics.webhook_secrets, topics.batches)}
    configs[topics.webhooks] = webhook_topic_config(settings)
    registry = ModelRegistry(settings)
    for name in models if models is not None else list(registry.specs):
        spec = registry.get(name)
        for lane in topics.lanes(name):
            wanted[lane] = (spec.partitions if spec else None) or partitions
    admin = AdminClient(settings.kafka_client_config())
    metadata = admin.list_topics(timeout=timeout).topics
    existing = set(metadata)
    counts = {name: len(metadata[name].partitions) for name in wanted if name in existing}
    counts |= {name: count for name, count in wanted.items() if name not in existing}
    missing = [
        NewTopic(name, count, settings.kafka.replication_factor, config=configs.get(name, common))
        for name, count in wanted.items()
        if name not in existing
    ]
    if not missing:
        return counts
    for name, future in admin.create_topics(missing, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            log.info("created topic %s", name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return counts


def kafka_error(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def latest_values(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[bytes]:
    """The latest committed value of each key of a (compacted) topic, read to its end."""
    consumer = Consumer(
        consumer_config(
            settings,
            Topics.of(settings).group(f"read-{uuid.uuid4().hex[:8]}"),
            **{"enable.partition.eof": True},
        )
    )
    latest: dict[bytes | None, bytes] = {}
    try:
        found = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if found is None or found.error is not None:
            return []
        partitions = sorted(found.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        remaining = set(partitions)
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(msg.partition())
                    continue
                value = msg.value()
                if value is not None:
                    latest[msg.key()] = value
    finally:
        consumer.close()
    return list(latest.values())
