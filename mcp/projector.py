"""The projector: applies `task-events` to Redis so that polls see every transition, indexes
the dead-letter topic (`mcp.dead_letters`), and trims task indexes past the retention.

Offsets are committed after the events were applied; applying an event twice changes nothing,
so a crash between the two only repeats work. After a Redis Cluster failover it reads the last
`mcp.failover.REPROJECT_S` of events again (the failed primary may have lost their writes).
It runs as a task of an asyncio process (`autoglm projector` runs one alone) and writes through
that process's `TaskStore`; the API runs one on a thread and event loop of its own
(`ProjectorThread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from prometheus_client import Counter, Histogram
from prometheus_client.registry import REGISTRY
from redis.exceptions import RedisError

from mcp.applied import AppliedHere
from mcp.dead_letters import DeadLetter
from mcp.failover import REPROJECT_S, Checkpoints, FailoverWatch, Position, batch_positions
from mcp.heap import settle_the_heap
from mcp.kafka import consumer_config, ensure_topics
from mcp.names import Topics
from mcp.records import decode_value
from mcp.settings import Settings, get_settings
from mcp.store import TaskStore
from mcp.task_index import IndexTrimmer
from mcp.telemetry.lag import Key, LagCollector
from mcp.telemetry.metrics import COMMIT_BUCKETS
from mcp.telemetry.process import start_telemetry
from mcp.threads import share_the_interpreter
from schemas import DecodeError, TaskEvent

log = logging.getLogger(__name__)

POLL_S = 0.1

EVENTS = Counter(
    "autoglm_projector_events_total", "Task events applied to Redis, by status", ["status"]
)
SKIPPED = Counter(
    "autoglm_projector_events_skipped_total",
    "Task events read past: this process had applied them itself (the API's `queued` events)",
)
DEAD_LETTERS = Counter("autoglm_projector_dead_letters_total", "Dead letters indexed in Redis")
TRIMMED = Counter(
    "autoglm_projector_index_trimmed_total",
    "Task index entries dropped past the retention (index trim)",
)
APPLY_SECONDS = Histogram(
    "autoglm_projector_apply_seconds",
    "Time to apply one consumed batch of events to Redis",
    buckets=COMMIT_BUCKETS,
)

TOPICS_RETRY_S = 2.0
TRIM_EVERY_S = 300.0
"""A pass of the index trim (`mcp.task_index.IndexTrimmer`) begins at most this often."""
TRIM_STEP_S = 1.0
"""Between two steps (slices) of a pass."""


def decode_events(messages: list[Message]) -> list[TaskEvent]:
    """The events in these records, in either encoding; undecodable ones are skipped."""
    events: list[TaskEvent] = []
    for msg in messages:
        if msg.value() is None:
            continue
        try:
            events.append(decode_value(TaskEvent, msg.value(), msg.headers()))
        except DecodeError as exc:
            log.warning("skipping undecodable task event: %s", exc)
    return events


class Projector:
    def __init__(
        self,
        settings: Settings,
        store: TaskStore,
        batch: int = 500,
        applied_here: AppliedHere | None = None,
    ) -> None:
        self.settings = settings
        self.topics = Topics.of(settings)
        self.store = store
        self.batch = batch
        # The records this process applied itself (the API's `queued` events): read past.
        self.applied_here = applied_here
        self.applied = 0
        self.failovers = FailoverWatch(store.redis)
        self.checkpoints = Checkpoints()

    async def run(self, stop: asyncio.Event) -> None:
        """Project until `stop` is set; waits for Kafka (its topics) and out Redis outages."""
        if not await self._topics_ready(stop):
            return
        consumer = await asyncio.to_thread(self._consumer)
        trimming = asyncio.create_task(self._trim(stop), name="index-trim")
        try:
            while not stop.is_set():
                messages = await asyncio.to_thread(self._fetch, consumer)
                if messages and not await self._project(consumer, messages, stop):
                    break  # stopping while Redis is away: these offsets stay uncommitted
        finally:
            trimming.cancel()
            await asyncio.gather(trimming, return_exceptions=True)
            await asyncio.to_thread(_close, consumer)

    def _fetch(self, consumer: Consumer) -> list[Message]:
        """A batch: `consume(n, t)` holds the records until n of them have come or t has passed
        (`server.projector_batch_wait_ms`); with 0, what is ready now (the first record waited
        for up to `POLL_S`, then what was fetched with it)."""
        wait_s = self.settings.server.projector_batch_wait_ms / 1000
        if wait_s > 0:
            return list(consumer.consume(self.batch, wait_s))
        first = consumer.poll(POLL_S)
        if first is None:
            return []
        return [first, *consumer.consume(self.batch - 1, 0)]

    def _consumer(self) -> Consumer:
        server = self.settings.server
        config = consumer_config(
            self.settings,
            self.topics.group("projector"),
            **{
                "fetch.wait.max.ms": server.projector_fetch_wait_ms,
                "fetch.min.bytes": server.projector_fetch_min_bytes,
            },
        )
        consumer = Consumer(config)
        consumer.subscribe([self.topics.events, self.topics.dlq])
        return consumer

    async def _topics_ready(self, stop: asyncio.Event) -> bool:
        """Subscribe only once `task-events` exists; False when stopped before that."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(ensure_topics, self.settings, [])
                return True
            except Exception as exc:
                log.warning("projector: no topics yet (%s); retrying", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TOPICS_RETRY_S)
        return False

    async def _project(
        self, consumer: Consumer, messages: list[Message], stop: asyncio.Event
    ) -> bool:
        good = [m for m in messages if not m.error()]
        for msg in messages:
            if msg.error():
                log.warning("projector consume error: %s", msg.error())
        events = decode_events(self._not_applied_here(good))
        letters = [DeadLetter.of(m) for m in good if m.topic() == self.topics.dlq]
        began = time.perf_counter()
        dead = [d for d in letters if d is not None]
        if not await self._apply(events, dead, stop):
            return False
        APPLY_SECONDS.observe(time.perf_counter() - began)
        for event in events:
            EVENTS.labels(event.status.value).inc()
        DEAD_LETTERS.inc(len(dead))
        for msg in good:
            consumer.store_offsets(msg)
        self.applied += len(events)
        try:
            consumer.commit(asynchronous=True)
        except KafkaException as exc:
            log.debug("offset commit skipped: %s", exc)
        self.checkpoints.note(batch_positions(good))
        if self.failovers.failed_over():
            back = self.checkpoints.back()
            log.warning(
                "a Redis primary failed over; projecting the last %.0f s of events again "
                "(%d partitions)",
                REPROJECT_S,
                len(back),
            )
            await asyncio.to_thread(_rewind, consumer, back)
        return True

    def _not_applied_here(self, messages: list[Message]) -> list[Message]:
        """The `task-events` records among `messages` that this process did not apply itself."""
        events = [m for m in messages if m.topic() == self.topics.events]
        memo = self.applied_here
        if memo is None or not len(memo):
            return events
        fresh: list[Message] = []
        for msg in events:
            value = msg.value()
            if value is None or not memo.take(msg.key(), value):
                fresh.append(msg)
        SKIPPED.inc(len(events) - len(fresh))
        return fresh

    async def _apply(
        self, events: list[TaskEvent], letters: list[DeadLetter], stop: asyncio.Event
    ) -> bool:
        """Apply, waiting out a Redis outage; False when asked to stop before it worked."""
        while True:
            try:
                await self.store.apply_events(events)
                await self.store.index_dead_letters(letters)
                return True
            except RedisError as exc:
                log.warning("Redis unavailable (%s); retrying in 1 s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                if stop.is_set():
                    return False

    async def _trim(self, stop: asyncio.Event) -> None:
        """Beside the consuming: drop index entries older than the retention, one slice every
        `TRIM_STEP_S`, a pass beginning at most every `TRIM_EVERY_S` (best effort)."""
        trimmer = IndexTrimmer(
            self.store.redis, self.store.keys, self.settings.redis.task_retention_s
        )
        began = time.monotonic()
        while not stop.is_set():
            wait = TRIM_STEP_S
            try:
                removed, ended = await trimmer.step()
                TRIMMED.inc(removed)
            except RedisError as exc:
                log.warning("index trim step skipped: %s", exc)
                ended = False
            except Exception:
                log.exception("index trim step failed")
                ended = False
            if ended:
                wait = max(wait, began + TRIM_EVERY_S - time.monotonic())
                began = time.monotonic() + wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)


class ProjectorThread:
    """A projector on a thread of its own, with its own event loop and `TaskStore`: what the API
    process runs beside its requests.

    On the requests' loop, each batch (hundreds of events every `projector_batch_wait_ms` under
    load: decoded, then written) took that loop from the polls and submissions queued behind it,
    and at 1,000 tasks/s the loop was busy all the time. On a loop of its own the batch only
    shares the interpreter, which the requests' loop gets back within
    `gil_switch_interval_ms` (`mcp.threads`)."""

    def __init__(self, settings: Settings, applied_here: AppliedHere | None = None) -> None:
        self.settings = settings
        self.applied_here = applied_here  # what the API applied itself: read past
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._projector: Projector | None = None

    @property
    def applied(self) -> int:
        """Events applied so far."""
        return self._projector.applied if self._projector is not None else 0

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="projector", daemon=True)
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        finally:
            self._started.set()  # also when it failed before it began

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        store = TaskStore(self.settings)
        self._projector = Projector(self.settings, store, applied_here=self.applied_here)
        self._started.set()
        try:
            await self._projector.run(self._stop)
        finally:
            await store.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the projector to stop and wait for it (its offsets committed); blocking."""
        if self._thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: it stopped already
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)


def _rewind(consumer: Consumer, back: dict[Position, int]) -> None:
    """Read the assigned partitions again from these offsets."""
    assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
    for (topic, partition), offset in back.items():
        if (topic, partition) in assigned:
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("projector: cannot read %s[%d] again: %s", topic, partition, exc)


def _close(consumer: Consumer) -> None:
    with contextlib.suppress(KafkaException):
        consumer.commit(asynchronous=False)
    consumer.close()


async def _serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    store = TaskStore(settings)
    projector = Projector(settings, store)
    settle_the_heap(settings)
    try:
        await projector.run(stop)
    finally:
        await store.close()


def watch_lag(settings: Settings) -> None:
    """`autoglm_projector_consumer_lag` of the projector's group over its topics."""
    topics = Topics.of(settings)

    known: list[Key] = []

    def partitions() -> list[Key]:
        if not known:
            counts = ensure_topics(settings, [], 5.0)
            known.extend((t, p) for t in (topics.events, topics.dlq) for p in range(counts[t]))
        return known

    group = topics.group("projector")
    REGISTRY.register(LagCollector("autoglm_projector_consumer_lag", settings, group, partitions))


def run(metrics_port: int | None = None) -> int:
    """`autoglm projector`: project task events until SIGTERM/SIGINT."""
    settings = get_settings()
    start_telemetry("projector", settings, metrics_port)
    share_the_interpreter(settings)
    watch_lag(settings)
    asyncio.run(_serve(settings))
    return 0
