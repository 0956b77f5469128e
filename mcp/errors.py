"""One error tree for the platform (dramatiq's `errors.py` is the model).

Every error the platform raises descends from `AutoGLMError` (in `schemas.errors`, so that the
message layer's `DecodeError` belongs to the tree too). Each class carries what callers decide
on: `code` (the error body's code), `permanent` (a task failing with it is not retried) and
`retry_after_s` (a client may try again after that long). HTTP statuses are chosen in
`api/errors.py`, in one table, never here.

    AutoGLMError
    ├── DecodeError                 schemas.codec: bytes that are not the expected message
    ├── ValidationFailed            input the platform refuses (permanent)
    │   ├── InvalidJSON, InvalidCursor, PayloadTooLarge (── FileTooLarge), UnknownModel,
    │   │   UnknownAction, InvalidPayload, InvalidImage, UnsupportedMediaType
    │   └── CallbackRefused
    ├── IdempotencyConflict, TaskNotFound, KeyNotFound, FileNotFound (── UnknownInputFile),
    │   RateLimited, QuotaExceeded, NothingToRedeliver, SecretsConfigured
    ├── Overloaded                  api.admission: refused before the body is read
    ├── AccessError                 callers the platform refuses
    │   ├── Unauthenticated
    │   └── PermissionDenied
    ├── BrokerError                 Kafka
    │   ├── BrokerUnavailable
    │   └── TransactionLost         mcp.transaction: the consumer rewinds
    ├── RecordRefused               Kafka refused one record (mcp.records, permanent)
    │   ├── RecordTooLarge
    │   └── RecordNotAuthorized
    ├── StoreError                  Redis
    ├── BlobError                   the blob store (mcp.blobs)
    │   ├── BlobStoreUnavailable
    │   └── BlobNotFound
    ├── BackendError                model backends
    │   ├── TaskTimeout, TaskCancelled, ModelLoadError
    │   ├── InputMissing (permanent)   workers.inputs: a file the task refers to is gone
    │   ├── UpstreamError ── UpstreamRefused (permanent)   workers.backends.openai_backend
    │   └── EchoFailure             workers.backends.echo
    └── ConfigurationError
        └── InvalidWebhookSecret
"""

from __future__ import annotations

from typing import Any

from schemas.errors import AutoGLMError

__all__ = [
    "AccessError",
    "AutoGLMError",
    "BackendError",
    "BatchNotFound",
    "BlobError",
    "BlobNotFound",
    "BlobStoreUnavailable",
    "BrokerError",
    "BrokerUnavailable",
    "CallbackRefused",
    "ConfigurationError",
    "EmptyUpload",
    "FileNotFound",
    "FileTooLarge",
    "IdempotencyConflict",
    "InvalidCursor",
    "InvalidImage",
    "InvalidJSON",
    "InvalidPayload",
    "InvalidWebhookSecret",
    "KeyNotFound",
    "ModelLoadError",
    "NothingToRedeliver",
    "Overloaded",
    "PayloadTooLarge",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimited",
    "RecordNotAuthorized",
    "RecordRefused",
    "RecordTooLarge",
    "SecretsConfigured",
    "StoreError",
    "TaskCancelled",
    "TaskNotFound",
    "TaskTimeout",
    "Unauthenticated",
    "UnknownAction",
    "UnknownInputFile",
    "UnknownModel",
    "UnsupportedMediaType",
    "ValidationFailed",
]


class ValidationFailed(AutoGLMError):
    """Base for input the platform refuses; the same input is refused again, so permanent."""

    code = "invalid_request"
    permanent = True


class InvalidJSON(ValidationFailed):
    """The body is not JSON at all."""

    code = "invalid_json"


class PayloadTooLarge(ValidationFailed):
    """The body is larger than the server's or the project's limit."""

    code = "payload_too_large"


class InvalidCursor(ValidationFailed):
    """A listing cursor that this API did not hand out."""

    code = "invalid_cursor"


class UnknownModel(ValidationFailed):
    """The task names a model that is not in the registry."""

    code = "unknown_model"


class UnknownAction(ValidationFailed):
    """The model exists but does not offer this action."""

    code = "unknown_action"


class InvalidPayload(ValidationFailed):
    """The payload does not fit the action's schema."""

    code = "invalid_payload"


class CallbackRefused(ValidationFailed):
    """The callback URL points somewhere the platform will not send requests."""

    code = "callback_url_refused"


class IdempotencyConflict(AutoGLMError):
    """The same Idempotency-Key came back with a different body."""

    code = "idempotency_conflict"


class TaskNotFound(AutoGLMError):
    """No task with this id is visible to the caller."""

    code = "task_not_found"


class KeyNotFound(AutoGLMError):
    """No managed API key with this id."""

    code = "key_not_found"


class AccessError(AutoGLMError):
    """Base for callers the platform refuses."""

    code = "forbidden"


class Unauthenticated(AccessError):
    """No credentials, or credentials that are bad, expired or revoked."""

    code = "unauthorized"


class PermissionDenied(AccessError):
    """The caller's role lacks the permission the route needs."""

    code = "forbidden"


class QuotaExceeded(AutoGLMError):
    """The project has as many queued and running tasks as its quota allows."""

    code = "quota_exceeded"

    def __init__(self, message: str, retry_after_s: float, details: Any = None) -> None:
        super().__init__(message, details)
        self.retry_after_s = max(1, round(retry_after_s + 0.5))


class BatchNotFound(TaskNotFound):
    """No JSONL batch with this id is visible to the caller."""

    code = "batch_not_found"


class SecretsConfigured(AutoGLMError):
    """The project's webhook secrets come from the configuration; rotate them there."""

    code = "secrets_configured"


class NothingToRedeliver(AutoGLMError):
    """The task has no final webhook yet (it is still running, or has no callback URL)."""

    code = "no_final_webhook"


class RateLimited(AutoGLMError):
    """A project submitted faster than its rate limit allows."""

    code = "rate_limited"

    def __init__(self, wait_s: float) -> None:
        retry = max(1, round(wait_s + 0.5))
        super().__init__(f"too many submissions; retry in {retry} s", {"retry_after_s": retry})
        self.retry_after_s = retry


class BrokerError(AutoGLMError):
    """Base for Kafka failures."""

    code = "broker_unavailable"
    retry_after_s = 1


class BrokerUnavailable(BrokerError):
    """Kafka did not accept the transaction; nothing was recorded."""

    code = "broker_unavailable"


class RecordRefused(AutoGLMError):
    """Kafka refused one record of a transaction; the other records went on without it."""

    code = "record_refused"
    permanent = True


class RecordTooLarge(RecordRefused):
    """A record is larger than the producer's `message.max.bytes` or its topic's limit."""

    code = "record_too_large"


class RecordNotAuthorized(RecordRefused):
    """The platform's Kafka credentials may not write the record's topic."""

    code = "record_not_authorized"


class Overloaded(AutoGLMError):
    """The API holds as much work as it can finish in time; the submission was not read."""

    code = "overloaded"

    def __init__(self, message: str, details: dict[str, Any], retry_after_s: int = 1) -> None:
        super().__init__(message, {**details, "retry_after_s": retry_after_s})
        self.retry_after_s = retry_after_s


class StoreError(AutoGLMError):
    """Base for Redis failures."""

    code = "store_unavailable"
    retry_after_s = 1


class WebhookStateLost(StoreError):
    """Redis no longer holds webhook state that was applied to it; it is rebuilt from Kafka."""

    code = "webhook_state_lost"


class BlobError(AutoGLMError):
    """Base for failures of the blob store (a directory or an S3-compatible bucket)."""

    code = "blob_store_unavailable"


class BlobStoreUnavailable(BlobError):
    """The blob store did not answer or refused the request; nothing was recorded."""

    code = "blob_store_unavailable"
    retry_after_s = 1


class BlobNotFound(BlobError):
    """No blob is stored under this key (never written, deleted or expired)."""

    code = "blob_not_found"


class FileNotFound(AutoGLMError):
    """No live file with this id belongs to the caller's project."""

    code = "file_not_found"


class FileTooLarge(PayloadTooLarge):
    """An upload or inline input is larger than the configured limit; nothing was kept."""

    code = "payload_too_large"


class EmptyUpload(ValidationFailed):
    """An upload without a single byte: nothing a task could refer to."""

    code = "empty_upload"


class UnknownInputFile(FileNotFound):
    """A payload refers to a file that the caller's project does not have (or no longer has)."""

    code = "unknown_file"


class UnsupportedMediaType(ValidationFailed):
    """The body comes in an encoding this route does not read."""

    code = "unsupported_media_type"


class InvalidImage(ValidationFailed):
    """An image input is not a PNG, JPEG or WebP image that decodes."""

    code = "invalid_image"


class BackendError(AutoGLMError):
    """Base for failures inside a model backend."""

    code = "backend_error"


class TaskTimeout(BackendError):
    """The task ran longer than its `timeout_s`."""

    code = "timeout"


class TaskCancelled(BackendError):
    """The task was cancelled while it ran."""

    code = "cancelled"


class ModelLoadError(BackendError):
    """A model checkpoint could not be loaded."""

    code = "model_load_failed"


class ConfigurationError(AutoGLMError):
    """Base for settings a process cannot work with; it refuses to start."""

    code = "invalid_configuration"


class InvalidWebhookSecret(ConfigurationError):
    """A configured webhook secret is not `whsec_` followed by base64 key bytes."""

    code = "invalid_webhook_secret"
