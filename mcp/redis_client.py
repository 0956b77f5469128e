"""The Redis clients of the platform: one Redis, or a Redis Cluster when `redis.cluster` is on.

On a cluster the client is redis-py's `RedisCluster` (it finds every node from the one in
`redis.url` and follows slots as they move, retrying through a failover). Callers keep the
`Redis` interface: every script and transaction of the platform touches the keys of one hash
slot (`mcp.names.Keys`), and pipelines without a transaction are split per node by the client.

Scripts run with `EVAL` on a cluster rather than `EVALSHA`: a replica promoted by a failover
may not hold the script cache, and a pipeline cannot load a script half way. On one Redis a
script queued in a pipeline runs with `EVAL` too: redis-py would otherwise ask `SCRIPT EXISTS`
before every such pipeline, a round trip more on the way of each submission, claim and result
(Redis finds the compiled script by the digest of its text either way); called on its own, a
script runs with `EVALSHA`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.asyncio.cluster import ClusterPipeline as AsyncClusterPipeline
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import ExponentialWithJitterBackoff
from redis.client import Pipeline
from redis.cluster import RedisCluster
from redis.commands.core import AsyncScript, Script
from redis.retry import Retry

from mcp.settings import Settings

FAILOVER_RETRIES = 12
"""Retries of a command on a cluster (backoff 50 ms doubling to 1 s): about 8 s, longer than a
replica takes to replace a failed primary (`cluster-node-timeout` plus the election)."""


def _retry() -> Retry:
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), FAILOVER_RETRIES)


def connect(settings: Settings, **options: Any) -> aioredis.Redis:
    """An asyncio client for `settings.redis` (a `RedisCluster` on a cluster)."""
    if settings.redis.cluster:
        client = AsyncRedisCluster.from_url(settings.redis.url, retry=_retry(), **options)
        return cast(aioredis.Redis, client)
    return aioredis.Redis.from_url(settings.redis.url, **options)


def connect_sync(settings: Settings, **options: Any) -> redis.Redis:
    """A blocking client for `settings.redis` (a `RedisCluster` on a cluster)."""
    if settings.redis.cluster:
        client = RedisCluster.from_url(settings.redis.url, retry=_retry(), **options)
        return cast(redis.Redis, client)
    return redis.Redis.from_url(settings.redis.url, **options)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster | AsyncRedisCluster)


class _EvalScript(Script):
    def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any = None,
    ) -> Any:
        keys = list(keys or [])
        target = client if client is not None else self.registered_client
        return target.execute_command("EVAL", self.script, len(keys), *keys, *(args or []))


class _AsyncEvalScript(AsyncScript):
    async def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any = None,
    ) -> Any:
        keys = list(keys or [])
        target = client if client is not None else self.registered_client
        command = ("EVAL", self.script, len(keys), *keys, *(args or []))
        if isinstance(target, AsyncClusterPipeline):
            # Queued; awaiting a cluster pipeline would start it afresh and drop its commands.
            return target.execute_command(*command)
        return await target.execute_command(*command)


class _PipelinedScript(Script):
    """EVALSHA on its own, EVAL in a pipeline (no `SCRIPT EXISTS` round trip first)."""

    def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any = None,
    ) -> Any:
        if isinstance(client, Pipeline):
            keys = list(keys or [])
            queue: Any = client
            return queue.execute_command("EVAL", self.script, len(keys), *keys, *(args or []))
        return super().__call__(keys, args, client)


class _AsyncPipelinedScript(AsyncScript):
    """EVALSHA on its own, EVAL in a pipeline (no `SCRIPT EXISTS` round trip first)."""

    async def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any = None,
    ) -> Any:
        if isinstance(client, AsyncPipeline):
            keys = list(keys or [])
            return client.execute_command("EVAL", self.script, len(keys), *keys, *(args or []))
        return await super().__call__(keys, args, client)


def script(client: redis.Redis, text: str) -> Script:
    """A blocking client's script: EVALSHA alone, EVAL in a pipeline or on a cluster."""
    if is_cluster(client):
        return _EvalScript(client, text)
    return _PipelinedScript(client, text)


def async_script(client: aioredis.Redis, text: str) -> AsyncScript:
    """An asyncio client's script: EVALSHA alone, EVAL in a pipeline or on a cluster."""
    if is_cluster(client):
        return _AsyncEvalScript(client, text)
    return _AsyncPipelinedScript(client, text)
