"""Token streams: a capped Redis Stream per task, the one writer of `schemas.StreamEntry`.

Read by the SSE endpoint and by the dispatcher's `task.output` webhooks.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import redis

from mcp.names import Keys
from mcp.settings import Settings
from mcp.threads import take_all
from schemas import StreamEntry, TaskStatus
from schemas.task import JsonDict
from workers.backends.base import TaskContext
from workers.outcome import Outcome

log = logging.getLogger(__name__)


class TokenStreams:
    """The worker's writes to its tasks' streams. Every entry (status, token, end) goes through
    one thread, in the order it was written, one XADD each; what piles up while a round trip is
    out goes in the next one, with one EXPIRE per stream. A backend streaming a token calls no
    Redis itself, and a batch's tokens cost one round trip instead of one each."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.keys = Keys.of(settings)
        self.redis = client
        self.maxlen = settings.redis.stream_maxlen
        self.ttl = settings.redis.stream_ttl_s
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="token-streams", daemon=True)
        self._thread.start()

    def writer(self, task_id: str) -> Callable[[str], None]:
        key = self.keys.stream(task_id)

        def write(delta: str) -> None:
            self._queue.put((key, StreamEntry.token(delta)))

        return write

    def status(self, contexts: list[TaskContext], status: TaskStatus) -> None:
        for ctx in contexts:
            if ctx.on_token is not None:
                body = {"status": status.value, "attempt": ctx.attempt}
                self._queue.put((self.keys.stream(ctx.task.task_id), StreamEntry.status(body)))

    def finish(self, outcomes: list[Outcome]) -> None:
        """The terminal entry, written once the outcome is committed."""
        for o in outcomes:
            if o.task.action != "generate" or not o.task.payload.get("stream", True):
                continue
            body: JsonDict = {"status": o.status.value, "attempt": o.attempt}
            if o.error is not None:
                body["error"] = o.error.model_dump()
            self._queue.put((self.keys.stream(o.task.task_id), StreamEntry.end(body)))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until what was written before is in Redis (or was given up)."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            items = take_all(self._queue)
            entries = [item for item in items if isinstance(item, tuple)]
            if entries:
                self._write(entries)
            for item in items:
                if isinstance(item, threading.Event):
                    item.set()
                stop = stop or item is None

    def _write(self, entries: list[tuple[str, StreamEntry]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for key, entry in entries:
            fields: dict[Any, Any] = entry.fields()
            pipe.xadd(key, fields, maxlen=self.maxlen, approximate=True)
        for key in dict.fromkeys(key for key, _ in entries):
            pipe.expire(key, self.ttl)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            # Streaming is a courtesy: a Redis hiccup must not fail the tasks themselves.
            log.warning("%d stream entries not written: %s", len(entries), exc)


# An entry for a stream, a flush marker, or None: stop.
_Item = tuple[str, StreamEntry] | threading.Event | None
