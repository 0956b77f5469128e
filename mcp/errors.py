"""One error tree for the platform. HTTP status codes are chosen in `api/`, never here."""

from __future__ import annotations

from typing import Any


class AutoGLMError(Exception):
    """Root of every error the platform raises on purpose."""

    code = "internal_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationFailed(AutoGLMError):
    """Base for input the platform refuses."""

    code = "invalid_request"


class InvalidJSON(ValidationFailed):
    """The body is not JSON at all."""

    code = "invalid_json"


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


class AccessError(AutoGLMError):
    """Base for callers the platform refuses."""

    code = "forbidden"


class Unauthenticated(AccessError):
    """No credentials, or credentials that are bad, expired or revoked."""

    code = "unauthorized"


class PermissionDenied(AccessError):
    """The caller's role lacks the permission the route needs."""

    code = "forbidden"


class KeyNotFound(AutoGLMError):
    """No managed API key with this id."""

    code = "key_not_found"


class PayloadTooLarge(AutoGLMError):
    """The body is larger than the project's limit."""

    code = "payload_too_large"


class QuotaExceeded(AutoGLMError):
    """The project has as many queued and running tasks as its quota allows."""

    code = "quota_exceeded"

    def __init__(self, message: str, retry_after_s: float, details: Any = None) -> None:
        super().__init__(message, details)
        self.retry_after_s = retry_after_s


class BrokerError(AutoGLMError):
    """Base for Kafka failures."""

    code = "broker_unavailable"


class BrokerUnavailable(BrokerError):
    """Kafka did not accept the transaction; nothing was recorded."""

    code = "broker_unavailable"


class ProducerFenced(BrokerError):
    """Another process took over this transactional.id; this one must stop."""

    code = "producer_fenced"


class StoreError(AutoGLMError):
    """Base for Redis failures."""

    code = "store_unavailable"


class BlobError(AutoGLMError):
    """Base for failures of the blob store (a directory or an S3-compatible bucket)."""

    code = "blob_store_unavailable"


class BlobStoreUnavailable(BlobError):
    """The blob store did not answer or refused the request; nothing was recorded."""

    code = "blob_store_unavailable"


class BlobNotFound(BlobError):
    """No blob is stored under this key (never written, deleted or expired)."""

    code = "blob_not_found"


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


class WebhookError(AutoGLMError):
    """Base for failures of webhook delivery."""

    code = "webhook_error"


class InvalidWebhookSecret(WebhookError):
    """A configured webhook secret is not `whsec_` followed by base64 key bytes."""

    code = "invalid_webhook_secret"
