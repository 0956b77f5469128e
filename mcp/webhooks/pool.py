"""Attempts deliveries that are due, with bounded concurrency overall and per destination.

Due deliveries are claimed from Redis only as far as there are free slots, overall and for
their destination (`host:port`). A destination whose `per_host_concurrency` attempts are all in
flight is skipped by the claim as a whole, so a hanging receiver holds its own slots and never
anyone else's, and its backlog waits in Redis untouched.

`max_concurrency` counts attempts until they are answered, as `per_host_concurrency` does: an
answered attempt whose outcome waits for its journal commit (up to `webhooks.journal_window_ms`)
holds no slot, so the commit window does not cap the rate at `max_concurrency` per window.
Attempts still being recorded are bounded apart (`RECORDING_PER_SLOT` times `max_concurrency`);
each keeps its claim until its outcome is recorded, as before.

Slots that free up are claimed for together: a claim follows once half a destination's
`per_host_concurrency` slots were freed, or `GATHER_S` after the first, rather than one claim
(a Redis script call) per answered attempt. Newly scheduled deliveries are claimed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from datetime import UTC, datetime

from mcp.errors import BrokerUnavailable
from mcp.settings import Settings
from mcp.telemetry.tracing import trace_id_of
from mcp.webhooks.deliveries import Delivery
from mcp.webhooks.journal import WebhookJournal
from mcp.webhooks.metrics import observe_attempt
from mcp.webhooks.policy import RetryPolicy
from mcp.webhooks.recorder import Recorder
from mcp.webhooks.sender import Attempt, WebhookSender
from mcp.webhooks.store import WebhookStore
from schemas import WebhookAttempt, utcnow

log = logging.getLogger(__name__)

IDLE_POLL_S = 1.0
GATHER_S = 0.002
"""How long a freed slot may wait for others before they are claimed for."""
RECORDING_PER_SLOT = 4
"""Answered attempts whose outcome is being recorded, at most, per `max_concurrency` slot."""


class DeliveryPool:
    def __init__(
        self,
        settings: Settings,
        store: WebhookStore,
        sender: WebhookSender,
        policy: RetryPolicy,
        slot: str,
        journal: WebhookJournal,
        ready: asyncio.Event,
    ) -> None:
        hooks = settings.webhooks
        self.store = store
        self.journal = journal
        self.recorder = Recorder(journal, store, slot, hooks.journal_window_ms / 1000)
        self.ready = ready
        self.sender = sender
        self.policy = policy
        self.slot = slot
        self.max_concurrency = max(1, hooks.max_concurrency)
        self.per_host = max(1, hooks.per_host_concurrency)
        # A claim outlives an attempt; after that a crashed dispatcher's claim falls due again.
        self.lease_s = hooks.timeout_s + hooks.connect_timeout_s + 10
        self.max_recording = self.max_concurrency * RECORDING_PER_SLOT
        self.in_flight: set[asyncio.Task[None]] = set()
        """Every attempt until its outcome is recorded (or it failed)."""
        self.sending = 0
        """Attempts not answered yet: what `max_concurrency` bounds."""
        self.host_load: Counter[str] = Counter()
        self.attempted = 0
        self.next_due: float | None = None
        self.claims = 0
        self._wake = asyncio.Event()
        self._gather = max(1, self.per_host // 2)
        self._freed = 0
        self._gathering: asyncio.TimerHandle | None = None
        self._starved = False

    def wake(self) -> None:
        self._wake.set()

    def _slot_freed(self) -> None:
        """An attempt no longer holds its destination's slot: claim for it together with the
        next ones freed (see `GATHER_S`)."""
        self._freed += 1
        if self._freed >= self._gather:
            self._wake.set()
        elif self._gathering is None:
            self._gathering = asyncio.get_running_loop().call_later(GATHER_S, self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        stopping = asyncio.create_task(self._wake_on(stop))
        try:
            await self._run(stop)
        finally:
            stopping.cancel()
        await self._finish_in_flight()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.wake()

    async def _run(self, stop: asyncio.Event) -> None:
        while not self.ready.is_set() and not stop.is_set():
            self._wake.clear()
            await self._wait()
        recovered = await self.store.recover(self.slot)
        if recovered:
            log.info("re-queued %d deliveries claimed before a restart", recovered)
        while not stop.is_set():
            if not self.ready.is_set():
                # Redis's webhook state is being rebuilt: what is due cannot be told yet.
                self._wake.clear()
                await self._wait()
                continue
            try:
                more = await self._claim_and_start()
            except Exception:
                log.exception("claiming due webhooks failed")
                more = False
            if not more:
                await self._wait()

    async def _claim_and_start(self) -> bool:
        """Start attempts for due deliveries; True when more may be due right now."""
        self._wake.clear()
        self._freed = 0
        if self._gathering is not None:
            self._gathering.cancel()
            self._gathering = None
        free = min(self.max_concurrency - self.sending, self.max_recording - len(self.in_flight))
        self._starved = free <= 0
        if free <= 0:
            self.next_due = None
            return False
        self.claims += 1
        claim = await self.store.claim(self.slot, free, self.lease_s, self.host_load, self.per_host)
        self.next_due = claim.next_due
        for delivery in claim.deliveries:
            host = delivery.destination
            self.host_load[host] += 1
            self.sending += 1
            task = asyncio.create_task(self._attempt(delivery, host))
            self.in_flight.add(task)
            task.add_done_callback(self._done)
        return len(claim.deliveries) == free

    def _done(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        if self._starved:  # every slot was taken: this one is free again
            self._wake.set()

    async def _wait(self) -> None:
        """Until woken (an attempt ended, deliveries were scheduled, `stop`) or the next
        delivery is due; once per claim, so no task is made for it."""
        timeout = IDLE_POLL_S
        if self.next_due is not None:
            timeout = min(IDLE_POLL_S, max(0.0, self.next_due - time.time()))
        if timeout <= 0 or self._wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _attempt(self, delivery: Delivery, host: str) -> None:
        released = False
        try:
            started = utcnow()
            clock = time.perf_counter()
            attempt = await self.sender.send(delivery)
            took_ms = (time.perf_counter() - clock) * 1000
            self.attempted += 1
            # The destination is free once it answered; recording the outcome needs only Redis.
            self._release(host)
            released = True
            self._slot_freed()
            gave_up = await self._record(delivery, attempt, started, took_ms)
            observe_attempt(attempt, gave_up, took_ms / 1000)
        except BrokerUnavailable as exc:
            # Not recorded, so not applied: the claim lapses and the delivery is attempted again.
            log.warning("attempt of webhook %s not recorded: %s", delivery.webhook_id, exc)
        except Exception:
            log.exception("attempt of webhook %s failed unexpectedly", delivery.webhook_id)
        finally:
            if not released:
                self._release(host)
                self._slot_freed()

    def _release(self, host: str) -> None:
        self.sending -= 1
        self.host_load[host] -= 1
        if self.host_load[host] <= 0:
            del self.host_load[host]

    async def _record(
        self, delivery: Delivery, attempt: Attempt, started: datetime, took_ms: float
    ) -> bool:
        """Journal the attempt's outcome, then apply it to Redis; True when it was given up."""
        delivered = attempt.outcome == "delivered"
        if not delivered:
            log.info(
                "webhook %s attempt %d to %s failed: %s",
                delivery.webhook_id,
                delivery.attempts + 1,
                delivery.url,
                attempt.error,
                extra={"task_id": delivery.task_id, "trace_id": trace_id_of(delivery.traceparent)},
            )
        at = None
        if attempt.outcome == "retry":
            at = self.policy.next_attempt_at(delivery.step, time.time(), attempt.retry_after)
        record = WebhookAttempt(
            attempt=delivery.attempts + 1,
            at=started,
            duration_ms=round(took_ms, 3),
            status_code=attempt.status_code,
            error=attempt.error,
            next_attempt_at=None if at is None else datetime.fromtimestamp(at, UTC),
        )
        state = delivery.after(record, delivered)
        await self.recorder.record(delivery, state)
        return not delivered and at is None

    async def _finish_in_flight(self, grace_s: float = 5.0) -> None:
        """Let running attempts end briefly; unfinished claims are recovered on restart."""
        if not self.in_flight:
            return
        _, pending = await asyncio.wait(set(self.in_flight), timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
