"""Reading tasks back: the filtered list, a task's timeline, its webhook deliveries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.deps import Reader, find_task, json_response, services_of
from mcp.errors import ValidationFailed
from mcp.task_index import Cursor, TaskFilter, TaskIndex
from schemas import ErrorBody, TaskStatus
from schemas.browse import (
    DeliveryView,
    TaskDeliveries,
    TaskPage,
    TaskTimeline,
    TimelineEvent,
)
from schemas.envelope import DateTime

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
EPOCH = datetime.fromtimestamp(0, UTC)

FILTERS = frozenset({"status", "model", "action", "since", "until", "metadata", "cursor", "limit"})
SUMMARY_FIELDS = (
    "task_id",
    "model",
    "action",
    "status",
    "attempts",
    "created_at",
    "started_at",
    "finished_at",
    "error",
    "metadata",
)
JSON_FIELDS = frozenset({"error", "metadata"})
DELIVERY_FIELDS = (
    "record",  # the delivery's journal record, with its attempt history, where one is kept
    "webhook_id",
    "task_id",
    "type",
    "url",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "created_at",
    "next_attempt_at",
    "finished_at",
)
ERROR_TEXT = {
    400: "The cursor is not one this API returned",
    401: "Missing or invalid credentials",
    403: "The caller's role lacks the permission",
    404: "No such task in the caller's project",
    409: "The request conflicts with an earlier one",
    413: "The body is over the size limit",
    422: "An unknown or malformed parameter",
    429: "Rate limited or over the project's quota",
    503: "Kafka or Redis is unavailable; nothing was recorded",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route declares in OpenAPI, each with the error body."""
    return {s: {"model": ErrorBody, "description": ERROR_TEXT[s]} for s in statuses}


def summary_of(values: list[Any]) -> dict[str, Any] | None:
    """A `TaskSummary` as JSON-ready values, straight from the hash: its fields were written by
    the platform's own scripts, so the JSON ones are passed through without a parse."""
    row: dict[str, Any] = {}
    for name, value in zip(SUMMARY_FIELDS, values, strict=True):
        if value is None:
            continue
        text = value.decode() if isinstance(value, bytes) else str(value)
        if name in JSON_FIELDS:
            row[name] = orjson.Fragment(text)
        elif name == "attempts":
            row[name] = int(text)
        else:
            row[name] = text
    if "status" not in row or "created_at" not in row:
        return None
    row.setdefault("metadata", {})
    return row


@router.get("", response_model=TaskPage, responses=errors(400, 401, 403, 422, 503))
async def list_tasks(
    request: Request,
    caller: Reader,
    status: TaskStatus | None = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[DateTime | None, Query(description="Created at or after")] = None,
    until: Annotated[DateTime | None, Query(description="Created at or before")] = None,
    metadata: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=r"^[^=]+=.*$",
            description="`key=value`: a top-level metadata value (strings as they are, "
            "numbers and booleans as JSON)",
        ),
    ] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """The project's tasks, newest first, narrowed by any of the filters."""
    unknown = sorted(set(request.query_params) - FILTERS)
    if unknown:
        raise ValidationFailed(
            f"unknown filter {unknown[0]!r}", {"unknown": unknown, "allowed": sorted(FILTERS)}
        )
    where = TaskFilter(
        status=status.value if status else None,
        model=model,
        action=action,
        since=since,
        until=until,
        metadata=metadata,
    )
    services = services_of(request)
    index = TaskIndex(services.store.redis, services.store.keys)
    at = Cursor.decode(cursor) if cursor else None
    page = await index.page(caller.project, where, limit, at, SUMMARY_FIELDS)
    tasks = [s for s in map(summary_of, page.rows) if s is not None]
    return json_response(200, {"tasks": tasks, "next_cursor": page.next_cursor})


@router.get("/{task_id}/events", response_model=TaskTimeline, responses=errors(401, 403, 404, 503))
async def timeline(task_id: str, request: Request, caller: Reader) -> Response:
    """The task's lifecycle events, oldest first."""
    services = services_of(request)
    await find_task(services, task_id, caller)
    raw = await services.store.redis.hvals(services.store.keys.timeline(task_id))
    events = sorted(
        (TimelineEvent.model_validate(orjson.loads(v)) for v in raw),
        key=lambda e: (e.at, e.attempt),
    )
    return json_response(200, TaskTimeline(task_id=task_id, events=events).model_dump(mode="json"))


@router.get(
    "/{task_id}/webhook/attempts",
    response_model=TaskDeliveries,
    responses=errors(401, 403, 404, 503),
)
async def webhook_attempts(task_id: str, request: Request, caller: Reader) -> Response:
    """Every webhook of the task with its attempts: status code, error, next attempt."""
    services = services_of(request)
    await find_task(services, task_id, caller)
    deliveries = await deliveries_of(services.store.redis, services.store.keys, task_id)
    body = TaskDeliveries(task_id=task_id, deliveries=deliveries)
    return json_response(200, body.model_dump(mode="json"))


async def deliveries_of(redis: Any, keys: Any, task_id: str) -> list[DeliveryView]:
    ids = [_text(v) for v in (await redis.hgetall(keys.task_webhooks(task_id))).values()]
    found = [d for d in await delivery_views(redis, keys, ids) if d is not None]
    return sorted(found, key=lambda d: d.created_at or EPOCH)


async def delivery_views(
    redis: Any, keys: Any, webhook_ids: list[str]
) -> list[DeliveryView | None]:
    """The state of each delivery, None where there is none."""
    if not webhook_ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for webhook_id in webhook_ids:
            pipe.hmget(keys.delivery(webhook_id), DELIVERY_FIELDS)
        rows = await pipe.execute()
    out: list[DeliveryView | None] = []
    for webhook_id, values in zip(webhook_ids, rows, strict=True):
        row: dict[str, Any] = {
            n: _text(v)
            for n, v in zip(DELIVERY_FIELDS, values, strict=True)
            if v not in (None, b"")
        }
        if "status" not in row:
            out.append(None)
            continue
        row["webhook_id"] = webhook_id
        record = orjson.loads(row.pop("record")) if "record" in row else {}
        row["history"] = record.get("history", [])
        for name in ("created_at", "next_attempt_at", "finished_at"):
            if name in row:
                row[name] = datetime.fromtimestamp(float(row[name]), UTC)
        out.append(DeliveryView.model_validate(row))
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
