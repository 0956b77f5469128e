"""Mapping of the platform's errors to HTTP answers with API.md's error body."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mcp.errors import (
    AutoGLMError,
    BrokerError,
    IdempotencyConflict,
    InvalidJSON,
    KeyNotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
    StoreError,
    TaskNotFound,
    Unauthenticated,
    ValidationFailed,
)
from schemas import ErrorBody

STATUS: list[tuple[type[AutoGLMError], int]] = [
    (InvalidJSON, 400),
    (ValidationFailed, 422),
    (IdempotencyConflict, 409),
    (TaskNotFound, 404),
    (KeyNotFound, 404),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (QuotaExceeded, 429),
    (PayloadTooLarge, 413),
    (BrokerError, 503),
    (StoreError, 503),
]

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


M = TypeVar("M", bound=BaseModel)


def parse_body(schema: type[M], raw: bytes) -> M:
    """Validate a JSON body with the same error shapes FastAPI's own parsing produces."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        details = [{"loc": ["body", exc.pos], "msg": "JSON decode error", "type": "json_invalid"}]
        raise InvalidJSON("the body is not valid JSON", details) from exc
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        details = [
            {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False)
        ]
        raise ValidationFailed("the request does not fit the schema", details) from exc


class RateLimited(Exception):
    """A project submitted faster than its rate limit allows."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("rate limited")
        self.retry_after_s = retry_after_s


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response:
    body = ErrorBody.of(code, message, details).model_dump(mode="json")
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _status_of(exc: AutoGLMError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _headers_of(exc: AutoGLMError) -> dict[str, str] | None:
    if isinstance(exc, BrokerError | StoreError):
        return {"Retry-After": "1"}
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, QuotaExceeded):
        return {"Retry-After": str(max(1, round(exc.retry_after_s + 0.5)))}
    return None


def install(app: FastAPI) -> None:
    @app.exception_handler(AutoGLMError)
    async def platform_error(_: Request, exc: AutoGLMError) -> Response:
        headers = _headers_of(exc)
        return error_response(_status_of(exc), exc.code, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        kinds = {d["type"] for d in details}
        if kinds & {"json_invalid", "json_type"}:
            return error_response(400, "invalid_json", "the body is not valid JSON", details)
        return error_response(
            422, "invalid_request", "the request does not fit the schema", details
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = HTTP_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RedisError)
    async def store_down(_: Request, exc: RedisError) -> Response:
        return error_response(
            503,
            "store_unavailable",
            f"the task store is unavailable: {exc}",
            None,
            {"Retry-After": "1"},
        )

    @app.exception_handler(RateLimited)
    async def rate_limited(_: Request, exc: RateLimited) -> Response:
        retry = max(1, round(exc.retry_after_s + 0.5))
        return error_response(
            429,
            "rate_limited",
            f"too many submissions; retry in {retry} s",
            {"retry_after_s": retry},
            {"Retry-After": str(retry)},
        )
