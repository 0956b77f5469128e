"""The MCP envelope: the seed design's request shape, accepted by `POST /v1/infer`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from schemas.task import Frozen, JsonDict, utcnow


class EnvelopeMetadata(Frozen):
    source: str = "api"
    timestamp: datetime = Field(default_factory=utcnow)


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
