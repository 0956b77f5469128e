"""Keeping one task's failure from failing its batch-mates."""

from __future__ import annotations

from collections.abc import Callable

from mcp.errors import AutoGLMError, BackendError, TaskCancelled, TaskTimeout
from workers.backends.base import ResultOrError, TaskContext

BatchRunner = Callable[[list[TaskContext]], list[ResultOrError]]


def as_task_error(exc: BaseException) -> BaseException:
    """Platform errors pass through; anything else becomes a `BackendError` that keeps its cause.

    Whether a retry can help is the error class's `permanent` (refused input never succeeds).
    """
    if isinstance(exc, AutoGLMError) or not isinstance(exc, Exception):
        return exc
    error = BackendError(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def run_isolated(runner: BatchRunner, batch: list[TaskContext]) -> list[ResultOrError]:
    """Run the batch at once; if that raises, run its tasks one by one so only the culprit fails."""
    try:
        results = runner(batch)
    except Exception as exc:
        if len(batch) == 1:
            return [as_task_error(exc)]
        results = [_run_alone(runner, ctx) for ctx in batch]
    if len(results) != len(batch):
        raise BackendError(f"backend returned {len(results)} results for {len(batch)} tasks")
    return [as_task_error(r) if isinstance(r, BaseException) else r for r in results]


def _run_alone(runner: BatchRunner, ctx: TaskContext) -> ResultOrError:
    try:
        return runner([ctx])[0]
    except Exception as exc:
        return as_task_error(exc)


def stopped_early(ctx: TaskContext) -> BaseException:
    """The error of a task that stopped because it was cancelled or ran out of time."""
    if ctx.cancel_event.is_set():
        return TaskCancelled("the task was cancelled while it ran")
    return TaskTimeout("the task ran past its deadline")
