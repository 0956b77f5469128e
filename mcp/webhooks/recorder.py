"""Attempt outcomes recorded in batches: one journal commit and a few Redis round trips for all
the attempts that ended meanwhile, instead of a commit and three round trips each.

Under load (the previous batch carried more than one outcome) a batch starts at most every
`window_s` after the previous one: Kafka's cost is per transaction (the coordinator's log
writes, a marker on every partition written, the fetches it wakes), so fewer, larger
transactions save the broker most of its work per delivery. A lone outcome is recorded at once.

An attempt's outcome still counts only once it is committed to `webhook-deliveries` and applied
to Redis; each attempt awaits its own outcome's recording, and one that fails is not recorded
(its claim lapses and the delivery is attempted again, with the same webhook id).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from mcp.webhooks.deliveries import Delivery, encoded
from mcp.webhooks.journal import WebhookJournal
from mcp.webhooks.store import WebhookStore
from schemas import WebhookRecord

MAX_FLUSHES = 2
"""Batches being recorded at once: while one waits for its commit, the next gathers."""
MAX_BATCH = 500


@dataclass
class _Ended:
    delivery: Delivery
    state: WebhookRecord
    done: asyncio.Future[None]


class Recorder:
    def __init__(
        self, journal: WebhookJournal, store: WebhookStore, slot: str, window_s: float = 0.0
    ) -> None:
        self.journal = journal
        self.window_s = window_s
        self.store = store
        self.slot = slot
        self._pending: list[_Ended] = []
        self._flushes: set[asyncio.Task[None]] = set()
        self._scheduled = False
        self._last_start = float("-inf")
        self._last_size = 0
        self.batches = 0

    async def record(self, delivery: Delivery, state: WebhookRecord) -> None:
        """Journal `state`, the outcome of an attempt of `delivery`, then apply it to Redis and
        release the claim; raises what kept that from happening."""
        loop = asyncio.get_running_loop()
        ended = _Ended(delivery, state, loop.create_future())
        self._pending.append(ended)
        if not self._scheduled:
            # Attempts that end in the same turn of the event loop go in one batch.
            self._scheduled = True
            loop.call_soon(self._start)
        await ended.done

    def _start(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._pending and len(self._flushes) < MAX_FLUSHES:
            wait = self._last_start + self.window_s - loop.time() if self._last_size > 1 else 0.0
            if wait > 0 and len(self._pending) < MAX_BATCH:
                self._scheduled = True
                loop.call_later(wait, self._start)
                return
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            self._last_start = loop.time()
            self._last_size = len(batch)
            task = loop.create_task(self._flush(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if self._pending and not self._scheduled:
            self._start()

    async def _flush(self, batch: list[_Ended]) -> None:
        self.batches += 1
        try:
            states = [e.state for e in batch]
            made = [encoded(state) for state in states]  # once, for Kafka and Redis alike
            await self.journal.record(states, made)
            outcomes = [(e.delivery, e.state) for e in batch]
            await self.store.ended_many(self.slot, outcomes, own=self.journal.enabled, encoded=made)
        except BaseException as exc:
            for ended in batch:
                if not ended.done.done():
                    ended.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for ended in batch:
                if not ended.done.done():
                    ended.done.set_result(None)
