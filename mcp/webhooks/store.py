"""The Redis projection of webhooks: the retry schedule, each delivery's state, dead letters.

Every state a delivery goes through is a `WebhookRecord` written to Kafka (`webhook-deliveries`)
first; `apply` projects records here, and Redis holds nothing a replay of that topic cannot
rebuild. A delivery is a hash `webhook:<webhook-id>` (body, url, attempts, status, last status
code, next attempt, the record itself). Deliveries still to send wait in a ZSET per destination,
scored by when they are due (see `mcp.webhooks.scripts`). A dispatcher claims due ones by pushing
their score a lease ahead, so a crashed dispatcher's claims fall due again. `webhook:dead` lists
deliveries given up on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast, get_args

import orjson
import redis.asyncio as aioredis

from mcp.names import Keys
from mcp.redis_client import async_script, is_cluster
from mcp.settings import Settings
from mcp.webhooks import scripts
from mcp.webhooks.deliveries import (
    Claim,
    Delivery,
    NewDelivery,
    Publish,
    destination,
    encoded_states,
    record_of,
    scheduled,
)
from mcp.webhooks.single import OneRedis
from schemas.api import WebhookState, WebhookView
from schemas.task import utcnow
from schemas.webhooks import COMPLETION_TYPES, WebhookAttempt, WebhookRecord

TERMINAL_TYPES = tuple(COMPLETION_TYPES.values())
OWN_MAX = 200_000
"""Journaled states remembered as applied here, at most (see `WebhookStore.applied_here`)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decoded(raw: dict[Any, Any]) -> dict[str, Any]:
    return {_text(k): v for k, v in raw.items()}


def _final(index: dict[Any, Any]) -> str | None:
    """The completion webhook's id in a task's webhook index, if there is one yet."""
    row = _decoded(index)
    for kind in TERMINAL_TYPES:
        if kind in row:
            return _text(row[kind])
    return None


def _instant(value: Any) -> datetime | None:
    text = _text(value) if value is not None else ""
    return datetime.fromtimestamp(float(text), UTC) if text else None


class WebhookStore:
    """Webhook deliveries in Redis. Works with clients with or without `decode_responses`."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys.of(settings)
        self.shards = self.keys.shards
        self._next_shard = 0
        self._state = async_script(redis, scripts.STATE)
        self._placed = async_script(redis, scripts.PLACED)
        self._place = async_script(redis, scripts.PLACE)
        self._claim = async_script(redis, scripts.CLAIM)
        self._ended = async_script(redis, scripts.ENDED)
        self._positions = async_script(redis, scripts.POSITIONS)
        self._versions = async_script(redis, scripts.VERSIONS)
        # One Redis (not a cluster): a batch of states in one script call (`OneRedis`).
        self._one = None if is_cluster(redis) else OneRedis(redis, self.keys, self.retention_s)
        # Journaled states this process applied itself (webhook id -> version), which the
        # projection need not apply again when it reads them back; dropped with every rebuild.
        self._own: dict[str, int] = {}
        self._epoch = 0

    @property
    def retention_s(self) -> int:
        return self.settings.redis.task_retention_s

    async def apply(
        self,
        records: Sequence[WebhookRecord],
        own: bool = False,
        encoded: Sequence[bytes] | None = None,
    ) -> int:
        """Project records, each unless Redis holds its version or a later one; returns how
        many changed anything. `own`: they are committed to the journal (see `ended_many`).
        `encoded`: each record's JSON without its body (`deliveries.encoded`), if made already.

        Two steps, each touching one hash slot's keys at a time (Redis Cluster): the delivery
        hash takes the state (`scripts.STATE`), then the state is placed in the due queue, the
        dead list and the task's index, and the hash notes it (`placed`). A process that dies
        between the two leaves `placed` behind `version`, and the next apply of the same record
        (the projection reads it again) places it. On one Redis both steps of a whole batch are
        one script call (`OneRedis`)."""
        if not records:
            return 0
        latest: dict[str, int] = {}  # webhook id -> the index of its newest record
        for i, record in enumerate(records):
            held = latest.get(record.webhook_id)
            if held is None or record.version > records[held].version:
                latest[record.webhook_id] = i
        chosen = [records[i] for i in latest.values()]
        given = None if encoded is None else [encoded[i] for i in latest.values()]
        made = encoded_states(chosen, given)
        epoch = self._epoch
        if self._one is not None:
            placed = await self._one.apply(chosen, made)
            if own:
                self._note(epoch, chosen)
            return placed
        async with self.redis.pipeline(transaction=False) as pipe:
            for record, without_body in zip(chosen, made, strict=True):
                host = destination(record.url)
                args = scripts.state_args(record, self.keys, host, self.retention_s, without_body)
                await self._state(
                    keys=[self.keys.delivery(record.webhook_id)], args=args, client=pipe
                )
            wanted = await pipe.execute()
        todo = [r for r, want in zip(chosen, wanted, strict=True) if int(want)]
        if todo:
            async with self.redis.pipeline(transaction=False) as pipe:
                for record in todo:
                    await self._placing(pipe, record)
                await pipe.execute()
        if own:
            self._note(epoch, chosen)
        return len(todo)

    def _note(self, epoch: int, records: Sequence[WebhookRecord]) -> None:
        """Remember journaled states applied here, unless Redis was rebuilt meanwhile (they may
        have gone to the Redis that was lost)."""
        if epoch != self._epoch:
            return
        if len(self._own) > OWN_MAX:  # the projection fell far behind: it checks Redis instead
            self._own.clear()
        for record in records:
            if record.version > self._own.get(record.webhook_id, 0):
                self._own[record.webhook_id] = record.version

    def applied_here(self, webhook_id: str, version: int) -> bool:
        """Whether this process applied `version` of a delivery, or a later one, to Redis since
        the last rebuild (then applying it again changes nothing); forgets it once read."""
        held = self._own.get(webhook_id, 0)
        if held == version:
            del self._own[webhook_id]
        return held >= version

    def forget_own(self) -> None:
        """Redis lost state, or may have: what this process applied is to be read back again."""
        self._epoch += 1
        self._own.clear()

    async def _placing(self, pipe: Any, record: WebhookRecord) -> None:
        """Queue on `pipe` what places one applied state: the due queue of its destination, the
        dead list, the task's index of webhooks, then the `placed` mark."""
        webhook_id = record.webhook_id
        shard = self.keys.webhook_shard(webhook_id)
        due = (record.next_attempt_at or record.at).timestamp()
        mode = "set" if record.waiting else "remove"
        prefix = self.keys.webhook_due("", shard)
        args: list[Any] = [prefix, destination(record.url), webhook_id, repr(due), mode]
        await self._place(keys=[self.keys.webhook_schedule(shard)], args=args, client=pipe)
        await self._outside_shard(pipe, record)

    async def _outside_shard(self, pipe: Any, record: WebhookRecord) -> None:
        """Queue on `pipe` the placing of an applied state outside its shard (dead list, the
        task's index of webhooks), then the `placed` mark."""
        webhook_id = record.webhook_id
        dead = record.status == "failed"
        index = self.keys.task_webhooks(record.task_id)
        delivery = [self.keys.delivery(webhook_id)]
        if dead:
            pipe.zadd(
                self.keys.webhook_dead, {webhook_id: (record.finished_at or record.at).timestamp()}
            )
        else:
            pipe.zrem(self.keys.webhook_dead, webhook_id)
        pipe.hset(index, record.type, webhook_id)
        pipe.expire(index, self.retention_s)
        await self._placed(keys=delivery, args=[record.version], client=pipe)

    async def project(
        self, records: Sequence[WebhookRecord], positions: Mapping[int, int], known: bool
    ) -> bool:
        """Apply records read from the topic, then note how far into each partition they go.
        When Redis was `known` to hold positions and has none, it lost the webhook state: the
        records are applied, no positions are written, and False says so."""
        await self.apply(records)
        args: list[Any] = ["1" if known else "0"]
        args += [item for pair in positions.items() for item in pair]
        done = await self._positions(keys=[self.keys.webhook_applied], args=args)
        return bool(int(done))

    async def positions(self) -> dict[int, int] | None:
        """Next offset of each `webhook-deliveries` partition that Redis holds the state up to;
        None when Redis has no webhook state (it was lost, or nothing was ever projected)."""
        raw = await self.redis.hgetall(self.keys.webhook_applied)
        if not raw:
            return None
        return {int(_text(k)): int(_text(v)) for k, v in raw.items()}

    async def versions(self, webhook_ids: Sequence[str]) -> list[int]:
        """The version of each delivery that Redis holds placed (0 for one it does not): one
        script per shard of the schedule, not a command per delivery."""
        if not webhook_ids:
            return []
        by_shard: dict[int, list[int]] = {}
        for at, webhook_id in enumerate(webhook_ids):
            by_shard.setdefault(self.keys.webhook_shard(webhook_id), []).append(at)
        found = [0] * len(webhook_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for places in by_shard.values():
                keys = [self.keys.delivery(webhook_ids[at]) for at in places]
                await self._versions(keys=keys, args=[], client=pipe)
            replies = await pipe.execute()
        for places, versions in zip(by_shard.values(), replies, strict=True):
            for at, version in zip(places, versions, strict=True):
                found[at] = int(version)
        return found

    async def schedule(self, deliveries: Sequence[NewDelivery], due: float | None = None) -> int:
        """Record new deliveries in Redis, due at `due` (now by default); returns how many were
        new. A task's deliveries are attempted in the order they are scheduled, one at a time."""
        return await self.apply(scheduled(deliveries, due))

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
        free = {host: max(0, per_destination - n) for host, n in busy.items()}
        claimed: list[Delivery] = []
        next_due: float | None = None
        first = self._next_shard
        self._next_shard = (first + 1) % self.shards
        for i in range(self.shards):
            if len(claimed) >= limit:
                break
            shard = (first + i) % self.shards
            left = limit - len(claimed)
            got = await self._claim_shard(shard, slot, left, lease_s, free, per_destination)
            for delivery in got.deliveries:
                free[delivery.destination] = free.get(delivery.destination, per_destination) - 1
            claimed += got.deliveries
            if got.next_due is not None:
                next_due = got.next_due if next_due is None else min(next_due, got.next_due)
        return Claim(claimed, next_due)

    async def _claim_shard(
        self,
        shard: int,
        slot: str,
        limit: int,
        lease_s: float,
        free: Mapping[str, int],
        per_destination: int,
    ) -> Claim:
        """`claim` in one shard of the schedule (one script: the keys of one hash slot)."""
        now = time.time()
        args: list[Any] = [
            now,
            now + lease_s,
            limit,
            self.keys.webhook_due("", shard),
            per_destination,
            limit + len(free) + 1,
            self.keys.delivery_prefix(shard),
            self.keys.webhook_turn(shard),
            self.keys.webhook_held(shard),
            int(lease_s * 1000),
        ]
        for host, slots in free.items():
            args += [host, max(0, slots)]
        inflight = self.keys.webhook_inflight(slot, shard)
        keys = [self.keys.webhook_schedule(shard), inflight]
        first, *rest = await self._claim(keys=keys, args=args)
        next_due = float(_text(first)) if _text(first) else None
        claimed: list[Delivery] = []
        for at in range(0, len(rest), 4):
            webhook_id, record, body, trace = (_text(v) for v in rest[at : at + 4])
            if not record:
                await self.redis.srem(inflight, webhook_id)
                continue
            delivery = Delivery.of(record_of({"record": record, "body": body}))
            if trace:
                delivery = replace(delivery, traceparent=trace)
            claimed.append(delivery)
        return Claim(claimed, next_due)

    async def remember_traces(self, traces: Mapping[str, str]) -> None:
        """The `traceparent` of new deliveries, for their attempts: a field of the delivery's
        hash (set before its state, kept as long as it is), which a claim reads with it."""
        if not traces:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for webhook_id, traceparent in traces.items():
                pipe.hset(self.keys.delivery(webhook_id), "traceparent", traceparent)
            await pipe.execute()

    async def ended(self, d: Delivery, slot: str, record: WebhookRecord) -> None:
        """The attempt of `d` ended in `record`: apply it, give the task's next webhooks their
        turn, and drop the claim."""
        await self.ended_many(slot, [(d, record)])

    async def ended_many(
        self,
        slot: str,
        ended: Sequence[tuple[Delivery, WebhookRecord]],
        own: bool = False,
        encoded: Sequence[bytes] | None = None,
    ) -> None:
        """`ended` for several attempts at once, in two round trips whatever their number (one
        script call on one Redis: `OneRedis`): one
        `scripts.ENDED` per attempt (state, due queue, turn and claim: the delivery's shard),
        then, for the states Redis did not hold yet, the dead list, the task's index and the
        `placed` mark. `own`: the states are committed to the journal, so the projection may
        skip them when it reads them back (`applied_here`). `encoded`: each state's JSON
        without its body (`deliveries.encoded`), if made already."""
        if not ended:
            return
        epoch = self._epoch
        made = encoded_states([record for _, record in ended], encoded)
        if self._one is not None:
            await self._one.ended(slot, ended, made)
        else:
            await self._ended_per_slot(slot, ended, made, body=False)
        if own:
            self._note(epoch, [record for _, record in ended])

    async def _ended_per_slot(
        self,
        slot: str,
        ended: Sequence[tuple[Delivery, WebhookRecord]],
        made: Sequence[bytes],
        body: bool,
    ) -> None:
        """`ended_many` in steps of one hash slot each (Redis Cluster). The outcomes go without
        their body unless `body` (the delivery hash holds it); those whose hash Redis lost
        meanwhile are sent again with it."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for (d, record), without_body in zip(ended, made, strict=True):
                shard = self.keys.webhook_shard(d.webhook_id)
                keys = [
                    self.keys.delivery(d.webhook_id),
                    self.keys.webhook_schedule(shard),
                    self.keys.webhook_turn(shard, d.task_id),
                    self.keys.webhook_held(shard, d.task_id),
                    self.keys.webhook_inflight(slot, shard),
                ]
                args = scripts.state_args(
                    record, self.keys, d.destination, self.retention_s, without_body, body
                )
                await self._ended(keys=keys, args=args, client=pipe)
            wanted = [int(want) for want in await pipe.execute()]
        todo = [record for (_, record), want in zip(ended, wanted, strict=True) if want == 1]
        if todo:
            async with self.redis.pipeline(transaction=False) as pipe:
                for record in todo:
                    await self._outside_shard(pipe, record)
                await pipe.execute()
        again = [at for at, want in enumerate(wanted) if want == 2]
        if again:
            resend = [ended[at] for at in again]
            await self._ended_per_slot(slot, resend, [made[at] for at in again], body=True)

    async def delivered(self, d: Delivery, slot: str, status_code: int) -> None:
        """Redis only (tools and tests): the attempt of `d` was answered 2xx."""
        attempt = _attempt(d, status_code, "", None)
        await self.ended(d, slot, d.after(attempt, delivered=True))

    async def retry_at(
        self, d: Delivery, slot: str, at: float, status_code: int | None, error: str
    ) -> None:
        """Redis only (tools and tests): a failed attempt; the next one is due at `at`."""
        attempt = _attempt(d, status_code, error, datetime.fromtimestamp(at, UTC))
        await self.ended(d, slot, d.after(attempt, delivered=False))

    async def give_up(self, d: Delivery, slot: str, status_code: int | None, error: str) -> None:
        """Redis only (tools and tests): a last failed attempt; the delivery is dead."""
        attempt = _attempt(d, status_code, error, None)
        await self.ended(d, slot, d.after(attempt, delivered=False))

    async def recover(self, slot: str) -> int:
        """Make the claims of a previous process of this slot due now; returns how many."""
        return sum([await self._recover(slot, shard) for shard in range(self.shards)])

    async def _recover(self, slot: str, shard: int) -> int:
        inflight = self.keys.webhook_inflight(slot, shard)
        ids = [_text(i) for i in await self.redis.smembers(inflight)]
        if not ids:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for webhook_id in ids:
                pipe.hget(self.keys.delivery(webhook_id), "host")
            hosts = await pipe.execute()
        now = time.time()
        schedule, prefix = self.keys.webhook_schedule(shard), self.keys.webhook_due("", shard)
        # One slot's keys (a transaction on a Redis Cluster too).
        async with self.redis.pipeline(transaction=True) as pipe:
            for webhook_id, host in zip(ids, hosts, strict=True):
                if host is not None:
                    args: list[Any] = [prefix, _text(host), webhook_id, now, "if-scheduled"]
                    await self._place(keys=[schedule], args=args, client=pipe)
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
        return _final(await self.redis.hgetall(self.keys.task_webhooks(task_id)))

    async def view(self, task_id: str, index: dict[Any, Any] | None = None) -> WebhookView:
        """The `webhook` object of the poll body: the state of the task's completion webhook.
        `index`: the task's webhook index (`Keys.task_webhooks`) when read already."""
        webhook_id = await self.final_webhook_id(task_id) if index is None else _final(index)
        if webhook_id is None:
            return WebhookView()
        fields = ("status", "attempts", "last_status_code", "next_attempt_at", "record")
        raw = await self.redis.hmget(self.keys.delivery(webhook_id), fields)
        status, attempts, code, next_at, record = (_text(v) if v is not None else "" for v in raw)
        if not status:
            return WebhookView()
        state: WebhookState = _STATES.get(status, "pending")
        history = orjson.loads(record).get("history", []) if record else []
        return WebhookView(
            status=state,
            attempts=int(attempts or 0),
            last_status_code=int(code) if code else None,
            next_attempt_at=_instant(next_at) if state in ("pending", "retrying") else None,
            history=tuple(WebhookAttempt.model_validate(a) for a in history),
        )

    async def record(self, webhook_id: str) -> WebhookRecord | None:
        """The latest state of one delivery (its `webhook-deliveries` record)."""
        row = _decoded(await self.redis.hgetall(self.keys.delivery(webhook_id)))
        return record_of(row) if "record" in row else None

    async def redeliver(self, task_id: str, publish: Publish | None = None) -> bool:
        """Queue the task's completion webhook again (same webhook-id); False if it has none."""
        webhook_id = await self.final_webhook_id(task_id)
        return webhook_id is not None and bool(await self.redeliver_webhooks([webhook_id], publish))

    async def redeliver_webhooks(
        self, webhook_ids: Sequence[str], publish: Publish | None = None
    ) -> list[str]:
        """Queue deliveries again (same webhook-id, same body); returns those that exist. Their
        `redelivery_requested` records are committed to Kafka by `publish` first (the API
        passes it; None: Redis only, for tools and tests), then applied here."""
        now = utcnow()
        found = [await self.record(w) for w in dict.fromkeys(webhook_ids)]
        records = [r.redelivered(now) for r in found if r is not None]
        if publish is not None:
            await publish(records)
        await self.apply(records)
        return [r.webhook_id for r in records]

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


def _attempt(
    d: Delivery, status_code: int | None, error: str, next_at: datetime | None
) -> WebhookAttempt:
    return WebhookAttempt(
        attempt=d.attempts + 1,
        at=utcnow(),
        duration_ms=0,
        status_code=status_code,
        error=error,
        next_attempt_at=next_at,
    )
