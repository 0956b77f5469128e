"""Typed answers of the autoglm-mcp HTTP API.

Models accept fields they do not know (the contract may add fields, never rename them), so an
older client keeps working against a newer server.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JsonDict = dict[str, Any]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", protected_namespaces=())


class TaskStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self not in (TaskStatus.QUEUED, TaskStatus.RUNNING)


class TaskError(Model):
    code: str
    message: str
    details: Any = None


class TaskLinks(Model):
    self: str
    cancel: str
    stream: str


class Accepted(Model):
    """The answer to a submission: the task exists and is durable."""

    task_id: str
    status: TaskStatus
    created_at: datetime
    links: TaskLinks | None = None


class WebhookAttempt(Model):
    """One POST of a webhook and what came of it."""

    attempt: int
    at: datetime
    duration_ms: float = 0.0
    status_code: int | None = None
    error: str = ""
    next_attempt_at: datetime | None = None


class WebhookState(Model):
    status: Literal["pending", "delivered", "retrying", "failed", "none"] | str = "none"
    attempts: int = 0
    last_status_code: int | None = None
    next_attempt_at: datetime | None = None
    history: tuple[WebhookAttempt, ...] = ()
    """The attempts so far, oldest first (the latest 50)."""


class Task(Model):
    """A task as `GET /v1/tasks/{id}` shows it; also the `data` of every webhook."""

    task_id: str
    model: str
    action: str
    status: TaskStatus
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: JsonDict | None = None
    error: TaskError | None = None
    webhook: WebhookState = Field(default_factory=WebhookState)
    metadata: JsonDict = Field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status.terminal

    @property
    def text(self) -> str | None:
        """The generated text of a finished `generate` task."""
        value = (self.result or {}).get("text")
        return value if isinstance(value, str) else None


class StreamEvent(Model):
    """One Server-Sent Event of `GET /v1/tasks/{id}/stream`: `token`, `status` or `end`."""

    id: str
    event: str
    data: JsonDict

    @property
    def delta(self) -> str:
        value = self.data.get("delta", "")
        return value if isinstance(value, str) else ""


class TaskEventRecord(Model):
    """One entry of a task's lifecycle timeline."""

    status: TaskStatus
    at: datetime | None = None
    attempt: int = 0
    worker_id: str | None = None


class BatchItem(Model):
    """The answer for one task of `POST /v1/tasks:batch`: accepted (`task_id`) or refused."""

    index: int
    status: int
    task_id: str | None = None
    created_at: datetime | None = None
    error: TaskError | None = None

    @property
    def accepted(self) -> bool:
        return self.error is None and self.task_id is not None


class BatchSubmitted(Model):
    items: list[BatchItem]
    accepted: int
    refused: int


class BatchCounts(Model):
    total: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    expired: int = 0
    refused: int = 0


class Batch(Model):
    """A JSONL batch job (`POST /v1/batches`)."""

    batch_id: str
    status: str
    created_at: datetime
    counts: BatchCounts = Field(default_factory=BatchCounts)
    completed_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")


class BatchResultLine(Model):
    """One line of a batch's results download."""

    custom_id: str
    task_id: str | None = None
    status: str
    result: JsonDict | None = None
    error: TaskError | None = None


class WebhookSecret(Model):
    secret: str
    created_at: datetime | None = None
    expires_at: datetime | None = None


class WebhookSecrets(Model):
    """The project's signing secrets: `current` signs; the others keep signing until they expire."""

    current: str
    secrets: list[WebhookSecret] = Field(default_factory=list)


class Worker(Model):
    worker_id: str | None = None
    model: str | None = None
    state: str | None = None
    age_s: float | None = None


class FileObject(Model):
    file_id: str
    bytes: int | None = None
    content_type: str | None = None
    created_at: datetime | None = None


class WebhookEvent(Model):
    """A verified webhook: its stable `id` (the `webhook-id` header), type, time and task."""

    id: str
    type: str
    timestamp: datetime
    data: Task
