"""Bytes on the wire: orjson in, orjson out, one clear error for anything malformed."""

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


def dumps(message: BaseModel) -> bytes:
    return type(message).__pydantic_serializer__.to_json(message)


def loads(schema: type[M], raw: bytes | str) -> M:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(schema.__name__, f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DecodeError(schema.__name__, f"expected a JSON object, got {type(data).__name__}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        errors: list[dict[str, object]] = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False)
        ]
        raise DecodeError(schema.__name__, f"{exc.error_count()} invalid field(s)", errors) from exc
