"""The task as it travels through Kafka: submitted, tracked, finished."""

from __future__ import annotations

import functools
import os
import random
import uuid
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

if TYPE_CHECKING:
    from schemas.api import SubmitRequest

SCHEMA_VERSION = 1

JsonDict = dict[str, Any]


def utcnow() -> datetime:
    return datetime.now(UTC)


_ids = random.Random(uuid.uuid4().int)
os.register_at_fork(after_in_child=lambda: _ids.seed(uuid.uuid4().int))


def new_task_id() -> str:
    """128 random bits in hex; seeded once from the OS, so no syscall per id."""
    return f"{_ids.getrandbits(128):032x}"


class TaskStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def rank(self) -> int:
        """Order of the lifecycle: a transition never goes to a lower rank."""
        return 2 if self.terminal else (1 if self is TaskStatus.RUNNING else 0)


TERMINAL_STATUSES = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED}
)


WebhookEventFilter = Literal["completed", "started", "output"]
# Lanes of a model's queue: high runs before normal, normal before low.
Priority = Literal["high", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    @classmethod
    def shared_fields(cls, source: BaseModel) -> dict[str, Any]:
        """The values of `source`'s fields that this message has too (conversions use it, so a
        field added to both messages travels without another edit)."""
        return {name: getattr(source, name) for name in _shared_names(cls, type(source))}


@functools.cache
def _shared_names(target: type[BaseModel], source: type[BaseModel]) -> tuple[str, ...]:
    return tuple(target.model_fields.keys() & source.model_fields.keys())


class TraceContext(Frozen):
    """W3C trace context carried from the submitting request to every later hop."""

    traceparent: str | None = None
    tracestate: str | None = None


class TaskError(Frozen):
    code: str
    message: str
    details: Any = None


class Idempotency(Frozen):
    """The `Idempotency-Key` a task was submitted with: a replay restores the key from it."""

    key: str = Field(min_length=1, max_length=256)
    fingerprint: str = Field(min_length=1, max_length=128)
    """SHA-256 of the canonical submit body: the same key with another body is a conflict."""
    expires_at: datetime


class AsyncTask(Frozen):
    """A task accepted by the API; the value of a record in `tasks.<model>`."""

    schema_version: int = SCHEMA_VERSION
    task_id: str = Field(default_factory=new_task_id, min_length=1, max_length=128)
    model: str = Field(min_length=1, max_length=128)
    action: str = Field(min_length=1, max_length=64)
    payload: JsonDict = Field(default_factory=dict)
    callback_url: HttpUrl | None = None
    webhook_events_filter: tuple[WebhookEventFilter, ...] = ("completed",)
    created_at: datetime = Field(default_factory=utcnow)
    timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    ttl_s: float = Field(default=86_400.0, gt=0, le=7 * 86_400)
    attempt: int = Field(default=0, ge=0)
    project: str = Field(default="default", min_length=1, max_length=128)
    priority: Priority = "normal"
    metadata: JsonDict = Field(default_factory=dict)
    trace: TraceContext = Field(default_factory=TraceContext)
    idempotency: Idempotency | None = None
    # Set when the payload was too large for Kafka: the file holding it (as JSON), `payload` empty.
    payload_file: str | None = None

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @classmethod
    def of(
        cls, request: SubmitRequest, project: str, trace: TraceContext, **fields: Any
    ) -> AsyncTask:
        """The task a submission describes, for `project`; `fields` override (the claim check
        sets `task_id`, `payload` and `payload_file`; the submitter sets `idempotency` and the
        `priority`, the project's default when the submission names none)."""
        return cls(**{**cls.shared_fields(request), **fields}, project=project, trace=trace)

    @property
    def expires_at(self) -> datetime:
        """After this instant a task still queued is `expired` instead of run."""
        return self.created_at + timedelta(seconds=self.ttl_s)

    def wants(self, event: WebhookEventFilter) -> bool:
        return event in self.webhook_events_filter


class TaskEvent(Frozen):
    """One lifecycle transition; the value of a record in `task-events`."""

    schema_version: int = SCHEMA_VERSION
    task_id: str
    status: TaskStatus
    at: datetime = Field(default_factory=utcnow)
    attempt: int = 0
    model: str | None = None
    action: str | None = None
    project: str | None = None
    worker_id: str | None = None
    # The first event of a task carries the task itself so that a replay can rebuild everything.
    task: AsyncTask | None = None
    result: JsonDict | None = None
    error: TaskError | None = None
    cancel_requested: bool = False
    """A cancel request: the status stays `queued` (it never moves the lifecycle by itself)."""

    @classmethod
    def cancel_request(cls, task_id: str, model: str, action: str, project: str) -> TaskEvent:
        """The durable record of `POST /v1/tasks/{id}/cancel`; a replay re-applies it."""
        return cls(
            task_id=task_id,
            status=TaskStatus.QUEUED,
            model=model,
            action=action,
            project=project,
            cancel_requested=True,
        )

    @classmethod
    def of(cls, source: AsyncTask, status: TaskStatus, **fields: Any) -> TaskEvent:
        """An event of the task `source`, with the identifying fields every event repeats."""
        return cls(
            task_id=source.task_id,
            status=status,
            model=source.model,
            action=source.action,
            project=source.project,
            **fields,
        )


class TaskResult(Frozen):
    """The single outcome of a task; the value of its one record in `task-results`."""

    schema_version: int = SCHEMA_VERSION
    task_id: str
    status: TaskStatus
    model: str
    action: str
    project: str = "default"
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime = Field(default_factory=utcnow)
    result: JsonDict | None = None
    error: TaskError | None = None
    callback_url: HttpUrl | None = None
    webhook_events_filter: tuple[WebhookEventFilter, ...] = ("completed",)
    metadata: JsonDict = Field(default_factory=dict)
    worker_id: str | None = None

    @classmethod
    def of(cls, task: AsyncTask, status: TaskStatus, attempts: int, **fields: Any) -> TaskResult:
        """The outcome of `task`: what the task says of itself, plus `fields` (times, result)."""
        return cls(**cls.shared_fields(task), status=status, attempts=attempts, **fields)

    @field_validator("status")
    @classmethod
    def _terminal(cls, value: TaskStatus) -> TaskStatus:
        if not value.terminal:
            raise ValueError(f"a result needs a terminal status, not {value.value!r}")
        return value
