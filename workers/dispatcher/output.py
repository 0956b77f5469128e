"""`task.output` webhooks: what a running task produced, at most one per throttle interval.

The output comes from the task's Redis Stream of token deltas (`Keys.stream`) and from
`running` task-events that carry a partial `result`. Watched tasks are kept in Redis per slot,
so a restarted dispatcher goes on where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from pydantic import Field

from mcp.names import Keys
from mcp.settings import Settings
from mcp.webhook_store import NewDelivery, WebhookStore
from schemas.task import Frozen, JsonDict, utcnow
from workers.dispatcher import webhooks
from workers.dispatcher.targets import WebhookTarget

log = logging.getLogger(__name__)

TEXT_FIELDS = ("delta", "text", "token", "content")
MAX_ENTRIES = 1000


class OutputWatch(Frozen):
    target: WebhookTarget
    attempt: int
    started_at: datetime
    deadline: float
    last_id: str = "0-0"
    seq: int = 0
    last_sent: float = 0.0
    pending: list[JsonDict] = Field(default_factory=list)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def chunk_of(entries: list[JsonDict]) -> JsonDict:
    text = "".join(str(e[f]) for e in entries for f in TEXT_FIELDS if isinstance(e.get(f), str))
    return {"text": text, "events": entries}


class OutputWatcher:
    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Settings,
        store: WebhookStore,
        slot: str,
        on_scheduled: Callable[[], None] = lambda: None,
    ) -> None:
        self.redis = redis
        self.store = store
        self.keys = Keys.of(settings)
        self.key = self.keys.webhook_watch(slot)
        self.throttle_s = settings.webhooks.output_throttle_ms / 1000
        self.on_scheduled = on_scheduled
        self.watches: dict[str, OutputWatch] = {}

    async def load(self) -> None:
        for task_id, raw in (await self.redis.hgetall(self.key)).items():
            self.watches[_text(task_id)] = OutputWatch.model_validate_json(raw)

    async def _save(self, watches: list[OutputWatch]) -> None:
        if watches:
            mapping: dict[Any, Any] = {w.target.task_id: w.model_dump_json() for w in watches}
            await self.redis.hset(self.key, mapping=mapping)

    async def watch(self, target: WebhookTarget, attempt: int, at: datetime) -> None:
        current = self.watches.get(target.task_id)
        if current is not None and current.attempt >= attempt:
            return
        watch = OutputWatch(
            target=target,
            attempt=attempt,
            started_at=at,
            deadline=time.time() + target.timeout_s + 60,
            seq=current.seq if current else 0,
            last_id=current.last_id if current else "0-0",
        )
        self.watches[target.task_id] = watch
        await self._save([watch])

    def progress(self, task_id: str, result: JsonDict) -> None:
        """A partial result from a `running` event; sent with the next output webhook."""
        watch = self.watches.get(task_id)
        if watch is not None:
            self.watches[task_id] = watch.model_copy(update={"pending": [*watch.pending, result]})

    async def finish(self, task_ids: list[str]) -> None:
        gone = [t for t in task_ids if self.watches.pop(t, None) is not None]
        if gone:
            await self.redis.hdel(self.key, *gone)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("forwarding task output failed")
            try:
                await asyncio.wait_for(stop.wait(), self.throttle_s)
            except TimeoutError:
                pass

    async def tick(self) -> None:
        if not self.watches:
            return
        now = time.time()
        expired = [t for t, w in self.watches.items() if w.deadline < now]
        await self.finish(expired)
        due = [w for w in self.watches.values() if now - w.last_sent >= self.throttle_s]
        if not due:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for w in due:
                start = "-" if w.last_id == "0-0" else f"({w.last_id}"
                pipe.xrange(self.keys.stream(w.target.task_id), start, "+", count=MAX_ENTRIES)
            streams = await pipe.execute()
        deliveries: list[NewDelivery] = []
        changed: list[OutputWatch] = []
        for w, entries in zip(due, streams, strict=True):
            decoded = [
                {_text(k): _json(v) for k, v in fields.items()} for _, fields in entries or []
            ]
            if not decoded and not w.pending:
                continue
            seq = w.seq + 1
            chunk = {"seq": seq, **chunk_of(w.pending + decoded)}
            at = utcnow()
            deliveries.append(webhooks.output(w.target, seq, at, w.started_at, w.attempt, chunk))
            update: dict[str, Any] = {"seq": seq, "last_sent": now, "pending": w.pending}
            if entries:
                update["last_id"] = _text(entries[-1][0])
            changed.append(w.model_copy(update=update))
        await self.store.schedule(deliveries)
        saved: list[OutputWatch] = []
        for w in changed:
            current = self.watches.get(w.target.task_id)
            if current is None:
                continue
            # Partial results that arrived while this tick ran wait for the next one.
            arrived = current.pending[len(w.pending) :]
            saved.append(w.model_copy(update={"pending": arrived}))
            self.watches[w.target.task_id] = saved[-1]
        await self._save(saved)
        if deliveries:
            self.on_scheduled()


def _json(value: Any) -> Any:
    """Stream fields holding a JSON object or array are decoded; any other text stays text."""
    text = _text(value)
    if not text.startswith(("{", "[")):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
