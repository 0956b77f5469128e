"""The consume side: task-results and task-events become durably scheduled deliveries.

A batch's new deliveries are committed to `webhook-deliveries` in one Kafka transaction with the
batch's offsets (see `journal`), then applied to Redis. A crash before the commit consumes the
batch again; a crash after it leaves the deliveries to the projection of the topic. Scheduling is
idempotent per webhook id, so nothing is sent twice because of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from redis.exceptions import RedisError

from mcp.kafka import consumer_config
from mcp.names import Topics
from mcp.records import decode_value
from mcp.settings import Settings
from mcp.telemetry import tracing
from mcp.transaction import TransactionLost, rewind
from mcp.webhooks import events
from mcp.webhooks.deliveries import NewDelivery, encoded, scheduled
from mcp.webhooks.journal import WebhookJournal
from mcp.webhooks.output import OutputWatcher
from mcp.webhooks.store import WebhookStore
from mcp.webhooks.targets import TargetStore, WebhookTarget
from schemas import DecodeError, TaskEvent, TaskResult, WebhookRecord
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


@dataclass
class Batch:
    """What a consumed batch asks for: new deliveries, and tasks that have finished."""

    states: list[WebhookRecord] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    """each state's JSON without its body, made once for the journal and Redis"""
    finished: list[str] = field(default_factory=list)
    traces: dict[str, str] = field(default_factory=dict)
    """webhook id -> the `traceparent` its attempts continue"""


class Intake:
    def __init__(
        self,
        settings: Settings,
        store: WebhookStore,
        journal: WebhookJournal,
        targets: TargetStore,
        watcher: OutputWatcher,
        ready: asyncio.Event,
        on_scheduled: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.topics = Topics.of(settings)
        self.store = store
        self.journal = journal
        self.targets = targets
        self.watcher = watcher
        self.ready = ready
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
                # While Redis's webhook state is rebuilt, "already scheduled" cannot be told.
                if not self.ready.is_set():
                    await _either(self.ready, stop)
                    continue
                messages = await asyncio.to_thread(consumer.consume, BATCH, POLL_S)
                records = [m for m in messages if _usable(m)]
                if not records:
                    continue
                batch = await self._until_done(stop, self.plan, records)
                if batch is None:
                    break
                if not self.journal.enabled and not await self._until_done(stop, self.apply, batch):
                    break
                try:
                    await asyncio.to_thread(
                        self.journal.commit,
                        batch.states,
                        next_offsets(records),
                        consumer,
                        batch.encoded,
                    )
                except TransactionLost:
                    await asyncio.to_thread(rewind, consumer)
                    continue
                except KafkaException as exc:
                    # A rebalance took the partitions; their new owner consumes them again.
                    log.warning("offset commit failed, the batch will be consumed again: %s", exc)
                if self.journal.enabled:
                    await self._apply_committed(batch)
                self.consumed += len(records)
        finally:
            await asyncio.to_thread(consumer.close)

    async def _until_done(
        self, stop: asyncio.Event, step: Callable[[Any], Awaitable[Any]], arg: Any
    ) -> Any:
        """Run a Redis step, waiting out Redis outages; None if stopped before it was done."""
        while not stop.is_set():
            try:
                return (await step(arg)) or True
            except (RedisError, OSError) as exc:
                log.warning("cannot schedule webhooks yet (%s); retrying the batch", exc)
                await asyncio.sleep(1.0)
        return None

    async def _apply_committed(self, batch: Batch) -> None:
        """Apply a committed batch to Redis; if Redis is away, the projection applies it."""
        try:
            await self.apply(batch)
        except (RedisError, OSError) as exc:
            log.warning("committed webhooks wait for the projection (%s)", exc)

    async def apply(self, batch: Batch) -> None:
        await self.store.remember_traces(batch.traces)  # before the deliveries can be claimed
        await self.store.apply(batch.states, own=self.journal.enabled, encoded=batch.encoded)
        await self.watcher.finish(batch.finished)
        if batch.states:
            self.on_scheduled()

    async def plan(self, records: list[Message]) -> Batch:
        """The batch's new deliveries (in order, due now); remembers lifecycle targets."""
        deliveries: list[NewDelivery] = []
        batch = Batch()
        seen: dict[str, WebhookTarget] = {}
        remember: list[tuple[WebhookTarget, float]] = []
        for msg in records:
            raw = msg.value() or b""
            try:
                if msg.topic() == self.topics.results:
                    result = decode_value(TaskResult, raw, msg.headers())
                    batch.finished.append(result.task_id)
                    trace = consumed(msg, result.task_id)
                    for delivery in (events.started_of(result), events.completion(result)):
                        if delivery is not None:
                            deliveries.append(delivery)
                            if trace:
                                batch.traces[delivery.webhook_id] = trace
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
        unique: dict[str, NewDelivery] = {}
        for delivery in deliveries:
            unique.setdefault(delivery.webhook_id, delivery)
        held = await self.store.versions(list(unique))
        new = [d for d, version in zip(unique.values(), held, strict=True) if version == 0]
        batch.states = scheduled(new)
        batch.encoded = [encoded(state) for state in batch.states]
        return batch

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


async def _either(first: asyncio.Event, second: asyncio.Event) -> None:
    waiters = {asyncio.create_task(first.wait()), asyncio.create_task(second.wait())}
    _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()


def consumed(msg: Message, task_id: str) -> str:
    """The trace a result's webhooks continue: its record's `traceparent`, through a consume
    span of the dispatcher's when tracing is on."""
    parent = header(msg, "traceparent")
    span = tracing.start(
        f"process {msg.topic()}",
        parent,
        "CONSUMER",
        {
            **tracing.kafka("process", msg.topic() or "", **{"autoglm.task_id": task_id}),
            "messaging.destination.partition.id": str(msg.partition()),
            "messaging.kafka.offset": msg.offset() or 0,
        },
    )
    if span is not None:
        span.end()
    return tracing.traceparent_of(span, parent) or ""


def header(msg: Message, name: str) -> str | None:
    headers = msg.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    for key, value in pairs:
        if key == name and value is not None:
            return value.decode() if isinstance(value, bytes) else value
    return None


def _usable(msg: Message) -> bool:
    error = msg.error()
    if error is None:
        return True
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer error: %s", error)
    return False


def _where(msg: Message) -> str:
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
