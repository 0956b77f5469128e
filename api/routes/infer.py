"""`POST /v1/infer`: submit and wait a little for the answer (`Prefer: wait=N`).

Takes the submit body or the MCP envelope (`request_id` acts as the idempotency key and
`payload.model`, or the default model, selects the model).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import RootModel, ValidationError

from api.auth import Caller, Permission, require
from api.contract import INFER_REF, WITH_BODY, errors
from api.deps import json_response, services_of, submitter_of
from api.errors import parse_body
from api.operations import MAX_WAIT_S, wait_outcome
from mcp.errors import ValidationFailed
from schemas import InferAccepted, InferredTask, MCPEnvelope, SubmitRequest

router = APIRouter(tags=["infer"])

DEFAULT_WAIT_S = 30.0
_WAIT = re.compile(r"wait\s*=\s*(\d+(?:\.\d+)?)")


def wait_seconds(prefer: str | None) -> float:
    match = _WAIT.search(prefer or "")
    return min(float(match.group(1)), MAX_WAIT_S) if match else DEFAULT_WAIT_S


def _parse(
    body: dict[str, Any], default_model: str
) -> tuple[SubmitRequest, str | None, str | None]:
    """(submit request, idempotency key, envelope request_id)."""
    try:
        if "request_id" in body:
            envelope = MCPEnvelope.model_validate_json(orjson.dumps(body), strict=True)
            payload = dict(envelope.payload)
            model = str(payload.pop("model", default_model))
            options = {
                k: payload.pop(k) for k in ("callback_url", "timeout_s", "ttl_s") if k in payload
            }
            request = SubmitRequest.model_validate_json(
                orjson.dumps(
                    {
                        "model": model,
                        "action": envelope.action,
                        "payload": payload,
                        "metadata": envelope.metadata.model_dump(mode="json", exclude_unset=True),
                        **options,
                    }
                ),
                strict=True,
            )
            return request, envelope.request_id, envelope.request_id
        return SubmitRequest.model_validate_json(orjson.dumps(body), strict=True), None, None
    except ValidationError as exc:
        details = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False)
        ]
        raise ValidationFailed("the request does not fit the schema", details) from exc


class JsonObject(RootModel[dict[str, Any]]):
    pass


INFER_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": INFER_REF}}},
    }
}


@router.post(
    "/v1/infer",
    response_model=InferredTask,
    responses={
        202: {"model": InferAccepted, "description": "Not finished within the wait: submitted"},
        **errors(*WITH_BODY, 404, 409, 429),
    },
    openapi_extra=INFER_DOC,
)
async def infer(
    request: Request,
    caller: Annotated[Caller, require(Permission.TASKS_SUBMIT)],
    prefer: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
) -> Response:
    services = services_of(request)
    body = parse_body(JsonObject, await request.body()).root
    submit_body, envelope_key, request_id = _parse(body, services.settings.default_model)
    _, accepted = await submitter_of(request).submit(
        submit_body, caller.project, envelope_key or idempotency_key
    )
    done = await wait_outcome(services, accepted.task_id, caller, wait_seconds(prefer))
    if done is not None:
        answer = done.model_dump(mode="json")
        if request_id is not None:
            answer["request_id"] = request_id
        return json_response(200, answer)
    answer = accepted.model_dump(mode="json")
    if request_id is not None:
        answer["request_id"] = request_id
    return json_response(202, answer)
