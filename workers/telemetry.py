"""What a worker tells an operator: Prometheus series, a span per task and per batch, and the
per-model queue statistics behind `GET /v1/queues`.

The worker calls in at four points (a batch starts, an outcome is published, a transaction
commits, its outcomes reach Redis); backends never see any of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.registry import REGISTRY

from mcp import queue_stats
from mcp.names import Keys, Topics
from mcp.settings import Settings
from mcp.telemetry import tracing
from mcp.telemetry.lag import Key, LagCollector
from mcp.telemetry.logs import task_fields
from mcp.telemetry.metrics import BATCH_BUCKETS, COMMIT_BUCKETS, LATENCY_BUCKETS
from schemas import TaskStatus
from workers.backends.base import TaskContext
from workers.outcome import Outcome

log = logging.getLogger(__name__)

TASKS = Counter(
    "autoglm_worker_tasks_total",
    "Task outcomes committed by workers",
    ["model", "action", "outcome", "code"],
)
QUEUE_WAIT = Histogram(
    "autoglm_worker_queue_wait_seconds",
    "From a task's creation to the start of its attempt",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
RUN_TIME = Histogram(
    "autoglm_worker_run_seconds",
    "From an attempt's start to its outcome",
    ["model", "action"],
    buckets=LATENCY_BUCKETS,
)
END_TO_END = Histogram(
    "autoglm_worker_end_to_end_seconds",
    "From a task's creation to its outcome",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "autoglm_worker_batch_size",
    "Tasks per batch handed to the model",
    ["model"],
    buckets=BATCH_BUCKETS,
)
TOKENS = Counter(
    "autoglm_worker_tokens_generated_total", "Completion tokens of committed results", ["model"]
)
COMMIT_TIME = Histogram(
    "autoglm_worker_transaction_commit_seconds",
    "Time to commit a worker transaction (results, events and offsets)",
    ["model"],
    buckets=COMMIT_BUCKETS,
)
RESULT_WRITE_TIME = Histogram(
    "autoglm_worker_result_write_seconds",
    "Time to write committed outcomes to Redis (the worker's own write after each commit, "
    "ahead of the projector's)",
    ["model"],
    buckets=COMMIT_BUCKETS,
)
BUSY_SLOTS = Gauge("autoglm_worker_busy_slots", "Batches running now", ["model"])
SLOTS = Gauge("autoglm_worker_slots", "Batches a worker may run at once", ["model"])


class WorkerTelemetry:
    def __init__(self, settings: Settings, model: str, slots: int) -> None:
        self.model = model
        self.keys = Keys.of(settings)
        self._spans: dict[int, Any] = {}
        self._lock = threading.Lock()
        SLOTS.labels(model).set(slots)
        self.busy = BUSY_SLOTS.labels(model)
        self.commit_time = COMMIT_TIME.labels(model)
        self.result_write_time = RESULT_WRITE_TIME.labels(model)
        self.batch_size = BATCH_SIZE.labels(model)
        TOKENS.labels(model)  # exported at 0 before the first generation

    def watch_lag(self, settings: Settings, owned: Callable[[], list[Key]]) -> None:
        group = Topics.of(settings).group(f"worker.{self.model}")
        name = "autoglm_worker_consumer_lag"
        REGISTRY.register(LagCollector(name, settings, group, owned, {"model": self.model}))

    def batch_started(self, jobs: list[TaskContext], topics: list[str]) -> Any:
        """Observe a batch; with tracing, a span per task (child of its submission) and one for
        the batch linking them. Returns what `batch_ended` takes."""
        self.batch_size.observe(len(jobs))
        self.busy.inc()
        if not tracing.enabled():
            return None
        parents: list[str | None] = []
        for job, topic in zip(jobs, topics, strict=True):
            span = tracing.start(
                f"process {topic}",
                job.task.trace.traceparent,
                "CONSUMER",
                {
                    **tracing.kafka("process", topic),
                    "autoglm.task_id": job.task.task_id,
                    "autoglm.model": self.model,
                    "autoglm.attempt": job.attempt,
                },
            )
            with self._lock:
                self._spans[id(job)] = span
            parents.append(tracing.traceparent_of(span))
        return tracing.start(
            f"run {self.model}",
            kind="INTERNAL",
            attributes={"autoglm.model": self.model, "autoglm.batch_size": len(jobs)},
            links=parents,
        )

    def batch_ended(self, batch_span: Any, _future: object = None) -> None:
        self.busy.dec()
        if batch_span is not None:
            batch_span.end()

    def published(self, job: TaskContext, outcome: Outcome) -> str | None:
        """The `traceparent` the outcome's records carry: the task's process span when traced,
        else the submitter's own."""
        if outcome.error is not None:
            log.info(
                "task %s %s: %s",
                job.task.task_id,
                outcome.status.value,
                outcome.error.code,
                extra=task_fields(job.task),
            )
        with self._lock:
            span = self._spans.pop(id(job), None)
        if span is None:
            return job.task.trace.traceparent
        span.set_attribute("autoglm.outcome", outcome.status.value)
        if outcome.error is not None:
            tracing.error(span, outcome.error.code)
        span.end()
        return tracing.traceparent_of(span)

    def abandoned(self, job: TaskContext) -> None:
        """A task whose partition moved away: its span ends, its outcome is not published."""
        with self._lock:
            span = self._spans.pop(id(job), None)
        if span is not None:
            span.set_attribute("autoglm.abandoned", True)
            span.end()

    def committed(self, outcomes: list[Outcome], seconds: float) -> None:
        self.commit_time.observe(seconds)
        for outcome in outcomes:
            task = outcome.task
            code = outcome.error.code if outcome.error else ""
            TASKS.labels(self.model, task.action, outcome.status.value, code).inc()
            end = (outcome.finished_at - task.created_at).total_seconds()
            END_TO_END.labels(self.model).observe(max(0.0, end))
            if outcome.started_at is not None:
                wait = (outcome.started_at - task.created_at).total_seconds()
                QUEUE_WAIT.labels(self.model).observe(max(0.0, wait))
                ran = (outcome.finished_at - outcome.started_at).total_seconds()
                RUN_TIME.labels(self.model, task.action).observe(max(0.0, ran))
            if outcome.status is TaskStatus.SUCCEEDED and outcome.result:
                usage = outcome.result.get("usage")
                if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                    TOKENS.labels(self.model).inc(usage["completion_tokens"])

    def record_window(self, pipe: Any, outcomes: list[Outcome], now: float) -> None:
        """Queue this commit's completions and queue waits for `GET /v1/queues` on `pipe`."""
        waits = [
            (o.started_at - o.task.created_at).total_seconds() if o.started_at else None
            for o in outcomes
        ]
        queue_stats.record(pipe, self.keys, self.model, waits, now)
