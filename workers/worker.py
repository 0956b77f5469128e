"""The inference worker: consume tasks, run them, publish each outcome exactly once.

One loop iteration takes a batch from the model's topic, claims its tasks in Redis (counting
attempts across crashes), runs them, and produces results, terminal events and DLQ copies into
the open transaction. The transaction commits with the consumed offsets every
`commit_every_n` tasks or `commit_every_ms`, whichever comes first (KIP-447 fencing through
the consumer group metadata). Only after a commit does Redis hear of the outcomes directly.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import replace
from typing import Any, cast

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from redis.exceptions import RedisError

from mcp.grouped_txn import Group, Refusal
from mcp.kafka import consumer_config
from mcp.names import Topics
from mcp.records import Record, refused_record
from mcp.settings import ModelSpec, Settings
from mcp.store import SyncTaskStore
from schemas import AsyncTask, DecodeError, TaskEvent, TaskStatus, dumps, loads, utcnow
from workers.backends.base import Backend, TaskContext
from workers.outcome import Outcome
from workers.runner import Runner
from workers.streams import TokenStreams
from workers.transaction import TransactionLost, WorkerTransaction

log = logging.getLogger(__name__)

# Burst mode stops after this long without a message, counted from the latest assignment.
BURST_IDLE_S = 2.0


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
        self.backend = backend
        self.burst = burst
        self.topics = Topics.of(settings)
        self.worker_id = f"{spec.name}.{slot}"
        self.store = SyncTaskStore(settings)
        self.streams = TokenStreams(settings, self.store.redis)
        self.txn = WorkerTransaction(
            settings, self.topics.transactional_id(f"worker.{spec.name}", slot), self._substitute
        )
        longest = max(settings.worker.session_timeout_ms, 3_600_000)
        self.consumer = Consumer(
            consumer_config(
                settings,
                self.topics.group(f"worker.{spec.name}"),
                **{
                    "fetch.wait.max.ms": settings.worker.fetch_wait_max_ms,
                    "session.timeout.ms": settings.worker.session_timeout_ms,
                    "max.poll.interval.ms": longest,
                },
            )
        )
        self.runner = Runner(backend, spec, settings.worker, self.store.cancelled, self._reclaim)
        self.stopping = threading.Event()
        # Offsets of work whose outcome sits in the open transaction, per partition.
        self._done: dict[tuple[str, int], int] = {}
        self._after_commit: list[Outcome] = []
        self._ids = itertools.count()
        self._pending = 0
        self._assigned: set[str] = set()
        self._assigned_at = 0.0
        self.processed = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        self.consumer.subscribe(
            [self.topics.tasks(self.spec.name)],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        idle_since = time.monotonic()
        try:
            while not self.stopping.is_set():
                messages = self._poll()
                if messages:
                    idle_since = time.monotonic()
                    try:
                        self._handle(messages)
                    except RedisError as exc:
                        self._wait_out_store_outage(exc)
                        continue
                    except TransactionLost:
                        self._rewind()
                        continue
                self._maybe_commit(force=not messages)
                if (
                    self.burst
                    and not messages
                    and self._assigned
                    and time.monotonic() - max(idle_since, self._assigned_at) > BURST_IDLE_S
                ):
                    log.info("burst: queue drained, exiting")
                    break
        finally:
            self._maybe_commit(force=True)
            self.consumer.close()  # leaves the group: partitions move at once
            self.txn.close()
            self.runner.close()

    def _poll(self) -> list[Message]:
        timeout = self.settings.worker.poll_timeout_s
        if self.txn.open:
            due = self.txn.began_at + self.settings.worker.commit_every_ms / 1000
            timeout = max(0.0, min(timeout, due - time.monotonic()))
        first = self.consumer.poll(timeout)
        if first is None:
            return []
        messages = [first]
        room = self.spec.max_batch_size - 1
        if room > 0:
            messages += self.consumer.consume(room, self.spec.max_wait_ms / 1000)
        return messages

    # -- one batch ---------------------------------------------------------------------------

    def _handle(self, messages: list[Message]) -> None:
        groups: list[Group] = []
        tasks: list[AsyncTask] = []
        for msg in messages:
            if msg.error():
                log.warning("consume error: %s", msg.error())
                continue
            try:
                tasks.append(loads(AsyncTask, msg.value() or b""))
            except DecodeError as exc:
                groups.append(Group(("raw", next(self._ids)), [self._dlq_raw(msg, exc)]))
        outcomes, contexts = self._claim(tasks)
        if contexts:
            self.txn.produce(
                [Group(("running", next(self._ids)), [self._running_record(c)]) for c in contexts]
            )
            # `task.started` webhooks should not wait for the result. A lost transaction here
            # abandons the batch: the rewound consumer reads it again.
            if any(ctx.task.wants("started") for ctx in contexts) and not self._commit():
                return
            self.streams.status(contexts, TaskStatus.RUNNING)
            outcomes += self.runner.run(contexts)
        # Outcomes are known by their place in the open transaction: a refused one is replaced.
        base = len(self._after_commit)
        self._after_commit += outcomes
        groups += [
            Group(("outcome", base + i), self._outcome_records(o)) for i, o in enumerate(outcomes)
        ]
        self.txn.produce(groups)
        for msg in messages:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if (
                not msg.error()
                and topic is not None
                and partition is not None
                and offset is not None
            ):
                key = (topic, partition)
                self._done[key] = max(self._done.get(key, 0), offset + 1)
        self._pending += len(messages)
        self.processed += len(outcomes)

    def _substitute(self, group: Group, refusal: Refusal) -> Group | None:
        """What is published in place of a group Kafka refused; None: nothing can be."""
        kind, n = cast(tuple[str, int], group.id)
        error = refused_record(refusal.error, topic=refusal.topic)
        log.warning("Kafka refused the %s records of a task: %s", kind, error.message)
        if kind == "outcome":  # the task fails instead, with a copy in the DLQ
            done = self._after_commit[n]
            failed = Outcome.failure(
                done.task,
                done.attempt,
                error.code,
                f"the task's {done.status.value} outcome could not be published: {error.message}",
                to_dlq=True,
                started_at=done.started_at,
            )
            self._after_commit[n] = failed
            return Group(("unpublishable", n), self._outcome_records(failed))
        if kind == "unpublishable":  # even the DLQ copy was refused: the failure alone
            return Group(("failure", n), [r for r in group.records if r.topic != self.topics.dlq])
        if kind == "raw":  # an undecodable message the DLQ will not take: its coordinates
            return Group(("raw-refused", n), [replace(r, value=b"") for r in group.records])
        if kind in ("running", "raw-refused"):  # informational; nothing depends on it
            return Group((f"{kind}-dropped", n), [])
        return None

    def _claim(self, tasks: list[AsyncTask]) -> tuple[list[Outcome], list[TaskContext]]:
        outcomes: list[Outcome] = []
        contexts: list[TaskContext] = []
        now = utcnow()
        live = []
        for task in tasks:
            if task.expires_at < now:
                outcomes.append(Outcome(task, TaskStatus.EXPIRED, task.attempt))
            else:
                live.append(task)
        for task, (verdict, attempt) in zip(
            live, self.store.claim(live, self.worker_id), strict=True
        ):
            if verdict == "cancelled":
                outcomes.append(Outcome(task, TaskStatus.CANCELLED, attempt))
            elif verdict == "terminal":
                log.info("task %s already finished; skipping", task.task_id)
            elif attempt > self.settings.worker.max_attempts:
                message = f"gave up after {attempt - 1} attempt(s) that never finished"
                outcomes.append(
                    Outcome.failure(task, attempt - 1, "too_many_attempts", message, to_dlq=True)
                )
            else:
                contexts.append(self._context(task, attempt))
        return outcomes, contexts

    def _context(self, task: AsyncTask, attempt: int) -> TaskContext:
        on_token = None
        if task.action == "generate" and task.payload.get("stream", True):
            on_token = self.streams.writer(task.task_id)
        return TaskContext(task=task, attempt=attempt, on_token=on_token)

    def _reclaim(self, ctx: TaskContext) -> int | None:
        verdict, attempt = self.store.claim([ctx.task], self.worker_id)[0]
        return attempt if verdict == "run" else None

    # -- records -----------------------------------------------------------------------------

    def _running_record(self, ctx: TaskContext) -> Record:
        event = TaskEvent.of(
            ctx.task, TaskStatus.RUNNING, attempt=ctx.attempt, worker_id=self.worker_id
        )
        return Record(self.topics.events, ctx.task.task_id.encode(), dumps(event))

    def _outcome_records(self, outcome: Outcome) -> list[Record]:
        key = outcome.task.task_id.encode()
        out = [
            Record(self.topics.results, key, dumps(outcome.result_record(self.worker_id))),
            Record(self.topics.events, key, dumps(outcome.event_record(self.worker_id))),
        ]
        if outcome.to_dlq:
            code = outcome.error.code if outcome.error else "failed"
            reason = outcome.error.message if outcome.error else ""
            headers = (("error", code.encode()), ("reason", reason.encode()))
            out.append(Record(self.topics.dlq, key, dumps(outcome.task), headers))
        return out

    def _dlq_raw(self, msg: Message, exc: DecodeError) -> Record:
        headers = (
            ("error", b"undecodable"),
            ("reason", str(exc).encode()),
            ("source", f"{msg.topic()}/{msg.partition()}/{msg.offset()}".encode()),
        )
        return Record(self.topics.dlq, msg.key(), msg.value() or b"", headers)

    # -- commits -----------------------------------------------------------------------------

    def _maybe_commit(self, force: bool = False) -> None:
        if not self.txn.open and not self._done:
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
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._done.items()]
        try:
            self.txn.commit(offsets, self.consumer)
        except TransactionLost:
            self._rewind()
            return False
        self._done.clear()
        self._pending = 0
        outcomes, self._after_commit = self._after_commit, []
        if outcomes:
            self._publish_to_redis(outcomes)
        return True

    def _publish_to_redis(self, outcomes: list[Outcome]) -> None:
        """Fast path for polls; the projector would get there too, a little later."""
        try:
            self.store.apply_results([o.result_record(self.worker_id) for o in outcomes])
            self.streams.finish(outcomes)
        except Exception:
            log.exception("direct Redis update failed; the projector will catch up")

    def _wait_out_store_outage(self, exc: RedisError) -> None:
        """Redis is needed to claim tasks: drop the open transaction, wait, read again."""
        log.warning("Redis unavailable (%s); rewinding and retrying in 1 s", exc)
        self.txn.abort()
        self._rewind()
        self.stopping.wait(1.0)

    def _rewind(self) -> None:
        """Forget the lost transaction's work and read again from the committed offsets."""
        log.warning("rewinding to committed offsets after a lost transaction")
        self._done.clear()
        self._after_commit = []
        self._pending = 0
        assignment = self.consumer.assignment()
        if not assignment:
            return
        while True:  # without the committed offsets, going on would skip the lost work
            try:
                committed = self.consumer.committed(assignment, timeout=10)
                break
            except KafkaException as exc:
                log.warning("cannot read committed offsets yet: %s", exc)
                time.sleep(1.0)
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else 0
            try:
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            except KafkaException as exc:
                log.warning("seek %s failed: %s", tp, exc)

    # -- rebalance ---------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned |= {f"{tp.topic}/{tp.partition}" for tp in partitions}
        self._assigned_at = time.monotonic()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Work in the open transaction is complete: commit it before the partitions move.
        if self.txn.open or self._done:
            self._commit()
        for tp in partitions:
            self._done.pop((tp.topic, tp.partition), None)
            self._assigned.discard(f"{tp.topic}/{tp.partition}")

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned -= {f"{tp.topic}/{tp.partition}" for tp in partitions}
        self.txn.abort()
        self._done.clear()
        self._after_commit = []
        self._pending = 0

    def info(self) -> dict[str, Any]:
        """Read by the heartbeat thread: no consumer calls here, they are not thread-safe."""
        return {
            "model": self.spec.name,
            "processed": self.processed,
            "commits": self.txn.commits,
            "partitions": sorted(self._assigned),
        }
