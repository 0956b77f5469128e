"""Redis's webhook state as a projection of the `webhook-deliveries` topic.

Every state of a delivery is committed to the topic before it is written to Redis. The process
that committed it applies it to Redis at once; this projection applies the topic as well and
records, in the same Redis transaction, how far into each partition it got (`webhook:applied`).
So a dispatcher that died between its Kafka commit and its Redis write loses nothing, and a Redis
that lost its data (a flush, a restart without persistence) or its last writes (a failover) is
noticed, because those positions are gone or behind, and rebuilt from the topic before anything
is delivered again. `autoglm replay` runs the same rebuild from the beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from redis.exceptions import RedisError

from mcp.errors import WebhookStateLost
from mcp.failover import Checkpoints, FailoverWatch, batch_positions
from mcp.kafka import consumer_config
from mcp.names import Topics
from mcp.records import Record
from mcp.settings import Settings
from mcp.webhooks.deliveries import with_body
from mcp.webhooks.store import WebhookStore
from schemas import DecodeError, WebhookRecord, dumps, loads

log = logging.getLogger(__name__)

SCHEMA_HEADER = ("schema", b"WebhookRecord/1")
BATCH = 1000
CHECK_EVERY_S = 1.0
"""How often a running projection checks that Redis still holds what it applied."""
LAG_S = 0.5
"""How far behind the journal a running projection stays: a state's writer applies it to Redis
right after its commit, so by then Redis (or the writer's `applied_here`) holds it and the
projection skips it unread; reading it sooner would decode and apply it a second time. Only what
a writer failed to apply (it died between commit and Redis write) waits this long for Redis."""
PROJECTION_FETCH = {"fetch.wait.max.ms": 200, "fetch.min.bytes": 256 * 1024}
"""The projection is no one's wait (the writer of a state applies it at once): its fetches wait
for a batch of records instead of asking the broker every few ms as the intake does."""


def journal_record(
    topics: Topics, state: WebhookRecord, without_body: bytes | None = None
) -> Record:
    """The Kafka record of a delivery state: keyed by webhook id, so compaction keeps the latest;
    its version is also a header, so a projection skips what Redis holds without decoding it.
    `without_body`: the state's `encoded` JSON, if made already (not serialised again)."""
    headers = (SCHEMA_HEADER, ("version", str(state.version).encode()))
    value = dumps(state) if without_body is None else with_body(without_body, state.body)
    return Record(topics.webhooks, state.webhook_id.encode(), value, headers)


def _version(msg: Message) -> int | None:
    """A record's version, from its header (None for a record without one)."""
    headers = msg.headers() or []
    value = headers.get("version") if isinstance(headers, dict) else dict(headers).get("version")
    return int(value) if value else None


def _newer(msg: Message, held: int) -> bool:
    """Whether a record is newer than version `held` (a record without the header may be)."""
    version = _version(msg)
    return version is None or version > held


async def _settle(messages: list[Message], stop: asyncio.Event) -> None:
    """Wait until the newest of `messages` was produced `LAG_S` ago (never longer than that,
    whatever the clocks say), or until `stop`."""
    newest = max((m.timestamp()[1] for m in messages), default=0)
    wait = min(LAG_S, LAG_S - (time.time() - newest / 1000)) if newest > 0 else 0.0
    if wait > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)


def decode_records(messages: list[Message]) -> list[WebhookRecord]:
    records: list[WebhookRecord] = []
    for msg in messages:
        try:
            records.append(loads(WebhookRecord, msg.value() or b""))
        except DecodeError as exc:
            log.warning("skipping an undecodable webhook record: %s", exc)
    return records


class WebhookProjection:
    """Applies `webhook-deliveries` to Redis; `ready` is set while Redis is up to date."""

    def __init__(
        self, settings: Settings, store: WebhookStore, on_ready: Callable[[], None] = lambda: None
    ) -> None:
        self.settings = settings
        self.on_ready = on_ready
        self.topic = Topics.of(settings).webhooks
        self.store = store
        self.ready = asyncio.Event()
        self._next: dict[int, int] = {}
        self._consumer: Consumer | None = None
        self.failovers = FailoverWatch(store.redis)
        self.checkpoints = Checkpoints()
        self._back: dict[int, int] = {}

    def _open(self) -> tuple[Consumer, list[int]]:
        if self._consumer is None:
            group = Topics.of(self.settings).group("webhook-projection")
            config = consumer_config(
                self.settings, group, **PROJECTION_FETCH, **{"enable.partition.eof": True}
            )
            self._consumer = Consumer(config)
        metadata = self._consumer.list_topics(self.topic, timeout=30).topics.get(self.topic)
        if metadata is None or metadata.error is not None:  # not created yet: nothing to apply
            return self._consumer, []
        return self._consumer, sorted(metadata.partitions)

    async def sync(self, from_start: bool = False, timeout_s: float | None = None) -> int:
        """Apply the topic up to its end, from where Redis holds it (from the beginning when
        Redis has no webhook state, or when asked); returns how many records were applied."""
        self.store.forget_own()
        consumer, partitions = await asyncio.to_thread(self._open)
        stored = {} if from_start else (await self.store.positions() or {})
        if stored and self._back:  # after a failover: from where it was a while ago
            stored = {p: min(n, self._back.get(p, n)) for p, n in stored.items()}
        self._back = {}
        start = [TopicPartition(self.topic, p, stored.get(p, OFFSET_BEGINNING)) for p in partitions]
        await asyncio.to_thread(consumer.assign, start)
        self._next = {p: stored.get(p, 0) for p in partitions}
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        remaining = set(partitions)
        applied = 0
        while remaining:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: partitions {sorted(remaining)} not read in time")
            messages = await asyncio.to_thread(consumer.consume, BATCH, 0.5)
            good: list[Message] = []
            for msg in messages:
                error = msg.error()
                if error is None:
                    good.append(msg)
                    remaining.add(msg.partition() or 0)
                elif error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(msg.partition() or 0)
                else:
                    log.warning("webhook projection: %s", error)
            applied += await self._apply(good)
        return applied

    async def _apply(self, messages: list[Message]) -> int:
        if not messages:
            return 0
        positions: dict[int, int] = {}
        for msg in messages:
            offset = msg.offset()
            if offset is not None:
                part = msg.partition() or 0
                positions[part] = max(positions.get(part, 0), offset + 1)
        # Most records were applied already by the process that wrote them: skip those unread,
        # this process's own without asking Redis.
        others: list[tuple[Message, str]] = []
        for msg in messages:
            webhook_id = (msg.key() or b"").decode()
            version = _version(msg)
            if version is None or not self.store.applied_here(webhook_id, version):
                others.append((msg, webhook_id))
        held = await self.store.versions([webhook_id for _, webhook_id in others])
        fresh = [m for (m, _), v in zip(others, held, strict=True) if _newer(m, v)]
        records = decode_records(fresh)
        known = any(n > 0 for n in self._next.values())
        if not await self.store.project(records, positions, known):
            raise WebhookStateLost("Redis lost the webhook state")
        self._next.update(positions)
        self.checkpoints.note(batch_positions(messages))
        return len(records)

    async def _behind(self) -> bool:
        """Whether Redis lost some of what was applied (its positions are gone or behind, as
        after a failover that dropped the last writes)."""
        stored = await self.store.positions() or {}
        return any(stored.get(p, 0) < n for p, n in self._next.items() if n > 0)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep Redis up to date until `stop`; rebuild whenever Redis lost webhook state."""
        checked = time.monotonic()
        while not stop.is_set():
            try:
                if not self.ready.is_set():
                    applied = await self.sync()
                    log.info("webhook state in Redis is up to date (%d records applied)", applied)
                    self.ready.set()
                    self.on_ready()
                consumer = self._consumer
                assert consumer is not None
                messages = await asyncio.to_thread(consumer.consume, BATCH, 0.2)
                good = [m for m in messages if m.error() is None]
                await _settle(good, stop)
                await self._apply(good)
                if self.failovers.failed_over():
                    self._back = {p: n for (_, p), n in self.checkpoints.back().items()}
                    raise WebhookStateLost("a Redis primary failed over and may have lost writes")
                if time.monotonic() - checked > CHECK_EVERY_S:
                    checked = time.monotonic()
                    if await self._behind():
                        raise WebhookStateLost("Redis holds less webhook state than was applied")
            except WebhookStateLost as exc:
                log.warning("%s; rebuilding it from Kafka", exc)
                self.store.forget_own()
                self.ready.clear()
            except (RedisError, OSError) as exc:
                log.warning("webhook projection waits for Redis (%s)", exc)
                self.store.forget_own()
                self.ready.clear()
                await asyncio.sleep(1.0)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
