"""Task state in Redis: the one module that writes a task's `task:<id>` hash and its cancel flag.

Redis is a projection of `task-events` (replaying Kafka rebuilds it), changed only through the
Lua scripts of `mcp.lua`, which make every transition monotonic: a late or repeated write never
moves a task back (`queued < running < terminal`, newer attempts over older ones). That is why
several writers are safe; each exists for a reason:

1. `SyncTaskStore.apply_events` from the API's committer hook (`api.services`): the `queued`
   event right after its Kafka commit and before the 202, so the submitter's next GET finds the
   task.
2. `TaskStore.cancel` from `POST /v1/tasks/{id}/cancel`, after the cancel request is durable in
   `task-events`: a queued task is cancelled at once, a running one gets the flag its worker polls.
3. `SyncTaskStore.claim` from the worker before it runs a task: counts attempts across crashes
   and refuses cancelled or finished tasks.
4. `SyncTaskStore.apply_results` from the worker after each commit: the fast path for polls.
5. `TaskStore.apply_events` from the projector (`mcp.projector`), for every event: the path
   that guarantees the others' effects even when they were lost, and `autoglm replay`
   (`SyncTaskStore.apply_events`, `flush_tasks`) rebuilds Redis with it. The API's own
   projector reads past the `queued` events that path 1 of the same process wrote
   (`mcp.applied`: the same script with the same arguments; never those whose write failed).

6. `TaskStore.index_dead_letters` from the projector, for every record of `tasks.dlq`: where
   each dead task's record is, for `GET /v1/dlq` and its requeue (`mcp.dead_letters`).

Paths 1, 4 and 5 also keep each project's `active:<project>` set (`mcp.active.track`), so a
replay rebuilds the `max_active` quota's count with the rest. Paths 1 and 5 restore a task's
`Idempotency-Key` (`idem:<project>:<key>`, claimed by the API before the commit) from its
`queued` event while the key lasts, so a replay brings the keys back with the tasks. Every
script that changes a task's status (paths 1 to 5) keeps the task's per-project indexes and
timeline in the same step (`mcp.task_index`).

`TaskStore` (asyncio) serves the API process (requests, projector) on its one client;
`SyncTaskStore` serves the API's committer hook (in a thread of its producer), the worker and
the replay command. On a Redis Cluster a batch
is applied one hash slot at a time, and the indexes follow in a second step (`mcp.lua`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import orjson
import redis
import redis.asyncio as aioredis
from redis.crc import key_slot

from mcp import lua
from mcp.active import track
from mcp.dead_letters import DeadLetter, index_commands
from mcp.names import Keys
from mcp.poll_reads import PollReads
from mcp.redis_client import async_script, connect, connect_sync, is_cluster, script
from mcp.settings import Settings
from mcp.task_index import Job, apply_jobs, apply_jobs_sync, epoch_ms, index_fields
from schemas import (
    AsyncTask,
    StreamEntry,
    TaskError,
    TaskEvent,
    TaskResult,
    TaskStatus,
    TaskView,
    utcnow,
)

_STRUCTURED = (dict, list, tuple)  # a tuple of types: isinstance on a union is slower


def _fields(mapping: dict[str, Any]) -> list[str]:
    """Flatten a mapping into Lua's field/value ARGV pairs, JSON-encoding structured values.
    (Every submission's `queued` event passes here before its 202: strings, most values, are
    taken as they are first.)"""
    out: list[str] = []
    for name, value in mapping.items():
        if type(value) is str:
            out += (name, value)
        elif value is None:
            continue
        elif isinstance(value, datetime):
            out += (name, value.isoformat())
        elif isinstance(value, _STRUCTURED):
            out += (name, orjson.dumps(value).decode())
        else:
            out += (name, str(value))
    return out


def task_fields(task: AsyncTask) -> dict[str, Any]:
    """What the store keeps of a task's description."""
    return {
        "task_id": task.task_id,
        "model": task.model,
        "action": task.action,
        "project": task.project,
        "created_at": task.created_at,
        "expires_at": task.expires_at,
        "metadata": task.metadata,
        "callback_url": str(task.callback_url) if task.callback_url else None,
        **index_fields(task),
    }


PAYLOAD_KEEP_BYTES = 512 * 1024
"""Payloads up to this size are kept with the task for the dashboard; larger ones stay in Kafka."""


def timeline_entry(event: TaskEvent) -> tuple[str, str]:
    """The field and value of an event in its task's timeline: one per status and attempt, and
    one for a cancel request (a `queued` event that carries it)."""
    if event.cancel_requested:
        field, entry = _timeline(event.status, event.at, event.attempt, event.worker_id, None)
        entry["cancel_requested"] = True
        return f"cancel_requested:{event.attempt}", orjson.dumps(entry).decode()
    field, entry = _timeline(event.status, event.at, event.attempt, event.worker_id, event.error)
    return field, orjson.dumps(entry).decode()


def result_timeline_entry(result: TaskResult) -> tuple[str, str]:
    """The terminal entry of a result: the same field and value as its terminal event's, so the
    timeline shows the end as soon as the status does, whichever of the two arrives first."""
    field, entry = _timeline(
        result.status, result.finished_at, result.attempts, result.worker_id, result.error
    )
    return field, orjson.dumps(entry).decode()


def _timeline(
    status: TaskStatus, at: datetime, attempt: int, worker_id: str | None, error: TaskError | None
) -> tuple[str, dict[str, Any]]:
    entry: dict[str, Any] = {"status": status.value, "at": at.isoformat(), "attempt": attempt}
    if worker_id:
        entry["worker_id"] = worker_id
    if error:
        entry["error"] = error.model_dump(mode="json")
    return f"{status.value}:{attempt}", entry


Item = list[Any]


def event_item(event: TaskEvent, ttl_s: int, indexed: bool = True) -> Item:
    """One entry of APPLY_EVENTS for a lifecycle event; `indexed=False` leaves out what the
    read side adds (indexes, timeline, kept input), to measure what it costs."""
    fields: dict[str, Any] = {}
    if event.task is not None:
        fields.update(task_fields(event.task))
        payload = orjson.dumps(event.task.payload)
        if len(payload) <= PAYLOAD_KEEP_BYTES:
            fields["payload"] = payload.decode()
        else:
            fields["payload_bytes"] = len(payload)
    fields.update({"model": event.model, "action": event.action, "project": event.project})
    if event.status is TaskStatus.RUNNING:
        fields["started_at"] = event.at
        fields["worker_id"] = event.worker_id
    elif event.status.terminal:
        fields["finished_at"] = event.at
        fields["finished_ms"] = epoch_ms(event.at)
        fields["result"] = event.result
        fields["error"] = event.error.model_dump() if event.error else None
    status = event.status
    if not indexed:  # without its creation time the index step leaves the task alone
        for name in ("created_ms", "meta_index", "payload", "payload_bytes"):
            fields.pop(name, None)
        return [status.value, status.rank, event.attempt, ttl_s, _fields(fields)]
    return [
        status.value,
        status.rank,
        event.attempt,
        ttl_s,
        _fields(fields),
        *timeline_entry(event),
    ]


def result_item(result: TaskResult, ttl_s: int) -> Item:
    fields = {
        "task_id": result.task_id,
        "model": result.model,
        "action": result.action,
        "project": result.project,
        "created_at": result.created_at,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "finished_ms": epoch_ms(result.finished_at),
        "result": result.result,
        "error": result.error.model_dump() if result.error else None,
    }
    status = result.status
    return [
        status.value,
        status.rank,
        result.attempts,
        ttl_s,
        _fields(fields),
        *result_timeline_entry(result),
    ]


def _text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text(raw: dict[Any, Any]) -> dict[str, str]:
    return {_text_of(k): _text_of(v) for k, v in raw.items()}


StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None

JSON_FIELDS = frozenset({"result", "error", "metadata"})
"""Fields `_fields` stores as JSON text."""


# The fields a poll body cannot do without (the task's own record brings those it lacks).
_VIEW_REQUIRED = tuple(name for name, field in TaskView.model_fields.items() if field.is_required())


def view_of(raw: dict[Any, Any]) -> TaskView | None:
    """The poll body of a stored task, or None when the hash is empty or a stub: a later event
    (`running`, a cancel) applied where Redis lost the task's own record (`queued`) leaves
    fields without the task's description until the replay brings it back."""
    data = _text(raw)
    if any(name not in data for name in _VIEW_REQUIRED):
        return None
    return TaskView.model_validate(
        {
            name: orjson.loads(value) if name in JSON_FIELDS else value
            for name, value in data.items()
            if name in TaskView.model_fields
        }
    )


def _activity(event: TaskEvent) -> tuple[str, str, TaskStatus, float]:
    created = event.task.created_at.timestamp() if event.task else event.at.timestamp()
    return event.project or "default", event.task_id, event.status, created


def _cancel_args(keys: Keys, task_id: str, at: datetime, flag_ttl_s: int) -> dict[str, Any]:
    return {
        "keys": [keys.task(task_id), keys.cancel(task_id)],
        "args": [at.isoformat(), str(flag_ttl_s)],
    }


def idempotency_value(fingerprint: str, task_id: str) -> bytes:
    """What `idem:<project>:<key>` holds: the body's fingerprint and the task it made."""
    return orjson.dumps({"fp": fingerprint, "task_id": task_id})


def _claimed(events: list[TaskEvent]) -> list[AsyncTask]:
    """The tasks of these events that were submitted with an `Idempotency-Key`."""
    return [e.task for e in events if e.task is not None and e.task.idempotency is not None]


def _remember_claim(pipe: Any, keys: Keys, task: AsyncTask) -> None:
    """Restore a task's `Idempotency-Key` (from its queued event) while the claim lasts; a key
    already held is left as it is."""
    claim = task.idempotency
    if claim is None:
        return
    left_s = int((claim.expires_at - utcnow()).total_seconds())
    if left_s > 0:
        value = idempotency_value(claim.fingerprint, task.task_id)
        pipe.set(keys.idempotency(task.project, claim.key), value, nx=True, ex=left_s)


def _flag_ttl(event: TaskEvent, default: int) -> int:
    return int(event.task.ttl_s) if event.task else default


def slot_groups(cluster: bool, keys: list[str]) -> list[list[int]]:
    """Positions of `keys` grouped by hash slot on a cluster (one script call each); all in one
    group on a single Redis."""
    if not cluster:
        return [list(range(len(keys)))]
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key_slot(key.encode()), []).append(i)
    return list(groups.values())


def _apply_calls(
    cluster: bool, keys: list[str], items: list[Item]
) -> list[tuple[list[str], list[bytes]]]:
    return [
        ([keys[i] for i in group], [orjson.dumps([items[i] for i in group])])
        for group in slot_groups(cluster, keys)
    ]


def _jobs(replies: list[Any]) -> list[Job]:
    """The index jobs of `_DEFERRED` script replies ({reply, jobs})."""
    return [job for reply in replies for job in reply[1]]


class TaskStore:
    """Async access for the API process: requests and the projector."""

    def __init__(self, settings: Settings, client: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self.keys = Keys.of(settings)
        self.redis = client or connect(settings)
        self.cluster = is_cluster(self.redis)
        deferred = self.cluster
        self._apply = async_script(
            self.redis, lua.APPLY_EVENTS_DEFERRED if deferred else lua.APPLY_EVENTS
        )
        self._cancel = async_script(self.redis, lua.CANCEL_DEFERRED if deferred else lua.CANCEL)
        self._poll_reads = PollReads(self.redis, self.keys)

    @property
    def ttl(self) -> int:
        return self.settings.redis.task_retention_s

    @property
    def indexed(self) -> bool:
        return self.settings.redis.task_indexes

    async def apply_events(self, events: list[TaskEvent]) -> None:
        """Apply lifecycle events (write paths 1 and 5); cancel requests also set the flag."""
        if not events:
            return
        keys = [self.keys.task(e.task_id) for e in events]
        calls = _apply_calls(
            self.cluster, keys, [event_item(e, self.ttl, self.indexed) for e in events]
        )
        cancels = [e for e in events if e.cancel_requested]
        async with self.redis.pipeline(transaction=False) as pipe:
            for some, items in calls:
                await self._apply(keys=some, args=items, client=pipe)
            track(pipe, self.keys, [_activity(e) for e in events if not e.cancel_requested])
            for task in _claimed(events):
                _remember_claim(pipe, self.keys, task)
            for event in cancels:
                flag_ttl = _flag_ttl(event, self.ttl)
                await self._cancel(
                    **_cancel_args(self.keys, event.task_id, event.at, flag_ttl), client=pipe
                )
            replies = await pipe.execute()
        if self.cluster:
            done = replies[: len(calls)] + replies[len(replies) - len(cancels) :]
            await apply_jobs(self.redis, self.keys, _jobs(done))

    async def index_dead_letters(self, letters: list[DeadLetter]) -> None:
        """Index records of the dead-letter topic (write path 6)."""
        if letters:
            async with self.redis.pipeline(transaction=False) as pipe:
                index_commands(pipe, self.keys, letters, self.ttl)
                await pipe.execute()

    async def get(self, task_id: str) -> dict[str, str] | None:
        raw = await self.redis.hgetall(self.keys.task(task_id))
        return _text(raw) if raw else None

    async def get_with_webhooks(self, task_id: str) -> tuple[dict[str, str] | None, dict[Any, Any]]:
        """`get` and the task's webhook index (`Keys.task_webhooks`) in one round trip: a poll.
        The polls of one turn of the event loop share that round trip (`mcp.poll_reads`)."""
        raw, index = await self._poll_reads.read(task_id)
        return (_text(raw) if raw else None), index

    async def view(self, task_id: str) -> TaskView | None:
        raw = await self.redis.hgetall(self.keys.task(task_id))
        return view_of(raw) if raw else None

    async def cancel(self, task_id: str, flag_ttl_s: int) -> str:
        """Cancel now (write path 2): the status after the request, see `mcp.lua.CANCEL`."""
        verdict = await self._cancel(**_cancel_args(self.keys, task_id, utcnow(), flag_ttl_s))
        if self.cluster:
            await apply_jobs(self.redis, self.keys, verdict[1])
            verdict = verdict[0]
        return _text_of(verdict)

    async def read_stream(
        self, task_id: str, after: str, block_ms: int, count: int = 256
    ) -> list[tuple[str, StreamEntry]]:
        """The task's token-stream entries after entry id `after`, waiting up to `block_ms`."""
        streams: dict[Any, Any] = {self.keys.stream(task_id): after}
        reply = cast(StreamReply, await self.redis.xread(streams, count, block_ms))
        return [
            (_text_of(raw_id), StreamEntry.of_fields(fields))
            for _stream, entries in reply or []
            for raw_id, fields in entries
        ]

    async def has_stream(self, task_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.stream(task_id)))

    async def remember_idempotency(
        self, project: str, key: str, fingerprint: str, task_id: str
    ) -> tuple[str, str] | None:
        """Claim `key` for `task_id`; when already claimed, return (fingerprint, task_id) of it."""
        name = self.keys.idempotency(project, key)
        value = idempotency_value(fingerprint, task_id)
        ttl = self.settings.redis.idempotency_ttl_s
        if await self.redis.set(name, value, nx=True, ex=ttl):
            return None
        existing = await self.redis.get(name)
        if existing is None:  # expired between the two calls: claim it again
            await self.redis.set(name, value, ex=ttl)
            return None
        data = orjson.loads(existing)
        return str(data["fp"]), str(data["task_id"])

    async def forget_idempotency(self, project: str, key: str) -> None:
        await self.redis.delete(self.keys.idempotency(project, key))

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def close(self) -> None:
        await self.redis.aclose()


class SyncTaskStore:
    """Blocking access for the API's committer hook, the worker and `autoglm replay`; batches
    calls in pipelines."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.keys = Keys.of(settings)
        self.redis = client or connect_sync(settings)
        self.process = uuid.uuid4().hex[:12]
        self.cluster = deferred = is_cluster(self.redis)
        self._apply = script(
            self.redis, lua.APPLY_EVENTS_DEFERRED if deferred else lua.APPLY_EVENTS
        )
        self._claim = script(self.redis, lua.CLAIM_DEFERRED if deferred else lua.CLAIM)
        self._cancel = script(self.redis, lua.CANCEL_DEFERRED if deferred else lua.CANCEL)

    @property
    def ttl(self) -> int:
        return self.settings.redis.task_retention_s

    @property
    def indexed(self) -> bool:
        return self.settings.redis.task_indexes

    def apply_events(self, events: list[TaskEvent]) -> None:
        """Apply lifecycle events (write path 1, and the replay of write path 5)."""
        if not events:
            return
        keys = [self.keys.task(e.task_id) for e in events]
        calls = _apply_calls(
            self.cluster, keys, [event_item(e, self.ttl, self.indexed) for e in events]
        )
        cancels = [e for e in events if e.cancel_requested]
        pipe = self.redis.pipeline(transaction=False)
        for some, items in calls:
            self._apply(keys=some, args=items, client=pipe)
        track(pipe, self.keys, [_activity(e) for e in events if not e.cancel_requested])
        for task in _claimed(events):
            _remember_claim(pipe, self.keys, task)
        for event in cancels:
            flag_ttl = _flag_ttl(event, self.ttl)
            self._cancel(**_cancel_args(self.keys, event.task_id, event.at, flag_ttl), client=pipe)
        replies = pipe.execute()
        if self.cluster:
            done = replies[: len(calls)] + replies[len(replies) - len(cancels) :]
            apply_jobs_sync(self.redis, self.keys, _jobs(done))

    def index_dead_letters(self, letters: list[DeadLetter]) -> None:
        """Index records of the dead-letter topic (the replay of write path 6)."""
        if letters:
            pipe = self.redis.pipeline(transaction=False)
            index_commands(pipe, self.keys, letters, self.ttl)
            pipe.execute()

    def apply_results(
        self, results: list[TaskResult], also: Callable[[Any], None] | None = None
    ) -> None:
        """Apply committed outcomes (write path 4); `also` queues more commands (the queue
        statistics) on the same round trip."""
        if not results:
            return
        keys = [self.keys.task(r.task_id) for r in results]
        calls = _apply_calls(self.cluster, keys, [result_item(r, self.ttl) for r in results])
        pipe = self.redis.pipeline(transaction=False)
        for some, items in calls:
            self._apply(keys=some, args=items, client=pipe)
        track(pipe, self.keys, [(r.project, r.task_id, r.status, 0.0) for r in results])
        if also is not None:
            also(pipe)
        replies = pipe.execute()
        if self.cluster:
            apply_jobs_sync(self.redis, self.keys, _jobs(replies[: len(calls)]))

    def claim(
        self, tasks: list[AsyncTask], worker_id: str, records: list[str] | None = None
    ) -> list[tuple[str, int]]:
        """Start an attempt of each task (write path 3): (verdict, attempt) per task, in order.
        `records` names the record each task was read from: this process claiming the same
        record again (its round trip failed half way, as in a Redis Cluster failover, and it
        read the record again) counts no new attempt."""
        now = utcnow().isoformat()
        pipe = self.redis.pipeline(transaction=False)
        for i, task in enumerate(tasks):
            token = f"{self.process}/{records[i]}" if records else ""
            self._claim(
                keys=[self.keys.task(task.task_id), self.keys.cancel(task.task_id)],
                args=[now, str(self.ttl), worker_id, token, *_fields(task_fields(task))],
                client=pipe,
            )
        replies = pipe.execute()
        if self.cluster:
            apply_jobs_sync(self.redis, self.keys, _jobs(replies))
            replies = [reply[0] for reply in replies]
        return [(_text_of(verdict), int(attempt)) for verdict, attempt in replies]

    def cancelled(self, task_ids: list[str]) -> set[str]:
        """Which of these tasks carry a cancel flag."""
        if not task_ids:
            return set()
        names = [self.keys.cancel(t) for t in task_ids]
        if self.cluster:  # the flags lie in different slots
            flags = cast(Any, self.redis).mget_nonatomic(names)
        else:
            flags = self.redis.mget(names)
        return {t for t, flag in zip(task_ids, flags, strict=True) if flag is not None}

    def flush_tasks(self) -> int:
        """Delete every task hash, index, timeline and dead-letter entry (before a replay
        rebuilds them); returns how many keys went."""
        keys = self.keys
        deleted = 0
        patterns = (
            keys.task("*"),
            keys.index("*", "*"),
            keys.index_names("*"),
            keys.timeline("*"),
            keys.dead_letters("*"),
        )
        for pattern in patterns:
            for key in self.redis.scan_iter(match=pattern, count=1000):
                deleted += int(self.redis.delete(key))
        return deleted + int(self.redis.delete(keys.index_projects))

    def close(self) -> None:
        self.redis.close()
