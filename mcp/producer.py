"""The API's transactional producer: concurrent submissions share one Kafka transaction.

A request's records are handed to a committer thread and the request waits on a future. The
thread gathers whatever arrives within `group_commit_max_ms` (or up to
`group_commit_max_messages`), produces it all in one transaction and commits; then a settler
thread calls the `after_commit` hook with the committed submissions' notes, and only after it
are the futures resolved, with one hop to the requests' event loop per transaction. (A hook
awaited on that loop would wait for its turn behind every request the loop serves, at each of
its Redis round trips; in the committer thread it would hold up the next commit.)

A transaction that fails because Kafka refused some request's record is done again without
that request, which alone learns of it (see `mcp.grouped_txn`); any other failure is an
outage: the transaction is aborted and every request in it learns so. Nothing of an aborted
transaction is visible to read_committed consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, Producer
from prometheus_client import Histogram

from mcp.errors import BrokerUnavailable
from mcp.grouped_txn import Group, GroupedTransaction
from mcp.kafka import kafka_error, producer_config
from mcp.records import Record, RecordLimits, refused_record
from mcp.settings import Settings
from mcp.telemetry.metrics import COMMIT_BUCKETS

log = logging.getLogger(__name__)

COMMIT_SECONDS = Histogram(
    "autoglm_group_commit_seconds",
    "Time to commit one group-commit transaction (begin, produce, commit): the API's "
    "submissions, the dispatcher's journal",
    buckets=COMMIT_BUCKETS,
)
AFTER_COMMIT_SECONDS = Histogram(
    "autoglm_after_commit_seconds",
    "Time the after-commit hook took for the transactions committed meanwhile (the API: their "
    "`queued` states written to Redis, before their 202s)",
    buckets=COMMIT_BUCKETS,
)


@dataclass
class _Pending:
    records: Sequence[Record]
    note: Any
    loop: asyncio.AbstractEventLoop
    waiter: asyncio.Future[None]
    enqueued: float = field(default_factory=time.monotonic)


SWEEP_S = 0.25
LANE_LINGER_MS = 100
AfterCommit = Callable[[list[Any]], None]
"""Called in the settler thread with the notes of a committed transaction, before they hear."""


_EMPTY: Any = object()


class _Handoff:
    """A queue from the event loop to the committer threads (and from those to the settler)
    that costs the loop almost nothing.

    `queue.Queue` takes a lock and notifies a condition on every put; under load the committers
    are busy anyway, so a put is a deque append and only wakes a committer that sleeps. A
    consumer that found the queue empty without waiting (`get(0)`, the end of a gather) is not
    asleep: the puts after it set no event (an `Event.set` takes a lock and notifies a
    condition, on the event loop, for every submission).
    """

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._wakeup = threading.Event()
        # Consumers about to wait or waiting for the event; changed under `_sleep_lock`.
        self._sleepers = 0
        self._sleep_lock = threading.Lock()

    def put(self, item: Any) -> None:
        self._items.append(item)
        # A consumer counts itself before it looks at the queue a last time, so either it sees
        # this item or this put sees it.
        if self._sleepers and not self._wakeup.is_set():
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
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return _EMPTY
            self._wakeup.clear()
            with self._sleep_lock:
                self._sleepers += 1
            try:
                if not self._items:  # nothing appended since the pop
                    self._wakeup.wait(remaining)
            finally:
                with self._sleep_lock:
                    self._sleepers -= 1


class _Lane:
    """One committer thread with a producer of its own (and so a transactional.id of its own)."""

    def __init__(self, transactional_id: str, index: int = 0) -> None:
        self.transactional_id = transactional_id
        self.index = index
        self.producer: Producer | None = None
        self.thread: threading.Thread | None = None
        # The transaction this lane opened while it gathers (see `TaskProducer._open`).
        self.opened: _Opened | None = None


@dataclass
class _Opened:
    """A lane's transaction opened with the first submission of its batch, before the batch is
    complete: the submissions whose records are in it, or the error that opening it met."""

    live: list[_Pending]
    taken: int  # how many of the batch's first submissions it has dealt with
    txn: GroupedTransaction | None = None
    error: Exception | None = None


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
    batch is already gathering in another. Under load a lane commits once the previous
    transaction is done (one transaction committing, the next gathering: fewer, larger
    transactions); a lone submission commits at once, beside a transaction in flight.
    """

    def __init__(
        self,
        settings: Settings,
        transactional_id: str,
        after_commit: AfterCommit | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self._settings = settings
        self._after_commit = after_commit
        # librdkafka options of this producer beyond `producer_config`'s.
        self._config = config or {}
        self._queue = _Handoff()
        # Committed batches waiting for the after-commit hook: (their requests, their notes).
        self._committed = _Handoff()
        self._settler: threading.Thread | None = None
        lanes = max(1, settings.kafka.group_commit_lanes)
        self._lanes = [_Lane(f"{transactional_id}.{i}", i) for i in range(lanes)]
        self._turns = _Turns(lanes)
        self._stopping = False
        # Submissions in the latest transaction: more than one means load, and the window pays.
        self._last_batch = 0
        # Transactions being produced and committed now, and a signal when one is done: the next
        # batch gathers while the current one commits (see `_gather`).
        self._committing = 0
        self._commit_done = threading.Condition()
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
        if self._after_commit is not None:
            self._settler = threading.Thread(
                target=self._settle_committed, args=(self._after_commit,), name="after-commit"
            )
            self._settler.daemon = True
            self._settler.start()

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
        if self._settler is not None:
            self._committed.put(None)  # after what the lanes committed
            self._settler.join(timeout)

    # -- committer threads ------------------------------------------------------------------

    def _run(self, lane: _Lane) -> None:
        self._connect(lane)
        while True:
            self._turns.wait(lane.index)
            try:
                batch = self._gather(lane)
                if batch is not None:
                    with self._commit_done:  # counted before the next lane's turn
                        self._committing += 1
            finally:
                self._turns.pass_on()
            if batch is None:
                break
            try:
                self._commit(lane, batch)
            finally:
                with self._commit_done:
                    self._committing -= 1
                    self._commit_done.notify_all()
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

    def _gather(self, lane: _Lane | None = None) -> list[_Pending] | None:
        kafka = self._settings.kafka
        limit = kafka.group_commit_max_messages
        # Under load, while another lane's transaction commits, gather until it is done and then
        # commit everything that came meanwhile in one transaction: two transactions in flight
        # would each carry half as many submissions, and Kafka's cost (the coordinator's round
        # trips, a marker on every partition written) is per transaction. The lane takes its
        # first submission and opens its transaction with it (`_open`: Kafka registers the
        # partitions meanwhile), then waits for that commit: woken by the committing lane, not
        # by the event loop, whose puts meanwhile find nobody asleep on the queue.
        waited = self._committing > 0 and limit > 1 and self._last_batch > 1
        if waited and lane is None:
            self._wait_for_commit()
        first = self._queue.get(None)
        if first is None:
            self._queue.put(None)  # the other lanes stop too
            return None
        if waited and lane is not None:
            self._open(lane, first)
            self._wait_for_commit()
        batch = [first]
        alone = not self._queue.pending()
        # Having waited, what came while the other transaction committed is this batch.
        if not waited:
            if self._committing and limit > 1 and not alone:
                # Load that came with this submission: the same, once it is here. A lone
                # submission does not wait: it commits at once in its lane.
                self._wait_for_commit()
            elif alone and (kafka.group_commit_wait_alone or self._last_batch > 1):
                # Alone under load: give concurrent requests the window to join. One sleep,
                # not a wake-up per arrival; with more load the queue already holds the next
                # batch and nobody waits. Without load (the latest transaction was alone too)
                # the window would only add its length to the answer: commit at once.
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

    def _wait_for_commit(self) -> None:
        with self._commit_done:
            self._commit_done.wait_for(
                lambda: not self._committing, self._settings.kafka.request_timeout_s
            )

    def _ensure_producer(self, lane: _Lane) -> Producer:
        if lane.producer is None:
            # Only a refused record's report matters (`mcp.grouped_txn`): no Python callback
            # for each record that was delivered. Every record of a lane is sent by a flush (the
            # commit's, or a suspect's in `mcp.grouped_txn`), which ignores `linger.ms`: the
            # records of a transaction opened early (`_open`) leave with the rest of its batch,
            # in one request per partition, rather than alone ahead of it.
            config = producer_config(
                self._settings,
                lane.transactional_id,
                **{"delivery.report.only.error": True, "linger.ms": LANE_LINGER_MS, **self._config},
            )
            producer = Producer(config)
            producer.init_transactions(self._settings.kafka.request_timeout_s)
            lane.producer = producer
        return lane.producer

    def _open(self, lane: _Lane, first: _Pending) -> None:
        """Begin the lane's next transaction with `first`'s records while the transaction in
        flight commits. Its first record makes librdkafka register the transaction's
        partitions with the coordinator (AddPartitionsToTxn) at once, a round trip that then
        overlaps the other commit instead of delaying this one. The records themselves wait
        for the commit's flush (`linger.ms`), which sends them with the rest of the batch."""
        timeout = self._settings.kafka.request_timeout_s
        opened = lane.opened = _Opened([], 1)
        if time.monotonic() - first.enqueued >= timeout:
            _settle([first], BrokerUnavailable("timed out waiting for Kafka"))
            return
        opened.live.append(first)
        try:
            producer = self._ensure_producer(lane)
            opened.txn = GroupedTransaction(producer, timeout)
            opened.txn.begin()
            opened.txn.add(Group(0, first.records))
        except Exception as exc:  # met again, and dealt with, by `_commit`
            opened.error = exc

    def _commit(self, lane: _Lane, batch: list[_Pending]) -> None:
        timeout = self._settings.kafka.request_timeout_s
        opened, lane.opened = lane.opened, None
        if opened is None:
            opened = _Opened([], 0)
        rest = batch[opened.taken :]
        # Requests that waited past their own deadline have been answered 503 already.
        now = time.monotonic()
        fresh = [p for p in rest if now - p.enqueued < timeout]
        if len(fresh) < len(rest):
            kept = {id(p) for p in fresh}
            _settle(
                [p for p in rest if id(p) not in kept],
                BrokerUnavailable("timed out waiting for Kafka"),
            )
        live = opened.live
        if not live and not fresh:
            return
        everyone = [*live, *fresh]
        began = time.perf_counter()
        try:
            if opened.error is not None:
                raise opened.error
            txn = opened.txn
            if txn is None:
                txn = GroupedTransaction(self._ensure_producer(lane), timeout)
                txn.begin()
            for pending in fresh:
                txn.add(Group(len(live), pending.records))
                live.append(pending)
            producer = txn.producer
            refused = txn.commit(lambda: producer.commit_transaction(timeout))
        except Exception as exc:
            self._recover(lane, exc)
            _settle(everyone, BrokerUnavailable(f"Kafka transaction failed: {exc}"))
            return
        COMMIT_SECONDS.observe(time.perf_counter() - began)
        for index, refusal in refused.items():
            assert isinstance(index, int)
            _settle([live[index]], refused_record(refusal.error, self.limits, refusal.topic))
        committed = [p for i, p in enumerate(live) if i not in refused]
        self.transactions += 1
        self.records += sum(len(p.records) for p in committed)
        notes = [p.note for p in committed if p.note is not None]
        if self._settler is not None and notes:
            self._committed.put((committed, notes))
        else:
            _settle(committed, None)

    def _settle_committed(self, hook: AfterCommit) -> None:
        """The hook once for every transaction committed meanwhile: a slow hook (Redis away,
        retrying) delays the answers of the transactions that waited for it, and no more."""
        stopping = False
        while not stopping:
            items = [self._committed.get(None)]
            while (item := self._committed.get(0)) is not _EMPTY:
                items.append(item)
            stopping = items[-1] is None
            done = [item for item in items if item is not None]
            if not done:
                continue
            began = time.perf_counter()
            try:
                hook([note for _, notes in done for note in notes])
            except Exception:
                log.exception("after-commit hook failed; the projector will catch up")
            AFTER_COMMIT_SECONDS.observe(time.perf_counter() - began)
            _settle([p for committed, _ in done for p in committed], None)

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


def _settle(batch: list[_Pending], error: BaseException | None) -> None:
    """Wake every waiter of a batch; one hop per event loop, not one per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for p in batch:
        by_loop.setdefault(p.loop, []).append(p.waiter)
    for loop, waiters in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, waiters, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass
