"""The MCP envelope: the seed design's request shape, accepted by `POST /v1/infer`."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from schemas.task import Frozen, JsonDict, utcnow

# RFC 3339, as the OpenAPI document's `date-time` says: no unix numbers, no naive times.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def rfc3339(value: Any) -> Any:
    """Only what the OpenAPI document calls `date-time`: no unix numbers, no naive times."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and RFC3339.match(value):
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    raise ValueError("expected an RFC 3339 date-time string")


DateTime = Annotated[datetime, BeforeValidator(rfc3339)]
"""A date-time parsed exactly as JSON Schema's `date-time` format reads it."""


class EnvelopeMetadata(Frozen):
    source: str = "api"
    timestamp: datetime = Field(default_factory=utcnow)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        if isinstance(value, datetime):
            return value
        if isinstance(value, str) and RFC3339.match(value):
            return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        raise ValueError("timestamp must be an RFC 3339 date-time string")


class MCPEnvelope(Frozen):
    """`request_id` doubles as the idempotency key; `payload.model` selects the model."""

    request_id: str = Field(min_length=1, max_length=256)
    action: str = Field(min_length=1, max_length=64)
    payload: JsonDict = Field(default_factory=dict)
    metadata: EnvelopeMetadata = Field(default_factory=EnvelopeMetadata)


class MCPResponse(Frozen):
    request_id: str
    status: str
    result: Any = None
    error: Any = None
