"""Files: upload an input once, refer to it from tasks by id; fetch large results.

`POST /v1/files` streams the body to the blob store: either the raw bytes (any Content-Type,
optional `?filename=`) or a `multipart/form-data` body with a `file` part. Files belong to the
caller's project; another project's file does not exist (404).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.datastructures import UploadFile

from api.auth import Caller, Permission, require
from api.contract import WITH_BODY, WITH_ID, errors
from api.inputs.bodies import MULTIPART, answer, media_type
from api.services import Services
from mcp.errors import EmptyUpload, ValidationFailed
from schemas.files import FileView

router = APIRouter(prefix="/v1/files", tags=["files"])
Reader = Annotated[Caller, require(Permission.FILES_READ)]
Writer = Annotated[Caller, require(Permission.FILES_WRITE)]
CHUNK = 1024 * 1024


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file's bytes, with its content type", "content": {"*/*": {}}}
}
UPLOAD_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            MULTIPART: {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=FileView,
    openapi_extra=UPLOAD_DOC,
    responses=errors(*WITH_BODY),
)
async def upload(
    request: Request,
    caller: Writer,
    filename: Annotated[str | None, Query(max_length=255)] = None,
) -> Response:
    services = services_of(request)
    project = caller.project
    limit = services.settings.blobs.max_file_bytes
    if media_type(request) == MULTIPART:
        form = await request.form(max_files=1, max_fields=0)
        try:
            part = form.get("file")
            if not isinstance(part, UploadFile):
                raise ValidationFailed("a multipart upload needs a 'file' part")
            info = await services.files.create(
                project,
                _chunks_of(part),
                retention_s=services.settings.blobs.file_retention_s,
                max_bytes=limit,
                content_type=part.content_type or "application/octet-stream",
                filename=filename or part.filename,
            )
        finally:
            await form.close()
    else:
        info = await services.files.create(
            project,
            request.stream(),
            retention_s=services.settings.blobs.file_retention_s,
            max_bytes=limit,
            content_type=media_type(request) or "application/octet-stream",
            filename=filename,
        )
    if info.size == 0:  # nothing to refer to: an empty upload is a mistake, not a file
        await services.files.discard(project, info.id)
        raise EmptyUpload("the upload is empty", {"size": 0})
    return answer(request, 201, FileView.of(info))


@router.get("/{file_id}", response_model=FileView, responses=errors(*WITH_ID))
async def get_file(file_id: str, request: Request, caller: Reader) -> Response:
    info = await services_of(request).files.info(caller.project, file_id)
    return answer(request, 200, FileView.of(info))


@router.get(
    "/{file_id}/content",
    response_class=StreamingResponse,
    responses={**CONTENT, **errors(*WITH_ID)},
)
async def get_content(file_id: str, request: Request, caller: Reader) -> Response:
    info, body = await services_of(request).files.content(caller.project, file_id)
    headers = {
        "content-length": str(info.size),
        "etag": f'"{info.sha256}"',
        "x-content-sha256": info.sha256,
    }
    return StreamingResponse(body, media_type=info.content_type, headers=headers)


@router.delete("/{file_id}", status_code=204, response_class=Response, responses=errors(*WITH_ID))
async def delete_file(file_id: str, request: Request, caller: Writer) -> Response:
    await services_of(request).files.delete(caller.project, file_id)
    return Response(status_code=204)


async def _chunks_of(part: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await part.read(CHUNK):
        yield chunk
