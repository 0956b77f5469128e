"""JSONL batches in the style of OpenAI's Batch API: `POST /v1/batches` (one task per line, all
in one committed transaction with the batch's manifest), `GET /v1/batches/{id}` (progress) and
`GET /v1/batches/{id}/results` (JSONL, one line per uploaded line, in order).

The manifest is a Kafka fact (the compacted `batches` topic) committed with the tasks; Redis
holds its projection for reads, and `autoglm replay` restores it.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from api.auth import Caller, Permission, require
from api.contract import WITH_BODY, WITH_ID, errors
from api.deps import Reader, json_response, services_of, submitter_of
from api.errors import json_numbers
from api.submit import Answers
from mcp.errors import AutoGLMError, BatchNotFound, ValidationFailed
from mcp.names import Keys
from mcp.records import Record
from schemas import ErrorDetail, SubmitRequest, TaskView, dumps, loads, new_task_id
from schemas.batch import (
    MAX_BATCH_TASKS,
    BatchCounts,
    BatchEntry,
    BatchLine,
    BatchManifest,
    BatchResultLine,
    BatchView,
)

router = APIRouter(prefix="/v1/batches", tags=["batches"])
JSONL = "application/jsonl"
UPLOAD_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSONL: {
                # Text on the wire: no `type` (any value is sent as its text), at least one line.
                "schema": {
                    "pattern": "[^ \t\n\r\f\v]",
                    "description": "One `BatchLine` per line (up to 1,000); a line that is not "
                    "one is refused on its own",
                }
            }
        },
    },
    "parameters": [
        {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 200}}
    ],
}


class JsonLines(Response):
    media_type = JSONL


def _lines(raw: bytes) -> list[tuple[str, SubmitRequest | AutoGLMError]]:
    lines = [line for line in raw.splitlines() if line.strip()]
    if not lines or len(lines) > MAX_BATCH_TASKS:
        raise ValidationFailed(
            f"a batch holds 1 to {MAX_BATCH_TASKS} lines, not {len(lines)}", {"lines": len(lines)}
        )
    parsed: list[tuple[str, SubmitRequest | AutoGLMError]] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        custom_id = f"line-{number}"
        try:
            item = BatchLine.model_validate_json(orjson.dumps(json_numbers(orjson.loads(line))))
            custom_id = item.custom_id
            if custom_id in seen:
                raise ValidationFailed(f"custom_id {custom_id!r} is used twice")
            body = SubmitRequest.model_validate_json(
                orjson.dumps(json_numbers(item.body)), strict=True
            )
        except orjson.JSONDecodeError:
            parsed.append((custom_id, ValidationFailed(f"line {number} is not JSON")))
            continue
        except ValidationError as exc:
            details = [
                {"loc": ["line", number, *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False)
            ]
            parsed.append((custom_id, ValidationFailed("the line does not fit", details)))
            continue
        except ValidationFailed as exc:
            parsed.append((custom_id, exc))
            continue
        seen.add(custom_id)
        parsed.append((custom_id, body))
    return parsed


@router.post(
    "",
    response_model=BatchView,
    responses=errors(*WITH_BODY),
    openapi_extra=UPLOAD_DOC,
    summary="Upload a JSONL batch",
)
async def create_batch(
    request: Request, caller: Annotated[Caller, require(Permission.TASKS_SUBMIT)]
) -> Response:
    project = caller.project
    services = services_of(request)
    parsed = _lines(await request.body())
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) > 200:
        raise ValidationFailed("header Idempotency-Key is longer than 200 characters")
    batch_id = (
        hashlib.sha256(f"{project}\0{key}".encode()).hexdigest()[:32] if key else new_task_id()
    )
    items: list[tuple[SubmitRequest | AutoGLMError, str | None]] = [
        (body, f"batch:{batch_id}:{custom_id}") for custom_id, body in parsed
    ]
    manifest: list[BatchManifest] = []

    def seal(answers: Answers) -> list[Record]:
        entries = []
        for (custom_id, _), (_, answer) in zip(parsed, answers, strict=True):
            if isinstance(answer, AutoGLMError):
                error = ErrorDetail(
                    code=answer.code, message=answer.message, details=answer.details
                )
                entries.append(BatchEntry(custom_id=custom_id, error=error))
            else:
                entries.append(BatchEntry(custom_id=custom_id, task_id=answer.task_id))
        manifest.append(BatchManifest(batch_id=batch_id, project=project, entries=tuple(entries)))
        return [Record(services.topics.batches, batch_id.encode(), dumps(manifest[0]))]

    await submitter_of(request).submit_many(items, project, seal)
    keys = Keys.of(services.settings)
    await services.store.redis.set(
        keys.batch(batch_id), dumps(manifest[0]), ex=services.settings.redis.task_retention_s
    )
    view = await _view(request, manifest[0])
    return json_response(200, view.model_dump(mode="json"))


async def _manifest(request: Request, batch_id: str, caller: Caller) -> BatchManifest:
    services = services_of(request)
    raw = await services.store.redis.get(Keys.of(services.settings).batch(batch_id))
    manifest = None if raw is None else loads(BatchManifest, raw)
    if manifest is None or not caller.sees(manifest.project):
        raise BatchNotFound(f"no batch {batch_id!r}", {"batch_id": batch_id})
    return manifest


async def _tasks(request: Request, manifest: BatchManifest) -> list[TaskView | None]:
    store = services_of(request).store
    ids = [e.task_id for e in manifest.entries]
    views = await asyncio.gather(*(store.view(i) for i in ids if i is not None))
    found = iter(views)
    return [next(found) if i is not None else None for i in ids]


async def _view(request: Request, manifest: BatchManifest) -> BatchView:
    counts: dict[str, int] = {"total": len(manifest.entries)}
    done = True
    for entry, view in zip(manifest.entries, await _tasks(request, manifest), strict=True):
        status = "refused" if entry.task_id is None else view.status.value if view else "queued"
        counts[status] = counts.get(status, 0) + 1
        done = done and status not in ("queued", "running")
    return BatchView(
        batch_id=manifest.batch_id,
        status="completed" if done else "in_progress",
        created_at=manifest.created_at,
        counts=BatchCounts(**counts),
    )


@router.get("/{batch_id}", response_model=BatchView, responses=errors(*WITH_ID))
async def get_batch(batch_id: str, request: Request, caller: Reader) -> Response:
    view = await _view(request, await _manifest(request, batch_id, caller))
    return json_response(200, view.model_dump(mode="json"))


@router.get(
    "/{batch_id}/results",
    response_class=JsonLines,
    responses={200: {"description": "One BatchResultLine per uploaded line"}, **errors(*WITH_ID)},
)
async def batch_results(batch_id: str, request: Request, caller: Reader) -> Response:
    manifest = await _manifest(request, batch_id, caller)
    lines = []
    for entry, view in zip(manifest.entries, await _tasks(request, manifest), strict=True):
        if view is None:
            status = "refused" if entry.task_id is None else "queued"
            line = BatchResultLine(
                custom_id=entry.custom_id, task_id=entry.task_id, status=status, error=entry.error
            )
        else:
            error = ErrorDetail.model_validate(view.error.model_dump()) if view.error else None
            line = BatchResultLine(
                custom_id=entry.custom_id,
                task_id=entry.task_id,
                status=view.status.value,
                result=view.result,
                error=error,
            )
        lines.append(dumps(line))
    return JsonLines(b"\n".join(lines) + b"\n")
