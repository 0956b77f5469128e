"""Queued and running tasks per project, for the `max_active` quota.

`active:<project>` is a sorted set of task ids scored by submit time. Its writers:
- the API reserves a place before it publishes a task (`RESERVE`, atomic against the limit) and
  gives it back when the publication fails or the request turned out to repeat an older task;
- every projection of task state adds queued tasks and removes finished ones (`track`), so a
  replay of `task-events` rebuilds the set like the rest of the projection.
Projections may apply a late `queued` after a task's end; such a stale entry is harmless until
the project reaches its limit, where `prune` drops every member whose task has finished.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from mcp.lua import RESERVE
from mcp.names import Keys
from mcp.redis_client import async_script
from schemas import TaskStatus

# A reserved task not yet projected is young; one missing for longer than this is gone.
UNSEEN_GRACE_S = 120.0
TERMINAL_RANK = b"2"


def track(pipe: Any, keys: Keys, updates: list[tuple[str, str, TaskStatus, float]]) -> None:
    """Queue (project, task_id, status, submit time) changes on a Redis pipeline: one command
    for each run of consecutive changes of the same kind in the same project (a commit's
    submissions: one ZADD), in their order."""
    runs: list[tuple[bool, str, dict[str, float]]] = []
    for project, task_id, status, at in updates:
        if not (status.terminal or status is TaskStatus.QUEUED):
            continue
        ended = status.terminal
        if not runs or runs[-1][:2] != (ended, project):
            runs.append((ended, project, {}))
        runs[-1][2].setdefault(task_id, at)  # ZADD NX: the first score stands
    for ended, project, members in runs:
        if ended:
            pipe.zrem(keys.active(project), *members)
        else:
            pipe.zadd(keys.active(project), members, nx=True)


class ActiveTasks:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._reserve = async_script(client, RESERVE)

    async def reserve(self, project: str, task_id: str, limit: int) -> bool:
        """Take a place for `task_id`; False when the project has `limit` active tasks."""
        args = [task_id, str(time.time()), str(limit)]
        key = self.keys.active(project)
        if await self._reserve(keys=[key], args=args):
            return True
        await self.prune(project)
        return bool(await self._reserve(keys=[key], args=args))

    async def release(self, project: str, task_id: str) -> None:
        await self.redis.zrem(self.keys.active(project), task_id)

    async def count(self, project: str) -> int:
        return int(await self.redis.zcard(self.keys.active(project)))

    async def prune(self, project: str) -> int:
        """Drop finished (and long-missing) tasks from the set; how many were dropped."""
        key = self.keys.active(project)
        members: list[Any] = await self.redis.zrange(key, 0, -1, withscores=True)
        if not members:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for task_id, _ in members:
            pipe.hget(self.keys.task(task_id.decode()), "rank")
        ranks = await pipe.execute()
        cutoff = time.time() - UNSEEN_GRACE_S
        gone = [
            task_id
            for (task_id, score), rank in zip(members, ranks, strict=True)
            if rank == TERMINAL_RANK or (rank is None and score < cutoff)
        ]
        if gone:
            await self.redis.zrem(key, *gone)
        return len(gone)
