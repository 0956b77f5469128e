"""Bodies of batch submission: `POST /v1/tasks:batch` (up to 1,000 tasks, one transaction)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.api import SubmitRequest, SubmitResponse, TaskLinks
from schemas.errors import ErrorDetail
from schemas.task import Frozen, JsonDict, utcnow

MAX_BATCH_TASKS = 1000


class BatchTask(SubmitRequest):
    """One task of a batch: a submit body plus its own optional idempotency key."""

    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)

    def submit_request(self) -> SubmitRequest:
        return SubmitRequest.model_validate(
            self.model_dump(exclude={"idempotency_key"}, exclude_unset=True)
        )


class BatchSubmitRequest(Frozen):
    tasks: list[JsonDict] = Field(
        min_length=1,
        max_length=MAX_BATCH_TASKS,
        description="Each item is a submit body (`SubmitRequest`) plus an optional "
        "`idempotency_key`; an item that does not fit is refused on its own, with its error.",
    )


class BatchItem(Frozen):
    """The answer for one task: 202 accepted, 200 an idempotent repeat, or a refusal."""

    index: int
    status: int
    task_id: str | None = None
    created_at: datetime | None = None
    links: TaskLinks | None = None
    error: ErrorDetail | None = None

    @classmethod
    def accepted(cls, index: int, status: int, answer: SubmitResponse) -> BatchItem:
        return cls(
            index=index,
            status=status,
            task_id=answer.task_id,
            created_at=answer.created_at,
            links=answer.links,
        )


class BatchSubmitResponse(Frozen):
    items: list[BatchItem]
    accepted: int
    refused: int


class BatchLine(Frozen):
    """One line of a JSONL batch upload (`POST /v1/batches`), in the style of OpenAI's Batch
    API: `{"custom_id": "...", "body": <a submit body>}` (`method` and `url` optional)."""

    custom_id: str = Field(min_length=1, max_length=256)
    method: Literal["POST"] = "POST"
    url: Literal["/v1/tasks"] = "/v1/tasks"
    body: JsonDict


class BatchEntry(Frozen):
    custom_id: str
    task_id: str | None = None
    error: ErrorDetail | None = None


class BatchManifest(Frozen):
    """A JSONL batch: which task each line became (or why it was refused). The value of its
    record in the compacted `batches` topic, committed in the same transaction as the tasks."""

    batch_id: str
    project: str
    created_at: datetime = Field(default_factory=utcnow)
    entries: tuple[BatchEntry, ...]


class BatchCounts(Frozen):
    total: int = 0
    refused: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    expired: int = 0


class BatchView(Frozen):
    """`GET /v1/batches/{id}`: `completed` once every accepted line's task has finished."""

    batch_id: str
    status: Literal["in_progress", "completed"]
    created_at: datetime
    counts: BatchCounts


class BatchResultLine(Frozen):
    """One line of `GET /v1/batches/{id}/results` (JSONL, in upload order)."""

    custom_id: str
    task_id: str | None
    status: str
    result: JsonDict | None = None
    error: ErrorDetail | None = None
