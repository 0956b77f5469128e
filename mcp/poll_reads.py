"""Polls' reads of a task, gathered: the reads asked for in one turn of the event loop go to
Redis in one pipeline.

A poll reads a task's hash and its webhook index. When the tasks a process's long polls wait
for end together (a worker tells Redis of a commit's outcomes in one round trip, so their ends
are published together), every woken poll used to read on its own: a pipeline each, whose
client-side cost (a connection from the pool, packing, the retry wrapper, parsing) is most of a
poll's work. Here the first read of a turn leads: it lets the turn's other reads join, sends them
all in one pipeline and hands each its answer. A lone read costs one more turn of the loop.

When the leader is cancelled or its pipeline fails, each follower reads again on its own, so
one request's fate never decides another's answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from mcp.names import Keys

Raw = tuple[dict[Any, Any], dict[Any, Any]]
"""(the task's hash, its webhook index), as Redis answered (empty when absent)."""


class _ReadAlone(Exception):
    """A follower's read went unanswered with the leader's batch: read on your own."""


class PollReads:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._gathering: list[tuple[str, asyncio.Future[Raw]]] | None = None

    async def read(self, task_id: str) -> Raw:
        gathering = self._gathering
        if gathering is not None:
            future: asyncio.Future[Raw] = asyncio.get_running_loop().create_future()
            gathering.append((task_id, future))
            try:
                return await future
            except _ReadAlone:
                return (await self._pipeline([task_id]))[0]
        followers: list[tuple[str, asyncio.Future[Raw]]] = []
        self._gathering = followers
        try:
            await asyncio.sleep(0)  # the reads of this turn join
            self._gathering = None
            answers = await self._pipeline([task_id, *(t for t, _ in followers)])
        except BaseException:
            if self._gathering is followers:
                self._gathering = None
            for _, future in followers:
                if not future.done():
                    future.set_exception(_ReadAlone())
            raise
        for (_, future), answer in zip(followers, answers[1:], strict=True):
            if not future.done():  # a cancelled follower's future is done
                future.set_result(answer)
        return answers[0]

    async def _pipeline(self, task_ids: list[str]) -> list[Raw]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hgetall(self._keys.task(task_id))
                pipe.hgetall(self._keys.task_webhooks(task_id))
            replies = await pipe.execute()
        return [(replies[i], replies[i + 1]) for i in range(0, len(replies), 2)]
