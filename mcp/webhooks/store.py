"""The durable side of webhooks in Redis: the retry schedule, each delivery's state, dead letters.

A delivery is a hash `webhook:<webhook-id>` (body, url, attempts, status, last status code, next
attempt). Deliveries still to send wait in a ZSET per destination, scored by when they are due
(see `mcp.webhooks.scripts`). A dispatcher claims due ones by pushing their score a lease ahead,
so a crashed dispatcher's claims fall due again. `webhook:dead` lists deliveries given up on;
`redeliver` revives one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast, get_args
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from mcp.names import Keys
from mcp.settings import Settings
from mcp.webhooks import scripts
from schemas.api import COMPLETION_TYPES, WebhookState, WebhookView

ORDER_STEP_S = 1e-6
"""Deliveries scheduled together are due this far apart, so they keep their order."""

TERMINAL_TYPES = tuple(COMPLETION_TYPES.values())


def destination(url: str) -> str:
    """The `host:port` a delivery goes to; concurrency limits and due queues are per destination."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


@dataclass(frozen=True)
class NewDelivery:
    """A webhook to send: its body is fixed now, so every attempt sends the same bytes."""

    webhook_id: str
    task_id: str
    project: str
    type: str
    url: str
    body: bytes


@dataclass(frozen=True)
class Delivery(NewDelivery):
    """A delivery claimed for an attempt."""

    attempts: int
    step: int
    status: str

    @property
    def destination(self) -> str:
        return destination(self.url)


@dataclass(frozen=True)
class Claim:
    deliveries: list[Delivery]
    next_due: float | None
    """When the next delivery to a destination with free slots is due, as far as is known."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decoded(raw: dict[Any, Any]) -> dict[str, Any]:
    return {_text(k): v for k, v in raw.items()}


def _instant(value: Any) -> datetime | None:
    text = _text(value) if value is not None else ""
    return datetime.fromtimestamp(float(text), UTC) if text else None


class WebhookStore:
    """Webhook deliveries in Redis. Works with clients with or without `decode_responses`."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys.of(settings)
        self.due_prefix = self.keys.webhook_due("")
        self._schedule = redis.register_script(scripts.SCHEDULE)
        self._claim = redis.register_script(scripts.CLAIM)
        self._place = redis.register_script(scripts.PLACE)
        self._redeliver = redis.register_script(scripts.REDELIVER)
        self._release = redis.register_script(scripts.RELEASE)

    @property
    def retention_s(self) -> int:
        return self.settings.redis.task_retention_s

    async def schedule(self, deliveries: Sequence[NewDelivery], due: float | None = None) -> int:
        """Record new deliveries, due at `due` (now by default); returns how many were new.

        A task's deliveries are attempted in the order they are scheduled, one at a time.
        """
        if not deliveries:
            return 0
        start = time.time() if due is None else due
        async with self.redis.pipeline(transaction=False) as pipe:
            for i, d in enumerate(deliveries):
                at = start + i * ORDER_STEP_S
                fields = {
                    "webhook_id": d.webhook_id,
                    "task_id": d.task_id,
                    "project": d.project,
                    "type": d.type,
                    "url": d.url,
                    "host": destination(d.url),
                    "status": "pending",
                    "attempts": 0,
                    "step": 0,
                    "created_at": at,
                    "next_attempt_at": at,
                }
                args: list[Any] = [
                    d.webhook_id,
                    at,
                    d.type,
                    self.retention_s,
                    self.due_prefix,
                    destination(d.url),
                ]
                for name, value in fields.items():
                    args += [name, value]
                args += ["body", d.body]
                keys = [
                    self.keys.delivery(d.webhook_id),
                    self.keys.webhook_schedule,
                    self.keys.task_webhooks(d.task_id),
                ]
                await self._schedule(keys=keys, args=args, client=pipe)
            created = await pipe.execute()
        return sum(int(n) for n in created)

    async def claim(
        self,
        slot: str,
        limit: int,
        lease_s: float,
        busy: Mapping[str, int],
        per_destination: int,
    ) -> Claim:
        """Take up to `limit` due deliveries for an attempt, at most `per_destination` minus
        `busy[destination]` (attempts already in flight) per destination.

        Unfinished claims fall due again after `lease_s`, or at once when the same slot starts
        again (`recover`).
        """
        if limit <= 0:
            return Claim([], None)
        now = time.time()
        free = {host: max(0, per_destination - n) for host, n in busy.items()}
        args: list[Any] = [
            now,
            now + lease_s,
            limit,
            self.due_prefix,
            per_destination,
            limit + len(free) + 1,
            self.keys.delivery(""),
            self.keys.webhook_turn(""),
            self.keys.webhook_held(""),
            int(lease_s * 1000),
        ]
        for host, slots in free.items():
            args += [host, slots]
        keys = [self.keys.webhook_schedule, self.keys.webhook_inflight(slot)]
        first, *rest = await self._claim(keys=keys, args=args)
        next_due = float(_text(first)) if _text(first) else None
        ids = [_text(i) for i in rest]
        if not ids:
            return Claim([], next_due)
        async with self.redis.pipeline(transaction=False) as pipe:
            for webhook_id in ids:
                pipe.hgetall(self.keys.delivery(webhook_id))
            rows = await pipe.execute()
        claimed: list[Delivery] = []
        for webhook_id, raw in zip(ids, rows, strict=True):
            row = _decoded(raw)
            if "body" not in row:
                await self.redis.srem(self.keys.webhook_inflight(slot), webhook_id)
                continue
            body = row["body"]
            claimed.append(
                Delivery(
                    webhook_id=webhook_id,
                    task_id=_text(row["task_id"]),
                    project=_text(row["project"]),
                    type=_text(row["type"]),
                    url=_text(row["url"]),
                    body=body if isinstance(body, bytes) else str(body).encode(),
                    attempts=int(_text(row.get("attempts", 0))),
                    step=int(_text(row.get("step", 0))),
                    status=_text(row.get("status", "pending")),
                )
            )
        return Claim(claimed, next_due)

    async def _placed(self, pipe: Any, d: Delivery, at: float, mode: str) -> None:
        """Queue a PLACE call on `pipe` (see `scripts.PLACE`)."""
        args: list[Any] = [self.due_prefix, d.destination, d.webhook_id, at, mode]
        await self._place(keys=[self.keys.webhook_schedule], args=args, client=pipe)

    async def _ended(self, pipe: Any, d: Delivery, slot: str, at: float, mode: str) -> None:
        """Queue the end of an attempt on `pipe`: place the delivery (see `_placed`), give the
        task's next webhooks their turn, and drop the claim."""
        await self._placed(pipe, d, at, mode)
        keys = [
            self.keys.webhook_schedule,
            self.keys.webhook_turn(d.task_id),
            self.keys.webhook_held(d.task_id),
        ]
        args: list[Any] = [self.due_prefix, d.destination, d.webhook_id]
        await self._release(keys=keys, args=args, client=pipe)
        pipe.srem(self.keys.webhook_inflight(slot), d.webhook_id)

    async def delivered(self, d: Delivery, slot: str, status_code: int) -> None:
        key = self.keys.delivery(d.webhook_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "status": "delivered",
                    "attempts": d.attempts + 1,
                    "last_status_code": status_code,
                    "last_error": "",
                    "next_attempt_at": "",
                    "finished_at": time.time(),
                },
            )
            pipe.expire(key, self.retention_s)
            await self._ended(pipe, d, slot, 0, "remove")
            pipe.zrem(self.keys.webhook_dead, d.webhook_id)
            await pipe.execute()

    async def retry_at(
        self, d: Delivery, slot: str, at: float, status_code: int | None, error: str
    ) -> None:
        """Record a failed attempt; the next one is due at `at` (unix seconds)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.keys.delivery(d.webhook_id),
                mapping={
                    "status": "retrying",
                    "attempts": d.attempts + 1,
                    "step": d.step + 1,
                    "last_status_code": "" if status_code is None else status_code,
                    "last_error": error,
                    "next_attempt_at": at,
                },
            )
            await self._ended(pipe, d, slot, at, "set")
            await pipe.execute()

    async def give_up(self, d: Delivery, slot: str, status_code: int | None, error: str) -> None:
        """Record a last failed attempt: the delivery is `failed` and listed as dead."""
        key = self.keys.delivery(d.webhook_id)
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "status": "failed",
                    "attempts": d.attempts + 1,
                    "last_status_code": "" if status_code is None else status_code,
                    "last_error": error,
                    "next_attempt_at": "",
                    "finished_at": now,
                },
            )
            pipe.expire(key, self.retention_s)
            await self._ended(pipe, d, slot, 0, "remove")
            pipe.zadd(self.keys.webhook_dead, {d.webhook_id: now})
            await pipe.execute()

    async def recover(self, slot: str) -> int:
        """Make the claims of a previous process of this slot due now; returns how many."""
        inflight = self.keys.webhook_inflight(slot)
        ids = [_text(i) for i in await self.redis.smembers(inflight)]
        if not ids:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for webhook_id in ids:
                pipe.hget(self.keys.delivery(webhook_id), "host")
            hosts = await pipe.execute()
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            for webhook_id, host in zip(ids, hosts, strict=True):
                if host is not None:
                    args: list[Any] = [
                        self.due_prefix,
                        _text(host),
                        webhook_id,
                        now,
                        "if-scheduled",
                    ]
                    await self._place(keys=[self.keys.webhook_schedule], args=args, client=pipe)
            pipe.delete(inflight)
            await pipe.execute()
        return len(ids)

    async def state(self, webhook_id: str) -> dict[str, str]:
        """Every field of one delivery except its body (for operators and tests)."""
        row = _decoded(await self.redis.hgetall(self.keys.delivery(webhook_id)))
        return {name: _text(value) for name, value in row.items() if name != "body"}

    async def dead(self, limit: int = 100) -> list[str]:
        """Webhook ids given up on, oldest first."""
        return [_text(i) for i in await self.redis.zrange(self.keys.webhook_dead, 0, limit - 1)]

    async def final_webhook_id(self, task_id: str) -> str | None:
        """The id of the task's completion webhook, once its result was consumed."""
        index = _decoded(await self.redis.hgetall(self.keys.task_webhooks(task_id)))
        for kind in TERMINAL_TYPES:
            if kind in index:
                return _text(index[kind])
        return None

    async def view(self, task_id: str) -> WebhookView:
        """The `webhook` object of the poll body: the state of the task's completion webhook."""
        webhook_id = await self.final_webhook_id(task_id)
        if webhook_id is None:
            return WebhookView()
        fields = ("status", "attempts", "last_status_code", "next_attempt_at")
        raw = await self.redis.hmget(self.keys.delivery(webhook_id), fields)
        status, attempts, code, next_at = (_text(v) if v is not None else "" for v in raw)
        if not status:
            return WebhookView()
        state: WebhookState = _STATES.get(status, "pending")
        return WebhookView(
            status=state,
            attempts=int(attempts or 0),
            last_status_code=int(code) if code else None,
            next_attempt_at=_instant(next_at) if state in ("pending", "retrying") else None,
        )

    async def redeliver(self, task_id: str) -> bool:
        """Queue the task's completion webhook again (same webhook-id); False if it has none."""
        webhook_id = await self.final_webhook_id(task_id)
        return webhook_id is not None and await self.redeliver_webhook(webhook_id)

    async def redeliver_webhook(self, webhook_id: str) -> bool:
        """Queue one delivery again (same webhook-id, same body); False if there is none."""
        keys = [
            self.keys.delivery(webhook_id),
            self.keys.webhook_schedule,
            self.keys.webhook_dead,
        ]
        args: list[Any] = [time.time(), webhook_id, self.due_prefix]
        return bool(await self._redeliver(keys=keys, args=args))

    async def dead_of(self, project: str, webhook_ids: Sequence[str]) -> set[str]:
        """Which of these webhooks are dead and belong to the project."""
        if not webhook_ids:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for webhook_id in webhook_ids:
                pipe.zscore(self.keys.webhook_dead, webhook_id)
                pipe.hget(self.keys.delivery(webhook_id), "project")
            replies = await pipe.execute()
        return {
            webhook_id
            for webhook_id, score, owner in zip(
                webhook_ids, replies[::2], replies[1::2], strict=True
            )
            if score is not None and owner is not None and _text(owner) == project
        }

    async def dead_page(
        self, project: str, limit: int, before: tuple[float, str] | None, budget: int = 5_000
    ) -> tuple[list[str], tuple[float, str] | None]:
        """A project's dead webhooks, most recent first, from before (score, id) exclusive;
        and where the next page starts (None at the end)."""
        top: float | str = "+inf" if before is None else before[0]
        found: list[str] = []
        offset = examined = 0
        last: tuple[float, str] | None = None
        while len(found) < limit and examined < budget:
            batch = cast(
                list[tuple[Any, float]],
                await self.redis.zrevrangebyscore(
                    self.keys.webhook_dead, top, "-inf", start=offset, num=200, withscores=True
                ),
            )
            if not batch:
                return found, None
            offset += len(batch)
            fresh = [
                (_text(i), float(score))
                for i, score in batch
                if before is None or float(score) < before[0] or _text(i) < before[1]
            ]
            async with self.redis.pipeline(transaction=False) as pipe:
                for webhook_id, _ in fresh:
                    pipe.hget(self.keys.delivery(webhook_id), "project")
                owners = await pipe.execute()
            for (webhook_id, score), owner in zip(fresh, owners, strict=True):
                examined += 1
                last = (score, webhook_id)
                if owner is not None and _text(owner) == project:
                    found.append(webhook_id)
                if len(found) >= limit or examined >= budget:
                    break
        return found, last


_STATES: dict[str, WebhookState] = {s: s for s in get_args(WebhookState) if s != "none"}
