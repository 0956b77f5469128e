"""What became of one task in a worker, and the records that publish it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas import AsyncTask, TaskError, TaskEvent, TaskResult, TaskStatus, utcnow


@dataclass
class Outcome:
    task: AsyncTask
    status: TaskStatus
    attempt: int
    started_at: datetime | None = None
    finished_at: datetime = field(default_factory=utcnow)
    result: dict[str, Any] | None = None
    error: TaskError | None = None
    to_dlq: bool = False

    @classmethod
    def failure(cls, task: AsyncTask, attempt: int, code: str, message: str, **kw: Any) -> Outcome:
        return cls(
            task, TaskStatus.FAILED, attempt, error=TaskError(code=code, message=message), **kw
        )

    def result_record(self, worker_id: str) -> TaskResult:
        return TaskResult.of(
            self.task,
            self.status,
            self.attempt,
            started_at=self.started_at,
            finished_at=self.finished_at,
            result=self.result,
            error=self.error,
            worker_id=worker_id,
        )

    def event_record(self, worker_id: str) -> TaskEvent:
        return TaskEvent.of(
            self.task,
            self.status,
            at=self.finished_at,
            attempt=self.attempt,
            worker_id=worker_id,
            result=self.result,
            error=self.error,
        )
