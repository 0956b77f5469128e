"""Payload schemas per action, checked at submit so that a worker never sees a malformed task."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from schemas.files import FileRef


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChatMessage(Payload):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, object]]


# Exactly one of `prompt` and `messages`, in JSON Schema: the OpenAPI document says what
# `_one_input` checks.
ONE_INPUT: dict[str, JsonValue] = {
    "oneOf": [
        {
            "required": ["prompt"],
            "properties": {"prompt": {"type": "string"}, "messages": {"type": "null"}},
        },
        {
            "required": ["messages"],
            "properties": {"messages": {"type": "array"}, "prompt": {"type": "null"}},
        },
    ]
}


class GeneratePayload(Payload):
    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=ONE_INPUT)

    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    max_tokens: int = Field(default=64, ge=1, le=8192)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list, max_length=8)
    seed: int | None = None
    stream: bool = True

    @model_validator(mode="after")
    def _one_input(self) -> GeneratePayload:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        return self


class EmbedPayload(Payload):
    input: Annotated[str, Field(min_length=1)] | Annotated[list[str], Field(min_length=1)]


class ClassifyPayload(Payload):
    input: str = Field(min_length=1)
    labels: list[str] = Field(min_length=2, max_length=64)


class PhoneStep(Payload):
    """One earlier step of an Open-AutoGLM episode."""

    model_config = ConfigDict(frozen=True, extra="allow")
    instruction: str | None = None
    answer: str | None = None
    action: dict[str, object] | None = None


class PhoneStepPayload(Payload):
    instruction: str = Field(min_length=1)
    screenshot: str | FileRef | None = Field(
        default=None,
        description="base64 PNG/JPEG/WebP, or {'file_id': …} of a file uploaded to /v1/files",
    )
    history: list[PhoneStep] = Field(default_factory=list)
    max_tokens: int = Field(default=256, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)


# Payload fields that take image bytes, per action: inline base64, a file part, or a file id.
IMAGE_FIELDS: dict[str, tuple[str, ...]] = {"phone_step": ("screenshot",)}

PAYLOADS: dict[str, type[Payload]] = {
    "generate": GeneratePayload,
    "embed": EmbedPayload,
    "classify": ClassifyPayload,
    "phone_step": PhoneStepPayload,
}
