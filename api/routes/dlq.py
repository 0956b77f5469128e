"""The dead-letter topic of the caller's project: list it, requeue a task from it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.auth import Caller, Permission, require
from api.deps import json_response, services_of, submitter_of
from api.routes.browse import errors
from mcp.dead_letters import REQUEUE_KEY, read_task, resubmission
from mcp.errors import TaskNotFound
from mcp.task_index import Cursor, newest_first
from schemas import SubmitResponse
from schemas.browse import DeadLetter, DeadLetterPage

router = APIRouter(prefix="/v1/dlq", tags=["dead letters"])
Manager = Annotated[Caller, require(Permission.DLQ_MANAGE)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@router.get("", response_model=DeadLetterPage, responses=errors(400, 401, 403, 422, 503))
async def dead_letters(
    request: Request,
    caller: Manager,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """Tasks of the project in the dead-letter topic, most recent first, with the task that
    requeued each one."""
    services = services_of(request)
    redis, keys = services.store.redis, services.store.keys
    project = caller.project
    ids, next_cursor = await newest_first(
        redis, keys.dead_letters(project), limit, Cursor.decode(cursor) if cursor else None
    )
    async with redis.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.hgetall(keys.dead_letter(task_id))
            pipe.get(keys.idempotency(project, REQUEUE_KEY.format(task_id=task_id)))
        replies = await pipe.execute() if ids else []
    letters = []
    for entry, claim in zip(replies[::2], replies[1::2], strict=True):
        row = {_text(k): _text(v) for k, v in entry.items()}
        if "task_id" in row:
            letters.append(
                DeadLetter(
                    task_id=row["task_id"],
                    model=row["model"],
                    action=row["action"],
                    error=row["error"],
                    dead_at=datetime.fromtimestamp(int(row["at_ms"]) / 1000, UTC),
                    requeued_as=str(orjson.loads(claim)["task_id"]) if claim else None,
                )
            )
    body = DeadLetterPage(dead_letters=letters, next_cursor=next_cursor)
    return json_response(200, body.model_dump(mode="json"))


@router.post(
    "/{task_id}/requeue",
    status_code=202,
    response_model=SubmitResponse,
    responses={
        **errors(401, 403, 404, 409, 422, 429, 503),
        200: {"model": SubmitResponse, "description": "Already requeued"},
    },
)
async def requeue(task_id: str, request: Request, caller: Manager) -> Response:
    """Submit the dead task again as a new task (one committed transaction). Requeuing the same
    task again answers 200 with the task made the first time."""
    services = services_of(request)
    entry = await services.store.redis.hgetall(services.store.keys.dead_letter(task_id))
    row = {_text(k): _text(v) for k, v in entry.items()}
    project = row.get("project", "")
    if not project or not caller.sees(project):
        raise TaskNotFound(f"no task {task_id!r} in the dead-letter topic", {"task_id": task_id})
    try:
        task = await asyncio.to_thread(
            read_task, services.settings, int(row["partition"]), int(row["offset"])
        )
    except LookupError as exc:
        raise TaskNotFound(str(exc), {"task_id": task_id}) from exc
    status, answer = await submitter_of(request).submit(
        resubmission(task), project, REQUEUE_KEY.format(task_id=task_id)
    )
    return json_response(status, answer.model_dump(mode="json"))
