"""The seam between the worker and a model: a backend sees a validated batch, returns results."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from mcp.settings import ModelSpec
from schemas import AsyncTask

Result = dict[str, Any]
ResultOrError = Result | BaseException
"""What a backend returns per task: its result, or the exception that failed that task alone."""

# Called by a backend as each member of its batch is done: (index in the batch, its result).
Report = Callable[[int, ResultOrError], None]


@dataclass
class TaskContext:
    """What a backend may know about one task of its batch."""

    task: AsyncTask
    attempt: int = 1
    deadline: float = float("inf")  # time.monotonic() instant
    cancel_event: threading.Event = field(default_factory=threading.Event)
    on_token: Callable[[str], None] | None = None
    # The payload with the files it refers to fetched (see workers.inputs), once resolved.
    resolved: dict[str, Any] | None = None

    @property
    def payload(self) -> dict[str, Any]:
        return self.task.payload if self.resolved is None else self.resolved

    def cancelled(self) -> bool:
        """True once the task was cancelled or ran past its deadline; long loops should check."""
        return self.cancel_event.is_set() or time.monotonic() > self.deadline


class Backend(ABC):
    """A model behind the worker. Retries, deadlines and metrics are the worker's business."""

    # Batches one worker runs at once unless the model's `concurrency` says otherwise.
    concurrency = 1

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def load(self) -> None:  # noqa: B027 - loading is optional
        """Load weights; called once in the worker process before the first batch."""

    def batch_key(self, action: str, payload: dict[str, Any]) -> Hashable:
        """Tasks whose keys are equal may run in one batch (same action, same sampling)."""
        return action

    @abstractmethod
    def run_batch(self, action: str, batch: list[TaskContext]) -> list[ResultOrError]:
        """One result (or the exception that failed that task alone) per task, in order."""

    def run_streaming(self, action: str, batch: list[TaskContext], report: Report) -> None:
        """Run a batch, reporting each member's result as soon as it is known.

        By default every member is reported when the whole batch is done. Backends whose
        members finish at different times (one request per member to an upstream server,
        sequential work) override this, so a quick member never waits for a slow batch-mate.
        """
        results = self.run_batch(action, batch)
        if not isinstance(results, list) or len(results) != len(batch):
            error = RuntimeError("backend returned a wrong number of results")
            results = [error] * len(batch)
        for index, result in enumerate(results):
            report(index, result)
