"""Protobuf encoding of the messages (schemas/autoglm/v1/messages.proto), field for field.

The conversion goes through the JSON form of a message, Protobuf's own JSON mapping on the
Protobuf side, so one validation (pydantic's) judges both encodings. Struct numbers are doubles:
integral ones come back as integers, as they were sent.
"""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from pydantic import BaseModel

from schemas.api import SubmitRequest, SubmitResponse, TaskLinks, TaskView, WebhookView
from schemas.autoglm.v1 import messages_pb2 as pb
from schemas.errors import ErrorBody, ErrorDetail
from schemas.files import FileView
from schemas.task import AsyncTask, Idempotency, TaskError, TaskEvent, TaskResult, TraceContext
from schemas.webhooks import WebhookAttempt

M = TypeVar("M", bound=BaseModel)

PROTOBUF_TYPES: dict[type[BaseModel], type[Message]] = {
    TraceContext: pb.TraceContext,
    TaskError: pb.TaskError,
    Idempotency: pb.Idempotency,
    AsyncTask: pb.AsyncTask,
    TaskEvent: pb.TaskEvent,
    TaskResult: pb.TaskResult,
    SubmitRequest: pb.SubmitRequest,
    TaskLinks: pb.TaskLinks,
    SubmitResponse: pb.SubmitResponse,
    WebhookAttempt: pb.WebhookAttempt,
    WebhookView: pb.WebhookView,
    TaskView: pb.TaskView,
    FileView: pb.FileView,
    ErrorDetail: pb.ErrorDetail,
    ErrorBody: pb.ErrorBody,
}
# Fields that are Struct/Value on the Protobuf side: their numbers come back as doubles.
_FREE_FORM = frozenset({"payload", "metadata", "result", "details"})
# Protobuf-only fields, read by the caller from the message itself (raw bytes).
_RAW: dict[type[Message], frozenset[str]] = {pb.SubmitRequest: frozenset({"files"})}


def protobuf_type(schema: type[BaseModel]) -> type[Message]:
    try:
        return PROTOBUF_TYPES[schema]
    except KeyError:
        raise TypeError(f"{schema.__name__} has no Protobuf message") from None


def to_protobuf(message: BaseModel) -> Message:
    proto = protobuf_type(type(message))()
    data = message.model_dump(mode="json", exclude_none=True)
    json_format.ParseDict(data, proto)
    return proto


def to_bytes(message: BaseModel) -> bytes:
    return to_protobuf(message).SerializeToString()


def parse(proto_type: type[Message], raw: bytes) -> Message:
    """The Protobuf message in `raw`; ValueError when the bytes are not one."""
    proto = proto_type()
    try:
        proto.ParseFromString(raw)
    except ProtobufDecodeError as exc:
        raise ValueError(f"not a Protobuf {proto_type.DESCRIPTOR.name} ({exc})") from exc
    return proto


def as_data(proto: Message) -> dict[str, Any]:
    """The JSON form of a Protobuf message, ready for pydantic validation."""
    data = json_format.MessageToDict(proto, preserving_proto_field_name=True)
    for name in _RAW.get(type(proto), ()):
        data.pop(name, None)
    integral: dict[str, Any] = _integral(data, free_form=False)
    return integral


def _integral(value: Any, free_form: bool) -> Any:
    if isinstance(value, dict):
        return {k: _integral(v, free_form or k in _FREE_FORM) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v, free_form) for v in value]
    if free_form and isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value
