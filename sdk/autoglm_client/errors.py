"""Errors of the client: one exception class per error code of the API.

`APIError` carries the HTTP status and the error body `{"error": {"code", "message",
"details"}}`. Codes the client does not know yet map to the class of their HTTP status, so
`except NotFoundError` also catches a future `file_not_found`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class AutoGLMError(Exception):
    """Root of every error this client raises."""


class ConnectionFailed(AutoGLMError):
    """The API could not be reached (after the retries)."""


class WaitTimeout(AutoGLMError):
    """The task did not finish within the time the caller was willing to wait."""

    def __init__(self, task_id: str, timeout_s: float) -> None:
        super().__init__(f"task {task_id} did not finish within {timeout_s:g} s")
        self.task_id = task_id
        self.timeout_s = timeout_s


class WebhookVerificationError(AutoGLMError):
    """A webhook's signature, timestamp or headers do not check out."""


class APIError(AutoGLMError):
    """The API answered with an error body."""

    status_code = 0
    code = "error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str,
        details: Any = None,
        retry_after_s: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.message = message
        self.status_code = status_code
        self.code = code
        self.details = details
        self.retry_after_s = retry_after_s
        self.request_id = request_id


class BadRequest(APIError):
    """400: the request could not be read."""


class InvalidJSON(BadRequest):
    """The body is not valid JSON."""


class AuthenticationError(APIError):
    """401: missing or invalid API key or token."""


class PermissionDenied(APIError):
    """403: the key's role does not allow this."""


class NotFoundError(APIError):
    """404: no such object for this project (or no such route)."""


class TaskNotFound(NotFoundError):
    """No task with this id is visible to the caller."""


class Conflict(APIError):
    """409: the request conflicts with an earlier one."""


class IdempotencyConflict(Conflict):
    """The Idempotency-Key came back with a different body."""


class NothingToRedeliver(Conflict):
    """The task has no final webhook to redeliver yet."""


class PayloadTooLarge(APIError):
    """413: the body is over the size limit."""


class UnsupportedMediaType(APIError):
    """415: the content type is not accepted."""


class InvalidRequest(APIError):
    """422: the request does not fit the schema."""


class UnknownModel(InvalidRequest):
    """The task names a model the platform does not serve."""


class UnknownAction(InvalidRequest):
    """The model does not offer this action."""


class InvalidPayload(InvalidRequest):
    """The payload does not fit the action's schema."""


class CallbackRefused(InvalidRequest):
    """The callback URL points somewhere the platform will not send requests."""


class RateLimited(APIError):
    """429: over the project's rate or quota; `retry_after_s` says when to come back."""


class ServiceUnavailable(APIError):
    """503: the platform cannot take the request now; nothing was recorded."""


class BrokerUnavailable(ServiceUnavailable):
    """Kafka did not accept the transaction; nothing was recorded."""


class StoreUnavailable(ServiceUnavailable):
    """The task store (Redis) is unavailable."""


class ServerError(APIError):
    """5xx other than 503."""


BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFoundError,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidRequest,
    429: RateLimited,
    503: ServiceUnavailable,
}

BY_CODE: dict[str, type[APIError]] = {
    "invalid_json": InvalidJSON,
    "bad_request": BadRequest,
    "unauthorized": AuthenticationError,
    "forbidden": PermissionDenied,
    "not_found": NotFoundError,
    "task_not_found": TaskNotFound,
    "idempotency_conflict": IdempotencyConflict,
    "no_final_webhook": NothingToRedeliver,
    "payload_too_large": PayloadTooLarge,
    "unsupported_media_type": UnsupportedMediaType,
    "invalid_request": InvalidRequest,
    "unknown_model": UnknownModel,
    "unknown_action": UnknownAction,
    "invalid_payload": InvalidPayload,
    "callback_url_refused": CallbackRefused,
    "rate_limited": RateLimited,
    "unavailable": ServiceUnavailable,
    "broker_unavailable": BrokerUnavailable,
    "store_unavailable": StoreUnavailable,
}


def error_class(status_code: int, code: str) -> type[APIError]:
    known = BY_CODE.get(code)
    if known is not None and issubclass(known, BY_STATUS.get(status_code, APIError)):
        return known
    if status_code in BY_STATUS:
        return BY_STATUS[status_code]
    return ServerError if status_code >= 500 else APIError


def retry_after_of(response: httpx.Response) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), else None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from(response: httpx.Response) -> APIError:
    """The exception for an error answer, whatever its body looks like."""
    code, message, details = "", response.reason_phrase or "error", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = str(error.get("code", ""))
        message = str(error.get("message", message))
        details = error.get("details")
    cls = error_class(response.status_code, code)
    return cls(
        message,
        status_code=response.status_code,
        code=code or cls.__name__,
        details=details,
        retry_after_s=retry_after_of(response),
        request_id=response.headers.get("x-request-id"),
    )
