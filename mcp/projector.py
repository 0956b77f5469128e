"""The projector: applies `task-events` to Redis so that polls see every transition.

Offsets are committed after the events were applied; applying an event twice changes nothing,
so a crash between the two only repeats work.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

from confluent_kafka import Consumer, KafkaException
from redis.exceptions import RedisError

from mcp.kafka import consumer_config, ensure_topics
from mcp.names import Topics
from mcp.settings import Settings, get_settings
from mcp.store import SyncTaskStore
from schemas import DecodeError, TaskEvent, loads

log = logging.getLogger(__name__)


def decode_events(values: list[bytes | None]) -> list[TaskEvent]:
    events: list[TaskEvent] = []
    for value in values:
        if value is None:
            continue
        try:
            events.append(loads(TaskEvent, value))
        except DecodeError as exc:
            log.warning("skipping undecodable task event: %s", exc)
    return events


class Projector:
    def __init__(self, settings: Settings, batch: int = 500) -> None:
        self.settings = settings
        self.topics = Topics.of(settings)
        self.store = SyncTaskStore(settings)
        self.batch = batch
        self.applied = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="projector", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        consumer = Consumer(consumer_config(self.settings, self.topics.group("projector")))
        consumer.subscribe([self.topics.events])
        try:
            while not self._stop.is_set():
                messages = consumer.consume(self.batch, 0.1)
                if not messages:
                    continue
                good = [m for m in messages if not m.error()]
                for msg in messages:
                    if msg.error():
                        log.warning("projector consume error: %s", msg.error())
                events = decode_events([m.value() for m in good])
                if not self._apply(events):
                    break  # stopping while Redis is away: these offsets stay uncommitted
                for msg in good:
                    consumer.store_offsets(msg)
                self.applied += len(events)
                try:
                    consumer.commit(asynchronous=True)
                except KafkaException as exc:
                    log.debug("offset commit skipped: %s", exc)
        finally:
            with contextlib.suppress(KafkaException):
                consumer.commit(asynchronous=False)
            consumer.close()

    def _apply(self, events: list[TaskEvent]) -> bool:
        """Apply, waiting out a Redis outage; False when asked to stop before it worked."""
        while True:
            try:
                self.store.apply_events(events)
                return True
            except RedisError as exc:
                log.warning("Redis unavailable (%s); retrying in 1 s", exc)
                if self._stop.wait(1.0):
                    return False


def run() -> int:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level)
    ensure_topics(settings)
    projector = Projector(settings)
    signal.signal(signal.SIGTERM, lambda *_: projector._stop.set())
    signal.signal(signal.SIGINT, lambda *_: projector._stop.set())
    projector.run()
    return 0
