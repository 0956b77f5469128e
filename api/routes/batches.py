"""`POST /v1/tasks:batch`: up to 1,000 tasks in one committed Kafka transaction, answered per
item (accepted with its task id, or refused with its error)."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from api.auth import Caller, Permission, require
from api.contract import WITH_BODY, errors
from api.deps import json_response, submitter_of
from api.errors import json_numbers
from mcp.errors import AutoGLMError, ValidationFailed
from schemas import ErrorDetail, SubmitRequest
from schemas.batch import BatchItem, BatchSubmitRequest, BatchSubmitResponse, BatchTask
from schemas.task import JsonDict

router = APIRouter(tags=["batches"])


def _item(index: int, raw: JsonDict) -> tuple[SubmitRequest | AutoGLMError, str | None]:
    try:
        task = BatchTask.model_validate_json(orjson.dumps(json_numbers(raw)), strict=True)
    except ValidationError as exc:
        details = [
            {"loc": ["body", "tasks", index, *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False)
        ]
        return ValidationFailed("the task does not fit the schema", details), None
    return task.submit_request(), task.idempotency_key


@router.post(
    "/v1/tasks:batch",
    response_model=BatchSubmitResponse,
    responses=errors(*WITH_BODY),
    summary="Submit up to 1,000 tasks in one transaction",
)
async def submit_batch(
    body: BatchSubmitRequest,
    request: Request,
    caller: Annotated[Caller, require(Permission.TASKS_SUBMIT)],
) -> Response:
    items = [_item(i, raw) for i, raw in enumerate(body.tasks)]
    answers = await submitter_of(request).submit_many(items, caller.project)
    out: list[BatchItem] = []
    for index, (status, answer) in enumerate(answers):
        if isinstance(answer, AutoGLMError):
            error = ErrorDetail(code=answer.code, message=answer.message, details=answer.details)
            out.append(BatchItem(index=index, status=status, error=error))
        else:
            out.append(BatchItem.accepted(index, status, answer))
    refused = sum(1 for item in out if item.error is not None)
    response = BatchSubmitResponse(items=out, accepted=len(out) - refused, refused=refused)
    return json_response(200, response.model_dump(mode="json"))
