"""Runs claimed tasks through a backend: batching, deadlines, cancellation, retries.

The backend only sees a validated batch. Everything around it lives here, so that
inference code stays free of retries, clocks and Redis.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from mcp.errors import AutoGLMError
from mcp.settings import ModelSpec, WorkerSettings
from mcp.telemetry.logs import task_fields
from schemas import TaskStatus, utcnow
from workers.backends.base import Backend, ResultOrError, TaskContext
from workers.outcome import Outcome

log = logging.getLogger(__name__)

# How long past its deadline a batch may keep the backend before the thread is abandoned.
ABANDON_GRACE_S = 5.0
CANCEL_POLL_S = 0.2

CancelCheck = Callable[[list[str]], set[str]]
Reclaim = Callable[[TaskContext], int | None]
# Called from a slot thread with each member's final outcome.
Report = Callable[[TaskContext, Outcome], None]


class Runner:
    """Runs batches on `slots` threads; each member's outcome is reported as soon as it is final.

    A member that runs past its `timeout_s` fails alone, at once: its batch-mates go on.
    """

    def __init__(
        self,
        backend: Backend,
        spec: ModelSpec,
        settings: WorkerSettings,
        cancelled: CancelCheck,
        reclaim: Reclaim,
        slots: int = 1,
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.settings = settings
        self.cancelled = cancelled
        self.reclaim = reclaim
        self.slots = max(1, slots)
        self._pool = ThreadPoolExecutor(self.slots, thread_name_prefix="slot")
        # Backend calls run apart from their slot, which watches deadlines and cancel flags.
        self._calls = ThreadPoolExecutor(self.slots, thread_name_prefix="backend")

    def start(self, batch: list[TaskContext], report: Report) -> Future[None]:
        """Run a batch to an outcome per member on a free slot; retries stay on that slot."""
        return self._pool.submit(self._run_with_retries, batch, report)

    def batch_key(self, ctx: TaskContext) -> Hashable:
        return (ctx.task.action, self.backend.batch_key(ctx.task.action, ctx.payload))

    def _run_with_retries(self, batch: list[TaskContext], report: Report) -> None:
        pending = batch
        while pending:
            retry = self._run_once(pending, report)
            pending = self._next_attempts(retry, report)

    def _next_attempts(self, retry: list[TaskContext], report: Report) -> list[TaskContext]:
        if not retry:
            return []
        attempt = max(ctx.attempt for ctx in retry)
        backoff = min(
            self.settings.retry_backoff_s * (2 ** (attempt - 1)), self.settings.retry_backoff_max_s
        )
        time.sleep(backoff)
        again: list[TaskContext] = []
        for ctx in retry:
            next_attempt = None if ctx.cancel_event.is_set() else self.reclaim(ctx)
            if next_attempt is None:
                report(ctx, Outcome(ctx.task, TaskStatus.CANCELLED, ctx.attempt))
            else:
                ctx.attempt = next_attempt
                again.append(ctx)
        return again

    def _run_once(self, batch: list[TaskContext], report: Report) -> list[TaskContext]:
        """One attempt of a batch: reports final outcomes, returns the members due a retry."""
        started = utcnow()
        now = time.monotonic()
        for ctx in batch:
            ctx.deadline = now + ctx.task.timeout_s
        retry: list[TaskContext] = []
        pending = set(range(len(batch)))

        def settle(index: int, result: ResultOrError) -> None:
            if index not in pending:
                return  # already settled: timed out or cancelled before the backend answered
            pending.discard(index)
            outcome = self._judge(batch[index], result, started)
            if outcome is None:
                retry.append(batch[index])
            else:
                report(batch[index], outcome)

        call = _BackendCall(self._calls, self.backend, batch)
        while pending:
            event = call.next(CANCEL_POLL_S)
            if event is None:
                self._watch(batch, pending, settle)
            elif event.kind == "result":
                settle(event.index, event.result)
            elif event.kind == "failed":  # the whole batch failed: run its tasks one by one
                if len(batch) > 1:
                    log.warning(
                        "batch of %d failed (%s); running its tasks alone", len(batch), event.result
                    )
                for index in sorted(pending):
                    settle(index, event.result if len(batch) == 1 else self._alone(batch[index]))
            else:  # the backend returned without reporting some members
                for index in sorted(pending):
                    settle(index, event.result)
        if not call.wait_end(ABANDON_GRACE_S):
            log.error("backend ignored its deadline; abandoning its thread")
            stuck, self._calls = (
                self._calls,
                ThreadPoolExecutor(self.slots, thread_name_prefix="backend"),
            )
            stuck.shutdown(wait=False)
        return retry

    def _watch(
        self,
        batch: list[TaskContext],
        pending: set[int],
        settle: Callable[[int, ResultOrError], None],
    ) -> None:
        """Between results: pass cancel requests on, fail members past their deadline."""
        members = [batch[i] for i in sorted(pending)]
        flagged = self.cancelled([ctx.task.task_id for ctx in members])
        for ctx in members:
            if ctx.task.task_id in flagged:
                ctx.cancel_event.set()
        now = time.monotonic()
        for index in sorted(pending):
            if now > batch[index].deadline:
                settle(index, TimeoutError("the task ran past its deadline"))

    def _alone(self, ctx: TaskContext) -> ResultOrError:
        call = _BackendCall(self._calls, self.backend, [ctx])
        while True:
            event = call.next(CANCEL_POLL_S)
            if event is None:
                if time.monotonic() > ctx.deadline:
                    return TimeoutError("the task ran past its deadline")
                continue
            return event.result

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
            log.info(
                "task %s attempt %d failed: %s; retrying",
                task.task_id,
                attempt,
                result,
                extra=task_fields(task),
            )
            return None
        code = result.code if isinstance(result, AutoGLMError) else "backend_error"
        message = f"{type(result).__name__}: {result}"
        return Outcome.failure(task, attempt, code, message, started_at=started_at, to_dlq=True)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._calls.shutdown(wait=False, cancel_futures=True)


_UNREPORTED = RuntimeError("backend returned a wrong number of results")


@dataclass
class _Event:
    kind: Literal["result", "failed", "end"]
    index: int
    result: ResultOrError


class _BackendCall:
    """One `run_streaming` call on a pool thread, so that a stuck backend can be left behind;
    its reports arrive on a queue."""

    def __init__(
        self, pool: ThreadPoolExecutor, backend: Backend, batch: list[TaskContext]
    ) -> None:
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._ended = threading.Event()
        action = batch[0].task.action

        def run() -> None:
            try:
                backend.run_streaming(
                    action, batch, lambda i, r: self._events.put(_Event("result", i, r))
                )
            except Exception as exc:
                self._events.put(_Event("failed", -1, exc))
            else:
                self._events.put(_Event("end", -1, _UNREPORTED))
            finally:
                self._ended.set()

        pool.submit(run)

    def next(self, timeout: float) -> _Event | None:
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def wait_end(self, grace: float) -> bool:
        return self._ended.wait(grace)
