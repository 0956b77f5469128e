"""The API's transactional producer: concurrent submissions share one Kafka transaction.

A request's records are handed to a committer thread and the request waits on a future. The
thread gathers whatever arrives within `group_commit_max_ms` (or up to
`group_commit_max_messages`), produces it all in one transaction and commits; then, on the
requests' event loop, the `after_commit` hook sees the committed submissions' notes and only
after it are the futures resolved. A transaction that fails because Kafka refused some
request's record is done again without that request, which alone learns of it (see
`mcp.grouped_txn`); any other failure is an outage: the transaction is aborted and every
request in it learns so. Nothing of an aborted transaction is visible to read_committed
consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, Producer

from mcp.errors import BrokerUnavailable
from mcp.grouped_txn import Group, GroupedTransaction
from mcp.kafka import kafka_error, producer_config
from mcp.records import Record, RecordLimits, refused_record
from mcp.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    records: Sequence[Record]
    note: Any
    loop: asyncio.AbstractEventLoop
    waiter: asyncio.Future[None]
    enqueued: float = field(default_factory=time.monotonic)


SWEEP_S = 0.25
AfterCommit = Callable[[list[Any]], Awaitable[None]]
"""Awaited on the requests' loop with the notes of a committed transaction, before they hear."""


_EMPTY: Any = object()


class _Handoff:
    """A queue from the event loop to the committer threads that costs the loop almost nothing.

    `queue.Queue` takes a lock and notifies a condition on every put; under load the committers
    are busy anyway, so a put is a deque append and only wakes a committer that sleeps.
    """

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._wakeup = threading.Event()

    def put(self, item: Any) -> None:
        self._items.append(item)
        if not self._wakeup.is_set():
            self._wakeup.set()

    def pending(self) -> int:
        return len(self._items)

    def get(self, timeout: float | None) -> Any:
        """The next item, or _EMPTY when none came within `timeout` (None: wait for ever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self._items.popleft()
            except IndexError:
                pass
            self._wakeup.clear()
            if self._items:  # appended between the pop and the clear
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return _EMPTY
            self._wakeup.wait(remaining)


class _Lane:
    """One committer thread with a producer of its own (and so a transactional.id of its own)."""

    def __init__(self, transactional_id: str, index: int = 0) -> None:
        self.transactional_id = transactional_id
        self.index = index
        self.producer: Producer | None = None
        self.thread: threading.Thread | None = None


class _Turns:
    """Lanes gather their batches in turn (0, 1, ..., 0, ...), so consecutive transactions go to
    different producers. Kafka's coordinator finishes a commit after answering it; a producer
    that opens its next transaction before that is refused (CONCURRENT_TRANSACTIONS) and
    librdkafka tries again only 20 ms later. On its turn a lane's previous transaction is done."""

    def __init__(self, lanes: int) -> None:
        self._lanes = lanes
        self._turn = 0
        self._changed = threading.Condition()

    def wait(self, index: int) -> None:
        if self._lanes > 1:
            with self._changed:
                self._changed.wait_for(lambda: self._turn == index)

    def pass_on(self) -> None:
        if self._lanes > 1:
            with self._changed:
                self._turn = (self._turn + 1) % self._lanes
                self._changed.notify_all()


class TaskProducer:
    """Group-committing transactional producer owned by one process slot.

    Several lanes pull from one queue, so that while one lane waits for its commit the next
    batch is already gathering and producing in another: commits overlap instead of queueing.
    """

    def __init__(
        self,
        settings: Settings,
        transactional_id: str,
        after_commit: AfterCommit | None = None,
    ) -> None:
        self._settings = settings
        self._after_commit = after_commit
        self._queue = _Handoff()
        lanes = max(1, settings.kafka.group_commit_lanes)
        self._lanes = [_Lane(f"{transactional_id}.{i}", i) for i in range(lanes)]
        self._turns = _Turns(lanes)
        self._stopping = False
        # Submissions in the latest transaction: more than one means load, and the window pays.
        self._last_batch = 0
        self._deadlines: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._sweeper: asyncio.Task[None] | None = None
        self.transactions = 0
        self.records = 0
        # Bytes of records awaiting their commit on the event loop (admission control reads it).
        self.pending_bytes = 0
        # Filled in with the topics' limits once they are known; refusals cite them.
        self.limits = RecordLimits.of(settings)

    def start(self) -> None:
        for i, lane in enumerate(self._lanes):
            lane.thread = threading.Thread(
                target=self._run, args=(lane,), name=f"group-commit-{i}", daemon=True
            )
            lane.thread.start()

    @property
    def ready(self) -> bool:
        return any(lane.producer is not None for lane in self._lanes)

    async def publish(self, records: Sequence[Record], note: Any = None) -> None:
        """Await the commit of a transaction holding `records`, within the request timeout."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._enqueue(_Pending(records, note, loop, waiter))
        # One sweeper per loop expires late waiters: cheaper than a timer per request.
        self._deadlines.append((loop.time() + self._settings.kafka.request_timeout_s, waiter))
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = loop.create_task(self._sweep(loop))
        size = sum(len(r.value) for r in records)
        self.pending_bytes += size
        try:
            await waiter
        finally:
            self.pending_bytes -= size

    async def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._deadlines or not self._stopping:
            await asyncio.sleep(SWEEP_S)
            now = loop.time()
            while self._deadlines and self._deadlines[0][0] <= now:
                _expire(self._deadlines.popleft()[1])
            while self._deadlines and self._deadlines[0][1].done():
                self._deadlines.popleft()

    def _enqueue(self, pending: _Pending) -> None:
        if self._stopping:
            _settle([pending], BrokerUnavailable("the producer is shutting down"))
        else:
            self._queue.put(pending)

    def close(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._queue.put(None)
        for lane in self._lanes:
            if lane.thread is not None:
                lane.thread.join(timeout)

    # -- committer threads ------------------------------------------------------------------

    def _run(self, lane: _Lane) -> None:
        self._connect(lane)
        while True:
            self._turns.wait(lane.index)
            try:
                batch = self._gather()
            finally:
                self._turns.pass_on()
            if batch is None:
                break
            self._commit(lane, batch)
            if lane.producer is None:
                # Dropped after a fatal error: connect again now, not on the next submission
                # (an unready process gets none).
                self._connect(lane)
        if lane.producer is not None:
            lane.producer.flush(5)

    def _connect(self, lane: _Lane) -> None:
        """Initialise the lane's transactions, again and again until Kafka answers (so that the
        process turns ready by itself); a submission arriving meanwhile takes over the retrying."""
        pause = 0.5
        while not self._stopping:
            try:
                self._ensure_producer(lane)
                return
            except KafkaException as exc:
                log.warning("Kafka not reachable yet (%s); again in %.1f s", exc, pause)
            resume = time.monotonic() + pause
            while time.monotonic() < resume:
                if self._stopping or self._queue.pending():
                    return
                time.sleep(0.1)
            pause = min(pause * 2, 10.0)

    def _gather(self) -> list[_Pending] | None:
        first = self._queue.get(None)
        if first is None:
            self._queue.put(None)  # the other lanes stop too
            return None
        batch = [first]
        kafka = self._settings.kafka
        limit = kafka.group_commit_max_messages
        if not self._queue.pending() and (kafka.group_commit_wait_alone or self._last_batch > 1):
            # Alone under load: give concurrent requests the window to join. One sleep, not a
            # wake-up per arrival; with more load the queue already holds the next batch and
            # nobody waits. Without load (the latest transaction was alone too) the window
            # would only add its length to the answer: commit at once.
            time.sleep(kafka.group_commit_max_ms / 1000)
        count = len(first.records)
        while count < limit:
            item = self._queue.get(0)
            if item is _EMPTY:
                break
            if item is None:
                self._queue.put(None)
                break
            batch.append(item)
            count += len(item.records)
        self._last_batch = len(batch)
        return batch

    def _ensure_producer(self, lane: _Lane) -> Producer:
        if lane.producer is None:
            producer = Producer(producer_config(self._settings, lane.transactional_id))
            producer.init_transactions(self._settings.kafka.request_timeout_s)
            lane.producer = producer
        return lane.producer

    def _commit(self, lane: _Lane, batch: list[_Pending]) -> None:
        timeout = self._settings.kafka.request_timeout_s
        # Requests that waited past their own deadline have been answered 503 already.
        live = [p for p in batch if time.monotonic() - p.enqueued < timeout]
        if len(live) < len(batch):
            late = [p for p in batch if p not in live]
            _settle(late, BrokerUnavailable("timed out waiting for Kafka"))
        if not live:
            return
        try:
            producer = self._ensure_producer(lane)
            txn = GroupedTransaction(producer, timeout)
            txn.begin()
            for i, pending in enumerate(live):
                txn.add(Group(i, pending.records))
            refused = txn.commit(lambda: producer.commit_transaction(timeout))
        except Exception as exc:
            self._recover(lane, exc)
            _settle(live, BrokerUnavailable(f"Kafka transaction failed: {exc}"))
            return
        for index, refusal in refused.items():
            assert isinstance(index, int)
            _settle([live[index]], refused_record(refusal.error, self.limits, refusal.topic))
        committed = [p for i, p in enumerate(live) if i not in refused]
        self.transactions += 1
        self.records += sum(len(p.records) for p in committed)
        _settle(committed, None, self._after_commit)

    def _recover(self, lane: _Lane, exc: BaseException) -> None:
        """Abort what can be aborted; drop a producer that can no longer be trusted."""
        err = kafka_error(exc)
        log.warning("transaction failed: %s", exc)
        producer = lane.producer
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
        lane.producer = None
        with contextlib.suppress(KafkaException):
            producer.purge()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(BrokerUnavailable("Kafka did not commit the task in time"))


def _resolve(waiters: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for waiter in waiters:
        if waiter.done():
            continue
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)


_HOOKS: set[asyncio.Task[None]] = set()


def _settle(
    batch: list[_Pending], error: BaseException | None, after_commit: AfterCommit | None = None
) -> None:
    """Wake every waiter of a batch; one hop per event loop, not one per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
    for p in batch:
        by_loop.setdefault(p.loop, []).append(p)
    for loop, pending in by_loop.items():
        try:
            loop.call_soon_threadsafe(_wake, pending, error, after_commit)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


def _wake(
    batch: list[_Pending], error: BaseException | None, after_commit: AfterCommit | None
) -> None:
    """On the requests' loop: run the after-commit hook when there is one, then resolve."""
    waiters = [p.waiter for p in batch]
    notes = [p.note for p in batch if p.note is not None]
    if error is not None or after_commit is None or not notes:
        _resolve(waiters, error)
        return
    task = asyncio.get_running_loop().create_task(_after(after_commit, notes, waiters))
    _HOOKS.add(task)
    task.add_done_callback(_HOOKS.discard)


async def _after(hook: AfterCommit, notes: list[Any], waiters: list[asyncio.Future[None]]) -> None:
    try:
        await hook(notes)
    except Exception:
        log.exception("after-commit hook failed; the projector will catch up")
    _resolve(waiters, None)
