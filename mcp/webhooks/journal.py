"""Webhook facts go to Kafka before Redis: the dispatcher's journal (`webhook-deliveries`).

Deliveries scheduled from consumed results and events are committed in one transaction with the
offsets of those records (`commit`), so a crash either loses both (the records are consumed
again) or keeps both. Attempt outcomes and `task.output` webhooks come from no consumed record;
they are committed through a group-committing producer (`record`), concurrent attempts sharing
one transaction. Only then are they applied to Redis; `WebhookProjection` applies the topic too.

`webhooks.journal: false` turns the journal off (the state then lives in Redis only and is lost
with it): the baseline that `make bench` measures the journal against.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import Consumer, TopicPartition

from mcp.grouped_txn import Group, Refusal
from mcp.names import Topics
from mcp.producer import TaskProducer
from mcp.records import Record
from mcp.settings import Settings
from mcp.transaction import ConsumerTransaction
from mcp.webhooks.deliveries import Publish
from mcp.webhooks.projection import journal_record
from schemas import WebhookRecord

log = logging.getLogger(__name__)

JOURNAL_PRODUCER = {"linger.ms": 100}
"""A journal transaction's records are produced together and flushed by its commit (which
sends at once, whatever `linger.ms`): lingering sends each partition's records in one request
instead of a request per record while earlier ones are in flight."""


class WebhookJournal:
    def __init__(self, settings: Settings, slot: str) -> None:
        self.settings = settings
        self.enabled = settings.webhooks.journal
        self.topics = Topics.of(settings)
        name = f"{settings.instance_id}.{slot}"
        self._intake_id = self.topics.transactional_id("dispatcher", name)
        self._intake: ConsumerTransaction | None = None
        self._producer: TaskProducer | None = None
        if self.enabled:
            attempts_id = self.topics.transactional_id("dispatcher-attempts", name)
            # The recorder spaces its batches (`journal_window_ms`): the producer commits each
            # batch it is handed at once.
            kafka = settings.kafka.model_copy(update={"group_commit_max_ms": 0.0})
            self._producer = TaskProducer(
                settings.model_copy(update={"kafka": kafka}), attempts_id, config=JOURNAL_PRODUCER
            )

    def start(self) -> None:
        if self._producer is not None:
            self._producer.start()

    def _records(
        self, states: Sequence[WebhookRecord], encoded: Sequence[bytes] | None
    ) -> list[Record]:
        if encoded is None:
            return [journal_record(self.topics, s) for s in states]
        return [journal_record(self.topics, s, e) for s, e in zip(states, encoded, strict=True)]

    async def record(
        self, states: Sequence[WebhookRecord], encoded: Sequence[bytes] | None = None
    ) -> None:
        """Commit `states` to Kafka; raises `BrokerUnavailable` when that did not happen.
        `encoded`: each state's JSON without its body (`deliveries.encoded`), if made already."""
        if self._producer is not None and states:
            await self._producer.publish(self._records(states, encoded))

    def commit(
        self,
        states: Sequence[WebhookRecord],
        offsets: list[TopicPartition],
        consumer: Consumer,
        encoded: Sequence[bytes] | None = None,
    ) -> None:
        """Commit `states` with the consumed `offsets` in one transaction (blocking); raises
        `TransactionLost` when the transaction was lost and the consumer must read again."""
        if not self.enabled:
            consumer.commit(offsets=offsets, asynchronous=False)
            return
        if self._intake is None:
            self._intake = ConsumerTransaction(
                self.settings, self._intake_id, _unjournaled, config=JOURNAL_PRODUCER
            )
        groups = [Group(r.key, [r]) for r in self._records(states, encoded)]
        self._intake.produce(groups)
        self._intake.commit(offsets, consumer)

    def publisher(self) -> Publish | None:
        """What commits states through this journal (None when it is off)."""
        return self.record if self.enabled else None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
        if self._intake is not None:
            self._intake.close()


def _unjournaled(group: Group, refusal: Refusal) -> Group:
    """A delivery state Kafka refuses (larger than the topic takes) is left out of the
    transaction rather than holding up every other delivery: it lives in Redis only."""
    log.error("webhook %r not journaled (%s): %s", group.id, refusal.topic, refusal.error)
    return Group(group.id, [])


def api_publisher(settings: Settings, producer: TaskProducer) -> Publish | None:
    """How the API commits the delivery states it makes (redeliveries) with its own producer;
    None when the journal is off."""
    if not settings.webhooks.journal:
        return None
    topics = Topics.of(settings)

    async def publish(states: Sequence[WebhookRecord]) -> None:
        if states:
            await producer.publish([journal_record(topics, s) for s in states])

    return publish
