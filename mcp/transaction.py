"""Consume-process-produce in one Kafka transaction: what a process produced from consumed
records, and the offsets of those records, commit together or not at all (KIP-447). The worker
commits results and events this way; the webhook dispatcher, the deliveries it scheduled.

Records enter in groups (one task's outcome, one `running` event, one webhook's state): a group
Kafka refuses is replaced by what the caller substitutes for it (the worker: a failure and a DLQ
copy) and the rest commits with the offsets in a new transaction (`mcp.grouped_txn`).

Error classes (librdkafka): a retriable error retries the call; one that requires an abort
aborts and makes the consumer rewind to its committed offsets; a fatal one (or a fenced
producer) replaces the producer, which aborts whatever the old one left open.

With `alternate=True` (the worker), consecutive transactions take turns on two producers, each
with a transactional.id of its own. Kafka's transaction coordinator finishes a commit after
answering it (the markers, then the completion record); a producer that opens its next
transaction before that is refused with CONCURRENT_TRANSACTIONS, which librdkafka retries only
20 ms later (a fixed back-off for AddPartitionsToTxn): measured at 100 tasks/s, 1 to 5 % of
transactions paid it. On its turn a producer's previous transaction is long finished. Offsets
stay fenced by the consumer group's generation (KIP-447), whichever producer sends them.

`send_offsets_to_transaction` runs on a thread of its own under a deadline of ours: librdkafka
does not enforce its timeout on the group coordinator request (confluentinc/librdkafka#5456),
and when the group coordinator's broker dies and leaves the metadata, the request waits for a
broker that never comes back (#5511): the call never returns. Past the deadline the producer is
abandoned to that thread and a new one with the same transactional.id takes over, which fences
the old one and aborts its transaction; the consumer rewinds as after any lost transaction.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from mcp.errors import BrokerError
from mcp.grouped_txn import Group, GroupedTransaction, Substitute
from mcp.kafka import kafka_error, producer_config
from mcp.settings import Settings

log = logging.getLogger(__name__)

RETRIES = 3
# How much longer than its own timeout a send_offsets_to_transaction call may take.
OFFSETS_GRACE_S = 5.0


class TransactionLost(BrokerError):
    """The open transaction was lost; the consumer must go back to its committed offsets."""


class InstanceFenced(BrokerError):
    """A newer instance took this process's slot (its transactional.id): this one must exit."""


class ProducerStuck(BrokerError):
    """A transactional call did not return by its deadline: the producer is abandoned."""


FENCED = (KafkaError._FENCED, KafkaError.PRODUCER_FENCED)


def rewind(consumer: Consumer) -> None:
    """Make `consumer` read again from its committed offsets (after a lost transaction)."""
    assignment = consumer.assignment()
    if not assignment:
        return
    while True:  # without the committed offsets, going on would skip the lost work
        try:
            committed = consumer.committed(assignment, timeout=10)
            break
        except KafkaException as exc:
            log.warning("cannot read committed offsets yet: %s", exc)
            time.sleep(1.0)
    for tp in committed:
        offset = tp.offset if tp.offset >= 0 else 0
        try:
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        except KafkaException as exc:
            log.warning("seek %s failed: %s", tp, exc)


class ConsumerTransaction:
    def __init__(
        self,
        settings: Settings,
        transactional_id: str,
        substitute: Substitute | None = None,
        superseded: Callable[[], bool] = lambda: False,
        alternate: bool = False,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        # librdkafka options of its producers beyond `producer_config`'s.
        self.config = config or {}
        # Kafka also fences a producer whose transaction timed out: only when `superseded` says
        # a newer instance holds the slot does fencing end this one; otherwise it takes over.
        self.superseded = superseded
        self.fenced = False
        self.transactional_id = transactional_id
        self.timeout = settings.kafka.request_timeout_s
        self.offsets_deadline_s = self.timeout + OFFSETS_GRACE_S
        self._offsets_caller = _Caller()
        self.abandoned = 0
        ids = [transactional_id, f"{transactional_id}.alt"] if alternate else [transactional_id]
        self._ids = ids
        self._producers = [self._new_producer(i) for i in ids]
        self._turn = 0
        self.producer = self._producers[0]
        self.txn = GroupedTransaction(self.producer, self.timeout, substitute)
        self.open = False
        self.began_at = 0.0
        self.commits = 0
        self.refused = 0

    def _new_producer(self, transactional_id: str) -> Producer:
        """A producer that owns `transactional_id`, waiting out a broker that is away."""
        while True:
            producer = Producer(producer_config(self.settings, transactional_id, **self.config))
            try:
                producer.init_transactions(max(self.timeout, 30))
                return producer
            except KafkaException as exc:
                log.warning("cannot take over %s yet: %s", transactional_id, exc)
                time.sleep(1.0)

    def produce(self, groups: list[Group]) -> None:
        """Add groups to the open transaction; TransactionLost when Kafka fails it outright."""
        if not groups:
            return
        self._begin()
        try:
            for group in groups:
                self.txn.add(group)
        except KafkaException as exc:
            self._fail(exc)
            raise TransactionLost(str(exc)) from exc
        self.producer.poll(0)

    def _begin(self) -> None:
        if not self.open:
            self._next_turn()
            self.txn.begin()
            self.open = True
            self.began_at = time.monotonic()

    def commit(self, offsets: list[TopicPartition], consumer: Consumer) -> None:
        """Commit the open transaction with `offsets`; raise TransactionLost when it is lost."""
        if not self.open and not offsets:
            return
        self._begin()

        def finish() -> None:
            if offsets:
                # Not retried: after a broker restart a retried call can block well past its
                # timeout while the unpolled consumer cannot rejoin. Abort and rewind instead.
                self._send_offsets(offsets, consumer)
            self._retry(lambda: self.producer.commit_transaction(self.timeout))

        try:
            refused = self.txn.commit(finish)
        except (KafkaException, ProducerStuck) as exc:
            self._fail(exc)
            raise TransactionLost(str(exc)) from exc
        self.open = False
        self.commits += 1
        self.refused += len(refused)

    def _send_offsets(self, offsets: list[TopicPartition], consumer: Consumer) -> None:
        """send_offsets_to_transaction, given up (ProducerStuck) past `offsets_deadline_s`."""
        producer, metadata = self.producer, consumer.consumer_group_metadata()
        try:
            self._offsets_caller.call(
                lambda: producer.send_offsets_to_transaction(offsets, metadata, self.timeout),
                self.offsets_deadline_s,
            )
        except FutureTimeout:
            # The thread stays blocked in librdkafka with the old producer; a fresh thread
            # serves the next producer.
            self._offsets_caller.stop()
            self._offsets_caller = _Caller()
            raise ProducerStuck(
                f"send_offsets_to_transaction did not return in {self.offsets_deadline_s:.0f} s"
            ) from None

    def abort(self) -> None:
        if not self.open:
            return
        try:
            self.producer.abort_transaction(self.timeout)
        except KafkaException as exc:
            self._fail(exc)
        self.open = False

    def _retry(self, call: object) -> None:
        assert callable(call)
        for attempt in range(RETRIES):
            try:
                call()
                return
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is None or not err.retriable() or attempt == RETRIES - 1:
                    raise
                log.info("retrying a retriable transaction call: %s", err)
                time.sleep(0.05 * (attempt + 1))
        # Past the retries the transaction is given up: the caller aborts and rewinds, which
        # lets the consumer poll again (a consumer that is not polled cannot rejoin its group).

    def _fail(self, exc: KafkaException | ProducerStuck) -> None:
        err = kafka_error(exc)
        self.open = False
        if isinstance(exc, ProducerStuck):
            log.warning("transaction lost: %s; a new producer takes over", exc)
            self.abandoned += 1
            self._replace_producer()
            return
        if err is not None and err.code() in FENCED and self.superseded():
            self.fenced = True
            raise InstanceFenced(f"{self.transactional_id} was taken over by a newer instance")
        log.warning("transaction lost: %s", exc)
        if err is not None and err.txn_requires_abort() and not err.fatal():
            try:
                self.producer.abort_transaction(self.timeout)
                return
            except KafkaException as abort_exc:
                log.warning("abort failed: %s", abort_exc)
        # Fatal or fenced: a producer with the same transactional.id takes over cleanly.
        self._replace_producer()

    def _next_turn(self) -> None:
        """The next producer takes the transaction about to open (see the module's notes)."""
        if len(self._producers) > 1:
            self._turn = (self._turn + 1) % len(self._producers)
            self.producer = self._producers[self._turn]
            self.txn.producer = self.producer

    def _replace_producer(self) -> None:
        self.producer = self._new_producer(self._ids[self._turn])
        self._producers[self._turn] = self.producer
        self.txn.producer = self.producer

    def close(self) -> None:
        if self.fenced:
            return  # the producers are unusable; the newer instance aborted what was open
        self.abort()
        for producer in self._producers:
            producer.flush(5)
        self._offsets_caller.stop()


class _Caller:
    """A daemon thread that runs the calls handed to it: the caller waits only as long as it
    chooses, and a call that never returns does not hold up the process's exit."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], None], Future[None]] | None]
        self._calls = queue.SimpleQueue()
        threading.Thread(target=self._run, name="txn-offsets", daemon=True).start()

    def call(self, fn: Callable[[], None], deadline_s: float) -> None:
        """Run `fn` on the thread; its exception, or TimeoutError past `deadline_s`."""
        done: Future[None] = Future()
        self._calls.put((fn, done))
        done.result(deadline_s)

    def stop(self) -> None:
        self._calls.put(None)

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, done = item
            try:
                fn()
            except BaseException as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)
