"""Runs claimed tasks through a backend: batching, deadlines, cancellation, retries.

The backend only sees a validated batch. Everything around it lives here, so that
inference code stays free of retries, clocks and Redis.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime

from mcp.errors import AutoGLMError
from mcp.settings import ModelSpec, WorkerSettings
from schemas import TaskStatus, utcnow
from workers.backends.base import Backend, ResultOrError, TaskContext
from workers.outcome import Outcome

log = logging.getLogger(__name__)

# How long past its deadline a batch may keep the backend before the thread is abandoned.
ABANDON_GRACE_S = 5.0
CANCEL_POLL_S = 0.2

CancelCheck = Callable[[list[str]], set[str]]
Reclaim = Callable[[TaskContext], int | None]


class Runner:
    def __init__(
        self,
        backend: Backend,
        spec: ModelSpec,
        settings: WorkerSettings,
        cancelled: CancelCheck,
        reclaim: Reclaim,
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.settings = settings
        self.cancelled = cancelled
        self.reclaim = reclaim
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="backend")

    def run(self, contexts: list[TaskContext]) -> list[Outcome]:
        """Run every task to an outcome; retried tasks come back with their later attempt."""
        outcomes: list[Outcome] = []
        for batch in self.batches(contexts):
            outcomes += self._run_with_retries(batch)
        return outcomes

    def batches(self, contexts: list[TaskContext]) -> list[list[TaskContext]]:
        groups: dict[Hashable, list[TaskContext]] = defaultdict(list)
        for ctx in contexts:
            key = (ctx.task.action, self.backend.batch_key(ctx.task.action, ctx.payload))
            groups[key].append(ctx)
        size = max(1, self.spec.max_batch_size)
        return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]

    def _run_with_retries(self, batch: list[TaskContext]) -> list[Outcome]:
        done: list[Outcome] = []
        pending = batch
        while pending:
            retry: list[TaskContext] = []
            for ctx, outcome in zip(pending, self._run_once(pending), strict=True):
                if outcome is not None:
                    done.append(outcome)
                else:
                    retry.append(ctx)
            pending = self._next_attempts(retry, done)
        return done

    def _next_attempts(self, retry: list[TaskContext], done: list[Outcome]) -> list[TaskContext]:
        if not retry:
            return []
        attempt = max(ctx.attempt for ctx in retry)
        backoff = min(
            self.settings.retry_backoff_s * (2 ** (attempt - 1)), self.settings.retry_backoff_max_s
        )
        time.sleep(backoff)
        again: list[TaskContext] = []
        for ctx in retry:
            next_attempt = self.reclaim(ctx)
            if next_attempt is None:
                done.append(Outcome(ctx.task, TaskStatus.CANCELLED, ctx.attempt))
            else:
                ctx.attempt = next_attempt
                again.append(ctx)
        return again

    def _run_once(self, batch: list[TaskContext]) -> list[Outcome | None]:
        """One attempt of a batch: an outcome per task, or None where a retry is due."""
        started = utcnow()
        now = time.monotonic()
        for ctx in batch:
            ctx.deadline = now + ctx.task.timeout_s
        future = self._pool.submit(self.backend.run_batch, batch[0].task.action, batch)
        results = self._wait(future, batch)
        out: list[Outcome | None] = []
        for ctx, result in zip(batch, results, strict=True):
            out.append(self._judge(ctx, result, started))
        return out

    def _wait(
        self, future: Future[list[ResultOrError]], batch: list[TaskContext]
    ) -> list[ResultOrError]:
        task_ids = [ctx.task.task_id for ctx in batch]
        abandon_at = max(ctx.deadline for ctx in batch) + ABANDON_GRACE_S
        while True:
            try:
                results = future.result(timeout=CANCEL_POLL_S)
            except FutureTimeout:
                flagged = self.cancelled(task_ids)
                for ctx in batch:
                    if ctx.task.task_id in flagged:
                        ctx.cancel_event.set()
                if time.monotonic() > abandon_at:
                    log.error("backend ignored its deadline; abandoning its thread")
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="backend")
                    return [TimeoutError("the backend ignored the deadline")] * len(batch)
                continue
            except Exception as exc:  # the whole batch failed: run its tasks one by one
                if len(batch) == 1:
                    return [exc]
                log.warning("batch of %d failed (%s); running its tasks alone", len(batch), exc)
                return [self._alone(ctx) for ctx in batch]
            if not isinstance(results, list) or len(results) != len(batch):
                error = RuntimeError("backend returned a wrong number of results")
                return [error] * len(batch)
            return results

    def _alone(self, ctx: TaskContext) -> ResultOrError:
        try:
            future = self._pool.submit(self.backend.run_batch, ctx.task.action, [ctx])
            return self._wait(future, [ctx])[0]
        except Exception as exc:
            return exc

    def _judge(
        self, ctx: TaskContext, result: ResultOrError, started_at: datetime
    ) -> Outcome | None:
        task, attempt = ctx.task, ctx.attempt
        if ctx.cancel_event.is_set():
            return Outcome(task, TaskStatus.CANCELLED, attempt, started_at=started_at)
        if time.monotonic() > ctx.deadline:
            message = f"task ran past its timeout of {task.timeout_s:g} s"
            return Outcome.failure(task, attempt, "timeout", message, started_at=started_at)
        if not isinstance(result, BaseException):
            return Outcome(
                task, TaskStatus.SUCCEEDED, attempt, started_at=started_at, result=result
            )
        permanent = isinstance(result, AutoGLMError) and result.permanent
        if attempt < self.settings.max_attempts and not permanent:
            log.info("task %s attempt %d failed: %s; retrying", task.task_id, attempt, result)
            return None
        code = result.code if isinstance(result, AutoGLMError) else "backend_error"
        message = f"{type(result).__name__}: {result}"
        return Outcome.failure(task, attempt, code, message, started_at=started_at, to_dlq=True)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
