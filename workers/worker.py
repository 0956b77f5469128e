"""The inference worker: consume tasks, run them, publish each outcome exactly once.

The loop reads the model's lane topics (one per priority, `workers.intake`) into
per-partition lanes (`workers.lanes`) and a `FairQueue` that hands batches out by priority,
then by a weighted round robin across projects (`workers.fairness`); it claims them in Redis
(counting attempts across crashes, `workers.claims`) and runs them as batches on `concurrency`
slots, so a slow task holds up only its own slot. Each member's outcome goes into the open
transaction as soon as it is final, whatever the order; the transaction commits with each
lane's lowest unfinished offset and the finished records above it every `commit_every_n`
outcomes or `commit_every_ms`, whichever comes first (KIP-447 fencing through the consumer
group metadata). Only after a commit does Redis hear of the outcomes directly, from the
settler's thread (`workers.settler`), while the loop goes on.
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import threading
import time
from concurrent.futures import Future
from functools import partial
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition
from redis.exceptions import RedisError

from mcp.blobs import open_blob_store
from mcp.blobs.files import FileStore
from mcp.grouped_txn import Group, Refusal
from mcp.groups import choose_protocol, under
from mcp.kafka import consumer_config
from mcp.names import Keys, Topics
from mcp.records import content_type_for
from mcp.settings import ModelSpec, Settings
from mcp.store import SyncTaskStore
from mcp.transaction import ConsumerTransaction, TransactionLost
from schemas import TaskStatus
from workers.backends.base import Backend, TaskContext
from workers.claims import Claims, Job
from workers.fairness import FairQueue
from workers.inputs import ClaimCheckBackend, TaskFiles
from workers.intake import Intake
from workers.lanes import Key, Lane, Lanes
from workers.outcome import Outcome
from workers.records import outcome_records, running_record, substitute
from workers.runner import Runner
from workers.settler import Settler
from workers.slot import SlotOwner
from workers.streams import TokenStreams
from workers.telemetry import WorkerTelemetry

log = logging.getLogger(__name__)

# Burst mode stops after this long without a message, counted from the latest assignment.
BURST_IDLE_S = 2.0
# How often the loop looks for finished work while some is running (a slot thread cannot wake
# the consumer's poll): a quarter of a batch's usual run time, within these bounds.
BUSY_POLL_S = 0.005
BUSY_POLL_MIN_S = 0.001


def poll_timeout(wait_s: float, due_in_s: float | None) -> float:
    """The consumer's poll timeout: `wait_s`, cut to the open transaction's due time (`due_in_s`
    from now), in whole milliseconds up. librdkafka counts a timeout in whole milliseconds and
    confluent-kafka truncates, so a wait under one is a poll that returns at once: with a fast
    model (echo, 0.5 ms) the loop used to turn thousands of times a second while a task ran,
    0.15 of a core at 100 tasks/s, and held the interpreter its slot threads were waiting for."""
    if due_in_s is not None:
        wait_s = min(wait_s, due_in_s)
    if wait_s <= 0:
        return 0.0
    return math.ceil(wait_s * 1000 - 1e-9) / 1000


class InferenceWorker:
    def __init__(
        self,
        settings: Settings,
        spec: ModelSpec,
        backend: Backend,
        slot: str = "0",
        burst: bool = False,
    ) -> None:
        self.settings = settings
        self.spec = spec
        files = TaskFiles(FileStore(open_blob_store(settings)), settings)
        self.backend = backend = ClaimCheckBackend(backend, files)
        self.burst = burst
        self.topics = Topics.of(settings)
        self.worker_id = f"{spec.name}.{slot}"
        self.wire = content_type_for(settings.kafka.encoding)
        self.store = SyncTaskStore(settings)
        self.streams = TokenStreams(settings, self.store.redis)
        self.slot = SlotOwner(self.store.redis, Keys.of(settings), self.worker_id)
        self.txn = ConsumerTransaction(
            settings,
            self.topics.transactional_id(f"worker.{spec.name}", slot),
            self._substitute,
            self.slot.superseded,
            alternate=settings.worker.alternate_producers,
        )
        self.slot.claim()
        longest = max(settings.worker.session_timeout_ms, 3_600_000)
        timing = {
            "max.poll.interval.ms": longest,
            "session.timeout.ms": settings.worker.session_timeout_ms,  # classic groups' own
        }
        group = self.topics.group(f"worker.{spec.name}")
        self.group_protocol = choose_protocol(settings, group)
        self.consumer = Consumer(
            under(
                self.group_protocol,
                consumer_config(
                    settings,
                    group,
                    **{"fetch.wait.max.ms": settings.worker.fetch_wait_max_ms, **timing},
                ),
            )
        )
        self.slots = spec.concurrency or backend.concurrency
        self.telemetry = WorkerTelemetry(settings, spec.name, self.slots)
        self.claims = Claims(settings, self.store, self.streams, self.worker_id)
        self.runner = Runner(
            backend, spec, settings.worker, self.store.cancelled, self.claims.reclaim, self.slots
        )
        self.stopping = threading.Event()
        self.lanes = Lanes()
        # Read, not yet running: handed out by priority, then fairly across projects.
        self._backlog: FairQueue[Job] = FairQueue(lambda p: settings.quotas.of(p).weight)
        self.intake = Intake(
            self.consumer, settings, spec, self.topics, self.lanes, self._backlog, self.slots
        )
        self._in_flight: dict[tuple[Key, int], Job] = {}  # claimed and running
        self._running: set[Future[None]] = set()  # one per busy slot
        self._finished: queue.SimpleQueue[tuple[TaskContext, Outcome]] = queue.SimpleQueue()
        # Outcomes in the open transaction; their groups are known by their place here.
        self._after_commit: list[Outcome] = []
        self._settler = Settler(self._publish_to_redis, f"settler-{spec.name}")
        self._ids = itertools.count()
        self._pending = 0  # records finished since the last commit
        self._batch_s = BUSY_POLL_S  # a batch's usual run time (moving average)
        self._assigned: set[str] = set()
        self._assigned_at = 0.0
        self.processed = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        self.consumer.subscribe(
            self.topics.lanes(self.spec.name),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        idle_since = time.monotonic()
        try:
            while not self.stopping.is_set():
                self.slot.check(self.txn)
                try:
                    busy = self._step()
                except RedisError as exc:
                    self._wait_out_store_outage(exc)
                    continue
                except TransactionLost:
                    self._rewind()
                    continue
                if busy:
                    idle_since = time.monotonic()
                if (
                    self.burst
                    and not busy
                    and self._assigned
                    and time.monotonic() - max(idle_since, self._assigned_at) > BURST_IDLE_S
                ):
                    log.info("burst: queue drained, exiting")
                    break
            self._drain()
        finally:
            if not self.txn.fenced:
                self._maybe_commit(force=True)
            self.consumer.close()  # leaves the group: partitions move at once
            self._settler.close()
            self.streams.close()
            self.txn.close()
            self.runner.close()

    def _step(self) -> bool:
        """One turn of the loop; False when there was nothing to do at all."""
        self.intake.flow()
        messages = self.intake.poll(self._poll_timeout())
        self._read(messages)
        self._dispatch()
        published = self._collect()
        self._check_slots()
        idle = not self._running and not len(self._backlog)
        # A quiet turn commits what is open, except while work runs: its outcome joins the
        # open transaction (the `commit_every_ms` cadence still bounds how long the `running`
        # records wait). Committing them alone cost a transaction more per task, and the
        # outcome, ready meanwhile, waited for that commit before its own.
        quiet = not messages and not published and not self._running
        self._maybe_commit(
            force=quiet or (published and idle and self.settings.worker.commit_when_idle)
        )
        return bool(messages or published or self._running or len(self._backlog))

    def _drain(self) -> None:
        """Stopping: let running work finish and commit it; what was only read is read again
        by the next owner."""
        self._backlog.drop()
        while self._running:
            self.lanes.hold(self.consumer, set(self.lanes.by_key))
            self.consumer.poll(BUSY_POLL_S)  # serves rebalance callbacks, returns nothing
            try:
                self._collect()
                self._check_slots()
            except (RedisError, TransactionLost) as exc:
                log.warning("cannot drain (%s); leaving the rest to the next owner", exc)
                break
            self._maybe_commit()
        self._collect()

    # -- reading -----------------------------------------------------------------------------

    def _poll_timeout(self) -> float:
        if self._running:
            wait_s = min(BUSY_POLL_S, max(BUSY_POLL_MIN_S, self._batch_s / 4))
        else:
            wait_s = self.settings.worker.poll_timeout_s
        due_in_s = None
        if self.txn.open:
            due = self.txn.began_at + self.settings.worker.commit_every_ms / 1000
            due_in_s = due - time.monotonic()
        return poll_timeout(wait_s, due_in_s)

    def _read(self, messages: list[Message]) -> None:
        for lane, offset, raw in self.intake.read(messages):
            if raw is None:
                self._pending += 1  # skipped: its result is committed
                continue
            self.txn.produce([Group(("raw", next(self._ids)), [raw])])
            self._finish(lane, offset)

    # -- running -----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start batches from the backlog, oldest first, while slots are free."""
        while len(self._backlog) and len(self._running) < self.slots:
            # The job that should run next (priority, then a weighted round robin across
            # projects: `workers/fairness.py`) and the jobs that may share its batch.
            batch = self._backlog.take(self.spec.max_batch_size, self.runner.batch_key)
            jobs = self._claim(batch)
            if not jobs:
                continue
            self.txn.produce(
                [
                    Group(
                        ("running", next(self._ids)),
                        [running_record(self.topics, j, self.worker_id, self.wire)],
                    )
                    for j in jobs
                ]
            )
            # `task.started` webhooks should not wait for the result. A lost transaction here
            # abandons the work in flight: the rewound consumer reads it again.
            if any(job.task.wants("started") for job in jobs) and not self._commit():
                return
            self.streams.status(list(jobs), TaskStatus.RUNNING)
            for job in jobs:
                self._in_flight[(job.key, job.offset)] = job
            batch_span = self.telemetry.batch_started(list(jobs), [j.key[0] for j in jobs])
            future = self.runner.start(list(jobs), self._report)
            future.add_done_callback(partial(self.telemetry.batch_ended, batch_span))
            future.add_done_callback(partial(self._ran, time.monotonic()))
            self._running.add(future)

    def _ran(self, started: float, _future: object) -> None:
        """From a slot thread: a batch is done; its run time moves the average."""
        self._batch_s += (time.monotonic() - started - self._batch_s) / 8

    def _report(self, ctx: TaskContext, outcome: Outcome) -> None:
        """From a slot thread: an outcome is final."""
        self._finished.put((ctx, outcome))

    def _check_slots(self) -> None:
        for future in [f for f in self._running if f.done()]:
            self._running.discard(future)
            error = future.exception()
            if error is not None:
                raise error

    def _collect(self) -> bool:
        """Put every final outcome into the open transaction; True when there was one."""
        published = False
        while True:
            try:
                ctx, outcome = self._finished.get_nowait()
            except queue.Empty:
                return published
            assert isinstance(ctx, Job)
            self._in_flight.pop((ctx.key, ctx.offset), None)
            if ctx.lane is None or self.lanes.get(ctx.key) is not ctx.lane:
                self.telemetry.abandoned(ctx)
                continue  # its partition moved or the transaction was lost: it runs again
            self._publish(outcome, ctx)
            published = True

    def _publish(self, outcome: Outcome, job: Job) -> None:
        assert job.lane is not None
        n = len(self._after_commit)
        self._after_commit.append(outcome)
        traceparent = self.telemetry.published(job, outcome)
        records = outcome_records(
            self.topics, outcome, self.worker_id, self.wire, traceparent=traceparent
        )
        self.txn.produce([Group(("outcome", n), records)])
        self.processed += 1
        self._finish(job.lane, job.offset)

    def _finish(self, lane: Lane, offset: int) -> None:
        lane.finish(offset)
        self._pending += 1

    def _substitute(self, group: Group, refusal: Refusal) -> Group | None:
        return substitute(self.topics, self.worker_id, self._after_commit, group, refusal)

    def _claim(self, batch: list[Job]) -> list[Job]:
        """Start an attempt of each job (`workers/claims.py`); those that must not run are
        settled here."""
        jobs, settled = self.claims.claim(batch)
        for job, outcome in settled:
            assert job.lane is not None
            if outcome is None:
                self._finish(job.lane, job.offset)
            else:
                self._publish(outcome, job)
        return jobs

    # -- commits -----------------------------------------------------------------------------

    def _maybe_commit(self, force: bool = False) -> None:
        if not self.txn.open and not self.lanes.changed:
            return
        age_ms = (time.monotonic() - self.txn.began_at) * 1000 if self.txn.open else 0.0
        if (
            force
            or self._pending >= self.settings.worker.commit_every_n
            or age_ms >= self.settings.worker.commit_every_ms
        ):
            self._commit()

    def _commit(self) -> bool:
        """Commit the open transaction; False when it was lost and the consumer rewound."""
        began = time.perf_counter()
        try:
            self.txn.commit(self.lanes.offsets(), self.consumer)
        except TransactionLost:
            self._rewind()
            return False
        self.lanes.committed()
        self._pending = 0
        outcomes, self._after_commit = self._after_commit, []
        self.telemetry.committed(outcomes, time.perf_counter() - began)
        if outcomes:
            self._settler.put(outcomes)
        return True

    def _publish_to_redis(self, outcomes: list[Outcome]) -> None:
        """In the settler's thread: the fast path for polls; the projector would get there
        too, a little later."""
        try:
            now = time.time()
            began = time.perf_counter()
            self.store.apply_results(
                [o.result_record(self.worker_id) for o in outcomes],
                lambda pipe: self.telemetry.record_window(pipe, outcomes, now),
            )
            self.streams.finish(outcomes)
            self.telemetry.result_write_time.observe(time.perf_counter() - began)
        except Exception:
            log.exception("direct Redis update failed; the projector will catch up")

    def _wait_out_store_outage(self, exc: RedisError) -> None:
        """Redis is needed to claim tasks: drop the open transaction, wait, read again."""
        log.warning("Redis unavailable (%s); rewinding and retrying in 1 s", exc)
        self.txn.abort()
        self._rewind()
        self.stopping.wait(1.0)

    def _abandon(self, keys: set[Key] | None = None) -> None:
        """Forget the work of these partitions (all when None): running jobs are told to stop
        and their outcomes will be dropped; the next owner of the records runs them again."""
        for (key, _), job in list(self._in_flight.items()):
            if keys is None or key in keys:
                job.cancel_event.set()
        self._backlog.drop(keys)
        if keys is None:
            self._after_commit = []
            self._pending = 0

    def _rewind(self, exclude: set[Key] | None = None) -> None:
        """Forget the lost transaction's work and read again from the committed offsets."""
        log.warning("rewinding to committed offsets after a lost transaction")
        self._abandon()
        self.lanes.rewind(self.consumer, exclude or set())

    # -- rebalance ---------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.lanes.assign(self.consumer, partitions)
        self._assigned |= {f"{tp.topic}/{tp.partition}" for tp in partitions}
        self._assigned_at = time.monotonic()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Finished work is in the open transaction: commit it before the partitions move.
        # Work still running on them is abandoned; their next owner runs it again.
        self._collect()
        if self.txn.open or self.lanes.changed:
            self._commit()
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self._abandon(keys)
        self.lanes.drop(keys)
        self._assigned -= {f"{t}/{p}" for t, p in keys}

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self._assigned -= {f"{t}/{p}" for t, p in keys}
        self.lanes.drop(keys)
        self.txn.abort()
        self._rewind(exclude=keys)

    def owned_partitions(self) -> list[Key]:
        """For the metrics thread: a copy, retried if a rebalance changed the set meanwhile."""
        while True:
            try:
                return [(t, int(p)) for t, _, p in (k.rpartition("/") for k in self._assigned)]
            except RuntimeError:
                continue

    def info(self) -> dict[str, Any]:
        """Read by the heartbeat thread: no consumer calls here, they are not thread-safe."""
        return {
            "model": self.spec.name,
            "processed": self.processed,
            "commits": self.txn.commits,
            "partitions": sorted(self._assigned),
            "slots": self.slots,
            "in_flight": len(self._in_flight),
        }
