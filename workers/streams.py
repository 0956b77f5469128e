"""Token streams: a capped Redis Stream per task, the one writer of `schemas.StreamEntry`.

Read by the SSE endpoint and by the dispatcher's `task.output` webhooks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from mcp.names import Keys
from mcp.settings import Settings
from schemas import StreamEntry, TaskStatus
from schemas.task import JsonDict
from workers.backends.base import TaskContext
from workers.outcome import Outcome

log = logging.getLogger(__name__)


class TokenStreams:
    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.keys = Keys.of(settings)
        self.redis = client
        self.maxlen = settings.redis.stream_maxlen
        self.ttl = settings.redis.stream_ttl_s

    def writer(self, task_id: str) -> Callable[[str], None]:
        key = self.keys.stream(task_id)

        def write(delta: str) -> None:
            # Streaming is a courtesy: a Redis hiccup must not fail the task itself.
            try:
                self._add(key, StreamEntry.token(delta))
            except redis.RedisError as exc:
                log.debug("token not streamed: %s", exc)

        return write

    def _add(self, key: str, entry: StreamEntry, pipe: redis.client.Pipeline | None = None) -> None:
        target = pipe if pipe is not None else self.redis.pipeline(transaction=False)
        fields: dict[Any, Any] = entry.fields()
        target.xadd(key, fields, maxlen=self.maxlen, approximate=True)
        target.expire(key, self.ttl)
        if pipe is None:
            target.execute()

    def status(self, contexts: list[TaskContext], status: TaskStatus) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for ctx in contexts:
            if ctx.on_token is not None:
                body = {"status": status.value, "attempt": ctx.attempt}
                self._add(self.keys.stream(ctx.task.task_id), StreamEntry.status(body), pipe)
        pipe.execute()

    def finish(self, outcomes: list[Outcome]) -> None:
        """The terminal entry, written once the outcome is committed."""
        pipe = self.redis.pipeline(transaction=False)
        for o in outcomes:
            if o.task.action != "generate" or not o.task.payload.get("stream", True):
                continue
            body: JsonDict = {"status": o.status.value, "attempt": o.attempt}
            if o.error is not None:
                body["error"] = o.error.model_dump()
            self._add(self.keys.stream(o.task.task_id), StreamEntry.end(body), pipe)
        pipe.execute()
