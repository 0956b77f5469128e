"""The Redis projection of task state: `task:<id>` hashes, changed only through Lua scripts.

`TaskStore` (asyncio) serves the API; `SyncTaskStore` serves worker and projector threads.
Both apply the same scripts, so a transition means the same thing wherever it comes from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from mcp.active import track
from mcp.lua import APPLY_EVENTS, CANCEL, CLAIM
from mcp.names import Keys
from mcp.settings import Settings
from schemas import AsyncTask, TaskError, TaskEvent, TaskResult, TaskStatus, TaskView, utcnow


def _fields(mapping: dict[str, Any]) -> list[str]:
    """Flatten a mapping into Lua's field/value ARGV pairs, JSON-encoding structured values."""
    out: list[str] = []
    for name, value in mapping.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, dict | list | tuple):
            value = orjson.dumps(value).decode()
        out += [name, str(value)]
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
    }


Item = list[Any]


def event_item(event: TaskEvent, ttl_s: int) -> Item:
    """One entry of APPLY_EVENTS for a lifecycle event."""
    fields: dict[str, Any] = {}
    if event.task is not None:
        fields.update(task_fields(event.task))
    fields.update({"model": event.model, "action": event.action, "project": event.project})
    if event.status is TaskStatus.RUNNING:
        fields["started_at"] = event.at
        fields["worker_id"] = event.worker_id
    elif event.status.terminal:
        fields["finished_at"] = event.at
        fields["result"] = event.result
        fields["error"] = event.error.model_dump() if event.error else None
    status = event.status
    return [status.value, status.rank, event.attempt, ttl_s, _fields(fields)]


def result_item(result: TaskResult, ttl_s: int) -> Item:
    fields = {
        "task_id": result.task_id,
        "model": result.model,
        "action": result.action,
        "project": result.project,
        "created_at": result.created_at,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "result": result.result,
        "error": result.error.model_dump() if result.error else None,
    }
    status = result.status
    return [status.value, status.rank, result.attempts, ttl_s, _fields(fields)]


def _text(raw: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }


def view_of(raw: dict[Any, Any]) -> TaskView | None:
    """The poll body of a stored task, or None when the hash is empty or a bare stub."""
    data = _text(raw)
    if "model" not in data or "status" not in data:
        return None
    error = orjson.loads(data["error"]) if "error" in data else None
    return TaskView(
        task_id=data["task_id"],
        model=data["model"],
        action=data["action"],
        status=TaskStatus(data["status"]),
        attempts=int(data.get("attempts", 0)),
        created_at=datetime.fromisoformat(data["created_at"]),
        started_at=datetime.fromisoformat(data["started_at"]) if "started_at" in data else None,
        finished_at=datetime.fromisoformat(data["finished_at"]) if "finished_at" in data else None,
        result=orjson.loads(data["result"]) if "result" in data else None,
        error=TaskError.model_validate(error) if error else None,
        metadata=orjson.loads(data["metadata"]) if "metadata" in data else {},
    )


def _activity(event: TaskEvent) -> tuple[str, str, TaskStatus, float]:
    created = event.task.created_at.timestamp() if event.task else event.at.timestamp()
    return event.project or "default", event.task_id, event.status, created


class TaskStore:
    """Async access for the API."""

    def __init__(self, settings: Settings, client: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self.keys = Keys.of(settings)
        self.redis = client or aioredis.Redis.from_url(settings.redis.url)
        self._cancel = self.redis.register_script(CANCEL)

    async def get(self, task_id: str) -> dict[str, str] | None:
        raw = await self.redis.hgetall(self.keys.task(task_id))
        return _text(raw) if raw else None

    async def view(self, task_id: str) -> TaskView | None:
        raw = await self.redis.hgetall(self.keys.task(task_id))
        return view_of(raw) if raw else None

    async def cancel(self, task_id: str, flag_ttl_s: int) -> str:
        verdict = await self._cancel(
            keys=[self.keys.task(task_id), self.keys.cancel(task_id)],
            args=[utcnow().isoformat(), str(flag_ttl_s)],
        )
        return verdict.decode() if isinstance(verdict, bytes) else str(verdict)

    async def remember_idempotency(
        self, project: str, key: str, fingerprint: str, task_id: str
    ) -> tuple[str, str] | None:
        """Claim `key` for `task_id`; when already claimed, return (fingerprint, task_id) of it."""
        name = self.keys.idempotency(project, key)
        value = orjson.dumps({"fp": fingerprint, "task_id": task_id})
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
    """Blocking access for worker and projector threads; batches calls in pipelines."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.keys = Keys.of(settings)
        self.redis = client or redis.Redis.from_url(settings.redis.url)
        self._apply = self.redis.register_script(APPLY_EVENTS)
        self._claim = self.redis.register_script(CLAIM)
        self._cancel = self.redis.register_script(CANCEL)

    @property
    def ttl(self) -> int:
        return self.settings.redis.task_retention_s

    def apply_events(self, events: list[TaskEvent]) -> None:
        if not events:
            return
        keys = [self.keys.task(e.task_id) for e in events]
        items = [event_item(e, self.ttl) for e in events]
        cancels = [e for e in events if e.cancel_requested]
        pipe = self.redis.pipeline(transaction=False)
        self._apply(keys=keys, args=[orjson.dumps(items)], client=pipe)
        track(pipe, self.keys, [_activity(e) for e in events if not e.cancel_requested])
        for event in cancels:
            flag_ttl = int(event.task.ttl_s) if event.task else self.ttl
            self._cancel(
                keys=[self.keys.task(event.task_id), self.keys.cancel(event.task_id)],
                args=[event.at.isoformat(), str(flag_ttl)],
                client=pipe,
            )
        pipe.execute()

    def apply_results(self, results: list[TaskResult]) -> None:
        if not results:
            return
        keys = [self.keys.task(r.task_id) for r in results]
        items = [result_item(r, self.ttl) for r in results]
        pipe = self.redis.pipeline(transaction=False)
        self._apply(keys=keys, args=[orjson.dumps(items)], client=pipe)
        track(pipe, self.keys, [(r.project, r.task_id, r.status, 0.0) for r in results])
        pipe.execute()

    def claim(self, tasks: list[AsyncTask], worker_id: str) -> list[tuple[str, int]]:
        """Start an attempt of each task: (verdict, attempt) per task, in order."""
        now = utcnow().isoformat()
        pipe = self.redis.pipeline(transaction=False)
        for task in tasks:
            self._claim(
                keys=[self.keys.task(task.task_id), self.keys.cancel(task.task_id)],
                args=[now, str(self.ttl), worker_id, *_fields(task_fields(task))],
                client=pipe,
            )
        out: list[tuple[str, int]] = []
        for verdict, attempt in pipe.execute():
            out.append((verdict.decode() if isinstance(verdict, bytes) else verdict, int(attempt)))
        return out

    def cancelled(self, task_ids: list[str]) -> set[str]:
        """Which of these tasks carry a cancel flag."""
        if not task_ids:
            return set()
        flags = self.redis.mget([self.keys.cancel(t) for t in task_ids])
        return {t for t, flag in zip(task_ids, flags, strict=True) if flag is not None}

    def close(self) -> None:
        self.redis.close()
