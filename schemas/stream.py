"""One entry of a task's token stream (the Redis Stream `stream:<task_id>`).

The worker writes entries (`fields`); the SSE endpoint and the `task.output` webhooks read them
(`of_fields`). `token` entries carry a text `delta`; `status` (the attempt began) and `end`
(the outcome was committed) carry a JSON `data` object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import orjson

from schemas.task import Frozen, JsonDict

StreamEntryType = Literal["token", "status", "end"]


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class StreamEntry(Frozen):
    type: StreamEntryType
    delta: str | None = None
    data: JsonDict | None = None

    @classmethod
    def token(cls, delta: str) -> StreamEntry:
        return cls(type="token", delta=delta)

    @classmethod
    def status(cls, data: JsonDict) -> StreamEntry:
        return cls(type="status", data=data)

    @classmethod
    def end(cls, data: JsonDict) -> StreamEntry:
        return cls(type="end", data=data)

    def fields(self) -> dict[str, str]:
        """The entry as Redis Stream fields."""
        if self.type == "token":
            return {"type": "token", "delta": self.delta or ""}
        return {"type": self.type, "data": orjson.dumps(self.data or {}).decode()}

    @classmethod
    def of_fields(cls, fields: Mapping[bytes, bytes] | Mapping[str, str]) -> StreamEntry:
        """An entry read back from Redis (bytes or text fields)."""
        text = {_text(k): _text(v) for k, v in fields.items()}
        kind = text.get("type", "token")
        if kind == "token":
            return cls(type="token", delta=text.get("delta", ""))
        return cls.model_validate({"type": kind, "data": orjson.loads(text.get("data", "{}"))})

    def event_data(self) -> JsonDict:
        """What the entry says as an SSE event's data."""
        return {"delta": self.delta or ""} if self.type == "token" else self.data or {}
