"""Tasks: submit, poll, cancel, redeliver the webhook."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Security
from fastapi.responses import Response

from api.auth import Caller, Permission, Require, require
from api.contract import SUBMIT_REF, WITH_BODY, WITH_ID, errors
from api.deps import Reader, find_task, json_response, services_of, submitter_of
from api.front import WAIT
from api.inputs.bodies import answer, read_submission
from api.operations import MAX_WAIT_S, cancel_task, watch_task
from mcp.errors import NothingToRedeliver, ValidationFailed
from schemas import ErrorBody, SubmitResponse, TaskDetail, TaskView

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
MAX_HEADER = 256
SUBMIT = Require(Permission.TASKS_SUBMIT)
READ = Require(Permission.TASKS_READ)


HEADER = {"type": "string", "maxLength": MAX_HEADER}
SUBMIT_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": SUBMIT_REF}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "task": {"type": "string", "description": "the JSON body, as a part"},
                        "screenshot": {"type": "string", "format": "binary"},
                    },
                    "required": ["task"],
                    "additionalProperties": False,
                }
            },
            "application/x-protobuf": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "autoglm.v1.SubmitRequest (schemas/autoglm/v1/messages.proto)",
                }
            },
        },
    },
    "parameters": [
        {"name": "Idempotency-Key", "in": "header", "schema": HEADER},
        {"name": "traceparent", "in": "header", "schema": HEADER},
    ],
}


def _header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    if value is not None and len(value) > MAX_HEADER:
        raise ValidationFailed(f"header {name} is longer than {MAX_HEADER} characters")
    return value


SUBMIT_REFUSALS: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "The Idempotency-Key was used with another body"},
    413: {
        "model": ErrorBody,
        "description": "`payload_too_large`: the body, or a file part, is over its limit; "
        "`record_too_large`: the task would not fit a Kafka record (nothing recorded)",
    },
    415: {"model": ErrorBody, "description": "The body is not JSON, multipart or Protobuf"},
    422: {
        "model": ErrorBody,
        "description": "Invalid task: unknown model or action, bad payload, corrupt image, "
        "unknown file",
    },
    429: {"model": ErrorBody, "description": "Rate or quota exceeded"},
    503: {
        "model": ErrorBody,
        "description": "`overloaded` (refused before the body was read), `broker_unavailable`, "
        "`store_unavailable`, `blob_store_unavailable`: nothing recorded; retry after "
        "`Retry-After` seconds with the same Idempotency-Key",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}


@router.post(
    "",
    status_code=202,
    response_model=SubmitResponse,
    responses={
        200: {"model": SubmitResponse, "description": "An earlier task with this key"},
        **errors(*WITH_BODY, 404, 409, 415, 429),
        **SUBMIT_REFUSALS,
    },
    openapi_extra=SUBMIT_DOC,
    dependencies=[Security(SUBMIT)],
)
async def submit(request: Request) -> Response:
    # The hottest route: the body is parsed here rather than through dependency injection,
    # which costs more per request than everything else the route does. It is served by a plain
    # route in front of this one (see `api/app.py`), so it checks its permission itself.
    caller = SUBMIT.from_request(request)
    raw = await request.body()  # kept by the request: the readers below parse these bytes
    submitter = submitter_of(request)
    submitter.check_body_size(caller.project, len(raw))
    submission = await read_submission(request, submitter.services.settings.blobs.max_file_bytes)
    status, response = await submitter.submit(
        submission.body,
        caller.project,
        _header(request, "idempotency-key"),
        _header(request, "traceparent"),
        submission.files,
    )
    return answer(request, status, response)


async def poll(request: Request) -> Response:
    """`get_task` without `include`, for a poll served in front of the stack (`api.front`), where
    no dependency injection runs: it checks its permission and reads its wait itself."""
    caller = READ.from_request(request)
    task_id: str = request.path_params["task_id"]
    services = services_of(request)
    wait: float = request.scope[WAIT]
    if wait > 0:
        view = await watch_task(services, task_id, caller, wait)
    else:
        view = await find_task(services, task_id, caller)
    return answer(request, 200, view)


@router.get("/{task_id}", response_model=TaskDetail, responses=errors(*WITH_ID))
async def get_task(
    task_id: str,
    request: Request,
    caller: Reader,
    include: Annotated[
        Literal["payload"] | None,
        Query(description="`payload` adds the task's input (when it was small enough to keep)"),
    ] = None,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_S,
            description="Seconds to wait for the task to end (long poll): the answer comes as "
            "soon as it ends, or when the wait runs out with the task as it is then",
        ),
    ] = 0,
) -> Response:
    services = services_of(request)
    if wait > 0:
        view = await watch_task(services, task_id, caller, wait)
    else:
        view = await find_task(services, task_id, caller)
    if include is None:
        return answer(request, 200, view)
    body = view.model_dump(mode="json")
    if include == "payload":
        kept = await services.store.redis.hget(services.store.keys.task(task_id), "payload")
        body["payload"] = orjson.loads(kept) if kept is not None else None
    return json_response(200, body)


@router.post("/{task_id}/cancel", response_model=TaskView, responses=errors(*WITH_ID))
async def cancel(
    task_id: str,
    request: Request,
    caller: Annotated[Caller, require(Permission.TASKS_CANCEL)],
) -> Response:
    view = await cancel_task(services_of(request), task_id, caller)
    return json_response(200, view.model_dump(mode="json"))


@router.post(
    "/{task_id}/webhook/redeliver",
    status_code=202,
    response_model=TaskView,
    responses=errors(*WITH_ID, 409),
)
async def redeliver(
    task_id: str,
    request: Request,
    caller: Annotated[Caller, require(Permission.TASKS_REDELIVER)],
) -> Response:
    services = services_of(request)
    view = await find_task(services, task_id, caller)
    # The request is committed to `webhook-deliveries` first, so a replay restores it.
    if not await services.webhooks.redeliver(task_id, services.journal):
        raise NothingToRedeliver(
            f"task {task_id!r} has no final webhook to redeliver yet",
            {"task_id": task_id, "status": view.status.value},
        )
    view = await find_task(services, task_id, caller)
    return json_response(202, view.model_dump(mode="json"))
