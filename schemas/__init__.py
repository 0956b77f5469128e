"""Messages of autoglm-mcp: immutable, versioned, free of I/O."""

from schemas.api import (
    InferAccepted,
    InferredTask,
    RotateRequest,
    SubmitRequest,
    SubmitResponse,
    TaskDetail,
    TaskLinks,
    TaskView,
    WebhookBody,
    WebhookView,
)
from schemas.codec import DecodeError, dumps, loads
from schemas.envelope import EnvelopeMetadata, MCPEnvelope, MCPResponse
from schemas.errors import AutoGLMError, ErrorBody, ErrorDetail
from schemas.stream import StreamEntry
from schemas.task import (
    PRIORITIES,
    SCHEMA_VERSION,
    TERMINAL_STATUSES,
    AsyncTask,
    Idempotency,
    Priority,
    TaskError,
    TaskEvent,
    TaskResult,
    TaskStatus,
    TraceContext,
    new_task_id,
    utcnow,
)
from schemas.webhooks import WebhookAttempt, WebhookRecord

__all__ = [
    "PRIORITIES",
    "SCHEMA_VERSION",
    "TERMINAL_STATUSES",
    "AsyncTask",
    "AutoGLMError",
    "DecodeError",
    "EnvelopeMetadata",
    "ErrorBody",
    "ErrorDetail",
    "Idempotency",
    "InferAccepted",
    "InferredTask",
    "MCPEnvelope",
    "MCPResponse",
    "Priority",
    "RotateRequest",
    "StreamEntry",
    "SubmitRequest",
    "SubmitResponse",
    "TaskDetail",
    "TaskError",
    "TaskEvent",
    "TaskLinks",
    "TaskResult",
    "TaskStatus",
    "TaskView",
    "TraceContext",
    "WebhookAttempt",
    "WebhookBody",
    "WebhookRecord",
    "WebhookView",
    "dumps",
    "loads",
    "new_task_id",
    "utcnow",
]
