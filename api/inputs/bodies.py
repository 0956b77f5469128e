"""A submission in any of its three encodings, and the encoding its answer should take.

- `application/json`: the task, images inline as base64 (or `{"file_id": …}`);
- `multipart/form-data`: a `task` part holding that JSON, and one file part per image field
  (named after the field, e.g. `screenshot`), raw bytes, no base64;
- `application/x-protobuf`: `autoglm.v1.SubmitRequest`, raw bytes in its `files` map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError as ProtobufDecodeError
from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from api.errors import parse_body
from mcp.errors import FileTooLarge, UnsupportedMediaType, ValidationFailed
from schemas import DecodeError, SubmitRequest
from schemas.autoglm.v1 import messages_pb2 as pb
from schemas.codec import JSON, PROTOBUF, encode, validated
from schemas.protobuf import as_data

MULTIPART = "multipart/form-data"
MAX_PARTS = 8


@dataclass(frozen=True)
class Submission:
    body: SubmitRequest
    # Raw bytes for payload fields, by field name: file parts or the Protobuf `files` map.
    files: dict[str, bytes] = field(default_factory=dict)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", JSON).split(";", 1)[0].strip().lower()


def answer_type(request: Request) -> str:
    """Protobuf when the caller asks for it with Accept, else JSON."""
    return PROTOBUF if PROTOBUF in request.headers.get("accept", "") else JSON


def answer(request: Request, status: int, message: BaseModel) -> Response:
    """`message` in the encoding the caller asked for (Accept), JSON by default."""
    kind = answer_type(request)
    return Response(encode(message, kind), status_code=status, media_type=kind)


async def read_submission(request: Request, max_file_bytes: int) -> Submission:
    kind = media_type(request)
    if kind in (JSON, "") or kind.endswith("+json"):
        return Submission(parse_body(SubmitRequest, await request.body()))
    if kind == PROTOBUF:
        return _from_protobuf(await request.body())
    if kind == MULTIPART:
        return await _from_multipart(request, max_file_bytes)
    raise UnsupportedMediaType(
        f"a submission is {JSON}, {MULTIPART} or {PROTOBUF}, not {kind!r}",
        {"accepted": [JSON, MULTIPART, PROTOBUF]},
    )


def _from_protobuf(raw: bytes) -> Submission:
    message = pb.SubmitRequest()
    try:
        message.ParseFromString(raw)
    except ProtobufDecodeError as exc:
        raise ValidationFailed(f"the body is not a valid autoglm.v1.SubmitRequest: {exc}") from exc
    return submission_of(message)


def submission_of(message: pb.SubmitRequest) -> Submission:
    """A decoded autoglm.v1.SubmitRequest (an HTTP body or a gRPC request) as a submission."""
    try:
        body = validated(SubmitRequest, as_data(message))
    except ValueError as exc:  # schemas' DecodeError is a ValueError
        details = exc.errors if isinstance(exc, DecodeError) else None
        raise ValidationFailed(
            f"the body is not a valid autoglm.v1.SubmitRequest: {exc}", details
        ) from exc
    return Submission(body, dict(message.files))


async def _from_multipart(request: Request, max_file_bytes: int) -> Submission:
    try:
        form = await request.form(max_files=MAX_PARTS, max_fields=MAX_PARTS)
    except Exception as exc:  # the parser's own errors: malformed or too many parts
        raise ValidationFailed(f"the multipart body cannot be read: {exc}") from exc
    try:
        task = form.get("task")
        if task is None:
            raise ValidationFailed(
                "a multipart submission needs a 'task' part with the task as JSON",
                {"parts": list(form.keys())},
            )
        raw_task = await task.read() if isinstance(task, UploadFile) else task.encode()
        body = parse_body(SubmitRequest, raw_task)
        files: dict[str, bytes] = {}
        for name, part in form.multi_items():
            if name == "task":
                continue
            if not isinstance(part, UploadFile):
                raise ValidationFailed(
                    f"part {name!r} is a plain field; send it inside the 'task' JSON",
                    {"part": name},
                )
            if name in files:
                raise ValidationFailed(f"file part {name!r} came twice", {"part": name})
            if (part.size or 0) > max_file_bytes:
                raise FileTooLarge(
                    f"file part {name!r} is larger than {max_file_bytes} bytes",
                    {"part": name, "max_bytes": max_file_bytes},
                )
            files[name] = await part.read()
        return Submission(body, files)
    finally:
        await form.close()
