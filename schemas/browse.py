"""Bodies of the read-side endpoints: task lists, timelines, queues, dead letters."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from schemas.task import Frozen, JsonDict, TaskError, TaskStatus


class TaskSummary(Frozen):
    """A task in a list: its poll body without result and webhook."""

    task_id: str
    model: str
    action: str
    status: TaskStatus
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: TaskError | None = None
    metadata: JsonDict = Field(default_factory=dict)


class TaskPage(Frozen):
    """One page of `GET /v1/tasks`, newest first. `next_cursor` is null at the end; a page may
    hold fewer than `limit` tasks and still have a next cursor (the walk is bounded per call)."""

    tasks: list[TaskSummary]
    next_cursor: str | None = None


class TimelineEvent(Frozen):
    """One lifecycle event: `queued`, `running` (per attempt), the terminal one; a cancel
    request is a `queued` event with `cancel_requested`."""

    status: TaskStatus
    at: datetime
    attempt: int = 0
    worker_id: str | None = None
    error: TaskError | None = None
    cancel_requested: bool = False


class TaskTimeline(Frozen):
    task_id: str
    events: list[TimelineEvent]


class WebhookAttemptView(Frozen):
    """One POST of a webhook and what came of it."""

    attempt: int
    at: datetime
    duration_ms: float = 0.0
    status_code: int | None = None
    error: str = ""
    next_attempt_at: datetime | None = None


class DeliveryView(Frozen):
    """One webhook of a task (`task.started`, each `task.output`, the final one)."""

    webhook_id: str
    task_id: str
    type: str
    url: str
    status: str
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str = ""
    created_at: datetime | None = None
    next_attempt_at: datetime | None = None
    finished_at: datetime | None = None
    history: list[WebhookAttemptView] = Field(default_factory=list)


class TaskDeliveries(Frozen):
    task_id: str
    deliveries: list[DeliveryView]


class DeadWebhookPage(Frozen):
    """Webhooks given up on, most recent first."""

    webhooks: list[DeliveryView]
    next_cursor: str | None = None


class RedeliverRequest(Frozen):
    """Which dead webhooks to send again; none named means every dead one of the project."""

    webhook_ids: list[str] | None = Field(default=None, max_length=1000)


class RedeliverAnswer(Frozen):
    redelivered: list[str]
    not_found: list[str] = Field(default_factory=list)


class WorkerCounts(Frozen):
    alive: int = 0
    suspect: int = 0
    failed: int = 0


class QueueView(Frozen):
    """A model's queue: the caller's project's backlog, oldest queued task and running tasks;
    the Kafka lag, completions and queue waits of every project."""

    model: str
    backlog: int
    oldest_queued_age_s: float | None = None
    running: int
    workers: WorkerCounts
    lag: int | None = Field(
        default=None,
        description="Records of the model's lanes past the worker group's committed offsets "
        "(all projects; running tasks and transaction markers included); null when Kafka did "
        "not answer",
    )
    completed_last_minute: int = 0
    queue_wait_p50_s: float | None = Field(
        default=None, description="Median queue wait of the last minute's completions"
    )
    queue_wait_p95_s: float | None = None


class Rates(Frozen):
    """Per second over the last `window_s` seconds."""

    window_s: int
    submitted: float
    succeeded: float
    failed: float


class QueuesView(Frozen):
    queues: list[QueueView]
    rates: Rates
    workers: WorkerCounts


class DeadLetter(Frozen):
    """A task in the dead-letter topic, and the task that requeued it, if any."""

    task_id: str
    model: str
    action: str
    error: str
    dead_at: datetime
    requeued_as: str | None = None


class DeadLetterPage(Frozen):
    dead_letters: list[DeadLetter]
    next_cursor: str | None = None
