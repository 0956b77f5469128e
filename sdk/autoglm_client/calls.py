"""Every API call as data: method, path, body and how to read the answer.

The sync and the async client send the same `Call`s; only the I/O differs between them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypedDict, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field

from autoglm_client.errors import APIError, TaskNotFound
from autoglm_client.models import (
    Accepted,
    Batch,
    BatchResultLine,
    BatchSubmitted,
    FileObject,
    JsonDict,
    StreamEvent,
    Task,
    TaskEventRecord,
    TaskStatus,
    WebhookSecrets,
    Worker,
)
from autoglm_client.sse import ServerSentEvent

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Priority = Literal["high", "normal", "low"]
EventFilter = Literal["completed", "started", "output"]


class TaskRequest(BaseModel):
    """One task to submit; `idempotency_key` defaults to a fresh one per task."""

    model_config = ConfigDict(frozen=True, extra="allow", protected_namespaces=())

    model: str
    action: str = "generate"
    payload: JsonDict = Field(default_factory=dict)
    callback_url: str | None = None
    webhook_events_filter: tuple[EventFilter, ...] | None = None
    timeout_s: float | None = None
    ttl_s: float | None = None
    metadata: JsonDict | None = None
    priority: Priority | None = None
    idempotency_key: str | None = None

    def body(self) -> JsonDict:
        return self.model_dump(mode="json", exclude_none=True, exclude={"idempotency_key"})


class TaskOptions(TypedDict, total=False):
    """Everything a submission may carry besides model, action and payload."""

    callback_url: str
    webhook_events_filter: tuple[EventFilter, ...]
    timeout_s: float
    ttl_s: float
    metadata: JsonDict
    priority: Priority
    idempotency_key: str


@dataclass(frozen=True)
class Page:
    tasks: list[Task]
    next_cursor: str | None


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    content: bytes | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    params: Mapping[str, str | int] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Safe to send again after a connection broke mid-request (GETs, keyed submissions).
    idempotent: bool = True
    timeout: httpx.Timeout | None = None


def new_key() -> str:
    return uuid.uuid4().hex


def task_path(task_id: str, suffix: str = "") -> str:
    return f"/v1/tasks/{quote(task_id, safe='')}{suffix}"


def parsed(cls: type[M], key: str | None = None) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        body = response.json()
        return cls.model_validate(body[key] if key else body)

    return parse


def parsed_list(cls: type[M], key: str) -> Callable[[httpx.Response], list[M]]:
    def parse(response: httpx.Response) -> list[M]:
        return [cls.model_validate(item) for item in response.json()[key]]

    return parse


def raw_list(key: str) -> Callable[[httpx.Response], list[JsonDict]]:
    def parse(response: httpx.Response) -> list[JsonDict]:
        body = response.json()
        items = body.get(key, []) if isinstance(body, dict) else body
        return [dict(item) for item in items]

    return parse


def submit(request: TaskRequest) -> Call[Accepted]:
    key = request.idempotency_key or new_key()
    return Call(
        "POST", "/v1/tasks", parsed(Accepted), json=request.body(), headers={"idempotency-key": key}
    )


def get(task_id: str) -> Call[Task]:
    return Call("GET", task_path(task_id), parsed(Task))


def cancel(task_id: str) -> Call[Task]:
    return Call("POST", task_path(task_id, "/cancel"), parsed(Task))


def redeliver_webhook(task_id: str) -> Call[Task]:
    return Call("POST", task_path(task_id, "/webhook/redeliver"), parsed(Task))


def _infer_answer(response: httpx.Response) -> Task | Accepted:
    body = response.json()
    return (
        Task.model_validate(body) if response.status_code == 200 else Accepted.model_validate(body)
    )


def infer(request: TaskRequest, wait_s: float, timeout: httpx.Timeout) -> Call[Task | Accepted]:
    """Submit and let the server hold the request up to `wait_s` for the answer."""
    key = request.idempotency_key or new_key()
    read = (timeout.read or 30.0) + wait_s
    return Call(
        "POST",
        "/v1/infer",
        _infer_answer,
        json=request.body(),
        headers={"idempotency-key": key, "prefer": f"wait={wait_s:g}"},
        timeout=httpx.Timeout(timeout.connect, read=read, write=timeout.write, pool=timeout.pool),
    )


def _page(response: httpx.Response) -> Page:
    body = response.json()
    tasks = [Task.model_validate(item) for item in body.get("tasks", [])]
    cursor = body.get("next_cursor")
    return Page(tasks, str(cursor) if cursor else None)


def list_page(
    *,
    status: TaskStatus | str | None = None,
    model: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Call[Page]:
    params: dict[str, str | int] = {"limit": limit}
    if status is not None:
        params["status"] = status.value if isinstance(status, TaskStatus) else status
    for name, value in (("model", model), ("action", action), ("cursor", cursor)):
        if value is not None:
            params[name] = value
    for name, when in (("since", since), ("until", until)):
        if when is not None:
            params[name] = when.isoformat()
    return Call("GET", "/v1/tasks", _page, params=params)


def events(task_id: str) -> Call[list[TaskEventRecord]]:
    return Call("GET", task_path(task_id, "/events"), parsed_list(TaskEventRecord, "events"))


def submit_batch(requests: Iterable[TaskRequest]) -> Call[BatchSubmitted]:
    """Up to 1,000 tasks in one committed transaction; each keeps its own idempotency key,
    so a retried batch answers with the same tasks."""
    items = [{**r.body(), "idempotency_key": r.idempotency_key or new_key()} for r in requests]
    return Call("POST", "/v1/tasks:batch", parsed(BatchSubmitted), json={"tasks": items})


def create_batch(jsonl: bytes, *, idempotency_key: str | None = None) -> Call[Batch]:
    return Call(
        "POST",
        "/v1/batches",
        parsed(Batch),
        content=jsonl,
        headers={
            "content-type": "application/jsonl",
            "idempotency-key": idempotency_key or new_key(),
        },
    )


def get_batch(batch_id: str) -> Call[Batch]:
    return Call("GET", f"/v1/batches/{quote(batch_id, safe='')}", parsed(Batch))


def _result_lines(response: httpx.Response) -> list[BatchResultLine]:
    return [
        BatchResultLine.model_validate_json(line)
        for line in response.text.splitlines()
        if line.strip()
    ]


def batch_results(batch_id: str) -> Call[list[BatchResultLine]]:
    return Call("GET", f"/v1/batches/{quote(batch_id, safe='')}/results", _result_lines)


def webhook_secret() -> Call[WebhookSecrets]:
    return Call("GET", "/v1/webhooks/secret", parsed(WebhookSecrets))


def rotate_webhook_secret(overlap_s: float | None = None) -> Call[WebhookSecrets]:
    body = {} if overlap_s is None else {"overlap_s": overlap_s}
    return Call(
        "POST", "/v1/webhooks/secret/rotate", parsed(WebhookSecrets), json=body, idempotent=False
    )


def workers() -> Call[list[Worker]]:
    return Call("GET", "/v1/workers", parsed_list(Worker, "workers"))


def queues() -> Call[list[JsonDict]]:
    return Call("GET", "/v1/queues", raw_list("queues"))


def models() -> Call[list[JsonDict]]:
    return Call("GET", "/v1/models", raw_list("models"))


def upload_file(content: bytes, filename: str, content_type: str) -> Call[FileObject]:
    return Call(
        "POST",
        "/v1/files",
        parsed(FileObject),
        files={"file": (filename, content, content_type)},
        idempotent=False,
    )


def get_file(file_id: str) -> Call[FileObject]:
    return Call("GET", f"/v1/files/{quote(file_id, safe='')}", parsed(FileObject))


def delete_file(file_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/files/{quote(file_id, safe='')}", lambda _: None)


def stream_request(task_id: str, last_event_id: str | None) -> tuple[str, dict[str, str]]:
    headers = {"accept": "text/event-stream"}
    if last_event_id:
        headers["last-event-id"] = last_event_id
    return task_path(task_id, "/stream"), headers


def stream_event(event: ServerSentEvent) -> StreamEvent:
    try:
        data = json.loads(event.data)
    except ValueError:
        data = {"raw": event.data}
    return StreamEvent(
        id=event.id or "",
        event=event.event,
        data=data if isinstance(data, dict) else {"value": data},
    )


def streaming_disabled(exc: APIError) -> bool:
    """A 404 for the route itself (the server does not stream), not for the task."""
    return exc.status_code == 404 and not isinstance(exc, TaskNotFound)


def requests_of(tasks: Iterable[TaskRequest | JsonDict]) -> list[TaskRequest]:
    return [t if isinstance(t, TaskRequest) else TaskRequest.model_validate(t) for t in tasks]
