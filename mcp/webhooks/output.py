"""`task.output` webhooks: what a running task produced, at most one per throttle interval.

The output comes from the task's token stream (`Keys.stream`, entries of `schemas.StreamEntry`).
Watched tasks are kept in Redis per slot, so a restarted dispatcher goes on where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from pydantic import ConfigDict

from mcp.names import Keys
from mcp.settings import Settings
from mcp.webhooks import events
from mcp.webhooks.deliveries import NewDelivery, scheduled
from mcp.webhooks.journal import WebhookJournal
from mcp.webhooks.store import WebhookStore
from mcp.webhooks.targets import WebhookTarget
from schemas import StreamEntry
from schemas.task import Frozen, JsonDict, utcnow

log = logging.getLogger(__name__)

MAX_ENTRIES = 1000


class OutputWatch(Frozen):
    # Watches saved by earlier versions carry fields this one no longer has.
    model_config = ConfigDict(frozen=True, extra="ignore")

    target: WebhookTarget
    attempt: int
    started_at: datetime
    deadline: float
    last_id: str = "0-0"
    seq: int = 0
    last_sent: float = 0.0


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def chunk_of(entries: list[StreamEntry]) -> JsonDict:
    text = "".join(e.delta for e in entries if e.delta is not None)
    return {"text": text, "events": [e.model_dump(mode="json", exclude_none=True) for e in entries]}


class OutputWatcher:
    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Settings,
        store: WebhookStore,
        journal: WebhookJournal,
        slot: str,
        on_scheduled: Callable[[], None] = lambda: None,
    ) -> None:
        self.redis = redis
        self.store = store
        self.journal = journal
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
            if not entries:
                continue
            seq = w.seq + 1
            chunk = {"seq": seq, **chunk_of([StreamEntry.of_fields(f) for _, f in entries])}
            at = utcnow()
            deliveries.append(events.output(w.target, seq, at, w.started_at, w.attempt, chunk))
            update = {"seq": seq, "last_sent": now, "last_id": _text(entries[-1][0])}
            changed.append(w.model_copy(update=update))
        # Journaled before the watches move on: a failed commit sends the same output next tick.
        states = scheduled(deliveries)
        await self.journal.record(states)
        await self.store.apply(states)
        saved: list[OutputWatch] = []
        for w in changed:
            if w.target.task_id in self.watches:  # not finished while this tick ran
                self.watches[w.target.task_id] = w
                saved.append(w)
        await self._save(saved)
        if deliveries:
            self.on_scheduled()
