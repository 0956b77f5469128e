"""Bodies of the HTTP contract: submit request, submit answer, poll view, webhook."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, HttpUrl

from schemas.task import Frozen, JsonDict, Priority, TaskError, TaskStatus, WebhookEventFilter
from schemas.webhooks import WebhookAttempt, WebhookType

WebhookState = Literal["pending", "delivered", "retrying", "failed", "none"]


class SubmitRequest(Frozen):
    model: str = Field(min_length=1, max_length=128)
    action: str = Field(min_length=1, max_length=64)
    payload: JsonDict = Field(default_factory=dict)
    callback_url: HttpUrl | None = Field(
        default=None, json_schema_extra={"pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"}
    )
    webhook_events_filter: tuple[WebhookEventFilter, ...] = ("completed",)
    timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    ttl_s: float = Field(default=86_400.0, gt=0, le=7 * 86_400)
    metadata: JsonDict = Field(default_factory=dict)
    priority: Priority | None = Field(
        default=None,
        description="high runs before normal, normal before low; the project's default if unset",
    )


class TaskLinks(Frozen):
    self: str
    cancel: str
    stream: str

    @classmethod
    def for_task(cls, task_id: str) -> TaskLinks:
        base = f"/v1/tasks/{task_id}"
        return cls(self=base, cancel=f"{base}/cancel", stream=f"{base}/stream")


class SubmitResponse(Frozen):
    task_id: str
    status: TaskStatus
    created_at: datetime
    links: TaskLinks


class WebhookView(Frozen):
    status: WebhookState = "none"
    attempts: int = 0
    last_status_code: int | None = None
    next_attempt_at: datetime | None = None
    history: tuple[WebhookAttempt, ...] = ()
    """The attempts so far, oldest first (the latest 50)."""


class TaskView(Frozen):
    """The poll body of `GET /v1/tasks/{id}`; also the `data` of every webhook."""

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
    webhook: WebhookView = Field(default_factory=WebhookView)
    metadata: JsonDict = Field(default_factory=dict)

    @classmethod
    def of(cls, source: BaseModel, **fields: Any) -> TaskView:
        """The view of a task message (a result, a webhook target), with `fields` set on top."""
        return cls(**{**cls.shared_fields(source), **fields})


class TaskDetail(TaskView):
    """`GET /v1/tasks/{id}`; `payload` only with `?include=payload`."""

    payload: JsonDict | None = None


class InferredTask(TaskView):
    """`POST /v1/infer`'s finished task; `request_id` echoes an MCP envelope's."""

    request_id: str | None = None


class InferAccepted(SubmitResponse):
    """`POST /v1/infer`'s answer when the task did not finish within the wait."""

    request_id: str | None = None


class RotateRequest(Frozen):
    """`POST /v1/webhooks/secret/rotate` (the body is optional)."""

    overlap_s: float | None = Field(
        default=None,
        ge=0,
        le=30 * 86_400,
        description="How long the old secret keeps signing (default: webhooks.rotation_overlap_s)",
    )


class WebhookBody(Frozen):
    type: WebhookType
    timestamp: datetime
    data: Any
