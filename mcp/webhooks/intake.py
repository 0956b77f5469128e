"""The consume side: task-results and task-events become durably scheduled deliveries.

Offsets are committed only after the batch's deliveries (and the targets of later lifecycle
webhooks) are in Redis, so a crash between the two consumes the batch again; scheduling is
idempotent per webhook id, so nothing is sent twice because of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from redis.exceptions import RedisError

from mcp.kafka import consumer_config
from mcp.names import Topics
from mcp.records import decode_value
from mcp.settings import Settings
from mcp.webhooks import events
from mcp.webhooks.output import OutputWatcher
from mcp.webhooks.store import NewDelivery, WebhookStore
from mcp.webhooks.targets import TargetStore, WebhookTarget
from schemas import DecodeError, TaskEvent, TaskResult
from schemas.task import TaskStatus

log = logging.getLogger(__name__)

BATCH = 500
POLL_S = 0.2


def next_offsets(messages: list[Message]) -> list[TopicPartition]:
    """The offsets to commit after `messages`: one past the last record of each partition."""
    last: dict[tuple[str, int], int] = {}
    for msg in messages:
        key = (msg.topic() or "", msg.partition() or 0)
        offset = msg.offset()
        if offset is not None and offset >= last.get(key, -1):
            last[key] = offset
    return [TopicPartition(topic, part, offset + 1) for (topic, part), offset in last.items()]


class Intake:
    def __init__(
        self,
        settings: Settings,
        store: WebhookStore,
        targets: TargetStore,
        watcher: OutputWatcher,
        on_scheduled: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.topics = Topics.of(settings)
        self.store = store
        self.targets = targets
        self.watcher = watcher
        self.on_scheduled = on_scheduled
        self.consumed = 0

    def _consumer(self, slot: str) -> Consumer:
        # Static membership: a restarted slot takes its partitions back at once instead of
        # waiting for the group to time out the process it replaces.
        config = consumer_config(
            self.settings,
            self.topics.group("dispatcher"),
            **{
                "group.instance.id": f"{self.settings.instance_id}.dispatcher.{slot}",
                "session.timeout.ms": self.settings.worker.session_timeout_ms,
            },
        )
        consumer = Consumer(config)
        consumer.subscribe([self.topics.results, self.topics.events])
        return consumer

    async def run(self, stop: asyncio.Event, slot: str) -> None:
        consumer = await asyncio.to_thread(self._consumer, slot)
        try:
            while not stop.is_set():
                messages = await asyncio.to_thread(consumer.consume, BATCH, POLL_S)
                records = [m for m in messages if _usable(m)]
                if not records:
                    continue
                if not await self._handle_until_done(records, stop):
                    break
                try:
                    await asyncio.to_thread(
                        consumer.commit, offsets=next_offsets(records), asynchronous=False
                    )
                except KafkaException as exc:
                    # A rebalance took the partitions; their new owner consumes them again.
                    log.warning("offset commit failed, the batch will be consumed again: %s", exc)
                self.consumed += len(records)
        finally:
            await asyncio.to_thread(consumer.close)

    async def _handle_until_done(self, records: list[Message], stop: asyncio.Event) -> bool:
        """Schedule a batch, waiting out Redis outages; False if stopped before it was done."""
        while not stop.is_set():
            try:
                await self.handle(records)
                return True
            except (RedisError, OSError) as exc:
                log.warning("cannot schedule webhooks yet (%s); retrying the batch", exc)
                await asyncio.sleep(1.0)
        return False

    async def handle(self, records: list[Message]) -> None:
        deliveries: list[NewDelivery] = []
        finished: list[str] = []
        seen: dict[str, WebhookTarget] = {}
        remember: list[tuple[WebhookTarget, float]] = []
        for msg in records:
            raw = msg.value() or b""
            try:
                if msg.topic() == self.topics.results:
                    result = decode_value(TaskResult, raw, msg.headers())
                    finished.append(result.task_id)
                    for delivery in (events.started_of(result), events.completion(result)):
                        if delivery is not None:
                            deliveries.append(delivery)
                else:
                    event = decode_value(TaskEvent, raw, msg.headers())
                    if event.task is not None:
                        target = WebhookTarget.of(event.task)
                        if target is not None:
                            seen[target.task_id] = target
                            remember.append((target, event.task.ttl_s + event.task.timeout_s))
                    if event.status is TaskStatus.RUNNING:
                        await self._running(event, seen, deliveries)
            except DecodeError as exc:
                log.warning("skipping an undecodable record at %s: %s", _where(msg), exc)
        await self.targets.remember(remember)
        await self.store.schedule(deliveries)
        await self.watcher.finish(finished)
        if deliveries:
            self.on_scheduled()

    async def _running(
        self, event: TaskEvent, seen: dict[str, WebhookTarget], deliveries: list[NewDelivery]
    ) -> None:
        target = seen.get(event.task_id) or await self.targets.get(event.task_id)
        if target is None:
            return
        if "output" in target.events:
            await self.watcher.watch(target, event.attempt, event.at)
        if "started" in target.events:
            deliveries.append(events.started(target, event.attempt, event.at))


def _usable(msg: Message) -> bool:
    error = msg.error()
    if error is None:
        return True
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer error: %s", error)
    return False


def _where(msg: Message) -> str:
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
