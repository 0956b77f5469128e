"""What a webhook says: its type, its stable id and its body (the poll view of the task)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mcp.webhooks.deliveries import NewDelivery
from mcp.webhooks.targets import WebhookTarget
from schemas import TaskResult, TaskView, WebhookBody, WebhookView, dumps
from schemas.task import TaskStatus
from schemas.webhooks import COMPLETION_TYPES, WebhookType


def webhook_id(task_id: str, kind: str, seq: int | None = None) -> str:
    """Stable per task and event type, so a receiver can de-duplicate retries."""
    name = kind.removeprefix("task.")
    return f"msg_{task_id}_{name}" if seq is None else f"msg_{task_id}_{name}_{seq}"


def _body(kind: WebhookType, at: datetime, view: TaskView) -> bytes:
    return dumps(WebhookBody(type=kind, timestamp=at, data=view.model_dump(mode="json")))


def completion(result: TaskResult) -> NewDelivery | None:
    """The `task.<terminal status>` webhook of a result, when the task asked for one."""
    if result.callback_url is None or "completed" not in result.webhook_events_filter:
        return None
    kind = COMPLETION_TYPES[result.status]
    view = TaskView.of(result, webhook=WebhookView(status="pending"))
    return NewDelivery(
        webhook_id=webhook_id(result.task_id, kind),
        task_id=result.task_id,
        project=result.project,
        type=kind,
        url=str(result.callback_url),
        body=_body(kind, result.finished_at, view),
    )


def _running_view(target: WebhookTarget, attempt: int, started_at: datetime) -> TaskView:
    return TaskView.of(target, status=TaskStatus.RUNNING, attempts=attempt, started_at=started_at)


def started(target: WebhookTarget, attempt: int, at: datetime) -> NewDelivery:
    """`task.started`: the worker began an attempt (one webhook per attempt)."""
    view = _running_view(target, attempt, at)
    return NewDelivery(
        webhook_id=webhook_id(target.task_id, "task.started", attempt if attempt > 1 else None),
        task_id=target.task_id,
        project=target.project,
        type="task.started",
        url=target.url,
        body=_body("task.started", at, view),
    )


def started_of(result: TaskResult) -> NewDelivery | None:
    """`task.started` of the attempt a result ends, when the task asked for it.

    Its event usually comes first and schedules it (same webhook id, so this adds nothing);
    a result read before that event still puts `task.started` ahead of the final webhook.
    """
    if result.started_at is None or "started" not in result.webhook_events_filter:
        return None
    target = WebhookTarget.of(result)
    if target is None:
        return None
    return started(target, max(1, result.attempts), result.started_at)


def output(
    target: WebhookTarget,
    seq: int,
    at: datetime,
    started_at: datetime,
    attempt: int,
    chunk: dict[str, Any],
) -> NewDelivery:
    """`task.output` number `seq`: the output produced since the previous one, in `result`."""
    view = _running_view(target, attempt, started_at).model_copy(update={"result": chunk})
    return NewDelivery(
        webhook_id=webhook_id(target.task_id, "task.output", seq),
        task_id=target.task_id,
        project=target.project,
        type="task.output",
        url=target.url,
        body=_body("task.output", at, view),
    )
