"""Where a running task's lifecycle webhooks go.

Only a task's first event carries the task (callback URL, filter); later `running` events do
not. The dispatcher keeps what it needs from the first one, for tasks that asked for `started`
or `output` webhooks.
"""

from __future__ import annotations

from datetime import datetime

import orjson
import redis.asyncio as aioredis
from pydantic import Field

from mcp.names import Keys
from mcp.settings import Settings
from schemas import AsyncTask, TaskResult
from schemas.task import Frozen, JsonDict, WebhookEventFilter


class WebhookTarget(Frozen):
    task_id: str
    project: str
    url: str
    events: tuple[WebhookEventFilter, ...]
    model: str
    action: str
    created_at: datetime
    timeout_s: float
    metadata: JsonDict = Field(default_factory=dict)

    @classmethod
    def of(cls, task: AsyncTask | TaskResult) -> WebhookTarget | None:
        """The target of a task, or of a result read before the task's first event."""
        if task.callback_url is None or not (
            {"started", "output"} & set(task.webhook_events_filter)
        ):
            return None
        return cls(
            task_id=task.task_id,
            project=task.project,
            url=str(task.callback_url),
            events=task.webhook_events_filter,
            model=task.model,
            action=task.action,
            created_at=task.created_at,
            timeout_s=task.timeout_s if isinstance(task, AsyncTask) else 0,
            metadata=task.metadata,
        )


class TargetStore:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys.of(settings)

    async def remember(self, targets: list[tuple[WebhookTarget, float]]) -> None:
        """Keep each target for `ttl_s` seconds (the task's life plus its run time)."""
        if not targets:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for target, ttl_s in targets:
                raw = orjson.dumps(target.model_dump(mode="json"))
                pipe.set(self.keys.webhook_target(target.task_id), raw, ex=int(ttl_s) + 3600)
            await pipe.execute()

    async def get(self, task_id: str) -> WebhookTarget | None:
        raw = await self.redis.get(self.keys.webhook_target(task_id))
        return None if raw is None else WebhookTarget.model_validate_json(raw)
