"""The durable facts of a webhook: the value of its records in `webhook-deliveries`.

Each record is the whole state of one delivery after one fact (scheduled, attempted, delivered,
given up, redelivery requested), keyed by its webhook id. The topic is compacted, so its latest
record per webhook is everything a replay needs: the body to send again, where the retry schedule
stands, and the history of attempts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from schemas.task import SCHEMA_VERSION, Frozen, TaskStatus, utcnow

WebhookType = Literal[
    "task.succeeded", "task.failed", "task.cancelled", "task.expired", "task.started", "task.output"
]
"""Every webhook event type, listed once."""
COMPLETION_TYPES: dict[TaskStatus, WebhookType] = {
    TaskStatus.SUCCEEDED: "task.succeeded",
    TaskStatus.FAILED: "task.failed",
    TaskStatus.CANCELLED: "task.cancelled",
    TaskStatus.EXPIRED: "task.expired",
}
"""The final webhook of each terminal status."""
WebhookFact = Literal["scheduled", "attempted", "delivered", "given_up", "redelivery_requested"]
DeliveryStatus = Literal["pending", "retrying", "delivered", "failed"]

MAX_HISTORY = 50
"""Attempts kept per delivery (the newest); `attempts` still counts them all."""


class WebhookAttempt(Frozen):
    """One POST of a webhook and what came of it."""

    attempt: int = Field(ge=1)
    at: datetime
    duration_ms: float = Field(ge=0)
    status_code: int | None = None
    error: str = ""
    next_attempt_at: datetime | None = None
    """When the next attempt is due; None once delivered or given up."""


class WebhookRecord(Frozen):
    """A delivery as it stands after `fact`; `version` counts the facts so far."""

    schema_version: int = SCHEMA_VERSION
    webhook_id: str = Field(min_length=1)
    task_id: str
    project: str
    type: WebhookType
    url: str
    body: str
    """The exact bytes every attempt sends (a JSON document, so text)."""
    fact: WebhookFact
    version: int = Field(ge=1)
    status: DeliveryStatus
    attempts: int = Field(default=0, ge=0)
    step: int = Field(default=0, ge=0)
    """Position in the retry schedule; a redelivery starts it again."""
    created_at: datetime
    at: datetime = Field(default_factory=utcnow)
    """When the fact happened."""
    next_attempt_at: datetime | None = None
    finished_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str = ""
    redeliveries: int = Field(default=0, ge=0)
    history: tuple[WebhookAttempt, ...] = ()

    @property
    def waiting(self) -> bool:
        """Still to be attempted (now or at `next_attempt_at`)."""
        return self.status in ("pending", "retrying")

    @classmethod
    def scheduled(
        cls,
        *,
        webhook_id: str,
        task_id: str,
        project: str,
        type: WebhookType,
        url: str,
        body: str,
        at: datetime,
    ) -> WebhookRecord:
        """A new delivery, due at `at`."""
        return cls(
            webhook_id=webhook_id,
            task_id=task_id,
            project=project,
            type=type,
            url=url,
            body=body,
            fact="scheduled",
            version=1,
            status="pending",
            created_at=at,
            at=at,
            next_attempt_at=at,
        )

    def after(self, attempt: WebhookAttempt, delivered: bool) -> WebhookRecord:
        """The state after `attempt`: delivered, due again at its `next_attempt_at`, or given
        up when it has none."""
        common: dict[str, Any] = {
            "version": self.version + 1,
            "attempts": self.attempts + 1,
            "at": attempt.at,
            "last_status_code": attempt.status_code,
            "last_error": attempt.error,
            "history": (*self.history, attempt)[-MAX_HISTORY:],
        }
        if delivered:
            change: dict[str, Any] = {"fact": "delivered", "status": "delivered", "last_error": ""}
            return self.model_copy(
                update={**common, **change, "next_attempt_at": None, "finished_at": attempt.at}
            )
        if attempt.next_attempt_at is None:
            change = {"fact": "given_up", "status": "failed", "finished_at": attempt.at}
            return self.model_copy(update={**common, **change, "next_attempt_at": None})
        change = {"fact": "attempted", "status": "retrying", "step": self.step + 1}
        return self.model_copy(
            update={**common, **change, "next_attempt_at": attempt.next_attempt_at}
        )

    def redelivered(self, at: datetime) -> WebhookRecord:
        """A redelivery request: a finished delivery starts its schedule again (same webhook
        id, same body); one still waiting is brought forward to `at`."""
        common: dict[str, Any] = {
            "version": self.version + 1,
            "fact": "redelivery_requested",
            "at": at,
        }
        if self.waiting:
            due = min(self.next_attempt_at or at, at)
            return self.model_copy(update={**common, "next_attempt_at": due})
        restart: dict[str, Any] = {
            "status": "pending",
            "step": 0,
            "next_attempt_at": at,
            "finished_at": None,
            "redeliveries": self.redeliveries + 1,
        }
        return self.model_copy(update={**common, **restart})
