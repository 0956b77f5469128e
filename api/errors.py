"""The platform's errors as HTTP answers: one status table, one error body (`schemas.ErrorBody`)."""

from __future__ import annotations

import re
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
    BlobError,
    BlobNotFound,
    BrokerError,
    EmptyUpload,
    FileNotFound,
    IdempotencyConflict,
    InvalidCursor,
    InvalidJSON,
    KeyNotFound,
    NothingToRedeliver,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    RecordNotAuthorized,
    RecordRefused,
    RecordTooLarge,
    SecretsConfigured,
    StoreError,
    TaskNotFound,
    Unauthenticated,
    UnsupportedMediaType,
    ValidationFailed,
)
from schemas import ErrorBody

STATUS: dict[type[AutoGLMError], int] = {
    InvalidJSON: 400,
    EmptyUpload: 400,
    InvalidCursor: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    TaskNotFound: 404,
    KeyNotFound: 404,
    BlobNotFound: 404,
    FileNotFound: 404,
    IdempotencyConflict: 409,
    NothingToRedeliver: 409,
    SecretsConfigured: 409,
    PayloadTooLarge: 413,
    RecordTooLarge: 413,
    UnsupportedMediaType: 415,
    ValidationFailed: 422,
    RecordRefused: 422,
    RateLimited: 429,
    QuotaExceeded: 429,
    BrokerError: 503,
    Overloaded: 503,
    RecordNotAuthorized: 503,
    StoreError: 503,
    BlobError: 503,
}
"""The HTTP status of each error class; a subclass answers as its nearest listed ancestor."""

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
"""Error codes of the HTTP errors FastAPI and Starlette raise themselves (404 route, 405, 401)."""


M = TypeVar("M", bound=BaseModel)


INT64 = 2**63


def json_numbers(value: Any) -> Any:
    """JSON numbers as the pipeline carries them: an integral float is an int (JSON Schema's
    `integer` includes 5.0), an int beyond 64 bits a float (Kafka records are orjson)."""
    if isinstance(value, dict):
        return {k: json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_numbers(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < INT64:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= INT64:
        return float(value)
    return value


_NUMBER_TO_NORMALIZE = re.compile(rb"[0-9](?:[.eE]|[0-9]{18})")


def _plain_numbers(raw: bytes) -> bool:
    return _NUMBER_TO_NORMALIZE.search(raw) is None


def parse_body(schema: type[M], raw: bytes) -> M:
    """Validate a JSON body with JSON's own types (no "5" for a number, no `true` for 1.0), as
    the OpenAPI document describes it, and FastAPI's error shapes."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        details = [{"loc": ["body", exc.pos], "msg": "JSON decode error", "type": "json_invalid"}]
        raise InvalidJSON("the body is not valid JSON", details) from exc
    # Only a float or an integer of 19 digits or more can change: without one anywhere in the
    # bytes (strings included, so this errs towards the walk), the body is validated as it came.
    normalized = raw if _plain_numbers(raw) else orjson.dumps(json_numbers(data))
    try:
        return schema.model_validate_json(normalized, strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        details = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors]
        raise ValidationFailed("the request does not fit the schema", details) from exc


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response:
    body = ErrorBody.of(code, message, details).model_dump(mode="json")
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def status_of(exc: AutoGLMError) -> int:
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500


def platform_error_response(exc: AutoGLMError) -> Response:
    """The answer to a platform error: its status from `STATUS`, its code, Retry-After."""
    headers: dict[str, str] = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return error_response(status_of(exc), exc.code, exc.message, exc.details, headers or None)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route offers on this path (Starlette names only the first route's)."""
    from api.auth.openapi import served_routes

    path = request.url.path
    methods: set[str] = set()
    for route in served_routes(request.app):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(AutoGLMError)
    async def platform_error(_: Request, exc: AutoGLMError) -> Response:
        return platform_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        kinds = {d["type"] for d in details}
        if kinds & {"json_invalid", "json_type"}:
            return platform_error_response(InvalidJSON("the body is not valid JSON", details))
        return platform_error_response(
            ValidationFailed("the request does not fit the schema", details)
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = HTTP_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(RedisError)
    async def store_down(_: Request, exc: RedisError) -> Response:
        return platform_error_response(StoreError(f"the task store is unavailable: {exc}"))
