"""The API's transactional producer: concurrent submissions share one Kafka transaction.

A request's records are handed to a committer thread and the request waits on a future. The
thread gathers whatever arrives within `group_commit_max_ms` (or up to
`group_commit_max_messages`), produces it all in one transaction and commits; only then are the
futures resolved. A failed transaction is aborted and every request in it learns so: nothing of
it is visible to read_committed consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, Producer

from mcp.errors import BrokerUnavailable, ProducerFenced
from mcp.kafka import kafka_error, producer_config
from mcp.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class _Pending:
    records: Sequence[Record]
    note: Any = None
    future: Future[None] = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


# Called in the committer thread with the notes of a committed transaction's submissions.
AfterCommit = Callable[[list[Any]], None]


class TaskProducer:
    """Group-committing transactional producer owned by one process slot."""

    def __init__(
        self,
        settings: Settings,
        transactional_id: str,
        after_commit: AfterCommit | None = None,
    ) -> None:
        self._settings = settings
        self._transactional_id = transactional_id
        self._after_commit = after_commit
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._producer: Producer | None = None
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._stopping = False
        self.transactions = 0
        self.records = 0

    def start(self) -> None:
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self._producer is not None

    def submit(self, records: Sequence[Record], note: Any = None) -> Future[None]:
        """Queue records for the next transaction; the future resolves once it committed."""
        pending = _Pending(records, note)
        if self._stopping:
            pending.future.set_exception(BrokerUnavailable("the producer is shutting down"))
        else:
            self._queue.put(pending)
        return pending.future

    async def publish(self, records: Sequence[Record], note: Any = None) -> None:
        """Await the commit of a transaction holding `records`, within the request timeout."""
        future = asyncio.wrap_future(self.submit(records, note))
        try:
            await asyncio.wait_for(future, timeout=self._settings.kafka.request_timeout_s)
        except TimeoutError as exc:
            raise BrokerUnavailable("Kafka did not commit the task in time") from exc

    def close(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout)

    # -- committer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._ensure_producer()
        except KafkaException as exc:
            log.warning("Kafka not reachable at start (%s); retrying on the first submission", exc)
        while True:
            batch = self._gather()
            if batch is None:
                break
            self._commit(batch)
        if self._producer is not None:
            self._producer.flush(5)

    def _gather(self) -> list[_Pending] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        count = len(first.records)
        limit = self._settings.kafka.group_commit_max_messages
        deadline = time.monotonic() + self._settings.kafka.group_commit_max_ms / 1000
        while count < limit:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            batch.append(item)
            count += len(item.records)
        return batch

    def _ensure_producer(self) -> Producer:
        if self._producer is None:
            producer = Producer(producer_config(self._settings, self._transactional_id))
            producer.init_transactions(self._settings.kafka.request_timeout_s)
            self._producer = producer
        return self._producer

    def _commit(self, batch: list[_Pending]) -> None:
        timeout = self._settings.kafka.request_timeout_s
        # Requests that waited past their own deadline have been answered 503 already.
        live = [p for p in batch if time.monotonic() - p.enqueued < timeout]
        for p in batch:
            if p not in live:
                p.future.set_exception(BrokerUnavailable("timed out waiting for Kafka"))
        if not live:
            return
        try:
            producer = self._ensure_producer()
            producer.begin_transaction()
            for pending in live:
                for r in pending.records:
                    producer.produce(r.topic, r.value, r.key, headers=list(r.headers))
            producer.commit_transaction(timeout)
        except Exception as exc:
            self._recover(exc)
            error: Exception = BrokerUnavailable(f"Kafka transaction failed: {exc}")
            if isinstance(exc, ProducerFenced):
                error = exc
            for p in live:
                p.future.set_exception(error)
            return
        self.transactions += 1
        self.records += sum(len(p.records) for p in live)
        if self._after_commit is not None:
            try:
                self._after_commit([p.note for p in live if p.note is not None])
            except Exception:
                log.exception("after-commit hook failed; the projector will catch up")
        for p in live:
            p.future.set_result(None)

    def _recover(self, exc: BaseException) -> None:
        """Abort what can be aborted; drop a producer that can no longer be trusted."""
        err = kafka_error(exc)
        log.warning("transaction failed: %s", exc)
        producer = self._producer
        if producer is None:
            return
        if err is not None and err.txn_requires_abort() and not err.fatal():
            try:
                producer.abort_transaction(self._settings.kafka.request_timeout_s)
                return
            except KafkaException as abort_exc:
                log.warning("abort failed: %s", abort_exc)
        # Fatal, or an abort that did not go through: a new producer with the same
        # transactional.id fences this one and aborts its open transaction on init.
        self._producer = None
        with contextlib.suppress(KafkaException):
            producer.purge()
