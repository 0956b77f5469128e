"""autoglm-client: typed sync and async clients, a CLI and webhook helpers for autoglm-mcp."""

from autoglm_client.async_client import AsyncClient
from autoglm_client.calls import TaskRequest
from autoglm_client.client import Client
from autoglm_client.errors import (
    APIError,
    AutoGLMError,
    ConnectionFailed,
    WaitTimeout,
    WebhookVerificationError,
)
from autoglm_client.models import (
    Accepted,
    Batch,
    BatchItem,
    BatchResultLine,
    BatchSubmitted,
    StreamEvent,
    Task,
    TaskStatus,
    WebhookEvent,
    WebhookSecrets,
)
from autoglm_client.retry import RetryPolicy
from autoglm_client.webhooks import MemoryDeduplicator, WebhookReceiver, verify

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "Accepted",
    "AsyncClient",
    "AutoGLMError",
    "Batch",
    "BatchItem",
    "BatchResultLine",
    "BatchSubmitted",
    "Client",
    "ConnectionFailed",
    "MemoryDeduplicator",
    "RetryPolicy",
    "StreamEvent",
    "Task",
    "TaskRequest",
    "TaskStatus",
    "WaitTimeout",
    "WebhookEvent",
    "WebhookReceiver",
    "WebhookSecrets",
    "WebhookVerificationError",
    "__version__",
    "verify",
]
