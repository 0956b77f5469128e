"""Bytes on the wire: JSON (orjson) or Protobuf, one clear error for anything malformed.

`dumps`/`loads` are JSON; `encode`/`decode` take the content type that a Kafka record's
`content-type` header or an HTTP Content-Type names, so every reader accepts both encodings.
"""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from schemas.errors import AutoGLMError

M = TypeVar("M", bound=BaseModel)


class DecodeError(AutoGLMError, ValueError):
    """Bytes that are not a valid message of the expected schema."""

    code = "undecodable_message"
    permanent = True

    def __init__(self, schema: str, reason: str, errors: list[dict[str, object]] | None = None):
        super().__init__(f"undecodable {schema}: {reason}", errors or [])
        self.schema = schema
        self.reason = reason
        self.errors = errors or []


JSON = "application/json"
PROTOBUF = "application/x-protobuf"
CONTENT_TYPES = (JSON, PROTOBUF)


def dumps(message: BaseModel) -> bytes:
    return type(message).__pydantic_serializer__.to_json(message)


def loads(schema: type[M], raw: bytes | str) -> M:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(schema.__name__, f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DecodeError(schema.__name__, f"expected a JSON object, got {type(data).__name__}")
    return validated(schema, data)


def encode(message: BaseModel, content_type: str = JSON) -> bytes:
    if content_type == PROTOBUF:
        from schemas.protobuf import to_bytes

        return to_bytes(message)
    return dumps(message)


def decode(schema: type[M], raw: bytes, content_type: str | None = None) -> M:
    """A message from either encoding; no content type (older records) means JSON."""
    if content_type is None or content_type == JSON:
        return loads(schema, raw)
    if content_type != PROTOBUF:
        raise DecodeError(schema.__name__, f"unknown content type {content_type!r}")
    from schemas.protobuf import as_data, parse, protobuf_type

    try:
        data = as_data(parse(protobuf_type(schema), raw))
    except ValueError as exc:
        raise DecodeError(schema.__name__, str(exc)) from exc
    return validated(schema, data)


def validated(schema: type[M], data: dict[str, object]) -> M:
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        errors: list[dict[str, object]] = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False)
        ]
        raise DecodeError(schema.__name__, f"{exc.error_count()} invalid field(s)", errors) from exc
